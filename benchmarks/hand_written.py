"""The project's hand-written DSP against the librosa functions it stands in for: speed ratio
and largest difference, on real recordings (the LibriSpeech sample beside the repository).

    PYTHONPATH=src python benchmarks/hand_written.py [--files 20] [--repeat 3]

Each pair is timed in the same run, interleaved ``--repeat`` times (best kept), on one thread,
so the ratio holds on a busy machine. The report CNN's compiled step has its own benchmark
(benchmarks/train_step.py).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
from threadpoolctl import threadpool_limits

from voicegender.features.kinds import mean_mel
from voicegender.audio.spectral import mel_spectrogram, mfcc, yin

SAMPLE = Path(__file__).resolve().parents[2] / "shared/data/librispeech-clean100-sample/audio"


def best_time(fn, signals, repeat):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for y, sr in signals:
            fn(y, sr)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--audio", type=Path, default=SAMPLE)
    args = ap.parse_args()
    paths = sorted(args.audio.rglob("*.flac"))[: args.files]
    signals = [sf.read(p, dtype="float32") for p in paths]
    seconds = sum(len(y) / sr for y, sr in signals)
    print(f"{len(signals)} files, {seconds:.0f} s of audio, one thread, best of {args.repeat}")

    stft = dict(n_fft=2048, hop_length=512, n_mels=128)  # librosa's defaults, which it is compared with
    pitch = dict(fmin=60.0, fmax=400.0, hop_length=512, threshold=0.15)
    pairs = {
        "time-mean mel (mean_mel)": (
            lambda y, sr: mean_mel(y, sr, **stft),
            lambda y, sr: librosa.feature.melspectrogram(y=y, sr=sr).mean(axis=1),
            lambda a, b: float(np.max(np.abs(a - b)) / np.max(np.abs(b))),
        ),
        "mel spectrogram (STFT + filterbank)": (
            lambda y, sr: mel_spectrogram(y, sr, **stft),
            lambda y, sr: librosa.feature.melspectrogram(y=y, sr=sr),
            lambda a, b: float(np.max(np.abs(a - b)) / np.max(np.abs(b))),
        ),
        "MFCC": (
            lambda y, sr: mfcc(y, sr, n_mfcc=20, **stft),
            lambda y, sr: librosa.feature.mfcc(y=y, sr=sr),
            lambda a, b: float(np.max(np.abs(a - b))),
        ),
        "YIN F0 (60-400 Hz)": (
            lambda y, sr: yin(y, sr, **pitch)[0],
            lambda y, sr: librosa.yin(y, fmin=60.0, fmax=400.0, sr=sr, frame_length=2048, hop_length=512),
            None,
        ),
    }
    with threadpool_limits(1):
        for name, (ours, theirs, diff) in pairs.items():
            ours(*signals[0]), theirs(*signals[0])  # warm-up: numba / FFT plans / filterbank caches
            t_ours, t_theirs = best_time(ours, signals, args.repeat), best_time(theirs, signals, args.repeat)
            line = (
                f"{name}: ours {seconds / t_ours:,.0f}x real time, librosa {seconds / t_theirs:,.0f}x, "
                f"ratio {t_theirs / t_ours:.1f}"
            )
            if diff is not None:
                line += f", max difference {max(diff(ours(y, sr), theirs(y, sr)) for y, sr in signals):.1e}"
            else:  # different algorithms' frames: compare F0 where ours calls the frame voiced
                errors = []
                for y, sr in signals:
                    f0, voiced = yin(y, sr, **pitch)
                    ref = theirs(y, sr)
                    n = min(len(f0), len(ref))
                    v = voiced[:n]
                    errors.append(np.abs(1200 * np.log2(f0[:n][v] / ref[:n][v])))
                cents = np.concatenate(errors)
                line += (
                    f"; on voiced frames |F0 difference| median {np.median(cents):.0f} cents, "
                    f"{np.mean(cents > 100):.0%} of frames > 100 cents"
                )
            print(line, flush=True)


if __name__ == "__main__":
    main()
