"""Feature-extraction throughput: the report's librosa pipeline vs voicegender.features.

Everything is timed in one run on the same files, so the ratios are meaningful even on a busy
machine (absolute figures are not). Throughput is "x real time": seconds of audio per second of
wall time.

    PYTHONPATH=src python benchmarks/featurize.py                       # the real 16 kHz flac sample
    PYTHONPATH=src python benchmarks/featurize.py --wav-dir /tmp/w      # a folder of wavs
    PYTHONPATH=src python benchmarks/featurize.py --generate 200        # LibriTTS-like 24 kHz wavs
    PYTHONPATH=src python benchmarks/featurize.py --accuracy            # + which kind separates F/M

``--accuracy`` needs the sample's manifest.csv (path,speaker,sex) next to its audio folder: it fits a
standardised logistic regression per kind with speaker-disjoint 5-fold CV (GroupKFold).
"""

from __future__ import annotations

import argparse
import io
import pathlib
import sys
import time

import numpy as np
import soundfile as sf

from voicegender import features as F
from voicegender.corpus import decode_audio

DEFAULT_DIR = pathlib.Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "librispeech-clean100-sample" / "audio"
LIBRITTS_HOURS = 53.78 + 8.56  # train-clean-100 + test-clean


def generated_wavs(n: int, sr: int = 24000, seed: int = 0) -> list[tuple[str, bytes]]:
    """LibriTTS-like items: 24 kHz mono 16-bit wavs of 2-15 s of a pitch-varying harmonic voice."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        seconds = rng.uniform(2, 15)
        t = np.arange(int(seconds * sr)) / sr
        f0 = rng.uniform(90, 250) * (1 + 0.1 * np.sin(2 * np.pi * 0.5 * t))
        phase = 2 * np.pi * np.cumsum(f0) / sr
        y = sum(np.sin(k * phase) / k for k in range(1, 20)) * 0.1 * (1 + np.sin(2 * np.pi * 3 * t) ** 2)
        y = y + 0.005 * rng.standard_normal(t.size)
        buf = io.BytesIO()
        sf.write(buf, y.astype(np.float32), sr, format="WAV", subtype="PCM_16")
        items.append((f"gen{i:04d}", buf.getvalue()))
    return items


def load_dir(path: pathlib.Path, limit: int | None) -> list[tuple[str, bytes]]:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".wav", ".flac"))[:limit]
    if not files:
        sys.exit(f"no .wav/.flac files in {path}")
    return [(p.name, p.read_bytes()) for p in files]


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--dir", type=pathlib.Path, default=DEFAULT_DIR, help="folder of flac files (default: the real sample)")
    src.add_argument("--wav-dir", type=pathlib.Path, help="folder of wav files, e.g. LibriTTS-like 24 kHz")
    src.add_argument("--generate", type=int, metavar="N", help="generate N LibriTTS-like 24 kHz wavs in memory")
    ap.add_argument("--limit", type=int, default=None, help="use at most this many files")
    ap.add_argument("--n-jobs", type=int, default=-1)
    ap.add_argument("--no-rich", action="store_true", help="skip timing the richer kinds")
    ap.add_argument("--accuracy", action="store_true", help="also: logistic-regression CV accuracy per kind")
    args = ap.parse_args(argv)

    if args.generate:
        items = generated_wavs(args.generate)
    else:
        items = load_dir(args.wav_dir or args.dir, args.limit)
    seconds = sum(sf.info(io.BytesIO(b)).duration for _, b in items)
    rates = sorted({sf.info(io.BytesIO(b)).samplerate for _, b in items})
    n_jobs = F.resolve_n_jobs(args.n_jobs)
    print(f"{len(items)} files, {seconds / 60:.1f} min of audio at {rates} Hz; ours on {n_jobs} processes")

    def ours(cfg):
        out = list(F.extract_many(iter(items), cfg, n_jobs=args.n_jobs))
        assert all(err is None for _, _, err in out), [e for _, _, e in out if e]

    def report():  # one process, as the report did it
        for _, data in items:
            F.mean_mel_reference(data)

    def report_native():
        for _, data in items:
            F.mean_mel_reference(data, sr=None)

    ours({"kind": "mean_mel"})  # warm up: imports, filterbank caches, soxr
    rows = [
        ("report-style librosa, 22050 Hz, 1 process", timed(report)),
        ("report-style librosa, native rate, 1 process", timed(report_native)),
        ("ours mean_mel, 22050 Hz, all cores", timed(lambda: ours({"kind": "mean_mel", "sample_rate": 22050}))),
        ("ours mean_mel, native rate, all cores", timed(lambda: ours({"kind": "mean_mel", "sample_rate": "native"}))),
        ("ours mean_mel, native rate, 1 process", timed(lambda: list(
            F.extract_many(iter(items), {"kind": "mean_mel", "sample_rate": "native"}, n_jobs=1)))),
        ("decode only (soundfile), 1 process", timed(lambda: [decode_audio(b) for _, b in items])),
    ]
    base = rows[0][1]
    print(f"\n{'pipeline':<48} {'x real time':>12} {'ratio':>8} {'LibriTTS 62 h':>14}")
    for name, wall in rows:
        rt = seconds / wall
        print(f"{name:<48} {rt:>10.0f} x {base / wall:>7.1f}x {LIBRITTS_HOURS * 3600 / rt / 60:>11.1f} min")
    print(f"ratio: {rows[0][1] / rows[2][1]:.1f} (ours 22050 Hz vs report-style 22050 Hz)")
    print(f"ratio: {rows[0][1] / rows[3][1]:.1f} (ours native vs report-style 22050 Hz)")

    if not args.no_rich:
        print(f"\n{'richer kinds (ours, all cores)':<48} {'x real time':>12} {'LibriTTS 62 h':>14}")
        for kind in ("log_mel_stats", "mfcc_stats", "pitch_stats", "pitch_mel", "log_mel_patch"):
            for rate in (22050, "native"):
                wall = timed(lambda: ours({"kind": kind, "sample_rate": rate}))
                rt = seconds / wall
                print(f"{kind + ', ' + str(rate):<48} {rt:>10.0f} x {LIBRITTS_HOURS * 3600 / rt / 60:>11.1f} min")


    if args.accuracy:
        accuracy_per_kind(items, (args.wav_dir or args.dir).parent / "manifest.csv", args.n_jobs)


def accuracy_per_kind(items: list[tuple[str, bytes]], manifest: pathlib.Path, n_jobs: int) -> None:
    """Speaker-disjoint 5-fold CV accuracy of a logistic regression on each kind."""
    import csv

    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows = {pathlib.Path(r["path"]).name: r for r in csv.DictReader(open(manifest))}
    y = np.array([rows[i]["sex"] == "F" for i, _ in items])
    groups = np.array([rows[i]["speaker"] for i, _ in items])
    print(f"\nlogistic regression, speaker-disjoint 5-fold CV, {len(items)} files ({y.sum()} F)")
    for kind in ("mean_mel", "log_mel_stats", "mfcc_stats", "pitch_stats", "pitch_mel"):
        for rate in (22050, "native"):
            cfg = {"kind": kind, "sample_rate": rate}
            X = np.stack([x for _, x, _ in F.extract_many(iter(items), cfg, n_jobs=n_jobs)])
            if kind == "mean_mel":  # the raw power mean spans decades: also try its log
                variants = {"": X, " (log10)": np.log10(X + 1e-10)}
            else:
                variants = {"": X}
            for suffix, Xv in variants.items():
                clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
                acc = cross_val_score(clf, Xv, y, groups=groups, cv=GroupKFold(5))
                print(f"{kind + ', ' + str(rate) + suffix:<40} accuracy {acc.mean():.3f} +- {acc.std():.3f}")


if __name__ == "__main__":
    main()
