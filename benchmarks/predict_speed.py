"""x real time of `voicegender predict --segments` on one long recording and on many files, one
worker against all cores (`--jobs`), and whether the answers are the same.

    python benchmarks/predict_speed.py --model-dir DIR [--minutes 60] [--files 100] [--jobs N]

The long recording is built as in benchmarks/predict_memory.py (LibriSpeech sample utterances with
0.8 s pauses, 16 kHz FLAC, in a temporary folder); the many files are the sample's first
``--files`` recordings, read in place. Each run is one `voicegender predict` process (model load
and worker start-up included); x real time = seconds of audio / seconds of wall time.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict_memory import SAMPLE, write_long  # noqa: E402


def timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 3):
        sys.exit(f"{' '.join(cmd[:6])} ... failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return wall, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--files", type=int, default=100)
    ap.add_argument("--sample", type=Path, default=SAMPLE)
    ap.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)), help="the many-core run (default: all)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="voicegender-speed-"))
    try:
        long_path = tmp / "long.flac"
        long_s = write_long(long_path, args.minutes * 60, args.sample)
        with open(args.sample / "manifest.csv", newline="", encoding="utf-8") as f:
            files = [str(args.sample / r["path"]) for r in csv.DictReader(f)][: args.files]
        files_s = sum(sf.info(p).duration for p in files)
        cli = [sys.executable, "-m", "voicegender.cli", "predict", "--segments", "--format", "csv"]
        cli += ["--model-dir", args.model_dir, "--progress", "off"]
        for label, inputs, audio_s in (
            (f"one file of {long_s / 60:.0f} min", [str(long_path)], long_s),
            (f"{len(files)} files, {files_s / 60:.0f} min", files, files_s),
        ):
            walls, outs = {}, {}
            for jobs in (1, args.jobs):
                walls[jobs], outs[jobs] = timed(cli + ["--jobs", str(jobs), *inputs])
            same = "same answers" if outs[1] == outs[args.jobs] else "ANSWERS DIFFER"
            print(
                f"{label}: --jobs 1 {audio_s / walls[1]:.0f}x real time ({walls[1]:.0f} s), "
                f"--jobs {args.jobs} {audio_s / walls[args.jobs]:.0f}x ({walls[args.jobs]:.0f} s): "
                f"speed-up {walls[1] / walls[args.jobs]:.2f}, {same}"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
