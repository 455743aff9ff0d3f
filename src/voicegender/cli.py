"""``voicegender predict FILE|DIR...``: the trained model's answer for each recording.

The command line only: arguments, and rows written as tsv, csv or json. What the answers are and
how they are computed (speech detection, windowed decisions, segments) is
:mod:`voicegender.inference`. Every input gets a row (per segment with ``--segments``), failures
included (``answer`` ``error`` and the message), with the same precision in every format:
seconds to 3 decimals, ``p_female`` to 4.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from typing import Iterator

from voicegender.inference import (  # noqa: F401  (SYNTHETIC_WARNING, predict_files: the tested API)
    AUDIO_EXTENSIONS,
    ERROR,
    NO_SPEECH,
    SYNTHETIC_WARNING,
    UNKNOWN_DATA_WARNING,
    Predictor,
    default_jobs,
    error_row,
    expand_paths,
    run,
    segment_rows,
    sex_seconds,
    whole_row,
)

# Exit codes (also in --help and the README)
EXIT_OK = 0  # every recording answered
EXIT_FAILED = 1  # a recording could not be read (its row says `error`; the others are still answered)
EXIT_MODEL = 2  # the model cannot be loaded (argparse's usage errors are 2 as well)
EXIT_NO_SPEECH = 3  # a recording had too little speech to answer (`no speech`), none failed

MANY_FILES = 100  # with this many files a progress bar is shown even when stderr is not a terminal
FORMATS = ("tsv", "csv", "json")
TIME_DECIMALS, P_DECIMALS = 3, 4  # every format
WHOLE_COLUMNS = ("file", "start_s", "end_s", "answer", "p_female", "speech_s", "female_s", "male_s", "mixed", "error")
SEGMENT_COLUMNS = ("file", "start_s", "end_s", "answer", "p_female", "speech_s", "error")
SUMMARY_COLUMNS = ("file", "answer", "speech_s", "female_s", "male_s", "mixed", "error")
CSV_COLUMNS = WHOLE_COLUMNS  # the default mode's


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("voicegender")
    except PackageNotFoundError:
        return "unknown"


def predict_files(
    paths: list[str],
    model_dir: str = "models",
    *,
    segments: bool = False,
    overrides: dict | None = None,
    jobs: int = 1,
) -> list[dict]:
    """One row per path (per segment with ``segments``) as ``voicegender predict`` writes it,
    unrounded; a bad file (missing, not audio) gets ``answer`` ``error`` and the message in
    ``error``. Raises FileNotFoundError when the model itself is missing."""
    predictor = Predictor(model_dir, overrides)
    return [
        r for rows in _rows(predictor, expand_paths(paths), "segments" if segments else "whole", jobs) for r in rows
    ]


def _rows(predictor: Predictor, paths: list[str], mode: str, jobs: int) -> Iterator[list[dict]]:
    """Per input, its rows in ``mode``: whole / segments / summary (the total row is the caller's)."""
    columns = {"whole": WHOLE_COLUMNS, "segments": SEGMENT_COLUMNS, "summary": SUMMARY_COLUMNS}[mode]
    for path, speech, segments, whole, error in run(predictor, paths, whole=mode == "whole", jobs=jobs):
        if error is not None:
            yield [error_row(path, error, columns)]
        elif mode == "segments":
            yield [{**r, "error": None} for r in segment_rows(path, speech, segments)]
        elif mode == "whole":
            s = predictor.settings
            yield [{**whole_row(path, speech, segments, whole, s.mixed_min_s, predictor.threshold), "error": None}]
        else:
            female_s, male_s = sex_seconds(segments)
            answer = NO_SPEECH if not segments else "female" if female_s >= male_s else "male"
            yield [
                {
                    "file": path,
                    "answer": answer,
                    "speech_s": round(female_s + male_s, 3),
                    "female_s": female_s,
                    "male_s": male_s,
                    "mixed": min(female_s, male_s) >= predictor.settings.mixed_min_s,
                    "error": None,
                }
            ]


def _rounded(r: dict) -> dict:
    """The row with every number at the output precision."""
    out = {}
    for k, v in r.items():
        if isinstance(v, float) and not isinstance(v, bool):
            v = round(v, P_DECIMALS if k == "p_female" else TIME_DECIMALS)
        out[k] = v
    return out


class _Writer:
    """Rows to stdout as they come, in one of FORMATS."""

    def __init__(self, fmt: str, mode: str, out=None):
        out = sys.stdout if out is None else out
        self.fmt, self.mode, self.out, self.n = fmt, mode, out, 0
        columns = {"whole": WHOLE_COLUMNS, "segments": SEGMENT_COLUMNS, "summary": SUMMARY_COLUMNS}[mode]
        if fmt == "csv":
            self.csv = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
            self.csv.writeheader()
        elif fmt == "json":
            out.write("[")

    def write(self, r: dict) -> None:
        r = _rounded(r)
        if self.fmt == "tsv":
            self.out.write(self._tsv(r) + "\n")
        elif self.fmt == "csv":
            self.csv.writerow(
                {k: "" if v is None else str(v).lower() if isinstance(v, bool) else _fixed(k, v) for k, v in r.items()}
            )
        else:
            self.out.write(("," if self.n else "") + "\n" + json.dumps(r))
        self.n += 1
        self.out.flush()

    def _tsv(self, r: dict) -> str:
        file = "(total)" if r["file"] is None else r["file"]
        if r["answer"] == ERROR:
            return f"{file}\t{ERROR}\t{r['error']}"
        if self.mode == "summary":
            return (
                f"{file}\t{r['answer']}\tspeech_s={_fixed('speech_s', r['speech_s'])}"
                f"\tfemale_s={_fixed('female_s', r['female_s'])}\tmale_s={_fixed('male_s', r['male_s'])}"
                + ("\tmixed" if r["mixed"] else "")
            )
        if r["answer"] == NO_SPEECH:
            return f"{file}\t{NO_SPEECH}"
        where = f"\t{_fixed('start_s', r['start_s'])}\t{_fixed('end_s', r['end_s'])}" if self.mode == "segments" else ""
        # p_female: the model's probability that the speaker is female (the threshold was set on validation)
        line = f"{file}{where}\t{r['answer']}\tp_female={_fixed('p_female', r['p_female'])}"
        if r.get("mixed"):
            line += f"\tmixed: female_s={_fixed('female_s', r['female_s'])} male_s={_fixed('male_s', r['male_s'])}"
        return line

    def close(self) -> None:
        if self.fmt == "json":
            self.out.write("\n]\n" if self.n else "]\n")
        self.out.flush()


def _fixed(key: str, v) -> str:
    if not isinstance(v, float):
        return str(v)
    return f"{v:.{P_DECIMALS if key == 'p_female' else TIME_DECIMALS}f}"


EPILOG = f"""exit codes:
  {EXIT_OK}  every recording answered
  {EXIT_FAILED}  a recording could not be read (its row: answer `error` and the message; the others are still answered)
  {EXIT_MODEL}  the model cannot be loaded (or wrong usage)
  {EXIT_NO_SPEECH}  a recording had less than predict.min_speech_s of speech: `no speech`, no probability

formats read: {", ".join(e.lstrip(".") for e in AUDIO_EXTENSIONS)} (libsndfile; any sample rate;
  several channels are mixed down to one). A directory stands for the files with these endings
  inside it, recursively, sorted.

a segment: a stretch of speech of one sex. It ends at a pause of predict.min_silence_s or where
  the voice's sex changes (windowed decisions every predict.hop_s, smoothed: a change must earn
  predict.switch_penalty). --summary: speaking time per sex per file, then a total row (file
  `(total)` in tsv, empty in csv, null in json).
"""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.jobs < 0:
        parser.error(f"--jobs: must be 0 (all cores) or a positive number, got {args.jobs}")

    from voicegender.runtime import use_one_thread

    use_one_thread()  # cores are used by --jobs
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

    files = expand_paths(args.files)
    if not files:
        print("voicegender: no audio files in the folders given (" + ", ".join(AUDIO_EXTENSIONS) + ")", file=sys.stderr)
        return EXIT_FAILED
    jobs = _jobs(args.jobs or default_jobs(), files, predictor.max_whole_s)
    many = len(files) >= MANY_FILES or (sys.stderr.isatty() and len(files) > 1)
    show = args.progress == "on" or (args.progress == "auto" and many)
    kind = "segments" if args.segments else "summary" if args.summary else "whole"
    writer = _Writer(args.format, kind)
    failed = no_speech = 0
    total = {"female_s": 0.0, "male_s": 0.0}
    with tqdm(total=len(files), unit="file", file=sys.stderr, disable=not show, leave=False) as bar:
        for rows in _rows(predictor, files, kind, jobs):
            for r in rows:
                if r["answer"] == ERROR:
                    failed += 1
                    bar.write(f"{r['file']}\terror: {r['error']}", file=sys.stderr)
                no_speech += r["answer"] == NO_SPEECH
                if kind == "summary" and r["answer"] != ERROR:
                    total["female_s"] += r["female_s"]
                    total["male_s"] += r["male_s"]
                writer.write(r)
            bar.update()
    if kind == "summary":
        writer.write(_total_row(total["female_s"], total["male_s"], predictor.settings.mixed_min_s))
    writer.close()
    return EXIT_FAILED if failed else EXIT_NO_SPEECH if no_speech else EXIT_OK


def _parser() -> argparse.ArgumentParser:
    """The command line: ``voicegender predict`` and its options."""
    parser = argparse.ArgumentParser(prog="voicegender", description="Speaker sex (female / male) from speech.")
    parser.add_argument("--version", action="version", version=f"voicegender {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    pred = sub.add_parser(
        "predict",
        help="predict the speaker's sex of each audio file (wav, flac, mp3, ogg ...; any rate)",
        description="Answer female / male for each recording that holds speech (silero-vad); "
        "too little speech: `no speech`, with no probability. A whole-file answer over speech of "
        "both sexes is flagged `mixed` (the seconds of each sex follow).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pred.add_argument("--version", action="version", version=f"voicegender {_version()}")
    pred.add_argument("files", nargs="+", metavar="FILE|DIR")
    pred.add_argument("--model-dir", default="models", help="folder with model.pt and model.json (default: models)")
    mode = pred.add_mutually_exclusive_group()
    mode.add_argument(
        "--segments",
        action="store_true",
        help="one row per segment (start, end in s): a stretch of speech of one sex",
    )
    mode.add_argument(
        "--summary",
        action="store_true",
        help="speaking time per sex per file (female_s, male_s), then the total",
    )
    pred.add_argument(
        "--format",
        choices=FORMATS,
        default="tsv",
        help="tsv (default): file, [start, end,] answer, p_female=; csv / json columns: "
        + ", ".join(WHOLE_COLUMNS)
        + " (--segments: "
        + ", ".join(SEGMENT_COLUMNS)
        + "; --summary: "
        + ", ".join(SUMMARY_COLUMNS)
        + ")",
    )
    pred.add_argument(
        "--jobs",
        type=int,
        default=0,
        metavar="N",
        help="worker processes for many files and long recordings (default 0: all cores); the answers do not depend on it",
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
    return parser


def _total_row(female_s: float, male_s: float, mixed_min_s: float) -> dict:
    """--summary's last row: the speaking time per sex over all files (s), and the answer it gives."""
    female_s, male_s = round(female_s, 3), round(male_s, 3)
    return {
        "file": None,
        "answer": NO_SPEECH if female_s + male_s == 0 else "female" if female_s >= male_s else "male",
        "speech_s": round(female_s + male_s, 3),
        "female_s": female_s,
        "male_s": male_s,
        "mixed": min(female_s, male_s) >= mixed_min_s,
        "error": None,
    }


def _jobs(jobs: int, files: list[str], max_whole_s: float) -> int:
    """Workers worth starting (a worker costs ~2 s to start): no more than there are files, or
    pieces of a long recording to share out (same answers whatever it is)."""
    if jobs <= 1 or len(files) >= jobs:
        return jobs
    import soundfile as sf

    pieces = 0
    for f in files:
        try:
            info = sf.info(f)
            pieces += max(1, math.ceil(info.frames / info.samplerate / max_whole_s))
        except Exception:  # noqa: BLE001 -- unreadable: answered `error` later
            pieces += 1
    return max(1, min(jobs, pieces))


if __name__ == "__main__":
    sys.exit(main())
