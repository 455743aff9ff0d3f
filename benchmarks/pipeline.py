"""The whole default run at LibriTTS scale: label -> featurize -> tune -> train -> evaluate.

Measures the configuration in params.yaml (whatever it says) on this machine, projected to
LibriTTS train-clean-100 + test-clean (8.9 GB of .tar.gz, 62.3 h of 24 kHz audio), from one run:

* label, featurize: the stages themselves (``stages/label.py``, ``stages/featurize.py``, run
  in this process in a scratch folder) on two LibriTTS-layout ``.tar.gz`` archives built from
  real speech: the LibriSpeech sample (``--sample``, read in place) resampled to 24 kHz 16-bit
  wavs, so that gzip and the encoder see audio like LibriTTS's. label is projected by archive
  bytes (it is a gunzip pass), featurize by audio hours (feature work dominates; the archive's
  bytes per hour are printed next to LibriTTS's). featurize's fixed cost (lazy imports, loading
  the encoder, starting the workers) is measured apart, on the archive's first two utterances
  in a cold process state, and not scaled: projected = cold 2-utterance run + (full run - the
  same 2-utterance run warm) x hours ratio.
* tune, train, evaluate: the stages run for real at full size, on LibriTTS-sized feature
  arrays (33,000 train x the feature's size, as benchmarks/tune.py; 6,000 val; 4,837 test)
  drawn from the real features of the sample (rows resampled with replacement within their
  split, plus noise of NOISE x each dimension's spread: no two rows are equal, and validation is not
  trivially separable, so early stopping behaves as on real data). The search
  is the configured one, run for real (no per-epoch extrapolation); training runs until early
  stopping.
* start-up: each stage is a fresh Python process under ``dvc repro``: its imports are timed in
  a subprocess per stage and added (in-process runs above share one set of imports).

CPU seconds (this process and its reaped children: the featurize workers; not Ray's trial
workers) are printed beside wall seconds: on a loaded machine they move much less than wall
times, and they give an idle-machine estimate (printed last).

Printed: each part, ``projected: N s`` (label to evaluate, no download) and ``ratio: N``
against the report's 2,280 s. The machine is shared and noisy (2 cores; compare ratios within
one run, not absolute figures across runs).

    PYTHONPATH=src python benchmarks/pipeline.py
    PYTHONPATH=src python benchmarks/pipeline.py --params /tmp/other.yaml --keep /tmp/vg-pipe
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import resource
import runpy
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = "/work/shared/data/librispeech-clean100-sample"
REPORT_WALL_S = 2280.0  # the reference report's search, the figure every speed-up is measured against
# LibriTTS train-clean-100 + test-clean (PITFALLS.md): archive bytes and hours of audio
LIBRITTS_BYTES = 7_723_686_890 + 1_230_670_113
LIBRITTS_HOURS = 53.78 + 8.56
LIBRITTS_RATE = 24000  # Hz
TRAIN_ROWS, VAL_ROWS, TEST_ROWS = 33_000, 6_000, 4_837
NOISE = 1.0  # noise added to resampled rows, x each dimension's spread: keeps validation from being trivial
TEST_SHARE = 8.56 / LIBRITTS_HOURS  # share of speakers put in the test archive, as LibriTTS's hours
STAGES = ("label", "featurize", "tune", "train", "evaluate")


def build_archives(sample: Path, out: Path) -> dict:
    """train-clean-100.tar.gz and test-clean.tar.gz in LibriTTS layout (24 kHz 16-bit wavs,
    SPEAKERS.txt) from a folder's manifest.csv (path,speaker,sex). Returns sizes and hours."""
    import soundfile as sf

    from voicegender.spectral import resample

    with open(sample / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    speakers = sorted({r["speaker"] for r in rows})
    rng = np.random.default_rng(0)
    test = set(rng.permutation(speakers)[: max(2, round(TEST_SHARE * len(speakers)))].tolist())
    info = {"bytes": 0, "seconds": 0.0, "utterances": len(rows), "first_members": []}
    for subset, role in (("train-clean-100", "train"), ("test-clean", "test")):
        part = [r for r in rows if (r["speaker"] in test) == (role == "test")]
        path = out / f"{subset}.tar.gz"
        with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as tf:
            lines = [";ID |SEX| SUBSET | MINUTES | NAME"]
            lines += [f"{r['speaker']} | {r['sex']} | {subset} | 1.0 | reader" for r in part]
            add(tf, "LibriTTS/SPEAKERS.txt", ("\n".join(sorted(set(lines))) + "\n").encode())
            for i, r in enumerate(part):
                y, sr = sf.read(sample / r["path"], dtype="float32")
                y = resample(y, sr, LIBRITTS_RATE)
                pcm = io.BytesIO()
                sf.write(pcm, y, LIBRITTS_RATE, subtype="PCM_16", format="WAV")
                spk, chap = r["speaker"], f"{1000 + i}"
                member = f"LibriTTS/{subset}/{spk}/{chap}/{spk}_{chap}_000000_000000.wav"
                add(tf, member, pcm.getvalue())
                if role == "train" and len(info["first_members"]) < 2:
                    info["first_members"].append(member)
                info["seconds"] += len(y) / LIBRITTS_RATE
        info["bytes"] += path.stat().st_size
        info[role] = str(path)
    return info


def add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    member = tarfile.TarInfo(name)
    member.size, member.mtime = len(data), 0
    tf.addfile(member, io.BytesIO(data))


def cpu_s() -> float:
    """CPU seconds (user + system) of this process and of its children that have ended."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                   resource.getrusage(resource.RUSAGE_CHILDREN)))


def run_stage(name: str) -> tuple[float, float]:
    """Run stages/<name>.py's main() in this process (cwd = the scratch repo): (wall s, CPU s)."""
    started, cpu = time.perf_counter(), cpu_s()
    runpy.run_path(str(ROOT / "stages" / f"{name}.py"), run_name="__main__")
    return time.perf_counter() - started, cpu_s() - cpu


def featurize_few(members: list[str]) -> tuple[float, float]:
    """The featurize stage on only these utterances of data/labels.csv (restored afterwards)."""
    labels = Path("data/labels.csv")
    full = labels.read_text()
    lines = full.splitlines(keepends=True)
    labels.write_text(lines[0] + "".join(line for line in lines[1:] if any(m in line for m in members)))
    try:
        return run_stage("featurize")
    finally:
        labels.write_text(full)


def startup_s(name: str) -> float:
    """A fresh interpreter importing what stages/<name>.py imports (its main() not run)."""
    code = f"import runpy; runpy.run_path({str(ROOT / 'stages' / (name + '.py'))!r}, run_name='imports_only')"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ.copy())
    return time.perf_counter() - started


def enlarge_features(directory: Path, seed: int) -> dict:
    """Replace each split's arrays by LibriTTS-sized ones drawn from its real rows (see above)."""
    from voicegender.dataset import load_features, save_features

    rng = np.random.default_rng(seed)
    sizes = {"train": TRAIN_ROWS, "val": VAL_ROWS, "test": TEST_ROWS}
    for split, n in sizes.items():
        d = load_features(directory, split)
        pick = rng.integers(0, len(d["X"]), n)
        spread = d["X"].std(axis=0, keepdims=True) + 1e-6
        X = d["X"][pick] + NOISE * spread * rng.standard_normal((n, *d["X"].shape[1:])).astype(np.float32)
        save_features(directory, split, X, d["y"][pick], [f"{d['ids'][i]}-{k}" for k, i in enumerate(pick)],
                      list(d["speakers"][pick]))
    return sizes


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--sample", default=SAMPLE, help="real speech: a folder with manifest.csv (path,speaker,sex)")
    ap.add_argument("--keep", help="scratch folder to keep (default: a temporary one, removed)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)

    import voicegender

    print(f"voicegender from {Path(voicegender.__file__).parent}; {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.1f} at start (other users' work shares the machine)", flush=True)
    work = Path(args.keep or tempfile.mkdtemp(prefix="vg-pipeline-"))
    work.mkdir(parents=True, exist_ok=True)
    started_in = os.getcwd()
    try:
        (work / "data" / "raw").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.params, work / "params.yaml")
        t = time.perf_counter()
        archive = build_archives(Path(args.sample), work / "data" / "raw")
        hours = archive["seconds"] / 3600
        print(f"archives: {archive['utterances']} utterances, {hours:.3f} h, {archive['bytes'] / 1e6:.1f} MB "
              f"({archive['bytes'] / hours / 1e6:.0f} MB/h; LibriTTS {LIBRITTS_BYTES / LIBRITTS_HOURS / 1e6:.0f} MB/h), "
              f"built in {time.perf_counter() - t:.0f} s (not timed)", flush=True)
        (work / "data/raw/corpus.json").write_text(json.dumps({"corpus": "libritts", "sources": [
            {"role": "train", "subset": "train-clean-100", "path": archive["train"]},
            {"role": "test", "subset": "test-clean", "path": archive["test"]}]}))
        os.chdir(work)
        from voicegender.params import load_params

        params = load_params("params.yaml")
        print(f"configuration: features.kind={params.features.kind} model.name={params.model.name} "
              f"tune: {params.tune.num_samples} trials over {', '.join(params.tune.space)}", flush=True)
        wall, cpu = {}, {}
        wall["label"], cpu["label"] = run_stage("label")
        cold = featurize_few(archive["first_members"])
        wall["featurize"], cpu["featurize"] = run_stage("featurize")
        warm = featurize_few(archive["first_members"])
        print(f"featurize fixed cost: {cold[0]:.1f} s cold, {warm[0]:.1f} s warm (2 utterances)", flush=True)
        run_stage("featurize")  # the full features again, for the stages below
        sizes = enlarge_features(work / "data" / "features", params.data.seed)
        print(f"features enlarged to {sizes} rows", flush=True)
        for name in ("tune", "train", "evaluate"):
            wall[name], cpu[name] = run_stage(name)
        scale = {"label": LIBRITTS_BYTES / archive["bytes"], "featurize": LIBRITTS_HOURS / hours,
                 "tune": 1.0, "train": 1.0, "evaluate": 1.0}
        start = {name: startup_s(name) for name in STAGES}
    finally:
        os.chdir(started_in)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    projected = {name: wall[name] * scale[name] + start[name] for name in STAGES}
    projected["featurize"] = cold[0] + (wall["featurize"] - warm[0]) * scale["featurize"] + start["featurize"]
    cpu_projected = {name: cpu[name] * scale[name] for name in STAGES}
    cpu_projected["featurize"] = cold[1] + (cpu["featurize"] - warm[1]) * scale["featurize"]
    total = sum(projected.values())
    how = {"label": f"x{scale['label']:.0f} by archive bytes", "featurize": f"x{scale['featurize']:.0f} by audio hours",
           "tune": "full size, run for real", "train": "full size, until early stopping", "evaluate": "full size"}
    print(f"\n{'part':<10} {'measured s':>10} {'projected s':>12} {'CPU s':>8} {'proj. CPU s':>11}"
          "  (projection; + stage start-up s)")
    for name in STAGES:
        print(f"{name:<10} {wall[name]:>10.1f} {projected[name]:>12.1f} {cpu[name]:>8.1f} {cpu_projected[name]:>11.1f}"
              f"  ({how[name]}; +{start[name]:.1f})")
    x_rt = LIBRITTS_HOURS * 3600 / (projected["featurize"] - start["featurize"])
    print(f"featurize throughput: {x_rt:.0f}x real time (24 kHz archives, all cores)")
    print(f"projected: {total:.0f} s")
    print(f"ratio: {REPORT_WALL_S / total:.1f}")
    cores = os.cpu_count() or 1
    # What an idle machine would take: the serial stages' CPU time, featurize's spread over every
    # core, and the search's wall time (Ray's workers are not this process's children: their CPU
    # time is not counted; its trials already run one per core)
    idle = {"label": cpu_projected["label"], "featurize": cpu_projected["featurize"] / cores,
            "tune": wall["tune"], "train": cpu_projected["train"], "evaluate": cpu_projected["evaluate"]}
    idle_total = sum(idle.values()) + sum(start.values())
    print("idle estimate: " + ", ".join(f"{k} {v:.0f}" for k, v in idle.items())
          + f", start-up {sum(start.values()):.0f}: {idle_total:.0f} s (label, train, evaluate: their CPU s; "
          f"featurize: CPU s / {cores} cores; tune: wall s)")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"measured_s": wall, "cpu_s": cpu, "cpu_projected_s": cpu_projected,
                                               "idle_estimate_s": idle, "idle_estimate_total_s": idle_total,
                                               "featurize_fixed_s": {"cold": cold, "warm": warm}, "scale": scale, "startup_s": start,
                                               "projected_s": projected, "projected_total_s": total,
                                               "ratio": REPORT_WALL_S / total, "archive": archive}, indent=2) + "\n")


if __name__ == "__main__":
    main()
