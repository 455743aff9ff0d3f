"""`voicegender predict --segments` on conversations: frame accuracy, boundary error, x real time.

    python benchmarks/dialogues.py --model-dir DIR [--dialogues 40] [--seed 1] [--jobs N]
                                   [--set switch_penalty=30 ...] [--keep]

Builds seeded dialogues from a folder of recordings with a manifest (path,speaker,sex; default the
cross-corpus set, ../shared/data/cross-corpus-dev from the repository): each one 2-3 speakers of
both sexes taking 4-7 turns, consecutive turns by different speakers, each turn one recording cut
to its speech (silero-vad, unpadded), turns joined by pauses of 0-0.3 s of faint noise, 16 kHz
wav, in a temporary folder (never in the repository). Then runs `voicegender predict --segments
--format json` on them all in one process and scores:

- frames right: the share of 10 ms frames inside turns whose covering segment has the turn's sex
  (a frame in no segment counts as wrong);
- boundary error: for each change of sex between turns (the middle of the pause), the distance
  to the nearest predicted change of sex (the middle between two segments of different sex);
  the share within 0.5 s, the median; and predicted changes with no true change within 0.5 s;
- x real time: seconds of audio per second of wall time of the predict process (model load
  included).

``--set KEY=VALUE`` overrides a `predict` setting of the model card (on a copy), to try values.
A model trained on real speech: ``python benchmarks/real_speech_pipeline.py --keep`` prints a
repository whose models/ folder to pass as --model-dir.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
CROSS = ROOT.parent / "shared" / "data" / "cross-corpus-dev"
RATE = 16000
FRAME_S = 0.01


def load_manifest(folder: Path) -> dict[str, tuple[str, list[Path]]]:
    """speaker -> (sex F/M, recordings)."""
    speakers: dict[str, tuple[str, list[Path]]] = {}
    with open(folder / "manifest.csv", newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            speakers.setdefault(r["speaker"], (r["sex"], []))[1].append(folder / r["path"])
    return speakers


def speech_only(path: Path) -> np.ndarray:
    """The recording at 16 kHz mono, cut to its speech (first to last speech, silero-vad, unpadded)."""
    from voicegender.audio.decode import decode_audio
    from voicegender.params import PredictSettings
    from voicegender.audio.spectral import resample
    from voicegender.audio.speech import speech_segments, vad_settings

    y, sr = decode_audio(path.read_bytes())
    y = resample(y, sr, RATE)
    segs = speech_segments(y, RATE, **{**vad_settings(PredictSettings()), "pad_s": 0.0})
    if not segs:
        return y[:0]
    return y[int(segs[0][0] * RATE) : int(segs[-1][1] * RATE)]


def build_dialogues(folder: Path, n: int, seed: int, out: Path) -> list[dict]:
    """``n`` dialogues written to ``out``; returns each one's path and turns [(start, end, sex)]."""
    rng = np.random.default_rng(seed)
    speakers = load_manifest(folder)
    by_sex = {s: sorted(k for k, v in speakers.items() if v[0] == s) for s in "FM"}
    cache: dict[Path, np.ndarray] = {}
    dialogues = []
    for d in range(n):
        chosen = [str(rng.choice(by_sex["F"])), str(rng.choice(by_sex["M"]))]
        if rng.random() < 0.5:  # a third speaker of either sex
            rest = [k for k in speakers if k not in chosen]
            chosen.append(str(rng.choice(sorted(rest))))
        n_turns = int(rng.integers(4, 8))
        parts, turns, t, prev = [], [], 0.0, None
        for i in range(n_turns):
            who = str(rng.choice([c for c in chosen if c != prev])) if i >= 2 else chosen[i]
            prev = who
            sex, recs = speakers[who]
            rec = recs[int(rng.integers(len(recs)))]
            if rec not in cache:
                cache[rec] = speech_only(rec)
            y = cache[rec]
            if i:
                gap = rng.uniform(0.0, 0.3)
                noise = (1e-4 * rng.standard_normal(int(gap * RATE))).astype(np.float32)
                parts.append(noise)
                t += noise.size / RATE
            parts.append(y)
            turns.append((t, t + y.size / RATE, sex))
            t += y.size / RATE
        path = out / f"dialogue_{d:03d}.wav"
        sf.write(path, np.concatenate(parts), RATE, subtype="PCM_16")
        dialogues.append({"path": str(path), "turns": turns, "duration_s": t})
    return dialogues


def score(dialogues: list[dict], rows: list[dict]) -> dict:
    by_file: dict[str, list[dict]] = {}
    for r in rows:
        by_file.setdefault(r["file"], []).append(r)
    right = total = missed = 0
    errors, spurious, n_pred_changes = [], 0, 0
    for d in dialogues:
        segs = [r for r in by_file.get(d["path"], []) if r["answer"] in ("female", "male")]
        n = int(np.ceil(d["duration_s"] / FRAME_S))
        pred = np.full(n, "", dtype=object)
        for r in segs:
            pred[int(round(r["start_s"] / FRAME_S)) : int(round(r["end_s"] / FRAME_S))] = r["answer"][0].upper()
        for start, end, sex in d["turns"]:
            a, b = int(round(start / FRAME_S)), int(round(end / FRAME_S))
            right += int((pred[a:b] == sex).sum())
            missed += int((pred[a:b] == "").sum())
            total += b - a
        true_changes = [(t1[1] + t2[0]) / 2 for t1, t2 in zip(d["turns"][:-1], d["turns"][1:]) if t1[2] != t2[2]]
        pred_changes = [
            (s1["end_s"] + s2["start_s"]) / 2 for s1, s2 in zip(segs[:-1], segs[1:]) if s1["answer"] != s2["answer"]
        ]
        n_pred_changes += len(pred_changes)
        for c in true_changes:
            errors.append(min((abs(c - p) for p in pred_changes), default=float("inf")))
        spurious += sum(1 for p in pred_changes if all(abs(p - c) > 0.5 for c in true_changes))
    e = np.array(errors)
    return {
        "frames_right": right / total,
        "frames_missed": missed / total,
        "changes": len(errors),
        "changes_within_0.5s": float((e <= 0.5).mean()) if e.size else float("nan"),
        "change_error_median_s": float(np.median(e)) if e.size else float("nan"),
        "predicted_changes": n_pred_changes,
        "spurious_changes": spurious,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--recordings", type=Path, default=CROSS, help="folder with manifest.csv (path,speaker,sex)")
    ap.add_argument("--dialogues", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1, help="predict --jobs (default 1: one core)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a predict setting to try")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    if not (args.recordings / "manifest.csv").is_file():
        sys.exit(f"{args.recordings}/manifest.csv not found: pass --recordings")
    tmp = Path(tempfile.mkdtemp(prefix="voicegender-dialogues-"))
    try:
        model_dir = Path(args.model_dir)
        if args.set:
            model_dir = tmp / "models"
            shutil.copytree(args.model_dir, model_dir)
            card = json.loads((model_dir / "model.json").read_text())
            for kv in args.set:
                k, v = kv.split("=", 1)
                card["predict"][k] = json.loads(v)
            (model_dir / "model.json").write_text(json.dumps(card))
        dialogues = build_dialogues(args.recordings, args.dialogues, args.seed, tmp)
        audio_s = sum(d["duration_s"] for d in dialogues)
        cmd = [sys.executable, "-m", "voicegender.cli", "predict", "--segments", "--format", "json"]
        cmd += ["--jobs", str(args.jobs), "--model-dir", str(model_dir), *[d["path"] for d in dialogues]]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode not in (0, 3):
            sys.exit(f"predict failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        result = score(dialogues, json.loads(proc.stdout))
        print(
            f"{len(dialogues)} dialogues (seed {args.seed}), {audio_s:.0f} s of audio, "
            f"{sum(len(d['turns']) for d in dialogues)} turns; settings {' '.join(args.set) or 'as the card'}"
        )
        print(
            f"frames right {100 * result['frames_right']:.1f} % (in no segment {100 * result['frames_missed']:.1f} %); "
            f"changes of sex within 0.5 s {100 * result['changes_within_0.5s']:.1f} % of {result['changes']} "
            f"(median error {result['change_error_median_s']:.2f} s); "
            f"spurious changes {result['spurious_changes']} of {result['predicted_changes']} predicted"
        )
        print(f"predict --segments --jobs {args.jobs}: {wall:.1f} s wall, {audio_s / wall:.0f}x real time")
        if args.keep:
            print(f"kept: {tmp}")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
