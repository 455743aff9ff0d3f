"""The schema of params.yaml: every key once, with its type, bounds, default and a one-line description.

Why pydantic (v2, already installed with Ray and DVC): a key's type, bounds, ``Literal`` choices and
default are declared once, on one line, and ``extra="forbid"`` turns a misspelt key into an
error; its validation errors carry the key's path, so "a wrong value fails before any work,
naming the key" needs no hand-written checker. Strict mode keeps YAML's surprises out: ``"1e-3"``
(PyYAML reads it as a string) is not silently turned into a number, ``1`` is not ``true``.

Stages call :func:`load_params` and get a :class:`Params` (nested settings per section:
``params.data.seed``, ``params.features.kind`` ...), or a :class:`ParamError` with one line per
bad key, e.g. ``batch_size: must be `tuned` or a positive integer, got 0``. Library functions
take these settings objects (or required keyword arguments); no module keeps a default or a
list of choices of its own, nor checks again what the schema checked. A model card (models/model.json) stores settings as ``model_dump(mode="json")``.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union, get_args, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from voicegender.errors import UserError

CorpusName = Literal["synthetic", "libritts", "folder"]
#: the networks of voicegender.models.networks (build_model dispatches on these names)
ModelName = Literal["linear", "report_cnn", "cnn1d", "cnn2d", "mlp"]
#: the scikit-learn baselines of voicegender.evaluation.baselines (make_baseline dispatches on these names)
BaselineName = Literal["logistic", "mlp", "random_forest", "hist_gradient_boosting"]
#: the feature kinds of voicegender.features.kinds
FeatureKind = Literal["ge2e", "mean_mel", "log_mel_stats", "mfcc_stats", "pitch_stats", "pitch_mel", "log_mel_patch"]
Ge2ePrecision = Literal["bfloat16", "mixed", "float32"]
Optimizer = Literal["adam", "adamw", "sgd"]
Distribution = Literal["loguniform", "uniform", "choice", "randint"]
#: the searchers of voicegender.models.tuning (make_searcher dispatches on these names)
Searcher = Literal["random", "tpe"]
DEVICE_PATTERN = r"^(auto|cpu|cuda|mps|cuda:\d+)$"
ENCODER_DEVICE_PATTERN = r"^(auto|cpu|cuda|cuda:\d+)$"


class ParamError(UserError, ValueError):
    """One or more parameters are missing or invalid; the message names each key."""


# -- how a bad value is described: one rule per key, in the words of the error message -----------


def key(default: Any, description: str, rule: str | None = None, **constraints) -> Any:
    """A field: its default, one-line description, and ``rule`` (what a wrong value is told,
    e.g. "must be a positive integer"); ``constraints`` are pydantic's (gt, ge, lt, pattern ...).
    Without ``rule``, the field's type says it: an annotated type below, or a ``Literal``'s choices."""
    extra = {"json_schema_extra": {"rule": rule}} if rule is not None else {}
    return Field(default, description=description, **extra, **constraints)


def rule(text: str, **constraints) -> Any:
    """An annotated type's rule: pydantic's ``constraints`` and ``text``, what a wrong value is told."""
    return Field(json_schema_extra={"rule": text}, **constraints)


FLOAT_HINT = " (write floats like 1.0e-3: YAML reads 1e-3 as a string)"

PositiveInt = Annotated[int, rule("must be a positive integer", gt=0)]
PositiveFloat = Annotated[float, rule("must be a positive number", gt=0)]
NonNegativeFloat = Annotated[float, rule("must be a number >= 0", ge=0)]


def number_in(low: float, high: float, *, open_low: bool = False, open_high: bool = False) -> Any:
    """A number from ``low`` to ``high``, each end included unless ``open_``."""
    bounds = {"gt" if open_low else "ge": low, "lt" if open_high else "le": high}
    text = f"must be a number in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
    return Annotated[float, rule(text, **bounds)]


OpenUnit = number_in(0, 1, open_low=True, open_high=True)
Probability = number_in(0, 1)
NonEmptyStr = Annotated[str, rule("must be a non-empty string", pattern=r"\S")]


def at_least(n: int) -> Any:
    """An integer >= ``n``."""
    return Annotated[int, rule(f"must be an integer >= {n}", ge=n)]


NonNegativeInt = at_least(0)


class BrokenRule(ValueError):
    """Raised by an annotated type's validator: the message is the field's rule (see :func:`rule`)."""


def _nonzero(v: int) -> int:
    if v == 0:
        raise BrokenRule
    return v


Jobs = Annotated[int, AfterValidator(_nonzero), rule("must be a non-zero integer (-1 = all cores)")]


def _range(v: list, *, positive: bool, inside: tuple[float, float] | None) -> list:
    if len(v) != 2 or v[0] > v[1] or (positive and v[0] <= 0) or (inside and not inside[0] < v[0] <= v[1] < inside[1]):
        raise BrokenRule
    return v


def range_of(item: type, *, positive: bool = False, inside: tuple[float, float] | None = None) -> Any:
    """A ``[low, high]`` field of ``item`` numbers: two of them, low <= high (and low > 0 when
    ``positive``; both strictly ``inside`` (a, b) when given)."""
    text = f"must be [low, high] {'integers' if item is int else 'numbers'} with low <= high"
    text += " and low > 0" if positive else ""
    text += f", inside ({inside[0]:g}, {inside[1]:g})" if inside else ""
    check = AfterValidator(functools.partial(_range, positive=positive, inside=inside))
    return Annotated[list[item], check, rule(text)]


Range = range_of(float)
IntRange = range_of(int)
PositiveRange = range_of(float, positive=True)
TiltRange = range_of(float, inside=(-1, 1))  # a of y[n] = x[n] - a x[n-1]: |a| < 1


def rule_of(field: FieldInfo) -> str | None:
    """What a wrong value of ``field`` is told: its own rule, else its type's (an annotated type's
    rule, ``or null`` added for ``Optional[...]``; a ``Literal``'s choices; a plain type's name)."""
    own = (field.json_schema_extra or {}).get("rule")
    if own is not None:
        return own
    annotation = field.annotation
    if get_origin(annotation) is Literal:
        return "must be one of " + ", ".join(map(str, get_args(annotation)))
    if annotation in PLAIN:
        return PLAIN[annotation]
    inner = [a for a in get_args(annotation) if a is not type(None)] if get_origin(annotation) is Union else []
    if len(inner) == 1 and inner[0] in PLAIN:
        return PLAIN[inner[0]] + " or null"
    for meta in getattr(inner[0], "__metadata__", ()) if len(inner) == 1 else ():
        if isinstance(meta, FieldInfo) and "rule" in (meta.json_schema_extra or {}):
            return meta.json_schema_extra["rule"] + " or null"
    return None


PLAIN = {bool: "must be true or false", int: "must be an integer", float: "must be a number", str: "must be a string"}


class Section(BaseModel):
    """Every section: strict types, unknown keys refused, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, validate_default=False)


def _raise(errors: list[str | None]) -> None:
    errors = [e for e in errors if e]
    if errors:
        raise ValueError("\n".join(errors))


# -- data ---------------------------------------------------------------------------------------


class SyntheticSettings(Section):
    """data.synthetic: the generated eSpeak NG corpus (voicegender.corpora.synth)."""

    train_speakers: at_least(4) = key(48, "training speakers (half female)")
    test_speakers: at_least(2) = key(16, "test speakers")
    utterances_per_speaker: PositiveInt = key(12, "utterances per speaker")
    female_f0_hz: Range = key([150.0, 260.0], "median F0 per female speaker, drawn uniformly (Hz)")
    male_f0_hz: Range = key([85.0, 170.0], "median F0 per male speaker (Hz); overlaps the female range")
    pitch_range: IntRange = key([20, 80], "eSpeak intonation range, 0 (monotone) - 99")
    rate_wpm: IntRange = key([140, 200], "speaking rate, words per minute")
    snr_db: Range = key([15.0, 35.0], "white-noise signal-to-noise ratio, dB")
    level_dbfs: Range = key([-30.0, -18.0], "speech RMS level, dBFS")
    tilt: Range = key([-0.5, 0.5], "pre-emphasis a of y[n] = x[n] - a x[n-1] (spectral tilt)")
    sentence_words: IntRange = key([5, 15], "words per sentence")
    accents: list[str] = key(
        ["en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-us-nyc", "en-029"],
        "eSpeak English base voices",
        "must be a non-empty list of voice names",
        min_length=1,
    )
    female_variants: list[str] = key(
        [
            "f1",
            "f2",
            "f3",
            "f4",
            "f5",
            "Alicia",
            "Andrea",
            "Annie",
            "anika",
            "aunty",
            "belinda",
            "linda",
            "steph",
            "steph2",
            "steph3",
            "grandma",
        ],
        "eSpeak `!v` variants of female speakers",
        "must be a non-empty list of variant names",
        min_length=1,
    )
    male_variants: list[str] = key(
        [
            "m1",
            "m2",
            "m3",
            "m4",
            "m5",
            "m6",
            "m7",
            "m8",
            "Andy",
            "Denis",
            "Diogo",
            "Henrique",
            "Hugo",
            "Lee",
            "Storm",
            "antonio",
            "michel",
            "miguel",
            "sandro",
            "travis",
            "victor",
        ],
        "eSpeak `!v` variants of male speakers",
        "must be a non-empty list of variant names",
        min_length=1,
    )

    def voice_knobs(self) -> dict:
        """The knobs of :func:`voicegender.corpora.synth.generate_corpus` (everything but the counts)."""
        return self.model_dump(exclude={"train_speakers", "test_speakers", "utterances_per_speaker"})


class LibriTTSSettings(Section):
    """data.libritts: where the LibriTTS archives come from (voicegender.corpora.download)."""

    base_url: str = key(
        "https://www.openslr.org/resources/60",
        "a mirror or a local http server",
        "must be an http(s):// or file:// URL",
        pattern=r"^(https?|file)://",
    )
    train_subset: NonEmptyStr = key("train-clean-100", "training subset")
    test_subset: NonEmptyStr = key("test-clean", "test subset")
    checksums: dict[str, Annotated[str, Field(min_length=64, max_length=64)]] = key(
        {}, "subset -> sha256, for subsets or mirrors without a published one", "must be a mapping subset -> sha256 hex"
    )
    local_dir: Optional[NonEmptyStr] = key(
        None, "a folder that already holds <subset>.tar.gz or an extracted LibriTTS/"
    )
    cache_dir: Optional[NonEmptyStr] = key(
        None, "where downloads are kept: null = $XDG_CACHE_HOME/voicegender/libritts"
    )


class FolderSettings(Section):
    """data.folder: a user's own recordings (voicegender.corpora.folder)."""

    manifest: Optional[NonEmptyStr] = key(None, "CSV path,speaker,sex[,split] of your own recordings")
    recordings: NonEmptyStr = key("examples/recordings", "the folder holding them (and the manifest): DVC watches it")
    test_fraction: OpenUnit = key(0.2, "share of speakers held out for test when the manifest has no split")


class DataSettings(Section):
    seed: int = key(42, "corpus synthesis and the speaker split")
    val_fraction: OpenUnit = key(0.2, "share of training speakers held out for validation (per sex)")
    max_per_speaker: Optional[PositiveInt] = key(
        20,
        "training and validation recordings per speaker used (an even, seeded spread; test: always all; "
        "null = all): LibriTTS's ~135 a speaker cost ~7x the encoder work of 20",
    )
    synthetic: SyntheticSettings = Field(default_factory=SyntheticSettings)
    libritts: LibriTTSSettings = Field(default_factory=LibriTTSSettings)
    folder: FolderSettings = Field(default_factory=FolderSettings)


# -- features -------------------------------------------------------------------------------------


class AugmentSettings(Section):
    """features.augment: altered copies of each training recording (voicegender.audio.augment)."""

    copies: NonNegativeInt = key(1, "per training recording; 0 = off")
    max_per_speaker: Optional[PositiveInt] = key(
        30,
        "at most this many recordings of a speaker get copies (null = all): bounds the cost on big corpora",
    )
    seed: NonNegativeInt = key(0, "the draws of every copy (seeded per utterance id)")
    reverb_probability: Probability = key(0.5, "share of copies with room reverberation")
    rt60_s: PositiveRange = key([0.2, 0.8], "room reverberation time, s")
    tilt: TiltRange = key([-0.9, 0.9], "microphone tilt: a of y[n] = x[n] - a x[n-1]")
    lowpass_probability: Probability = key(0.5, "share of copies band-limited")
    lowpass_hz: PositiveRange = key([3400.0, 7000.0], "band limit (telephone, codecs), Hz")
    snr_db: Range = key([5.0, 30.0], "white background noise, signal-to-noise ratio in dB")
    gain_db: Range = key([-20.0, 6.0], "level change, dB (clipped at full scale)")


class FeatureSettings(Section):
    """features: what one recording becomes (voicegender.features.kinds, extraction, speaker_encoder)."""

    kind: FeatureKind = key("ge2e", "the feature kind (see voicegender.features.kinds)")
    sample_rate: Union[Literal["native"], PositiveInt] = key(
        16000, "Hz the audio is resampled to, or `native`", "must be a positive int (Hz) or 'native'"
    )
    ge2e_rate: number_in(0.625, 50) = key(1.3, "ge2e: 1.6 s partial utterances per second of audio")
    ge2e_train_rate: Optional[number_in(0.625, 50)] = key(
        None,
        "ge2e: partials per second for the training side (train, val, their augmented copies); null = ge2e_rate",
    )
    ge2e_min_coverage: number_in(0, 1, open_low=True) = key(
        0.75, "ge2e: a last, zero-padded partial is kept if at least this share is audio"
    )
    target_dbfs: number_in(-120, 0, open_low=True, open_high=True) = key(
        -30.0, "ge2e: quieter recordings are raised to this RMS level (dBFS)"
    )
    encoder_device: str = key(
        "auto",
        "ge2e: where the encoder runs: auto | cpu | cuda | cuda:N",
        "must be auto, cpu, cuda or cuda:N",
        pattern=ENCODER_DEVICE_PATTERN,
    )
    ge2e_precision: Ge2ePrecision = key(
        "bfloat16", "ge2e: bfloat16 (the LSTM in bfloat16) | mixed (layers 1-2) | float32 (as trained)"
    )
    n_fft: at_least(16) = key(2048, "STFT window, samples")
    hop_length: PositiveInt = key(512, "STFT hop, samples")
    n_mels: PositiveInt = key(128, "mel bands")
    n_mfcc: PositiveInt = key(20, "mfcc_stats: coefficients")
    fmin_f0: PositiveFloat = key(60.0, "pitch: lowest F0 searched, Hz")
    fmax_f0: PositiveFloat = key(400.0, "pitch: highest F0 searched, Hz")
    yin_threshold: OpenUnit = key(0.15, "pitch: YIN aperiodicity below which a frame is voiced")
    patch_frames: PositiveInt = key(128, "log_mel_patch: frames per patch")
    n_jobs: Jobs = key(-1, "worker processes; -1 = all cores")
    max_retries: NonNegativeInt = key(
        1, "times the chunks of a lost worker process (killed, e.g. out of memory) are redone before the stage fails"
    )
    augment: AugmentSettings = Field(default_factory=AugmentSettings)

    @model_validator(mode="after")
    def _consistent(self):
        _raise(
            [
                self.n_mfcc > self.n_mels and f"n_mfcc: must be <= features.n_mels ({self.n_mels}), got {self.n_mfcc}",
                self.fmin_f0 >= self.fmax_f0
                and f"fmax_f0: must exceed features.fmin_f0 ({self.fmin_f0}), got {self.fmax_f0}",
                self.kind != "ge2e"
                and self.sample_rate != "native"
                and self.fmax_f0 >= self.sample_rate / 4
                and f"fmax_f0: must be below sample_rate / 4, got {self.fmax_f0}",
            ]
        )
        return self


# -- speech detection, models, training -----------------------------------------------------------


class PredictSettings(Section):
    """predict: speech detection (silero-vad) for `voicegender predict` and featurize's check."""

    min_speech_s: NonNegativeFloat = key(0.5, "less speech than this: `no speech` / skipped (0: no check)")
    vad_threshold: OpenUnit = key(0.5, "a 32 ms window with speech probability >= this is speech")
    check_threshold: OpenUnit = key(
        0.07, "the speech check (`no speech` / skipped): a window counts as speech from this probability"
    )
    vad_neg_threshold: OpenUnit = key(0.35, "once in speech, only a window below this is a pause")
    min_segment_s: NonNegativeFloat = key(0.25, "speech runs shorter than this are dropped")
    min_silence_s: NonNegativeFloat = key(0.3, "pauses shorter than this do not end a segment")
    pad_s: NonNegativeFloat = key(0.1, "each segment widened by this on both sides")
    max_whole_s: PositiveFloat = key(120.0, "longer recordings are answered from their segments")
    hop_s: number_in(0.01, 1) = key(
        0.1, "predict: one windowed sex decision every this many seconds of speech (a multiple of 0.01)"
    )
    window_s: number_in(0.1, 10) = key(
        1.0, "predict: window of each decision, s, for feature kinds other than ge2e (ge2e: its 1.6 s partials)"
    )
    max_log_odds: PositiveFloat = key(
        4.0,
        "predict: a window's log-odds of female vs male are clipped to +- this (one odd window cannot force a turn)",
    )
    switch_penalty: NonNegativeFloat = key(
        30.0, "predict: log-odds (summed over 10 ms frames) a change of sex inside a stretch of speech must earn"
    )
    mixed_min_s: PositiveFloat = key(
        2.0, "predict: a whole-file answer is flagged `mixed` when the other sex holds at least this much speech, s"
    )

    @model_validator(mode="after")
    def _hysteresis(self):
        if self.vad_neg_threshold > self.vad_threshold:
            raise ValueError(
                f"vad_neg_threshold: must not exceed predict.vad_threshold ({self.vad_threshold}), "
                f"got {self.vad_neg_threshold!r}"
            )
        if self.check_threshold > self.vad_threshold:
            raise ValueError(
                f"check_threshold: must not exceed predict.vad_threshold ({self.vad_threshold}), "
                f"got {self.check_threshold!r}"
            )
        return self


class ModelSettings(Section):
    """model: the network (voicegender.models.networks.build_model)."""

    name: ModelName = key("linear", "the network")
    channels: list[PositiveInt] = key(
        [32, 64, 128],
        "cnn1d / cnn2d: channels per convolution block",
        "must be a non-empty list of positive integers",
        min_length=1,
    )
    hidden: PositiveInt = key(32, "units of the hidden layer")
    dropout: number_in(0, 1, open_high=True) = key(0.0, "dropout before the output layer")


class TrainSettings(Section):
    seed: int = key(42, "initialisation, shuffling, the search's sampling")
    optimizer: Optimizer = key("adam", "adam | adamw | sgd")
    weight_decay: NonNegativeFloat = key(0.1, "L2 penalty")
    standardize: bool = key(False, "z-score inputs with train-split statistics")
    patience: Optional[PositiveInt] = key(
        10, "stop after this many epochs without a lower validation loss (null: never)"
    )


class EvaluateSettings(Section):
    bootstrap: PositiveInt = key(1000, "speaker-level bootstrap resamples for the 95 % confidence intervals")
    calibration_bins: at_least(2) = key(10, "equal-width P(female) bins of the calibration plot")


# -- robustness: the test split under degraded conditions -----------------------------------------


class CleanCondition(Section):
    """The recording as it is (the reference row of the robustness table)."""

    kind: Literal["clean"]


class TelephoneCondition(Section):
    kind: Literal["telephone"]
    low_hz: PositiveFloat = key(300.0, "band-pass low edge, Hz")
    high_hz: PositiveFloat = key(3400.0, "band-pass high edge, Hz")
    codec: Literal["mulaw", "gsm"] = key("mulaw", "mulaw (G.711) | gsm (GSM 06.10)")

    @model_validator(mode="after")
    def _band(self):
        if self.low_hz >= self.high_hz:
            raise ValueError(f"high_hz: must exceed low_hz ({self.low_hz}), got {self.high_hz!r}")
        return self


class NoiseCondition(Section):
    kind: Literal["noise"]
    snr_db: float = key(10.0, "white noise, signal-to-noise ratio in dB")


class BabbleCondition(Section):
    kind: Literal["babble"]
    talkers: PositiveInt = key(3, "other test speakers talking at once")
    snr_db: float = key(5.0, "the recording over the other talkers' sum, dB")


class RoomCondition(Section):
    kind: Literal["room"]
    rt60_s: number_in(0, 3, open_low=True) = key(0.9, "reverberation time (Sabine), s")
    rooms: PositiveInt = key(8, "rooms drawn (each recording heard in one of them)")


class Mp3Condition(Section):
    kind: Literal["mp3"]
    bitrate_kbps: int = key(32, "MP3 bitrate, kbit/s", "must be an MP3 bitrate from 8 to 320", ge=8, le=320)


class LevelCondition(Section):
    kind: Literal["level"]
    dbfs: float = key(-45.0, "RMS level, dBFS, stored as 16-bit PCM", "must be a number <= 0 (dBFS)", le=0)


CONDITIONS = (
    CleanCondition,
    TelephoneCondition,
    NoiseCondition,
    BabbleCondition,
    RoomCondition,
    Mp3Condition,
    LevelCondition,
)
Condition = Annotated[Union[CONDITIONS], Field(discriminator="kind")]
#: robustness.conditions' kinds, as the condition classes name them
CONDITION_KINDS = tuple(get_args(c.model_fields["kind"].annotation)[0] for c in CONDITIONS)


class RobustnessSettings(Section):
    """robustness: the test split scored under degraded conditions (voicegender.audio.degrade)."""

    seed: NonNegativeInt = key(0, "every condition's draws, seeded per recording")
    max_per_speaker: Optional[PositiveInt] = key(
        10,
        "test recordings per speaker scored (a seeded choice; null = all): bounds the cost on big corpora",
    )
    conditions: dict[str, Condition] = key(
        {
            "clean": CleanCondition(kind="clean"),
            "telephone": TelephoneCondition(kind="telephone"),
            "noise_10db": NoiseCondition(kind="noise", snr_db=10.0),
            "noise_0db": NoiseCondition(kind="noise", snr_db=0.0),
            "babble_5db": BabbleCondition(kind="babble"),
            "room": RoomCondition(kind="room"),
            "mp3_32k": Mp3Condition(kind="mp3"),
            "quiet": LevelCondition(kind="level"),
        },
        "name -> {kind: " + " | ".join(CONDITION_KINDS) + ", its settings}",
        "must map names to conditions, each with a kind among " + ", ".join(CONDITION_KINDS),
        min_length=1,
    )


# -- the search -----------------------------------------------------------------------------------


class SpaceEntry(Section):
    """One hyperparameter's distribution in tune.space."""

    type: Distribution = key(..., "how values are drawn")
    low: float | None = key(None, "uniform / loguniform / randint: the lowest value", "must be a number")
    high: float | None = key(None, "uniform / loguniform / randint: the highest value (inclusive)", "must be a number")
    values: list[Any] | None = key(None, "choice: the values", "must be a non-empty list")


#: what tune.space may search: the top-level training keys and any key of `model`
TRAIN_KEYS = ("lr", "batch_size", "epochs")
SEARCHABLE = TRAIN_KEYS + tuple(ModelSettings.model_fields)


class AshaSettings(Section):
    grace_period: PositiveInt = key(1, "epochs before a trial can be stopped")
    reduction_factor: float = key(2.0, "keep the best 1/this at each milestone", "must be a number > 1.0", gt=1)


class RaySettings(Section):
    """ray: the Ray cluster that tune and featurize run on (none: a local Ray / process pool)."""

    address: Optional[NonEmptyStr] = key(
        None, "null = no cluster (or $RAY_ADDRESS); else an existing cluster's address, e.g. 10.0.0.5:6379"
    )
    storage: Optional[NonEmptyStr] = key(
        None, "tune's trial results: null = data/ray under the repository; on a cluster, shared storage"
    )
    connect_timeout_s: PositiveFloat = key(10.0, "give up on an unreachable ray.address after this long, s")


#: tune keys that moved to the ray section (a params.yaml that still has them gets told so)
MOVED_TO_RAY = ("address", "storage", "connect_timeout_s")


class TuneSettings(Section):
    num_samples: PositiveInt = key(20, "trials")
    search: Searcher = key("random", "random (the report's) | tpe (Optuna)")
    cpus_per_trial: PositiveFloat = key(1.0, "CPUs per trial; torch threads per trial = max(1, int(this))")
    gpus_per_trial: Union[Literal["auto"], Annotated[float, Field(ge=0)]] = key(
        "auto", "auto = the GPUs shared evenly among concurrent trials | a number", "must be `auto` or a number >= 0"
    )
    metric: Literal["val_loss", "val_accuracy"] = key("val_loss", "what ASHA and the best-trial pick optimise")
    mode: Literal["min", "max"] = key("min", "min for val_loss, max for val_accuracy")
    space: dict[str, SpaceEntry] = key(
        {
            "lr": SpaceEntry(type="loguniform", low=1.0e-5, high=1.0e-2),
            "batch_size": SpaceEntry(type="choice", values=[4, 8, 12, 16]),
            "epochs": SpaceEntry(type="choice", values=[10, 20]),
        },
        "hyperparameter -> distribution",
        "must be a non-empty mapping of hyperparameter -> distribution",
        min_length=1,
    )
    asha: AshaSettings = Field(default_factory=AshaSettings)

    @model_validator(mode="after")
    def _consistent(self):
        errors = []
        if (self.metric, self.mode) in (("val_loss", "max"), ("val_accuracy", "min")):
            errors.append("mode: val_loss is minimised (min) and val_accuracy maximised (max)")
        for name, dist in self.space.items():
            msg = _distribution(dist) or _searchable(name, dist)
            if msg:
                errors.append(f"space.{name}: {msg}")
        for name in ("lr", "batch_size"):
            if name not in self.space:
                errors.append(
                    f"space.{name}: missing: every trial needs one; to fix it, give a single value, e.g. "
                    f"{name}: {{type: choice, values: [{'1.0e-3' if name == 'lr' else 16}]}}"
                )
        _raise(errors)
        return self


def _distribution(d: SpaceEntry) -> str | None:
    if d.type == "choice":
        return None if d.values else "choice needs a non-empty `values` list"
    low, high = d.low, d.high
    if not (low is not None and high is not None and math.isfinite(low) and math.isfinite(high) and low < high):
        return f"{d.type} needs numbers low < high (write floats like 1.0e-5), got low={low!r} high={high!r}"
    if d.type == "loguniform" and low <= 0:
        return "loguniform needs low > 0"
    return None


def _searchable(name: str, d: SpaceEntry) -> str | None:
    """What is wrong with searching ``name`` over ``d`` (its distribution is already valid): each
    value must be valid for the key it sets, checked by the key's own schema."""
    key_name = name.removeprefix("model.")
    if key_name not in SEARCHABLE:
        return "unknown hyperparameter: searchable are " + ", ".join(SEARCHABLE)
    if key_name in ("batch_size", "epochs", "hidden", "name", "channels") and d.type in ("uniform", "loguniform"):
        return f"{key_name} takes whole values: use choice or randint"
    values = d.values if d.type == "choice" else [d.low, d.high]
    section = TopLevel if key_name in TRAIN_KEYS else ModelSettings
    rule = rule_of(section.model_fields[key_name])
    bad = [v for v in values if v == "tuned" or not _valid_as(section, key_name, v)]
    return f"invalid value(s) {bad}: {rule}" if bad else None


def _valid_as(section: type[BaseModel], name: str, value: Any) -> bool:
    """Whether ``value`` is valid for ``section``'s key ``name`` (checked by the schema itself)."""
    try:
        section.model_validate({name: value})
    except ValidationError as e:
        return not any(err["loc"][:1] == (name,) for err in e.errors())
    return True


# -- baselines ------------------------------------------------------------------------------------


class LogisticSettings(Section):
    C: PositiveFloat = key(1.0, "inverse L2 strength")
    max_iter: PositiveInt = key(2000, "solver iterations")


class MLPBaselineSettings(Section):
    hidden: list[PositiveInt] = key(
        [64], "units per hidden layer", "must be a non-empty list of positive integers", min_length=1
    )
    alpha: NonNegativeFloat = key(1.0e-3, "L2 penalty")
    max_iter: PositiveInt = key(300, "epochs (adam)")
    early_stopping: bool = key(False, "true holds out 10 % of train")


class RandomForestSettings(Section):
    n_estimators: PositiveInt = key(300, "trees")
    max_depth: Optional[PositiveInt] = key(None, "null = grown until pure")
    min_samples_leaf: PositiveInt = key(1, "smallest leaf")


class HistGradientBoostingSettings(Section):
    max_iter: PositiveInt = key(200, "boosting iterations")
    learning_rate: PositiveFloat = key(0.1, "shrinkage")
    max_leaf_nodes: at_least(2) = key(31, "leaves per tree")
    l2_regularization: NonNegativeFloat = key(0.0, "L2 penalty")


class BaselineSettings(Section):
    """baselines: scikit-learn classifiers on the same features and splits (voicegender.evaluation.baselines)."""

    models: list[BaselineName] = key(
        ["logistic", "mlp", "random_forest", "hist_gradient_boosting"],
        "which to fit",
        "must be a non-empty list of " + ", ".join(BaselineName.__args__),
        min_length=1,
    )
    n_jobs: Jobs = key(-1, "cores for the random forest")
    logistic: LogisticSettings = Field(default_factory=LogisticSettings)
    mlp: MLPBaselineSettings = Field(default_factory=MLPBaselineSettings)
    random_forest: RandomForestSettings = Field(default_factory=RandomForestSettings)
    hist_gradient_boosting: HistGradientBoostingSettings = Field(default_factory=HistGradientBoostingSettings)


# -- the whole file -------------------------------------------------------------------------------


class TopLevel(Section):
    """params.yaml's top-level keys (the training keys tune.space can search among them)."""

    corpus: CorpusName = key("synthetic", "synthetic | libritts | folder")
    lr: Union[Literal["tuned"], PositiveFloat] = key(
        "tuned", "a float, or `tuned` = the tune stage's best", "must be `tuned` or a positive number"
    )
    batch_size: Union[Literal["tuned"], PositiveInt] = key(
        "tuned", "an int, or `tuned`", "must be `tuned` or a positive integer"
    )
    epochs: PositiveInt = key(40, "upper bound for the final training")
    device: str = key(
        "auto",
        "auto (CUDA when present) | cpu | cuda | cuda:N | mps",
        "must be auto, cpu, cuda, cuda:N or mps",
        pattern=DEVICE_PATTERN,
    )


class Params(TopLevel):
    """params.yaml."""

    data: DataSettings = Field(default_factory=DataSettings)
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    predict: PredictSettings = Field(default_factory=PredictSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    evaluate: EvaluateSettings = Field(default_factory=EvaluateSettings)
    robustness: RobustnessSettings = Field(default_factory=RobustnessSettings)
    tune: TuneSettings = Field(default_factory=TuneSettings)
    ray: RaySettings = Field(default_factory=RaySettings)
    baselines: BaselineSettings = Field(default_factory=BaselineSettings)

    @model_validator(mode="before")
    @classmethod
    def _old_seed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "seed" in data:
            raise ValueError(
                "seed: replaced by data.seed (corpus synthesis, speaker split) and train.seed "
                "(initialisation, shuffling, the search's sampling)"
            )
        return data

    @model_validator(mode="before")
    @classmethod
    def _moved_to_ray(cls, data: Any) -> Any:
        tune = data.get("tune") if isinstance(data, dict) else None
        moved = [k for k in MOVED_TO_RAY if isinstance(tune, dict) and k in tune]
        if moved:
            raise ValueError(
                "; ".join(f"tune.{k}: moved to ray.{k} (tune and featurize share it)" for k in moved)
                + ": move the key(s) into a `ray:` section"
            )
        return data

    @model_validator(mode="after")
    def _folder_manifest(self):
        if self.corpus == "folder" and self.data.folder.manifest is None:
            raise ValueError("data.folder.manifest: corpus is `folder`, so a manifest CSV is required")
        return self


# -- loading, and errors in the words of params.yaml ----------------------------------------------


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read ``path`` and return its validated settings."""
    try:
        with open(path, encoding="utf-8") as f:
            params = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ParamError(f"cannot read {path}: {e}") from None
    if not isinstance(params, dict):
        raise ParamError(f"{path}: expected a mapping of keys to values")
    return validate_params(params)


def validate_params(params: dict) -> Params:
    """``params`` (params.yaml's mapping) as :class:`Params`; :class:`ParamError` listing every invalid key."""
    return validate(Params, params, "invalid params")


def validate_predict(settings: dict) -> PredictSettings:
    """A ``predict:`` section (as kept in a model card, or with command-line overrides applied)."""
    return validate(PredictSettings, settings, "invalid predict settings", prefix="predict.")


def validate(model: type[BaseModel], data: Any, what: str, prefix: str = "") -> Any:
    """``model.model_validate(data)``, its errors rewritten one line per key: ``key: rule, got value``."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ParamError(f"{what}:\n  " + "\n  ".join(error_lines(model, e, data, prefix))) from None


def error_lines(model: type[BaseModel], error: ValidationError, data: Any, prefix: str = "") -> list[str]:
    lines: list[str] = []
    for err in error.errors():
        loc = [str(p) for p in err["loc"]]
        section, path, field, keyed = model, [], None, False
        for part in loc:  # walk the schema along the error's location, as far as it names fields
            member = _tagged_members(section).get(part)
            if member is not None:  # a discriminated union's tag (conditions.<name>'s kind): not a key
                section = member
                continue
            fields = section.model_fields if isinstance(section, type) and issubclass(section, BaseModel) else {}
            if part not in fields:
                if field is not None and _is_mapping(field) and not keyed:
                    path.append(part)  # a key of a mapping (e.g. checksums.<subset>, space.<name>)
                    section, keyed = get_args(field.annotation)[1], True
                    continue
                break
            path.append(part)
            field, keyed = fields[part], False
            section = field.annotation
        name = prefix + ".".join(path)
        if err["type"] == "value_error" and not isinstance(err["ctx"]["error"], BrokenRule):
            for line in str(err["ctx"]["error"]).splitlines():
                lines.append(f"{prefix}{'.'.join(path)}{'.' if path else ''}{line}")
            continue
        if err["type"] == "extra_forbidden":
            known = ", ".join(section.model_fields) if isinstance(section, type) else ""
            lines.append(
                f"{prefix}{'.'.join(path + loc[-1:])}: not a known key" + (f" (known: {known})" if known else "")
            )
            continue
        value = _lookup(data, path)
        if err["type"] == "missing":
            lines.append(f"{name}: missing")
            continue
        rule = rule_of(field) if field is not None else None
        rule = rule or "must be " + err["msg"][0].lower() + err["msg"][1:]
        if isinstance(value, str) and "number" in rule and _looks_like_number(value):
            rule += FLOAT_HINT
        line = f"{name}: {rule}, got {value!r}"
        if line not in lines:
            lines.append(line)
    return lines


def _looks_like_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _tagged_members(annotation: Any) -> dict[str, type[BaseModel]]:
    """A discriminated union's members by tag (e.g. ``Condition``'s classes by kind); {} for other types."""
    if get_origin(annotation) is not Annotated:
        return {}
    inner, *meta = get_args(annotation)
    tag = next((m.discriminator for m in meta if isinstance(m, FieldInfo) and m.discriminator), None)
    if tag is None or get_origin(inner) is not Union:
        return {}
    return {get_args(m.model_fields[tag].annotation)[0]: m for m in get_args(inner)}


def _is_mapping(field) -> bool:
    return getattr(field.annotation, "__origin__", None) is dict


def _lookup(data: Any, path: list[str]) -> Any:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data
