"""The whole default run at LibriTTS scale: label -> featurize -> tune -> train -> evaluate -> robustness.

Measures the configuration in params.yaml (whatever it says) on this machine, projected to
LibriTTS train-clean-100 + test-clean (8.9 GB of .tar.gz, 62.3 h of 24 kHz audio), from one run:

* label, featurize: the stages themselves (``stages/label.py``, ``stages/featurize.py``, run
  in this process in a scratch folder) on two LibriTTS-layout ``.tar.gz`` archives built from
  real speech: the LibriSpeech sample (``--sample``, read in place) resampled to 24 kHz 16-bit
  wavs and cut into utterances of LibriTTS's mean length (~5.9 s) with LibriTTS's text members
  beside them, so that gzip, the encoder and every per-file cost (the speech check, tar members)
  see what they see on LibriTTS. label is projected by archive bytes (it is a gunzip pass: it
  reads every recording, used or not), featurize by the hours of audio it featurizes (feature
  work dominates; the archive's bytes per hour are printed next to LibriTTS's): on LibriTTS,
  test-clean's 8.56 h and of train-clean-100's 53.78 h the share ``data.max_per_speaker``
  keeps, min(1, cap / ~135 recordings a speaker). The archive here holds ~2 pieces of each
  speaker, so the cap leaves it whole: its own hours are counted from data/labels.csv. Fixed costs are measured apart and not scaled: featurize's (lazy imports,
  loading the encoder, starting the workers) on the archive's first two utterances in a cold
  process state: projected = cold 2-utterance run + (full run - the same 2-utterance run warm)
  x hours ratio, where the augmented copies' part (the full run - a run without copies) is
  scaled by the copies' hours instead (LibriTTS's training hours but validation's share, under
  ``data.max_per_speaker`` and ``features.augment.max_per_speaker``); label's (its plot, its tables) on archives of one recording per subset:
  projected = that run + (full run - that run) x bytes ratio.
* tune, train, evaluate: the stages run for real at full size, on LibriTTS-sized feature
  arrays (train and val: the rows LibriTTS would give, 247 speakers x min(~135,
  ``data.max_per_speaker``) recordings split by ``data.val_fraction``, the training ones with
  their copies: 53,200 train and 6,600 val with no cap, 11,900 and 1,500 with
  both caps at 30; test: 4,837)
  drawn from the real features of the sample (rows resampled with replacement within their
  split, plus noise of NOISE x each dimension's spread: no two rows are equal, and validation is not
  trivially separable, so early stopping behaves as on real data). The search
  is the configured one, run for real (no per-epoch extrapolation); training runs until early
  stopping.
* robustness: the stage run for real on the test archive here, projected by the test hours it
  scores (``robustness.max_per_speaker`` of each of test-clean's 39 speakers).
* start-up: each stage is a fresh Python process under ``dvc repro``: its imports are timed in
  a subprocess per stage and added (in-process runs above share one set of imports).

CPU seconds (this process and its reaped children: the featurize workers; not Ray's trial
workers) are printed beside wall seconds: on a loaded machine they move much less than wall
times, and they give an idle-machine estimate (printed last).

Printed: the CPU (model, AMX, AVX512-BF16 from /proc/cpuinfo's flags, and ``ONEDNN_MAX_CPU_ISA``:
``AVX512_CORE_BF16`` keeps torch's oneDNN off AMX, as on a CPU without it), each part,
``projected: N s`` (label to evaluate, no download) and ``ratio: N`` against the report's
2,280 s, and ``projected float32: N s``: the same run with the ge2e encoder in float32, as on a
CPU without bfloat16. That one is not a second run: the encoder's time per partial in float32
and at the configured precision are measured here on the same real partials (one core, best of
3, interleaved), the partials the run encodes at LibriTTS scale are counted (the recordings, their
augmented copies and the robustness conditions' test hours, at ``features.ge2e_rate``, the
training side at ``ge2e_train_rate``), and the difference, spread over featurize's workers, is
added to ``projected``. The machine is shared and noisy (2 cores; compare ratios within
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
# the stages run in this process import stages/bootstrap.py (src/ first), found beside them when run as scripts
sys.path.insert(0, str(ROOT / "stages"))
SAMPLE = str(ROOT.parent / "shared" / "data" / "librispeech-clean100-sample")  # beside the repository
REPORT_WALL_S = 2280.0  # the reference report's search, the figure every speed-up is measured against
# LibriTTS train-clean-100 + test-clean (PITFALLS.md): archive bytes and hours of audio
LIBRITTS_BYTES = 7_723_686_890 + 1_230_670_113
LIBRITTS_HOURS = 53.78 + 8.56
LIBRITTS_RATE = 24000  # Hz
LIBRITTS_UTTERANCES = 33_236 + 4_837  # train-clean-100 (about) + test-clean
LIBRITTS_TRAIN_HOURS = 53.78  # train-clean-100: the recordings that get augmented copies (but for validation's)
LIBRITTS_PER_SPEAKER = 33_236 / 247  # train-clean-100's recordings per speaker with audio
LIBRITTS_MEAN_S = LIBRITTS_HOURS * 3600 / LIBRITTS_UTTERANCES  # ~5.9 s an utterance
TEST_ROWS = 4_837  # test-clean's utterances
LIBRITTS_TRAIN_SPEAKERS = 247  # train-clean-100's speakers with audio (train and val)
NOISE = 1.0  # noise added to resampled rows, x each dimension's spread: keeps validation from being trivial
TEST_SHARE = 8.56 / LIBRITTS_HOURS  # share of speakers put in the test archive, as LibriTTS's hours
STAGES = ("label", "featurize", "tune", "train", "evaluate", "robustness")
LIBRITTS_TEST_SPEAKERS = 39  # test-clean's speakers with audio


def build_archives(sample: Path, out: Path, recordings_per_subset: int | None = None) -> dict:
    """train-clean-100.tar.gz and test-clean.tar.gz in LibriTTS layout from a folder's
    manifest.csv (path,speaker,sex): 24 kHz 16-bit wavs cut into utterances of LibriTTS's mean
    length (LIBRITTS_MEAN_S), each with its .normalized.txt and .original.txt, a .trans.tsv per
    chapter and SPEAKERS.txt, so that per-file and per-member costs scale as on LibriTTS.
    Returns sizes, hours, utterances and members."""
    import soundfile as sf

    from voicegender.audio.spectral import resample

    with open(sample / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    speakers = sorted({r["speaker"] for r in rows})
    rng = np.random.default_rng(0)
    test = set(rng.permutation(speakers)[: max(2, round(TEST_SHARE * len(speakers)))].tolist())
    info = {"bytes": 0, "seconds": 0.0, "utterances": 0, "members": 0, "first_members": []}
    piece = int(LIBRITTS_MEAN_S * LIBRITTS_RATE)
    for subset, role in (("train-clean-100", "train"), ("test-clean", "test")):
        part = [r for r in rows if (r["speaker"] in test) == (role == "test")][:recordings_per_subset]
        path = out / f"{subset}.tar.gz"
        with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as tf:
            lines = [";ID |SEX| SUBSET | MINUTES | NAME"]
            lines += [f"{r['speaker']} | {r['sex']} | {subset} | 1.0 | reader" for r in part]
            add(tf, "LibriTTS/SPEAKERS.txt", ("\n".join(sorted(set(lines))) + "\n").encode())
            for i, r in enumerate(part):
                y, sr = sf.read(sample / r["path"], dtype="float32")
                y = resample(y, sr, LIBRITTS_RATE)
                starts = list(range(0, len(y), piece))
                if len(starts) > 1 and len(y) - starts[-1] < LIBRITTS_RATE:  # no piece under 1 s
                    starts.pop()
                spk, chap = r["speaker"], f"{1000 + i}"
                folder = f"LibriTTS/{subset}/{spk}/{chap}"
                trans = []
                for k, (a, b) in enumerate(zip(starts, starts[1:] + [len(y)])):
                    uid = f"{spk}_{chap}_000000_{k:06d}"
                    pcm = io.BytesIO()
                    sf.write(pcm, y[a:b], LIBRITTS_RATE, subtype="PCM_16", format="WAV")
                    add(tf, f"{folder}/{uid}.wav", pcm.getvalue())
                    text = f"Sentence {k} of chapter {chap}, read by speaker {spk}."
                    add(tf, f"{folder}/{uid}.normalized.txt", text.encode())
                    add(tf, f"{folder}/{uid}.original.txt", text.encode())
                    trans.append(f"{uid}\t{text}\t{text}")
                    if role == "train" and len(info["first_members"]) < 2:
                        info["first_members"].append(f"{folder}/{uid}.wav")
                    info["utterances"] += 1
                    info["members"] += 3
                add(tf, f"{folder}/{spk}_{chap}.trans.tsv", ("\n".join(trans) + "\n").encode())
                info["members"] += 1
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
    return sum(
        r.ru_utime + r.ru_stime
        for r in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )


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


def label_few(archives: dict) -> tuple[float, float]:
    """The label stage on other archives (``build_archives``' result), data/ restored afterwards."""
    saved = {p: p.read_bytes() for p in (Path("data/raw/corpus.json"), Path("data/labels.csv"))}
    try:
        write_corpus_json(archives)
        return run_stage("label")
    finally:
        for p, data in saved.items():
            p.write_bytes(data)


def write_corpus_json(archives: dict) -> None:
    Path("data/raw/corpus.json").write_text(
        json.dumps(
            {
                "corpus": "libritts",
                "sources": [
                    {"role": "train", "subset": "train-clean-100", "path": archives["train"]},
                    {"role": "test", "subset": "test-clean", "path": archives["test"]},
                ],
            }
        )
    )


def featurize_without_copies() -> tuple[float, float]:
    """The featurize stage with features.augment.copies 0 (params.yaml restored afterwards)."""
    import yaml

    path = Path("params.yaml")
    text = path.read_text()
    params = yaml.safe_load(text)
    params["features"]["augment"]["copies"] = 0
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        return run_stage("featurize")
    finally:
        path.write_text(text)


def used_per_speaker(params) -> float:
    """Recordings of a train-clean-100 speaker that train or val use: LibriTTS's mean (~135) or
    ``data.max_per_speaker`` if lower."""
    cap = params.data.max_per_speaker
    return LIBRITTS_PER_SPEAKER if cap is None else min(float(cap), LIBRITTS_PER_SPEAKER)


def libritts_featurized_hours(params) -> dict:
    """Hours of recordings (not copies) featurize reads on LibriTTS: test-clean's all, and of
    train-clean-100's the share ``data.max_per_speaker`` keeps."""
    train = LIBRITTS_TRAIN_HOURS * used_per_speaker(params) / LIBRITTS_PER_SPEAKER
    return {
        "train": train,
        "test": LIBRITTS_HOURS - LIBRITTS_TRAIN_HOURS,
        "total": train + LIBRITTS_HOURS - LIBRITTS_TRAIN_HOURS,
    }


def libritts_rows(params) -> dict:
    """Feature rows per split a LibriTTS run gives: train (with its copies), val and test."""
    used = used_per_speaker(params)
    aug = params.features.augment
    copied = used if aug.max_per_speaker is None else min(used, float(aug.max_per_speaker))
    train_speakers = LIBRITTS_TRAIN_SPEAKERS * (1 - params.data.val_fraction)
    return {
        "train": round(train_speakers * (used + aug.copies * copied)),
        "val": round(LIBRITTS_TRAIN_SPEAKERS * params.data.val_fraction * used),
        "test": TEST_ROWS,
    }


def labelled_hours() -> float:
    """Hours of the recordings data/labels.csv lists (what featurize reads here)."""
    from voicegender.corpora.labels import read_labels

    return sum(r["seconds"] for r in read_labels("data/labels.csv")) / 3600


def copy_hours(params) -> dict:
    """Hours of augmented copies featurize makes here (from data/labels.csv) and would make on
    LibriTTS: its training hours but for the validation speakers' share, times the share of a
    speaker's recordings used under ``data.max_per_speaker`` and copied under
    ``features.augment.max_per_speaker`` (of LibriTTS's mean of ~135 a speaker)."""
    from voicegender.audio.augment import recordings_to_augment
    from voicegender.corpora.labels import read_labels

    aug = params.features.augment
    train = [r for r in read_labels("data/labels.csv") if r["split"] == "train"]
    chosen = recordings_to_augment(train, aug.max_per_speaker, aug.seed)
    sample_h = aug.copies * sum(float(r["seconds"]) for r in train if r["id"] in chosen) / 3600
    caps = [c for c in (params.data.max_per_speaker, aug.max_per_speaker) if c is not None]
    share = min([1.0] + [c / LIBRITTS_PER_SPEAKER for c in caps])
    libritts_h = aug.copies * LIBRITTS_TRAIN_HOURS * (1 - params.data.val_fraction) * share
    how = f"{aug.copies} x {1 - params.data.val_fraction:.0%} of {LIBRITTS_TRAIN_HOURS} h" + (
        "" if not caps else f" x min(1, {min(caps)} / {LIBRITTS_PER_SPEAKER:.0f} recordings a speaker)"
    )
    return {"sample_h": sample_h, "libritts_h": libritts_h, "how": how}


def robustness_scale(params) -> dict:
    """How the robustness stage scales to LibriTTS: by the test hours it scores (every condition
    scores the same recordings), at most ``robustness.max_per_speaker`` of each of test-clean's
    39 speakers (~124 recordings each) against this run's test split."""
    import csv

    with open("data/labels.csv", newline="", encoding="utf-8") as f:
        test = [r for r in csv.DictReader(f) if r["split"] == "test"]
    cap = params.robustness.max_per_speaker
    per_speaker = TEST_ROWS / LIBRITTS_TEST_SPEAKERS if cap is None else min(cap, TEST_ROWS / LIBRITTS_TEST_SPEAKERS)
    libritts_s = LIBRITTS_TEST_SPEAKERS * per_speaker * LIBRITTS_MEAN_S
    here_s = sum(float(r["seconds"]) for r in test)
    return {
        "scale": libritts_s / here_s,
        "libritts_s": libritts_s,
        "how": f"{libritts_s / 3600:.2f} h x {len(params.robustness.conditions)} conditions on LibriTTS",
    }


def cpu_description() -> str:
    """The CPU model and whether its flags (/proc/cpuinfo) include AMX and AVX512-BF16, with
    ``ONEDNN_MAX_CPU_ISA`` (which limits what torch's oneDNN uses, whatever the flags say)."""
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown CPU":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        import platform

        model = platform.processor() or model
    amx = sorted(f for f in flags if f.startswith("amx"))
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA")
    return (
        f"CPU: {model}; AMX: {'yes (' + ', '.join(amx) + ')' if amx else 'no'}; "
        f"AVX512-BF16: {'yes' if 'avx512_bf16' in flags else 'no'}; "
        f"ONEDNN_MAX_CPU_ISA={isa or '(unset: all the CPU has)'}"
    )


def encoder_partials(params, copies: dict, scored: dict) -> dict:
    """Partial utterances the ge2e encoder gets at LibriTTS scale, from this run's density (partials
    per second of audio of the archive's recordings, at ``features.ge2e_rate`` and, for the training
    side, ``ge2e_train_rate``): the recordings, their augmented copies, and the robustness
    stage's conditions over the test hours it scores (at ``ge2e_rate``)."""
    from voicegender.corpora.labels import read_labels
    from voicegender.features.speaker_encoder import SAMPLE_RATE, partial_starts

    cfg = params.features
    rows = read_labels("data/labels.csv")
    seconds = sum(r["seconds"] for r in rows)

    def per_s(rate: float) -> float:
        starts = (partial_starts(round(r["seconds"] * SAMPLE_RATE), rate, cfg.ge2e_min_coverage) for r in rows)
        return sum(len(s) for s in starts) / seconds

    test_per_s = per_s(cfg.ge2e_rate)
    train_per_s = test_per_s if cfg.ge2e_train_rate is None else per_s(cfg.ge2e_train_rate)
    train_h = libritts_featurized_hours(params)["train"] + copies["libritts_h"]
    return {
        "per_s": test_per_s,
        "train_per_s": train_per_s,
        "featurize": 3600 * (train_per_s * train_h + test_per_s * (LIBRITTS_HOURS - LIBRITTS_TRAIN_HOURS)),
        "robustness": test_per_s * scored["libritts_s"] * len(params.robustness.conditions),
    }


def encoder_seconds_per_partial(params, sample: Path, partials: int = 256, repeat: int = 3) -> dict:
    """Seconds per partial of the ge2e encoder on one core (its own setting), at the configured
    precision and in float32, on the same real partials (the sample's first recordings)."""
    import soundfile as sf

    from voicegender.features.kinds import encoder_device
    from voicegender.features.speaker_encoder import embed_partials, partial_mels

    cfg = params.features
    with open(sample / "manifest.csv", newline="", encoding="utf-8") as f:
        paths = [r["path"] for r in csv.DictReader(f)]
    mels, have = [], 0
    for path in paths:
        y, sr = sf.read(sample / path, dtype="float32")
        mels.append(
            partial_mels(y, sr, rate=cfg.ge2e_rate, min_coverage=cfg.ge2e_min_coverage, target_dbfs=cfg.target_dbfs)
        )
        have += len(mels[-1])
        if have >= partials:
            break
    x = np.concatenate(mels)[:partials]
    device = encoder_device(cfg.encoder_device)
    precisions = list(dict.fromkeys((cfg.ge2e_precision, "float32")))
    wall = {p: float("inf") for p in precisions}
    cpu = dict(wall)
    for p in precisions:
        embed_partials(x[:32], device=device, precision=p)  # builds the model, warms oneDNN's kernels
    for _ in range(repeat):
        for p in precisions:
            started, cpu_started = time.perf_counter(), time.process_time()
            embed_partials(x, device=device, precision=p)
            wall[p] = min(wall[p], time.perf_counter() - started)
            cpu[p] = min(cpu[p], time.process_time() - cpu_started)
    return {
        "device": device,
        "wall": {p: t / len(x) for p, t in wall.items()},
        "cpu": {p: t / len(x) for p, t in cpu.items()},
    }


def startup_s(name: str) -> float:
    """A fresh interpreter importing what stages/<name>.py imports (its main() not run)."""
    stages = str(ROOT / "stages")  # on sys.path as when the stage runs as a script (it imports bootstrap)
    code = (
        f"import runpy, sys; sys.path.insert(0, {stages!r}); "
        f"runpy.run_path({str(ROOT / 'stages' / (name + '.py'))!r}, run_name='imports_only')"
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ.copy())
    return time.perf_counter() - started


def enlarge_features(directory: Path, seed: int, sizes: dict) -> dict:
    """Replace each split's arrays by ``sizes`` (LibriTTS-sized) rows drawn from its real rows (see above)."""
    from voicegender.features.store import load_features, save_features

    rng = np.random.default_rng(seed)
    for split, n in sizes.items():
        d = load_features(directory, split)
        pick = rng.integers(0, len(d["X"]), n)
        spread = d["X"].std(axis=0, keepdims=True) + 1e-6
        X = d["X"][pick] + NOISE * spread * rng.standard_normal((n, *d["X"].shape[1:])).astype(np.float32)
        save_features(
            directory,
            split,
            X,
            d["y"][pick],
            [f"{d['ids'][i]}-{k}" for k, i in enumerate(pick)],
            list(d["speakers"][pick]),
        )
    return sizes


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--sample", default=SAMPLE, help="real speech: a folder with manifest.csv (path,speaker,sex)")
    ap.add_argument("--keep", help="scratch folder to keep (default: a temporary one, removed)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)

    import voicegender

    print(cpu_description(), flush=True)
    print(
        f"voicegender from {Path(voicegender.__file__).parent}; {os.cpu_count()} cores; "
        f"load average {os.getloadavg()[0]:.1f} at start (other users' work shares the machine)",
        flush=True,
    )
    work = Path(args.keep or tempfile.mkdtemp(prefix="vg-pipeline-"))
    work.mkdir(parents=True, exist_ok=True)
    started_in = os.getcwd()
    try:
        (work / "data" / "raw").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.params, work / "params.yaml")
        t = time.perf_counter()
        archive = build_archives(Path(args.sample), work / "data" / "raw")
        hours = archive["seconds"] / 3600
        print(
            f"archives: {archive['utterances']} utterances ({archive['members']} members; LibriTTS ~"
            f"{LIBRITTS_UTTERANCES * 3 / LIBRITTS_HOURS * hours:.0f} for as many hours), {hours:.3f} h, {archive['bytes'] / 1e6:.1f} MB "
            f"({archive['bytes'] / hours / 1e6:.0f} MB/h; LibriTTS {LIBRITTS_BYTES / LIBRITTS_HOURS / 1e6:.0f} MB/h), "
            f"built in {time.perf_counter() - t:.0f} s (not timed)",
            flush=True,
        )
        (work / "tiny").mkdir(exist_ok=True)
        tiny = build_archives(Path(args.sample), work / "tiny", recordings_per_subset=1)
        os.chdir(work)
        write_corpus_json(archive)
        from voicegender.params import load_params

        params = load_params("params.yaml")
        print(
            f"configuration: features.kind={params.features.kind} model.name={params.model.name} "
            f"tune: {params.tune.num_samples} trials over {', '.join(params.tune.space)}",
            flush=True,
        )
        wall, cpu = {}, {}
        wall["label"], cpu["label"] = run_stage("label")
        label_fixed = label_few(tiny)
        print(f"label fixed cost: {label_fixed[0]:.1f} s ({tiny['utterances']} utterances)", flush=True)
        cold = featurize_few(archive["first_members"])
        wall["featurize"], cpu["featurize"] = run_stage("featurize")
        warm = featurize_few(archive["first_members"])
        print(f"featurize fixed cost: {cold[0]:.1f} s cold, {warm[0]:.1f} s warm (2 utterances)", flush=True)
        copies = copy_hours(params)
        featurized = {"libritts": libritts_featurized_hours(params), "here_h": labelled_hours()}
        print(
            f"recordings featurized: {featurized['here_h']:.3f} h here, {featurized['libritts']['total']:.1f} h on "
            f"LibriTTS (test {featurized['libritts']['test']:.2f} h, train and val {featurized['libritts']['train']:.1f} "
            f"h: {used_per_speaker(params):.0f} of ~{LIBRITTS_PER_SPEAKER:.0f} recordings a speaker, "
            f"data.max_per_speaker {params.data.max_per_speaker})",
            flush=True,
        )
        originals = featurize_without_copies() if copies["sample_h"] else (wall["featurize"], cpu["featurize"])
        print(
            f"featurize without the augmented copies: {originals[0]:.1f} s; copies: {copies['sample_h']:.3f} h here, "
            f"{copies['libritts_h']:.1f} h on LibriTTS ({copies['how']})",
            flush=True,
        )
        run_stage("featurize")  # the full features again, for the stages below
        sizes = enlarge_features(work / "data" / "features", params.data.seed, libritts_rows(params))
        print(f"features enlarged to {sizes} rows", flush=True)
        for name in ("tune", "train", "evaluate", "robustness"):
            wall[name], cpu[name] = run_stage(name)
        scored = robustness_scale(params)
        if params.features.kind == "ge2e":
            counted = encoder_partials(params, copies, scored)
            per_partial = encoder_seconds_per_partial(params, Path(args.sample))
        scale = {
            "label": LIBRITTS_BYTES / archive["bytes"],
            "featurize": featurized["libritts"]["total"] / featurized["here_h"],
            "tune": 1.0,
            "train": 1.0,
            "evaluate": 1.0,
            "robustness": scored["scale"],
        }
        start = {name: startup_s(name) for name in STAGES}
    finally:
        os.chdir(started_in)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    projected = {name: wall[name] * scale[name] + start[name] for name in STAGES}
    # the recordings scale by audio hours, their augmented copies by the copies' hours
    copy_scale = copies["libritts_h"] / copies["sample_h"] if copies["sample_h"] else 0.0
    projected["featurize"] = (
        cold[0]
        + (originals[0] - warm[0]) * scale["featurize"]
        + (wall["featurize"] - originals[0]) * copy_scale
        + start["featurize"]
    )
    projected["label"] = label_fixed[0] + (wall["label"] - label_fixed[0]) * scale["label"] + start["label"]
    cpu_projected = {name: cpu[name] * scale[name] for name in STAGES}
    cpu_projected["featurize"] = (
        cold[1] + (originals[1] - warm[1]) * scale["featurize"] + (cpu["featurize"] - originals[1]) * copy_scale
    )
    cpu_projected["label"] = label_fixed[1] + (cpu["label"] - label_fixed[1]) * scale["label"]
    total = sum(projected.values())
    how = {
        "label": f"x{scale['label']:.0f} by archive bytes",
        "featurize": f"x{scale['featurize']:.0f} by audio hours, copies x{copy_scale:.0f} by their hours",
        "tune": "full size, run for real",
        "train": "full size, until early stopping",
        "evaluate": "full size",
        "robustness": f"x{scale['robustness']:.0f} by the test hours scored ({scored['how']})",
    }
    print(
        f"\n{'part':<10} {'measured s':>10} {'projected s':>12} {'CPU s':>8} {'proj. CPU s':>11}"
        "  (projection; + stage start-up s)"
    )
    for name in STAGES:
        print(
            f"{name:<10} {wall[name]:>10.1f} {projected[name]:>12.1f} {cpu[name]:>8.1f} {cpu_projected[name]:>11.1f}"
            f"  ({how[name]}; +{start[name]:.1f})"
        )
    featurized_h = featurized["libritts"]["total"] + copies["libritts_h"]
    x_rt = featurized_h * 3600 / (projected["featurize"] - start["featurize"])
    print(
        f"featurize throughput: {x_rt:.0f}x real time ({featurized_h:.1f} h of recordings and copies; "
        "24 kHz archives, all cores)"
    )
    print(f"projected: {total:.0f} s")
    print(f"ratio: {REPORT_WALL_S / total:.1f}")
    cores = os.cpu_count() or 1
    # What an idle machine would take: the serial stages' CPU time, featurize's spread over every
    # core, and the search's wall time (Ray's workers are not this process's children: their CPU
    # time is not counted; its trials already run one per core)
    idle = {
        "label": cpu_projected["label"],
        "featurize": cpu_projected["featurize"] / cores,
        "tune": wall["tune"],
        "train": cpu_projected["train"],
        "evaluate": cpu_projected["evaluate"],
        "robustness": cpu_projected["robustness"] / cores,
    }
    idle_total = sum(idle.values()) + sum(start.values())
    print(
        "idle estimate: "
        + ", ".join(f"{k} {v:.0f}" for k, v in idle.items())
        + f", start-up {sum(start.values()):.0f}: {idle_total:.0f} s (label, train, evaluate: their CPU s; "
        f"featurize: CPU s / {cores} cores; tune: wall s)"
    )
    total_f32 = total
    if params.features.kind == "ge2e":
        from voicegender.runtime import resolve_n_jobs

        workers = resolve_n_jobs(params.features.n_jobs) if per_partial["device"] == "cpu" else 1
        n_partials = counted["featurize"] + counted["robustness"]
        prec = params.features.ge2e_precision
        extra = {k: n_partials * (t["float32"] - t[prec]) / workers for k, t in per_partial.items() if k != "device"}
        total_f32 = total + extra["wall"]
        rates = ", ".join(f"{p} {1 / t:.0f} ({1 / per_partial['cpu'][p]:.0f})" for p, t in per_partial["wall"].items())
        print(
            f"ge2e encoder on {per_partial['device']}, one worker: {rates} partials/s (wall; CPU time); "
            f"LibriTTS scale: {counted['featurize']:,.0f} partials in featurize + {counted['robustness']:,.0f} "
            f"in robustness ({counted['per_s']:.2f} a second of audio at ge2e_rate {params.features.ge2e_rate}, "
            f"training side {counted['train_per_s']:.2f}), "
            f"on {workers} workers"
        )
        print(
            f"projected float32: {total_f32:.0f} s (projected + partials x (float32 - {prec} wall s a partial) "
            f"/ {workers} workers; idle estimate float32: {idle_total + extra['cpu']:.0f} s, by CPU s a partial)"
        )
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "measured_s": wall,
                    "cpu_s": cpu,
                    "cpu_projected_s": cpu_projected,
                    "idle_estimate_s": idle,
                    "idle_estimate_total_s": idle_total,
                    "featurize_fixed_s": {"cold": cold, "warm": warm},
                    "featurize_without_copies_s": originals,
                    "copies": copies,
                    "featurized_hours": featurized,
                    "libritts_rows": sizes,
                    "scale": scale,
                    "startup_s": start,
                    "projected_s": projected,
                    "projected_total_s": total,
                    "projected_float32_total_s": total_f32,
                    "idle_estimate_float32_total_s": idle_total
                    + (extra["cpu"] if params.features.kind == "ge2e" else 0.0),
                    "label_fixed_s": label_fixed,
                    "ratio": REPORT_WALL_S / total,
                    "archive": archive,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
