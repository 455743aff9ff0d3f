"""Test signals: tones, harmonic voices and their WAV bytes, at LibriTTS's rate unless told."""

import io

import numpy as np
import soundfile as sf

SR = 24000  # LibriTTS's rate


def tone(f0, seconds=1.0, sr=SR, amp=0.5, noise=0.0, seed=0):
    t = np.arange(int(seconds * sr)) / sr
    y = amp * np.sin(2 * np.pi * f0 * t)
    if noise:
        y = y + noise * np.random.default_rng(seed).standard_normal(t.size)
    return y.astype(np.float32)


def voice(f0, seconds=1.0, sr=SR):
    """Harmonic-rich periodic signal (glottal-pulse-like) at f0 Hz."""
    t = np.arange(int(seconds * sr)) / sr
    y = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 15))
    return (0.2 * y).astype(np.float32)


def wav_bytes(y, sr=SR, subtype="PCM_16"):
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype=subtype)
    return buf.getvalue()
