"""Peak memory of `voicegender predict` on a one-hour recording: bounded, not growing with length.

    python benchmarks/predict_memory.py [--model-dir models] [--minutes 60] [--sample DIR] [--keep]

Builds a long recording in a temporary folder (never in the repository): real LibriSpeech
utterances from the sample (`--sample`, read in place; generated eSpeak speech when absent) one
after another with 0.8 s pauses, written block by block as 16 kHz FLAC. Then runs, each in its own
process, `voicegender predict --segments` on it and on a 1/6-length version (a length-ratio check),
plus whole-file `predict` for comparison, and prints each one's peak RSS (os.wait4's ru_maxrss)
and wall time.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "data" / "librispeech-clean100-sample"  # beside the repository
RATE = 16000


def utterances(sample: Path):
    """Endless stream of mono float32 16 kHz utterances."""
    from voicegender.audio.decode import decode_audio
    from voicegender.audio.spectral import resample

    if (sample / "manifest.csv").exists():
        paths = [sample / r["path"] for r in csv.DictReader((sample / "manifest.csv").open())]
        while True:
            for p in paths:
                y, sr = decode_audio(p.read_bytes())
                yield resample(y, sr, RATE)
    from voicegender.corpora.synth import corpus_speakers, render_utterance

    speakers = corpus_speakers(train_speakers=8, test_speakers=0, seed=1)
    i = 0
    while True:
        _, pcm = render_utterance(speakers[i % len(speakers)], i, seed=1, sample_rate=RATE)
        i += 1
        yield pcm.astype(np.float32) / 32768.0


def write_long(path: Path, seconds: float, sample: Path) -> float:
    pause = np.zeros(int(0.8 * RATE), dtype=np.float32)
    written = 0
    with sf.SoundFile(path, "w", samplerate=RATE, channels=1, format="FLAC") as f:
        for y in utterances(sample):
            if written >= seconds * RATE:
                break
            f.write(y)
            f.write(pause)
            written += y.size + pause.size
    return written / RATE


def peak_rss(cmd: list[str]) -> tuple[float, float, int, int]:
    """(peak RSS MiB, wall s, exit code, output lines) of one process."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, time.perf_counter() - started, proc.returncode, len(out.splitlines())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", default=str(ROOT / "models"))
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--sample", type=Path, default=SAMPLE)
    ap.add_argument("--keep", action="store_true", help="keep the generated recordings (printed paths)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="voicegender-long-"))
    long_path, short_path = tmp / "long.flac", tmp / "short.flac"
    hours = write_long(long_path, args.minutes * 60, args.sample) / 3600
    short_h = write_long(short_path, args.minutes * 10, args.sample) / 3600
    print(f"recordings: {hours:.2f} h ({long_path.stat().st_size / 2**20:.0f} MiB FLAC) and {short_h:.2f} h")
    cli = [sys.executable, "-m", "voicegender.cli", "predict", "--model-dir", args.model_dir]
    results = {}
    for label, cmd in (
        ("--segments, 1/6 length", cli + ["--segments", str(short_path)]),
        ("--segments, full length", cli + ["--segments", str(long_path)]),
        ("whole file (no --segments), full length", cli + [str(long_path)]),
    ):
        rss, wall, code, lines = peak_rss(cmd)
        results[label] = rss
        print(f"{label:<42} peak RSS {rss:7.0f} MiB  wall {wall:6.1f} s  exit {code}  {lines} answers")
    ratio = results["--segments, full length"] / results["--segments, 1/6 length"]
    print(f"--segments peak RSS, full / 1/6 length: ratio {ratio:.2f} (1.0 = bounded; 6 = linear)")
    if args.keep:
        print(f"kept: {tmp}")
    else:
        for p in (long_path, short_path):
            p.unlink()
        tmp.rmdir()


if __name__ == "__main__":
    main()
