"""Tests of the synthetic LibriTTS-layout corpus (voicegender.corpora.synth)."""

import hashlib
import io
import re
import tarfile

import librosa
import numpy as np
import pytest
import soundfile as sf

from voicegender.corpora import synth
from voicegender.params import ParamError, SyntheticSettings, validate

TINY = dict(train_speakers=2, test_speakers=2, utterances_per_speaker=2, seed=7, progress=False)
MEMBER = re.compile(
    r"LibriTTS/(?P<subset>[^/]+)/(?P<spk>\d+)/(?P<chap>\d+)/"
    r"(?P=spk)_(?P=chap)_\d{6}_\d{6}\.(wav|normalized\.txt|original\.txt)$"
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return synth.generate_corpus(tmp_path_factory.mktemp("a"), workers=2, **TINY)


def parse_speakers(text: str) -> dict[int, tuple[str, str]]:
    """SPEAKERS.txt -> {id: (sex, subset)}, as a LibriTTS reader would parse it."""
    out = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith(";"):
            continue
        spk, sex, subset, minutes, _name = (f.strip() for f in line.split("|", 4))
        assert float(minutes) > 0
        out[int(spk)] = (sex, subset)
    return out


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow  # synthesises a corpus (the module's fixture)
def test_layout_wavs_and_speakers(tiny):
    assert set(tiny) == {"synthetic-train", "synthetic-test"}
    speakers_texts, ids = [], {}
    for subset, archive in tiny.items():
        assert archive.name == f"{subset}.tar.gz"
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            names = [m.name for m in members]
            assert names == sorted(names)
            speakers_texts.append(tar.extractfile("LibriTTS/SPEAKERS.txt").read().decode())
            utts = [n for n in names if MEMBER.match(n)]
            assert {MEMBER.match(n)["subset"] for n in utts} == {subset}
            wavs = [n for n in utts if n.endswith(".wav")]
            assert len(wavs) == 2 * 2
            for wav in wavs:
                for ext in (".normalized.txt", ".original.txt"):
                    text = tar.extractfile(wav[:-4] + ext).read().decode()
                    assert text.strip() and text[0].isupper()
                info = sf.info(io.BytesIO(tar.extractfile(wav).read()))
                assert (info.samplerate, info.channels, info.subtype) == (24000, 1, "PCM_16")
                assert info.duration > 0.5
            ids[subset] = {int(MEMBER.match(n)["spk"]) for n in wavs}
            assert all(n in ("LibriTTS/SPEAKERS.txt",) or MEMBER.match(n) or n.endswith(".trans.tsv") for n in names)
    assert speakers_texts[0] == speakers_texts[1]  # each archive lists the whole corpus
    table = parse_speakers(speakers_texts[0])
    assert not ids["synthetic-train"] & ids["synthetic-test"]
    assert set(table) == ids["synthetic-train"] | ids["synthetic-test"]
    for subset, spks in ids.items():
        assert {table[s] for s in spks} == {("F", subset), ("M", subset)}
    assert min(table) >= 10000


@pytest.mark.slow  # synthesises the corpus twice more
def test_regeneration_is_byte_identical(tiny, tmp_path):
    # one worker instead of two: the bytes must not depend on scheduling
    again = synth.generate_corpus(tmp_path / "b", workers=1, **TINY)
    assert {k: sha256(v) for k, v in again.items()} == {k: sha256(v) for k, v in tiny.items()}
    other = synth.generate_corpus(tmp_path / "c", workers=2, **{**TINY, "seed": 8})
    assert all(sha256(other[k]) != sha256(tiny[k]) for k in tiny)


def test_sexes_counts_and_knob_validation():
    speakers = synth.corpus_speakers(train_speakers=5, test_speakers=3, seed=1)
    sexes = [s.sex for s in speakers if s.subset == "synthetic-train"]
    assert sexes == ["F", "M", "F", "M", "F"]  # odd count: one more female
    assert all(s.voice.split("+")[1] in SyntheticSettings().female_variants for s in speakers if s.sex == "F")
    assert all(s.voice.split("+")[1] in SyntheticSettings().male_variants for s in speakers if s.sex == "M")
    # the knobs are data.synthetic's settings: checked by the schema, each error naming its key
    with pytest.raises(ParamError, match="data.synthetic.femal_f0_hz: not a known key"):
        validate(SyntheticSettings, {"femal_f0_hz": [1, 2]}, "invalid", prefix="data.synthetic.")
    with pytest.raises(ParamError, match=r"data.synthetic.rate_wpm: must be \[low, high\]"):
        validate(SyntheticSettings, {"rate_wpm": [200, 100]}, "invalid", prefix="data.synthetic.")


def test_resample_matches_a_sine():
    rate_in, rate_out = 22050, 24000
    t_in = np.arange(rate_in) / rate_in
    y = synth.resample(np.sin(2 * np.pi * 440 * t_in), rate_in, rate_out)
    t_out = np.arange(len(y)) / rate_out
    assert len(y) == rate_out
    assert np.max(np.abs(y - np.sin(2 * np.pi * 440 * t_out))[500:-500]) < 1e-2


@pytest.mark.slow  # synthesises 12 speakers' utterances
def test_female_f0_higher_but_overlapping():
    speakers = synth.corpus_speakers(train_speakers=12, test_speakers=0, seed=3)
    medians = {"F": [], "M": []}
    for s in speakers:
        _, pcm = synth.render_utterance(s, 0, seed=3)
        y = pcm.astype(np.float32) / 32768
        f0 = librosa.yin(y, fmin=60, fmax=400, sr=24000, frame_length=1024, hop_length=256)
        rms = librosa.feature.rms(y=y, frame_length=1024, hop_length=256)[0][: len(f0)]
        medians[s.sex].append(float(np.median(f0[rms > 0.3 * np.median(rms)])))  # voiced-ish
    female, male = np.array(medians["F"]), np.array(medians["M"])
    assert np.mean(female) > np.mean(male) + 40
    assert female.min() < male.max()  # the sexes overlap in pitch: not solvable by F0 alone
