"""Tests for voicegender.features.speaker_encoder (the pretrained GE2E embedding, features.kind: ge2e)."""

import math

import numpy as np
import pytest

from voicegender.features import extraction as X
from feature_settings import check, fs
from voicegender.features import kinds as F
from voicegender.audio.decode import decode_audio
from voicegender.features import speaker_encoder as E

SR = 24000
#: Resemblyzer's own settings (those of the values recorded from it below)
RESEMBLYZER = dict(rate=1.3, min_coverage=0.75, target_dbfs=-30.0)


def embed(y, sr=SR, *, precision="float32", device="cpu"):
    """``ge2e_embedding`` at Resemblyzer's settings; the network as trained, on the CPU, unless told."""
    return E.ge2e_embedding(y, sr, **RESEMBLYZER, device=device, precision=precision)


def vibrato_voice(f0=140.0, seconds=2.5, sr=SR, amp=0.05):
    """A harmonic-rich tone with 3 Hz vibrato: a deterministic stand-in for a voiced sound."""
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * f0 * t * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    return (amp * sum(np.sin(k * phase) / k for k in range(1, 20))).astype(np.float32)


def test_matches_resemblyzer_on_a_fixed_signal():
    # Recorded from resemblyzer 0.1.4: VoiceEncoder().embed_utterance(normalize_volume(
    # librosa.resample(vibrato_voice(), 24000, 16000), -30, increase_only=True)).
    # Its largest six components and the sum of all 256 (ours matched to ~1e-7).
    e = embed(vibrato_voice(), SR)
    assert e.shape == (256,) and e.dtype == np.float32
    top = [127, 180, 158, 42, 119, 235]
    np.testing.assert_allclose(e[top], [0.251182, 0.219244, 0.215454, 0.193837, 0.192669, 0.17991], atol=2e-5)
    assert e.sum() == pytest.approx(9.103668, abs=1e-3)
    assert np.linalg.norm(e) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("n_samples", [1, 8000, 25600, 25601, 40000, 160000, 160001])
def test_partial_starts_follow_resemblyzer(n_samples):
    # resemblyzer's compute_partial_slices, written out independently
    rate, min_cov = 1.3, 0.75
    n_frames = int(np.ceil((n_samples + 1) / 160))
    step = int(np.round((16000 / rate) / 160))
    expected = list(range(0, max(1, n_frames - 160 + step + 1), step))
    cov = (n_samples - expected[-1] * 160) / (160 * 160)
    if cov < min_cov and len(expected) > 1:
        expected = expected[:-1]
    assert list(E.partial_starts(n_samples, rate, min_cov)) == expected


def test_quiet_recordings_are_raised_loud_ones_left_alone():
    y = vibrato_voice(amp=0.05)
    quiet = E.normalize_level(0.01 * y, -30.0)
    rms_db = 20 * math.log10(float(np.sqrt(np.mean(quiet.astype(np.float64) ** 2))))
    assert rms_db == pytest.approx(-30.0, abs=1e-3)
    loud = 0.9 * y / np.abs(y).max()
    assert E.normalize_level(loud, -30.0) is loud
    zeros = np.zeros(100, np.float32)
    assert E.normalize_level(zeros, -30.0) is zeros


def test_embedding_does_not_depend_on_level_or_rate():
    y = vibrato_voice(amp=0.01)  # ~ -41 dBFS
    e = embed(y, SR)
    assert float(e @ embed(0.1 * y, SR)) > 0.9999  # both raised to -30 dBFS
    import soxr

    y16 = soxr.resample(y, SR, 16000, quality="soxr_hq").astype(np.float32)
    assert float(e @ embed(y16, 16000)) > 0.999


def test_different_voices_get_different_embeddings():
    low, high = embed(vibrato_voice(110.0), SR), embed(vibrato_voice(230.0), SR)
    assert float(low @ high) < 0.99


def test_ge2e_is_a_feature_kind_with_validated_settings():
    cfg = fs({"kind": "ge2e"})
    assert F.feature_shape(cfg) == (256,)
    np.testing.assert_array_equal(F.compute_features(vibrato_voice(), SR, cfg), embed(vibrato_voice(), SR))
    for key, bad in [("ge2e_rate", 0.1), ("ge2e_min_coverage", 1.5), ("target_dbfs", 3.0), ("target_dbfs", "loud")]:
        with pytest.raises(ValueError, match=f"features.{key}"):
            check({"kind": "ge2e", key: bad})


def test_extraction_is_byte_identical_across_worker_counts():
    items = [(f"u{i}", _wav(vibrato_voice(100.0 + 30 * i, 1.0 + 0.3 * i))) for i in range(5)]
    one = [x for _, x, _ in X.extract_many(items, fs({"kind": "ge2e"}), n_jobs=1)]
    two = [x for _, x, _ in X.extract_many(items, fs({"kind": "ge2e"}), n_jobs=2)]
    assert all(np.array_equal(a, b) for a, b in zip(one, two))


@pytest.mark.parametrize(
    "precision",
    [  # params.yaml's bfloat16 in the quick loop; the other two take ~3 s each (slow)
        pytest.param("float32", marks=pytest.mark.slow),
        pytest.param("mixed", marks=pytest.mark.slow),
        "bfloat16",
    ],
)
def test_batched_embeddings_equal_one_at_a_time_whatever_the_batch(monkeypatch, precision):
    # many utterances' partials through the encoder together, in any grouping and worker count:
    # the same bytes as each utterance alone (fixed-shape encoder blocks, see ENCODER_BATCH;
    # small blocks here so that a few short signals span several, forked workers included)
    monkeypatch.setattr(E, "ENCODER_BATCH", 4)
    signals = [vibrato_voice(100.0 + 17 * i, 0.8 + 0.5 * i) for i in range(6)]
    alone = [embed(y, SR, precision=precision) for y in signals]
    mels = [E.partial_mels(y, SR, **RESEMBLYZER) for y in signals]
    assert sum(len(m) for m in mels) > E.ENCODER_BATCH  # more than one block, a padded last one
    for grouping in ([6], [1, 5], [2, 2, 2], [3, 1, 2]):
        got, start = [], 0
        for n in grouping:
            got += E.ge2e_embeddings(mels[start : start + n], device="cpu", precision=precision)
            start += n
        for a, b in zip(alone, got):
            np.testing.assert_array_equal(a, b)
    items = [(f"u{i}", _wav(y)) for i, y in enumerate(signals)] + [("bad", b"not audio")]
    for n_jobs, chunksize in ((1, None), (2, 1), (2, 3)):
        out = list(
            X.extract_many(
                items,
                fs({"kind": "ge2e", "encoder_device": "cpu", "ge2e_precision": precision}),
                n_jobs=n_jobs,
                chunksize=chunksize,
            )
        )
        assert [i for i, _, _ in out] == [i for i, _ in items]
        assert out[-1][1] is None and "bad" not in (out[-1][2] or "") and out[-1][2]
        for (_, x, err), y in zip(out, signals):
            assert err is None
            # the wav's 16-bit rounding aside, the same as the float signal's embedding
            np.testing.assert_array_equal(x, embed(decode_audio(_wav(y))[0], SR, precision=precision))


def test_batched_path_matches_the_encoder_run_per_utterance():
    # the pre-batching path: one encoder call on exactly one utterance's partials
    import torch

    y = vibrato_voice(seconds=4.0)
    mels = E.partial_mels(y, SR, **RESEMBLYZER)
    with torch.inference_mode():
        per_utt = E.combine_partials(E.load_encoder()(torch.from_numpy(mels)).numpy())
    assert float(per_utt @ embed(y, SR)) > 1 - 1e-6
    np.testing.assert_allclose(per_utt, embed(y, SR), atol=1e-5)


def test_mixed_precision_stays_within_cosine_1e4_of_float32():
    if not E.native_bfloat16("cpu"):
        pytest.skip("no native bfloat16 on this CPU: mixed runs in float32")
    for f0 in (110.0, 230.0):
        y = vibrato_voice(f0, seconds=3.0)
        exact, mixed = embed(y, SR), embed(y, SR, precision="mixed")
        assert not np.array_equal(exact, mixed)  # it did run in bfloat16
        assert float(exact @ mixed) > 1 - 1e-4
    assert isinstance(E.encoder_for("cpu", "mixed"), E.MixedGE2EEncoder)


def test_bfloat16_stays_within_cosine_3e3_of_float32():
    if not E.native_bfloat16("cpu"):
        pytest.skip("no native bfloat16 on this CPU: bfloat16 runs in float32")
    for f0 in (110.0, 230.0):
        y = vibrato_voice(f0, seconds=3.0)
        exact, bf16 = embed(y, SR), embed(y, SR, precision="bfloat16")
        mixed = embed(y, SR, precision="mixed")
        assert not np.array_equal(bf16, mixed)  # all three layers, not two
        assert float(exact @ bf16) > 1 - 3e-3
    assert isinstance(E.encoder_for("cpu", "bfloat16"), E.BFloat16GE2EEncoder)


def test_precision_is_validated():
    assert check({}).ge2e_precision == "bfloat16"  # the schema's default: params.yaml's
    assert check({"ge2e_precision": "float32"}).ge2e_precision == "float32"  # the network as trained
    with pytest.raises(ValueError, match="features.ge2e_precision"):
        check({"ge2e_precision": "float16"})


def test_encoder_device_is_validated():
    assert check({"kind": "ge2e"}).encoder_device == "auto"
    for ok in ("cpu", "cuda", "cuda:1"):
        check({"encoder_device": ok})
    for bad in ("gpu", "cuda:x", 0):
        with pytest.raises(ValueError, match="features.encoder_device"):
            check({"encoder_device": bad})


def test_encoder_on_cuda_agrees_with_the_cpu():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    y = vibrato_voice(seconds=3.0)
    cpu, gpu = embed(y, SR, device="cpu"), embed(y, SR, device="cuda")
    assert float(cpu @ gpu) > 0.9999
    ((x, _, err),) = X.extract_many([("a", _wav(y))], fs({"kind": "ge2e", "encoder_device": "cuda"}), n_jobs=2)
    assert err is None and float(x @ cpu) > 0.9999


def _wav(y, sr=SR):
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()
