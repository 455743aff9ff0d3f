"""voicegender.audio.decode: decoding wav / flac bytes."""

import io

import numpy as np
import pytest
import soundfile as sf

from libritts_fixture import make_wav
from voicegender.audio.decode import AudioError, decode_audio
from signals import SR, tone, wav_bytes

WAV = make_wav("F", "1", 0, seconds=0.05)


@pytest.mark.parametrize("channels", [1, 2, 3])
@pytest.mark.parametrize("n", [1, 2, 1001])
def test_decode_pcm16_fast_path_equals_soundfile(channels, n):
    """decode_audio reads 16-bit PCM wavs with np.frombuffer: the very same float32 samples."""
    y = np.random.default_rng(n).uniform(-1, 1, (n, channels)).astype(np.float32)
    y[0] = -1.0
    data = wav_bytes(y, subtype="PCM_16")
    ref, ref_sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    ref = ref[:, 0] if channels == 1 else ref.mean(axis=1)
    z, sr = decode_audio(data)
    assert sr == ref_sr == SR and z.dtype == np.float32 and z.flags.c_contiguous
    assert z.tobytes() == np.ascontiguousarray(ref).tobytes()


def test_decode_stereo_is_mixed_to_mono():
    y = tone(200, 0.5)
    stereo = np.stack([y, np.zeros_like(y)], axis=1)
    z, sr = decode_audio(wav_bytes(stereo, subtype="FLOAT"))
    assert sr == SR and z.ndim == 1
    np.testing.assert_allclose(z, y / 2, atol=1e-7)


def test_decode_audio_rejects_broken_data():
    with pytest.raises(AudioError, match="empty"):
        decode_audio(b"")
    with pytest.raises(AudioError, match="x.wav: not readable audio"):
        decode_audio(b"RIFF\x00\x00junk" * 10, name="x.wav")
    with pytest.raises(AudioError, match="truncated WAV"):
        decode_audio(WAV[: len(WAV) // 2])
    header_only = io.BytesIO()
    sf.write(header_only, np.zeros(0, np.float32), 16000, format="WAV")
    with pytest.raises(AudioError, match="no audio samples"):
        decode_audio(header_only.getvalue())
    flac = make_wav("M", "2", 0, seconds=1.0, fmt="FLAC")
    with pytest.raises(AudioError):
        decode_audio(flac[: len(flac) // 2])


def test_decode_audio_mixes_stereo_and_keeps_rate():
    buf = io.BytesIO()
    sf.write(buf, np.stack([np.full(800, 0.5), np.full(800, -0.25)], axis=1), 16_000, format="FLAC")
    x, sr = decode_audio(buf.getvalue())
    assert sr == 16_000 and x.shape == (800,) and x.dtype == np.float32
    assert np.allclose(x, 0.125, atol=1e-3)


@pytest.mark.parametrize("subtype, channels", [("PCM_16", 1), ("PCM_16", 2), ("PCM_24", 1)])
def test_decode_audio_flac_matches_libsndfile(subtype, channels):
    # 16-bit FLAC takes the dr_flac path, the rest libsndfile: the
    # samples must be libsndfile's float32 ones either way, bit for bit
    rng = np.random.default_rng(channels)
    buf = io.BytesIO()
    sf.write(buf, rng.uniform(-0.9, 0.9, (12_345, channels)), 22_050, format="FLAC", subtype=subtype)
    data = buf.getvalue()
    with sf.SoundFile(io.BytesIO(data)) as f:
        ref = f.read(dtype="float32", always_2d=True)
    ref = ref[:, 0] if channels == 1 else ref.mean(axis=1)
    x, sr = decode_audio(data)
    assert sr == 22_050 and x.dtype == np.float32 and x.tobytes() == np.ascontiguousarray(ref).tobytes()
    for cut in (len(data) - 10, len(data) // 2):  # cut FLACs are reported, whichever decoder tries
        with pytest.raises(AudioError):
            decode_audio(data[:cut])
