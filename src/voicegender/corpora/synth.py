"""A synthetic speech corpus in LibriTTS's layout, spoken by eSpeak NG.

Why: LibriTTS cannot be downloaded everywhere, yet a first run of the pipeline must work in
minutes; this module makes a small corpus with the very same archive layout, so that the rest
of the pipeline runs unchanged on both.

Design
------
* eSpeak NG comes from the ``espeakng-loader`` wheel (``libespeak-ng.so`` + voice data) and is
  driven through ctypes in synchronous mode (audio handed to a callback, 22,050 Hz mono int16).
* A "speaker" is a set of traits drawn from ``numpy.random.default_rng([seed, speaker_id, 0])``:
  accent (base voice), voice variant (the ``!v`` variants, chosen by sex), target median F0 in
  Hz, intonation range, speaking rate, recording level, spectral tilt and noise level.  Female
  and male F0 ranges overlap (and variants differ in formants too), so the task is learnable
  but not trivial.
* Each utterance's randomness (sentence, small pitch/rate jitter, noise, eSpeak's own random
  seed) comes from ``default_rng([seed, speaker_id, 1, utterance_index])`` only, so the corpus
  does not depend on worker count or scheduling.
* eSpeak keeps internal state across syntheses (wave generator phase, flutter position, ...),
  and re-initialising does not reset all of it, so the same call gives different samples
  depending on what was spoken before.  Each utterance is therefore synthesized in a child
  forked from a worker that initialised eSpeak but never spoke: every synthesis starts from the
  same pristine state.  (Without ``os.fork``, e.g. on Windows, synthesis runs in-process and
  archives are not guaranteed byte-identical.)
* Post-processing in float64: spectral tilt (first-order FIR), resampling 22,050 -> 24,000 Hz
  (polyphase Kaiser-windowed sinc, 160/147, the same filter as ``scipy.signal.resample_poly``;
  written in numpy because importing scipy.signal makes every fork ~5x slower), level
  normalisation, white noise at a drawn SNR, int16 rounding.  Only elementwise operations in a
  fixed order, so results do not depend on SIMD reduction order.
* Output, per subset, ``<out_dir>/<subset>.tar.gz`` holding
  ``LibriTTS/<subset>/<spk>/<chap>/<spk>_<chap>_<para>_<sent>.{wav,normalized.txt,original.txt}``,
  a per-chapter ``<spk>_<chap>.trans.tsv``, and ``LibriTTS/SPEAKERS.txt`` (all speakers of the
  corpus, LibriTTS's format).  Archives are byte-identical for the same arguments (sorted
  members, fixed mtime/uid/gid/names, gzip header mtime 0), given the same library versions.

Speaker ids: the train subset uses 10000, 10001, ...; the test subset 50000, 50001, ...  (fixed
blocks, so changing the number of train speakers leaves the test speakers untouched).  Within a
subset, even indices are female and odd ones male: with an odd count there is one more female.
"""

from __future__ import annotations

import ctypes
import gzip
import io
import logging
import math
import multiprocessing
import os
import pathlib
import tarfile
import tempfile
import time
import wave
from dataclasses import asdict, dataclass

import numpy as np

from voicegender.params import SyntheticSettings

log = logging.getLogger(__name__)

ESPEAK_RATE_HZ = 22050
TRAIN_ID_START = 10000
TEST_ID_START = 50000
UTTERANCES_PER_CHAPTER = 20
TAR_MTIME = 1262304000  # 2010-01-01, fixed so that archives do not depend on the clock

# The voice variants, accents and ranges drawn from: data.synthetic (voicegender.params.SyntheticSettings).

# eSpeak's default pitch line ("pitch 82 118") for variants without one (e.g. m5).
_DEFAULT_PITCH_LINE_HZ = (82.0, 118.0)

WORDS = tuple(
    """
the of and to in is was that he for it with as his on be at by had not are but from or have
an they which one you were her all she there would their we him been has when who will more no
if out so said what up its about into than them can only other new some could time these two
may then do first any my now such like our over man me even most made after also did many
before must through back years where much your way well down should because each just those
people how too little state good very make world still own see men work long get here between
both life being under never day same another know while last might us great old year off come
since against go came right used take three states himself few house use during without again
place around however home small found thought went say part once general high upon school every
does got united left number course war until always away something fact though water less public
put think almost hand enough far took head yet government system better set told nothing night
end why called didn't eyes find going look asked later knew point next city business give group
toward young days let room president side social given present several order national possible
rather second face per among form important often things looked early white case john become
large big need four within felt along children saw best church ever least power development
light thing seemed family interest want members mind country area others done turned although
open god service certain kind problem began different door thus help sense means whole matter
perhaps itself york times law human line above name example action company hands local show
whether five history gave today either act feel across taken past quite anything seen having
death body half really week field car word already themselves information tell together college
shall money period held keep sure free real probably seems political cannot behind miss question
air office making brought whose special major heard federal became study ago moment knowledge
several voice river garden morning evening window paper letter story music friend mother father
sister brother summer winter spring autumn bread apple table chair green blue yellow quiet
gentle simple bright slowly quickly warm cold happy travel village mountain ocean forest valley
""".split()
)


# ----------------------------------------------------------------------------- eSpeak via ctypes

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE, _ESPEAK_PITCH, _ESPEAK_RANGE = 1, 3, 4
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _Espeak:
    """The per-process ctypes handle: library, callback and the sample chunks it collects."""

    def __init__(self) -> None:
        import espeakng_loader

        self.data_path = espeakng_loader.get_data_path()
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        rate_hz = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data_path.encode(), 0)
        if rate_hz != ESPEAK_RATE_HZ:
            raise RuntimeError(f"espeak_Initialize returned {rate_hz}, expected {ESPEAK_RATE_HZ}")
        self.chunks: list[np.ndarray] = []
        self.callback = _SYNTH_CALLBACK(self._on_audio)  # kept alive: C holds the pointer
        lib.espeak_SetSynthCallback(self.callback)
        self.lib = lib

    def _on_audio(self, samples, n_samples, _events) -> int:
        if n_samples > 0:
            self.chunks.append(np.ctypeslib.as_array(samples, shape=(n_samples,)).copy())
        return 0  # 0 = continue synthesis

    def synth(self, text: str, voice: str, rate_wpm: int, pitch: int, pitch_range: int, espeak_seed: int) -> np.ndarray:
        """Speak `text`; int16 samples at 22,050 Hz."""
        self.chunks = []
        lib = self.lib
        lib.espeak_ng_SetRandSeed(espeak_seed)
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"eSpeak has no voice {voice!r}")
        lib.espeak_SetParameter(_ESPEAK_RATE, rate_wpm, 0)
        lib.espeak_SetParameter(_ESPEAK_PITCH, pitch, 0)
        lib.espeak_SetParameter(_ESPEAK_RANGE, pitch_range, 0)
        data = text.encode() + b"\0"
        err = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        if err != 0 or not self.chunks:
            raise RuntimeError(f"espeak_Synth failed ({err}) for {voice!r}: {text!r}")
        return np.concatenate(self.chunks)


_ESPEAK: _Espeak | None = None  # the per-process library handle


def _espeak() -> _Espeak:
    global _ESPEAK
    if _ESPEAK is None:
        _ESPEAK = _Espeak()
    return _ESPEAK


def _synth_isolated(**kwargs) -> np.ndarray:
    """Synthesize in a forked child so every utterance starts from the same eSpeak state."""
    handle = _espeak()
    if not hasattr(os, "fork"):
        return handle.synth(**kwargs)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: speak, send the raw samples, leave without Python cleanup
        status = 1
        try:
            os.close(read_fd)
            view = memoryview(handle.synth(**kwargs).tobytes())
            while view:
                view = view[os.write(write_fd, view) :]
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        raw = pipe.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not raw:
        raise RuntimeError(f"eSpeak child failed (status {status}) for {kwargs}")
    return np.frombuffer(raw, dtype=np.int16)


def variant_reference_f0_hz(variant: str, data_path: str | None = None) -> float:
    """Approximate median F0 (Hz) of a variant at eSpeak pitch 50, from its `pitch lo hi` line.

    Measured with librosa.pyin over a sentence for the built-in variants: median F0 ~
    lo + 0.65 (hi - lo), within ~5 %.
    """
    if data_path is None:
        import espeakng_loader

        data_path = espeakng_loader.get_data_path()
    lo, hi = _DEFAULT_PITCH_LINE_HZ
    path = pathlib.Path(data_path) / "voices" / "!v" / variant
    for line in path.read_text(errors="replace").splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0] == "pitch":
            lo, hi = sorted((float(fields[1]), float(fields[2])))
    return lo + 0.65 * (hi - lo)


def espeak_pitch_for_f0(target_f0_hz: float, reference_f0_hz: float) -> float:
    """eSpeak pitch parameter (0-99, unclipped) that moves a variant to `target_f0_hz`.

    eSpeak scales the base pitch by 2**((p-50)/50) but not the intonation range; measured
    median F0 follows ~2**((p-50)/70).
    """
    return 50.0 + 70.0 * math.log2(target_f0_hz / reference_f0_hz)


# ----------------------------------------------------------------------------- speakers, texts


@dataclass(frozen=True)
class Speaker:
    speaker_id: int
    subset: str
    sex: str  # "F" | "M"
    voice: str  # eSpeak voice name, accent+variant, e.g. "en-us+f3"
    f0_hz: float  # target median F0
    espeak_pitch: int  # eSpeak pitch parameter 0-99 reaching ~f0_hz with this variant
    pitch_range: int  # eSpeak intonation range parameter 0-99
    rate_wpm: int  # words per minute
    level_dbfs: float  # speech RMS level
    tilt: float  # first-order tilt coefficient a in y[n] = x[n] - a x[n-1]
    snr_db: float  # mean SNR of this speaker's recordings


def _draw_speaker(
    speaker_id: int, subset: str, sex: str, seed: int, knobs: SyntheticSettings, data_path: str
) -> Speaker:
    rng = np.random.default_rng([seed, speaker_id, 0])
    f0_hz = float(rng.uniform(*(knobs.female_f0_hz if sex == "F" else knobs.male_f0_hz)))
    variants = knobs.female_variants if sex == "F" else knobs.male_variants
    accent = str(rng.choice(knobs.accents))
    # Prefer variants that reach the target inside eSpeak's 0-99 pitch scale; otherwise the
    # pitch parameter would clip and the F0 miss its target.
    pitches = {v: espeak_pitch_for_f0(f0_hz, variant_reference_f0_hz(v, data_path)) for v in variants}
    feasible = [v for v in variants if 5 <= pitches[v] <= 94]
    variant = str(rng.choice(feasible)) if feasible else min(variants, key=lambda v: abs(pitches[v] - 50))
    return Speaker(
        speaker_id=speaker_id,
        subset=subset,
        sex=sex,
        voice=f"{accent}+{variant}",
        f0_hz=round(f0_hz, 2),
        espeak_pitch=int(np.clip(round(pitches[variant]), 0, 99)),
        pitch_range=int(rng.integers(knobs.pitch_range[0], knobs.pitch_range[1] + 1)),
        rate_wpm=int(rng.integers(knobs.rate_wpm[0], knobs.rate_wpm[1] + 1)),
        level_dbfs=float(rng.uniform(*knobs.level_dbfs)),
        tilt=float(rng.uniform(*knobs.tilt)),
        snr_db=float(rng.uniform(*knobs.snr_db)),
    )


def random_sentence(rng: np.random.Generator, n_words_range: tuple[int, int]) -> str:
    """A random sentence of n words (inclusive range) from the built-in word list."""
    n = int(rng.integers(n_words_range[0], n_words_range[1] + 1))
    words = [WORDS[i] for i in rng.integers(0, len(WORDS), size=n)]
    if n >= 8 and rng.random() < 0.5:  # a comma gives eSpeak a phrase boundary to intonate
        words[int(rng.integers(2, n - 2))] += ","
    text = " ".join(words)
    return text[0].upper() + text[1:] + "."


def utterance_id(speaker_id: int, index: int) -> tuple[int, str]:
    """(chapter id, LibriTTS-style utterance id `<spk>_<chap>_<para>_<sent>`) of utterance i."""
    chapter = speaker_id * 100 + index // UTTERANCES_PER_CHAPTER
    within = index % UTTERANCES_PER_CHAPTER
    return chapter, f"{speaker_id}_{chapter}_{within // 2:06d}_{within % 2:06d}"


# ----------------------------------------------------------------------------- audio


def _render_utterance(
    speaker: Speaker, index: int, seed: int, knobs: SyntheticSettings, sample_rate: int
) -> tuple[str, np.ndarray]:
    """(text, int16 samples at `sample_rate`) of one utterance; depends on (seed, speaker, index)."""
    rng = np.random.default_rng([seed, speaker.speaker_id, 1, index])
    text = random_sentence(rng, knobs.sentence_words)
    # Small per-utterance jitter: nobody says two sentences at exactly the same pitch and pace.
    pitch = int(np.clip(speaker.espeak_pitch + rng.integers(-3, 4), 0, 99))
    rate = int(round(speaker.rate_wpm * rng.uniform(0.95, 1.05)))
    pcm = _synth_isolated(
        text=text,
        voice=speaker.voice,
        rate_wpm=rate,
        pitch=pitch,
        pitch_range=speaker.pitch_range,
        espeak_seed=int(rng.integers(1, 2**31 - 1)),
    )
    x = pcm.astype(np.float64)
    x[1:] -= speaker.tilt * x[:-1].copy()
    x = resample(x, ESPEAK_RATE_HZ, sample_rate)
    rms = float(np.sqrt(np.mean(x**2))) or 1.0
    x *= 32768.0 * 10 ** (speaker.level_dbfs / 20) / rms
    snr_db = speaker.snr_db + rng.uniform(-2.0, 2.0)
    noise_rms = 32768.0 * 10 ** ((speaker.level_dbfs - snr_db) / 20)
    x += rng.normal(0.0, noise_rms, size=x.shape)
    return text, np.clip(np.round(x), -32768, 32767).astype(np.int16)


def resample(
    x: np.ndarray, rate_in_hz: int, rate_out_hz: int, half_width: int = 10, kaiser_beta: float = 5.0
) -> np.ndarray:
    """Rational polyphase resampling (as scipy.signal.resample_poly), float64 in and out."""
    g = math.gcd(rate_in_hz, rate_out_hz)
    up, down = rate_out_hz // g, rate_in_hz // g
    if up == down:
        return np.asarray(x, np.float64).copy()
    widest = max(up, down)
    n_half = half_width * widest  # filter half length at the upsampled rate
    t = np.arange(-n_half, n_half + 1)
    h = (up / widest) * np.sinc(t / widest) * np.kaiser(2 * n_half + 1, kaiser_beta)
    n_taps = 2 * n_half // up + 1
    padded_h = np.zeros(n_taps * up)
    padded_h[: h.size] = h
    bank = padded_h.reshape(n_taps, up).T  # bank[phase, k] = h[phase + k * up]
    n_out = -(-len(x) * up // down)
    pad = n_taps
    xp = np.concatenate([np.zeros(pad), np.asarray(x, np.float64), np.zeros(pad + n_taps + down)])
    y = np.zeros(n_out)
    # Outputs r, r+up, r+2up, ... share one filter phase and step `down` inputs at a time.
    for r in range(min(up, n_out)):
        p = r * down + n_half
        j0, phase = p // up + pad, p % up
        n_q = len(range(r, n_out, up))
        acc = np.zeros(n_q)
        for k in range(n_taps):
            acc += bank[phase, k] * xp[j0 - k : j0 - k + down * n_q : down]
        y[r::up] = acc
    return y


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """A canonical 44-byte-header PCM wav (mono int16), identical for identical samples."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


def render_utterance(
    speaker: Speaker, index: int, *, seed: int, sample_rate: int = 24000, knobs: SyntheticSettings = SyntheticSettings()
) -> tuple[str, np.ndarray]:
    """(text, int16 samples) of utterance `index` of `speaker`, as in the corpus; no files."""
    return _render_utterance(speaker, index, seed, knobs, sample_rate)


def _speaker_task(args: tuple) -> tuple[int, int, float]:
    """Worker: write one speaker's utterances under `stage_dir`; (speaker id, count, seconds)."""
    speaker_dict, n_utts, seed, knobs, sample_rate, stage_dir = args
    speaker = Speaker(**speaker_dict)
    seconds = 0.0
    for i in range(n_utts):
        text, samples = _render_utterance(speaker, i, seed, knobs, sample_rate)
        chapter, utt = utterance_id(speaker.speaker_id, i)
        d = pathlib.Path(stage_dir) / "LibriTTS" / speaker.subset / str(speaker.speaker_id) / str(chapter)
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{utt}.wav").write_bytes(wav_bytes(samples, sample_rate))
        (d / f"{utt}.normalized.txt").write_text(text, encoding="utf-8")
        (d / f"{utt}.original.txt").write_text(text, encoding="utf-8")
        with open(d / f"{speaker.speaker_id}_{chapter}.trans.tsv", "a", encoding="utf-8") as f:
            f.write(f"{utt}\t{text}\t{text}\n")
        seconds += len(samples) / sample_rate
    return speaker.speaker_id, n_utts, seconds


def init_worker() -> None:
    logging.getLogger().setLevel(logging.WARNING)
    _espeak()  # initialise (without speaking) once per worker; utterances fork from here


# ----------------------------------------------------------------------------- packing


def speakers_txt(speakers: list[Speaker], minutes: dict[int, float]) -> str:
    """LibriTTS-format SPEAKERS.txt: `;` comment lines, then `ID | SEX | SUBSET | MINUTES | NAME`."""
    lines = [
        "; Synthetic speakers generated by voicegender.corpora.synth with eSpeak NG (not real people).",
        "; MINUTES is the total audio duration of the speaker in the corpus.",
        "; NAME is the eSpeak voice (accent+variant) and its target median F0.",
        ";ID    |SEX| SUBSET           |MINUTES| NAME",
    ]
    for s in sorted(speakers, key=lambda s: s.speaker_id):
        lines.append(
            f"{s.speaker_id:<6} | {s.sex} | {s.subset:<16} | {minutes[s.speaker_id]:5.2f} | "
            f"espeak {s.voice} {s.f0_hz:.0f}Hz"
        )
    return "\n".join(lines) + "\n"


def _tarinfo(name: str, size: int | None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = TAR_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if size is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size, info.mode = size, 0o644
    return info


def pack_subset(stage_dir: pathlib.Path, subset: str, speakers_text: str, archive: pathlib.Path) -> None:
    """Pack `LibriTTS/SPEAKERS.txt` and `LibriTTS/<subset>/...` deterministically into `archive`."""
    root = stage_dir / "LibriTTS" / subset
    entries = ["LibriTTS", "LibriTTS/SPEAKERS.txt", f"LibriTTS/{subset}"]
    entries += [p.relative_to(stage_dir).as_posix() for p in root.rglob("*")]
    tmp = archive.with_name(archive.name + ".tmp")
    with (
        open(tmp, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=1) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        for name in sorted(entries):
            if name == "LibriTTS/SPEAKERS.txt":
                data = speakers_text.encode()
                tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
            elif (stage_dir / name).is_dir():
                tar.addfile(_tarinfo(name, None))
            else:
                path = stage_dir / name
                with open(path, "rb") as f:
                    tar.addfile(_tarinfo(name, path.stat().st_size), f)
    tmp.replace(archive)


# ----------------------------------------------------------------------------- public API


def corpus_speakers(
    *,
    train_subset: str = "synthetic-train",
    test_subset: str = "synthetic-test",
    train_speakers: int,
    test_speakers: int,
    seed: int,
    knobs: SyntheticSettings = SyntheticSettings(),
) -> list[Speaker]:
    """The speakers `generate_corpus` would make (ids, sexes, traits), without any audio."""
    if train_subset == test_subset:
        raise ValueError("train and test subsets must differ")
    if not 0 <= train_speakers <= TEST_ID_START - TRAIN_ID_START or test_speakers < 0:
        raise ValueError("speaker counts must be >= 0 (train at most 40000)")
    handle_data = _data_path()
    speakers = []
    for subset, start, count in (
        (train_subset, TRAIN_ID_START, train_speakers),
        (test_subset, TEST_ID_START, test_speakers),
    ):
        for i in range(count):
            sex = "F" if i % 2 == 0 else "M"
            speakers.append(_draw_speaker(start + i, subset, sex, seed, knobs, handle_data))
    return speakers


def _data_path() -> str:
    import espeakng_loader

    return espeakng_loader.get_data_path()


def generate_corpus(
    out_dir,
    *,
    train_subset: str = "synthetic-train",
    test_subset: str = "synthetic-test",
    train_speakers: int,
    test_speakers: int,
    utterances_per_speaker: int,
    seed: int,
    sample_rate: int = 24000,
    workers: int | None = None,
    progress: bool = True,
    knobs: SyntheticSettings = SyntheticSettings(),
) -> dict[str, pathlib.Path]:
    """Generate the corpus; returns {subset name: path of `<out_dir>/<subset>.tar.gz`}.

    knobs: data.synthetic's voice settings (:class:`voicegender.params.SyntheticSettings`; its
    counts are ignored here), each a [low, high] range drawn uniformly per speaker:
      female_f0_hz, male_f0_hz   target median F0, Hz
      pitch_range                eSpeak intonation range parameter, 0-99 (50 = eSpeak default)
      rate_wpm                   speaking rate, words per minute
      snr_db                     white-noise SNR, dB (per speaker; each utterance +-2 dB)
      level_dbfs                 speech RMS level, dBFS
      tilt                       first-order tilt coefficient a (y = x[n] - a x[n-1]), -1..1
      sentence_words             words per sentence (inclusive)
    and lists: accents (eSpeak base voices), female_variants, male_variants (`!v` variants).
    workers: processes (default: all CPUs); the output does not depend on it.  Workers are
    started with multiprocessing "spawn", so a calling script needs `if __name__ == "__main__":`.
    progress: show a tqdm bar (utterances) on stderr.
    """
    speakers = corpus_speakers(
        train_subset=train_subset,
        test_subset=test_subset,
        train_speakers=train_speakers,
        test_speakers=test_speakers,
        seed=seed,
        knobs=knobs,
    )
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers or os.cpu_count() or 1, len(speakers) or 1))
    total = len(speakers) * utterances_per_speaker
    started = time.perf_counter()
    seconds: dict[int, float] = {}
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".synth-stage-") as stage:
        tasks = [(asdict(s), utterances_per_speaker, seed, knobs, sample_rate, stage) for s in speakers]
        # spawn: workers start without the parent's threads (tqdm, DVC) since they fork per utterance
        ctx = multiprocessing.get_context("spawn")
        with _progress_bar(total, progress) as bar, ctx.Pool(workers, initializer=init_worker) as pool:
            for speaker_id, n, secs in pool.imap_unordered(_speaker_task, tasks):
                seconds[speaker_id] = secs
                bar.update(n)
        minutes = {k: v / 60.0 for k, v in seconds.items()}
        text = speakers_txt(speakers, minutes)
        archives = {}
        for subset in (train_subset, test_subset):
            archive = out_dir / f"{subset}.tar.gz"
            pathlib.Path(stage, "LibriTTS", subset).mkdir(parents=True, exist_ok=True)
            pack_subset(pathlib.Path(stage), subset, text, archive)
            archives[subset] = archive
    log.info(
        "synthetic corpus: %d speakers x %d utterances, %.1f min audio, %.1f s wall",
        len(speakers),
        utterances_per_speaker,
        sum(minutes.values()),
        time.perf_counter() - started,
    )
    return archives


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n: int) -> None:
        pass


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="utt", desc="synthesizing", mininterval=1.0)
