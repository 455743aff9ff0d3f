"""``voicegender predict FILE...``: the trained model's answer for each recording.

Any sample rate, wav or flac (anything libsndfile reads): the model card's features config says
how to featurize, exactly as the featurize stage did for training. Only recordings with speech
are answered (voicegender.speech); ``--segments`` answers each stretch of speech between pauses.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Iterator

# Exit codes (also in --help and the README)
EXIT_OK = 0  # every recording answered
EXIT_FAILED = 1  # a recording could not be read (the others are still answered)
EXIT_MODEL = 2  # the model cannot be loaded (argparse's usage errors are 2 as well)
EXIT_NO_SPEECH = 3  # a recording had too little speech to answer (`no speech`), none failed

NO_SPEECH = "no speech"
MANY_FILES = 100  # with this many files a progress bar is shown even when stderr is not a terminal
BLOCK_S = 30.0  # seconds of audio decoded at a time in --segments mode (bounded memory)
FORMATS = ("tsv", "csv", "json")
CSV_COLUMNS = ("file", "start_s", "end_s", "answer", "p_female", "speech_s")

SYNTHETIC_WARNING = (
    "voicegender: warning: this model was trained on generated (eSpeak) speech, never on a real voice: "
    "its answers on real recordings are unreliable. Train on real speech: `dvc exp run -S corpus=libritts "
    "-S data.libritts.train_subset=dev-clean` (1.3 GB), or `-S corpus=folder -S data.folder.manifest=FILE.csv` "
    "(see README)"
)
UNKNOWN_DATA_WARNING = (
    "voicegender: warning: the model card does not say what data the model was trained on "
    "(trained by an older version): retrain to record it"
)


class Predictor:
    """A trained model plus its card's speech-detection settings: answers recordings."""

    def __init__(self, model_dir: str | Path = "models", overrides: dict | None = None):
        from voicegender.models import load_trained

        self.model, self.card = load_trained(model_dir)
        self.threshold = float(self.card.get("threshold", 0.5))
        self.shape = tuple(self.card["input_shape"])
        settings = self.card.get("predict")
        if settings is None:
            raise KeyError("the model card has no `predict` settings (trained by an older version): retrain it")
        settings = {**settings, **{k: v for k, v in (overrides or {}).items() if v is not None}}
        if (overrides or {}).get("vad_threshold") is not None and (overrides or {}).get("vad_neg_threshold") is None:
            # a lower threshold alone must not leave the pause threshold above it
            settings["vad_neg_threshold"] = min(self.card["predict"]["vad_neg_threshold"], settings["vad_threshold"])
            if "check_threshold" in settings:
                settings["check_threshold"] = min(settings["check_threshold"], settings["vad_threshold"])
        from voicegender.params import FeatureSettings, ParamError, validate_predict

        try:
            self.settings = validate_predict(settings)
        except ParamError as e:
            raise ValueError(str(e)) from None
        self.features = FeatureSettings.model_validate(self.card["features"])
        from voicegender.speech import check_settings, vad_settings

        self.vad = vad_settings(self.settings)
        self.check = {k: v for k, v in check_settings(self.settings).items() if k != "min_speech_s"}
        self.min_speech_s = float(self.settings.min_speech_s)
        self.max_whole_s = float(self.settings.max_whole_s)

    def warning(self) -> str | None:
        """One line about the training data a user must know of, or None."""
        data = self.card.get("data")
        if data is None:
            return UNKNOWN_DATA_WARNING
        return SYNTHETIC_WARNING if data.get("corpus") == "synthetic" else None

    def _answer(self, y, sr: int) -> tuple[str, float]:
        from voicegender.features import compute_features
        from voicegender.training import predict_proba

        x = compute_features(y, sr, self.features)
        if x.shape != self.shape:
            raise ValueError(f"feature shape {x.shape} differs from the model's {self.shape}")
        p_female = float(predict_proba(self.model, x[None])[0])
        return ("female" if p_female >= self.threshold else "male"), p_female

    def predict(self, path: str) -> dict:
        """The whole recording: ``{"file", "start_s", "end_s", "answer", "p_female", "speech_s"}``
        (``answer`` female / male / ``no speech``, then ``p_female`` None). Raises on a bad file.
        Up to ``max_whole_s`` long it is featurized whole, as in training; longer, see _predict_long."""
        from voicegender.audio import decode_audio
        from voicegender.speech import speech_seconds

        p = _regular_file(path)
        if _duration_s(p) > self.max_whole_s:
            return self._predict_long(path)
        y, sr = decode_audio(p.read_bytes(), name="audio")
        duration = y.size / sr
        row = {"file": path, "start_s": 0.0, "end_s": round(duration, 3)}
        speech_s = speech_seconds(y, sr, **self.check) if duration >= self.min_speech_s else 0.0
        if speech_s < self.min_speech_s:
            return {**row, "answer": NO_SPEECH, "p_female": None, "speech_s": round(speech_s, 3)}
        answer, p_female = self._answer(y, sr)
        return {**row, "answer": answer, "p_female": p_female, "speech_s": round(speech_s, 3)}

    def _predict_long(self, path: str) -> dict:
        """A recording over ``max_whole_s``: answered from its speech segments (decoded in blocks,
        bounded memory), ``p_female`` their mean weighted by length. Featurizing an hour at once
        as in training would take gigabytes (measured: 7.2 GB peak for one hour)."""
        rows = self.predict_segments(path)
        answered = [r for r in rows if r["answer"] != NO_SPEECH]
        base = {"file": path, "start_s": 0.0, "end_s": round(_duration_s(Path(path)), 3)}
        if not answered:
            return {**base, "answer": NO_SPEECH, "p_female": None, "speech_s": 0.0}
        lengths = [r["end_s"] - r["start_s"] for r in answered]
        p_female = float(sum(r["p_female"] * n for r, n in zip(answered, lengths)) / sum(lengths))
        return {
            **base,
            "answer": "female" if p_female >= self.threshold else "male",
            "p_female": p_female,
            "speech_s": round(sum(lengths), 3),
        }

    def predict_segments(self, path: str) -> list[dict]:
        """One row per speech segment (split at pauses of at least ``min_silence_s``), each
        answered on its own; segments shorter than ``min_speech_s`` are left out, longer than
        ``max_whole_s`` cut into pieces of that length; a recording without any: one ``no speech``
        row. Decoded in blocks: memory does not grow with the recording's length."""
        import numpy as np
        import soundfile as sf

        from voicegender.speech import speech_segments

        p = _regular_file(path)
        try:
            f = sf.SoundFile(str(p))
        except (RuntimeError, sf.LibsndfileError) as e:
            raise ValueError(f"audio: not readable audio ({getattr(e, 'error_string', None) or e})") from None
        with f:
            sr, frames = f.samplerate, f.frames
            duration = frames / sr

            def mono(block: np.ndarray) -> np.ndarray:
                return np.ascontiguousarray(block[:, 0] if block.shape[1] == 1 else block.mean(axis=1))

            segments = []
            if duration >= self.min_speech_s:
                blocks = (mono(b) for b in f.blocks(blocksize=int(BLOCK_S * sr), dtype="float32", always_2d=True))
                segments = speech_segments(blocks, sr, duration_s=duration, **self.vad)
            rows = []
            for start, end in _pieces(segments, self.max_whole_s):
                if end - start < self.min_speech_s:
                    continue
                f.seek(int(round(start * sr)))
                y = mono(f.read(int(round((end - start) * sr)), dtype="float32", always_2d=True))
                answer, p_female = self._answer(y, sr)
                rows.append(
                    {
                        "file": path,
                        "start_s": start,
                        "end_s": end,
                        "answer": answer,
                        "p_female": p_female,
                        "speech_s": round(end - start, 3),
                    }
                )
        if not rows:
            rows.append(
                {
                    "file": path,
                    "start_s": 0.0,
                    "end_s": round(duration, 3),
                    "answer": NO_SPEECH,
                    "p_female": None,
                    "speech_s": 0.0,
                }
            )
        return rows


def _pieces(segments: list[tuple[float, float]], max_s: float) -> Iterator[tuple[float, float]]:
    """Segments cut into consecutive pieces of at most ``max_s`` seconds (a speaker who never
    pauses must not make one segment as long as the recording)."""
    for start, end in segments:
        n = max(1, math.ceil((end - start) / max_s))
        for i in range(n):
            yield round(start + i * (end - start) / n, 3), round(start + (i + 1) * (end - start) / n, 3)


def _duration_s(path: Path) -> float:
    """Length from the file's header (0 when libsndfile cannot tell: the decoder then decides)."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError):
        return 0.0
    return info.frames / info.samplerate if info.samplerate else 0.0


def _regular_file(path: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise ValueError("no such file" if not p.exists() else "not a regular file")
    return p


def predict_files(
    paths: list[str], model_dir: str = "models", *, segments: bool = False, overrides: dict | None = None
) -> list[dict]:
    """One dict per path (per segment with ``segments``), see :meth:`Predictor.predict`, or
    ``{"file", "error"}`` for a bad file (missing, not audio); the others are still answered.
    Raises FileNotFoundError when the model itself is missing."""
    predictor = Predictor(model_dir, overrides)
    return [r for rows in _iter_predictions(predictor, paths, segments) for r in rows]


def _iter_predictions(predictor: Predictor, paths: list[str], segments: bool) -> Iterator[list[dict]]:
    for path in paths:
        try:
            yield predictor.predict_segments(path) if segments else [predictor.predict(path)]
        except Exception as exc:  # noqa: BLE001 -- one bad file must not stop the others
            yield [{"file": path, "error": str(exc) or type(exc).__name__}]


class _Writer:
    """Rows to stdout as they come, in one of FORMATS."""

    def __init__(self, fmt: str, segments: bool, out=None):
        out = sys.stdout if out is None else out
        self.fmt, self.segments, self.out, self.n = fmt, segments, out, 0
        if fmt == "csv":
            self.csv = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
            self.csv.writeheader()
        elif fmt == "json":
            out.write("[")

    def write(self, r: dict) -> None:
        if self.fmt == "tsv":
            where = f"\t{r['start_s']:.2f}\t{r['end_s']:.2f}" if self.segments and r["answer"] != NO_SPEECH else ""
            # p_female: the model's probability that the speaker is female (the threshold was set on validation)
            what = NO_SPEECH if r["answer"] == NO_SPEECH else f"{r['answer']}\tp_female={r['p_female']:.3f}"
            self.out.write(f"{r['file']}{where}\t{what}\n")
        elif self.fmt == "csv":
            self.csv.writerow({**r, "p_female": "" if r["p_female"] is None else f"{r['p_female']:.4f}"})
        else:
            self.out.write(("," if self.n else "") + "\n" + json.dumps(r))
        self.n += 1
        self.out.flush()

    def close(self) -> None:
        if self.fmt == "json":
            self.out.write("\n]\n" if self.n else "]\n")
        self.out.flush()


EPILOG = f"""exit codes:
  {EXIT_OK}  every recording answered
  {EXIT_FAILED}  a recording could not be read (error on stderr; the others are still answered)
  {EXIT_MODEL}  the model cannot be loaded (or wrong usage)
  {EXIT_NO_SPEECH}  a recording had less than predict.min_speech_s of speech: `no speech`, no probability
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voicegender", description="Speaker sex (female / male) from speech.")
    sub = parser.add_subparsers(dest="command", required=True)
    pred = sub.add_parser(
        "predict",
        help="predict the speaker's sex of each audio file (wav, flac, any rate)",
        description="Answer female / male for each recording that holds speech (silero-vad); "
        "too little speech: `no speech`, with no probability.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pred.add_argument("files", nargs="+", metavar="FILE")
    pred.add_argument("--model-dir", default="models", help="folder with model.pt and model.json (default: models)")
    pred.add_argument(
        "--segments",
        action="store_true",
        help="split each recording at its pauses and answer each speech segment (start, end in s)",
    )
    pred.add_argument(
        "--format",
        choices=FORMATS,
        default="tsv",
        help="tsv (default): file, [start, end,] answer, p_female=; csv / json: " + ", ".join(CSV_COLUMNS),
    )
    pred.add_argument(
        "--progress",
        choices=("auto", "on", "off"),
        default="auto",
        help=f"progress bar on stderr; auto: when stderr is a terminal and there are several "
        f"files, or {MANY_FILES}+ files",
    )
    over = pred.add_argument_group("speech detection (default: as the model was trained, model.json `predict`)")
    over.add_argument("--min-speech-s", type=float, help="seconds of speech needed to answer")
    over.add_argument("--vad-threshold", type=float, help="speech probability threshold of a 32 ms window")
    over.add_argument("--min-silence-s", type=float, help="pauses at least this long split segments")
    args = parser.parse_args(argv)

    import torch

    # silero-vad scores 32 ms windows one at a time: tiny ops that one thread runs several times
    # faster than two (measured); the feature model is small too.
    torch.set_num_threads(1)
    overrides = {
        "min_speech_s": args.min_speech_s,
        "vad_threshold": args.vad_threshold,
        "min_silence_s": args.min_silence_s,
    }
    try:
        predictor = Predictor(args.model_dir, overrides)
    except (FileNotFoundError, KeyError, RuntimeError, ValueError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"voicegender: cannot load the model from {args.model_dir}: {msg}", file=sys.stderr)
        return EXIT_MODEL
    warning = predictor.warning()
    if warning:
        print(warning, file=sys.stderr)

    from tqdm import tqdm

    many = len(args.files) >= MANY_FILES or (sys.stderr.isatty() and len(args.files) > 1)
    show = args.progress == "on" or (args.progress == "auto" and many)
    writer = _Writer(args.format, args.segments)
    failed = no_speech = 0
    with tqdm(total=len(args.files), unit="file", file=sys.stderr, disable=not show, leave=False) as bar:
        for rows in _iter_predictions(predictor, args.files, args.segments):
            for r in rows:
                if "error" in r:
                    failed += 1
                    bar.write(f"{r['file']}\terror: {r['error']}", file=sys.stderr)
                    continue
                no_speech += r["answer"] == NO_SPEECH
                writer.write(r)
            bar.update()
    writer.close()
    return EXIT_FAILED if failed else EXIT_NO_SPEECH if no_speech else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
