"""Feature-extraction throughput: the report's librosa pipeline vs voicegender.features.kinds.

Everything is timed in one run on the same files, interleaved ``--repeat`` times (best run kept),
so the ratios are meaningful even on a busy machine; absolute wall figures are not. Throughput is
"x real time": seconds of audio per second. Each row gets three figures:

* wall      measured wall time (other users' load included);
* CPU       audio seconds per CPU second of this process and its workers (getrusage, children
            included): what one core delivers, nearly independent of the load;
* idle      the projection for this machine idle: CPU x-real-time times the processes used
            (n_jobs for "all cores" rows). Not given for the report pipeline, whose librosa runs
            BLAS threads: its wall figure is used instead (62 h column, CPU ratios).

"ours" rows go over the files ``--passes`` times (default 4) in one ``extract_many`` call and are
reported per pass: the featurize stage makes one call over a whole corpus, so its worker pool starts
once per ~38,000 LibriTTS files, not once per 251; with one pass, start-up (~0.1 s) would be ~10 %
of the figure. ``--passes 1`` shows the single-call figure.

    PYTHONPATH=src python benchmarks/featurize.py                       # the real 16 kHz flac sample
    PYTHONPATH=src python benchmarks/featurize.py --generate 300        # LibriTTS-like 24 kHz wavs
    PYTHONPATH=src python benchmarks/featurize.py --wav-dir /tmp/w      # a folder of wavs
    PYTHONPATH=src python benchmarks/featurize.py --rich --accuracy     # + richer kinds, + which kind separates F/M

``--accuracy`` needs the sample's manifest.csv (path,speaker,sex) next to its audio folder: it fits a
standardised logistic regression per kind with speaker-disjoint 5-fold CV (GroupKFold).

Goals (the issue): ours mean_mel at the native rate >= 5x the report pipeline and >= 4,000x real
time on this 2-core machine; values within max|ours - librosa| / max|librosa| <= 1e-4.
"""

from __future__ import annotations

import argparse
import io
import os
import pathlib
import resource
import sys
import time

import numpy as np
import scipy.fft
import soundfile as sf

from voicegender.features import extraction
from voicegender.features import kinds as F
from voicegender.audio import spectral as S
from voicegender.audio.decode import decode_audio
from voicegender.params import FeatureSettings
from voicegender.runtime import resolve_n_jobs

DEFAULT_DIR = (
    pathlib.Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "librispeech-clean100-sample" / "audio"
)
LIBRITTS_HOURS = 53.78 + 8.56  # train-clean-100 + test-clean (~38,000 utterances, mean ~5.9 s)
GOAL_RATIO, GOAL_RT = 5.0, 4000.0


def generated_wavs(n: int, sr: int = 24000, seed: int = 0) -> list[tuple[str, bytes]]:
    """LibriTTS-like items: 24 kHz mono 16-bit wavs of 1-10.6 s (mean 5.8 s, as train-clean-100)
    of a pitch-varying harmonic voice with a little noise."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        seconds = rng.uniform(1.0, 10.6)
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


def cpu_seconds() -> float:
    """CPU time (user + system) of this process plus its terminated, waited-for children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure(fn) -> tuple[float, float, object]:
    """(wall s, CPU s incl. worker processes, result); pools must be closed when fn returns."""
    c0, t0 = cpu_seconds(), time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, cpu_seconds() - c0, out


def fft_floor(items: list[tuple[str, bytes]], n_fft: int = 2048, hop: int = 512) -> None:
    """Decode + one float32 rfft per centred frame, nothing else: the floor of any exact method."""
    for _, data in items:
        y, _ = decode_audio(data)
        for frames in S._frame_blocks(y, n_fft, hop, S._BLOCK_FRAMES):
            scipy.fft.rfft(frames, axis=-1, workers=1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument(
        "--dir", type=pathlib.Path, default=DEFAULT_DIR, help="folder of flac/wav files (default: the real sample)"
    )
    src.add_argument("--wav-dir", type=pathlib.Path, help="folder of wav files, e.g. LibriTTS-like 24 kHz")
    src.add_argument("--generate", type=int, metavar="N", help="generate N LibriTTS-like 24 kHz wavs in memory")
    ap.add_argument("--limit", type=int, default=None, help="use at most this many files")
    ap.add_argument("--n-jobs", type=int, default=-1)
    ap.add_argument("--repeat", type=int, default=3, help="interleaved timing rounds; the best round is kept")
    ap.add_argument(
        "--passes",
        type=int,
        default=4,
        help="ours goes over the files this many times in one extract_many call, as featurize makes "
        "one call over a whole corpus: the worker pool starts once per pass set (figures per pass)",
    )
    ap.add_argument("--rich", action="store_true", help="also time the richer kinds")
    ap.add_argument("--accuracy", action="store_true", help="also: logistic-regression CV accuracy per kind")
    args = ap.parse_args(argv)

    items = generated_wavs(args.generate) if args.generate else load_dir(args.wav_dir or args.dir, args.limit)
    seconds = sum(sf.info(io.BytesIO(b)).duration for _, b in items)
    rates = sorted({sf.info(io.BytesIO(b)).samplerate for _, b in items})
    n_jobs = resolve_n_jobs(args.n_jobs)
    print(
        f"{len(items)} files, {seconds / 60:.1f} min of audio at {rates} Hz; ours on {n_jobs} processes, "
        f"{args.passes} passes per call (figures per pass); "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )

    def ours(rate, jobs):
        def run():
            out = list(
                extraction.extract_many(
                    iter(items * args.passes), FeatureSettings(kind="mean_mel", sample_rate=rate), n_jobs=jobs
                )
            )
            assert all(err is None for _, _, err in out), [e for _, _, e in out if e]
            features = np.stack([x for _, x, _ in out])
            first = features[: len(items)]
            assert all(
                first.tobytes() == features[k * len(items) : (k + 1) * len(items)].tobytes() for k in range(args.passes)
            ), "a pass gave different features"
            return first

        return run

    def report(sr):
        return lambda: np.stack([F.mean_mel_reference(data, sr=sr) for _, data in items])

    # (name, fn, processes it runs on)
    pipelines = [
        ("report-style librosa, 22050 Hz, 1 process", report(22050), 1),
        ("report-style librosa, native rate, 1 process", report(None), 1),
        ("ours mean_mel, native rate, all cores", ours("native", args.n_jobs), n_jobs),
        ("ours mean_mel, 22050 Hz, all cores", ours(22050, args.n_jobs), n_jobs),
        ("ours mean_mel, native rate, 1 process", ours("native", 1), 1),
        ("ours mean_mel, 22050 Hz, 1 process", ours(22050, 1), 1),
        ("decode only, 1 process", lambda: [decode_audio(b) for _, b in items], 1),
        ("floor: decode + 1 FFT/frame, 1 process", lambda: fft_floor(items), 1),
    ]
    ours("native", args.n_jobs)()  # warm up: imports, filterbank caches, soxr
    best: dict[str, tuple[float, float]] = {}
    results: dict[str, object] = {}
    for _ in range(args.repeat):  # interleaved, so that load changes hit every pipeline alike
        for name, fn, _procs in pipelines:
            wall, cpu, out = measure(fn)
            if name.startswith("ours mean_mel"):  # per pass over the files
                wall, cpu = wall / args.passes, cpu / args.passes
            w0, c0 = best.get(name, (np.inf, np.inf))
            best[name] = (min(w0, wall), min(c0, cpu))
            if isinstance(out, np.ndarray):
                prev = results.setdefault(name, out)
                assert prev.tobytes() == out.tobytes(), f"{name}: output differs between runs"

    base_wall, base_cpu = best[pipelines[0][0]]
    print(f"\nbest of {args.repeat} interleaved rounds. ratio = report-style 22050 Hz / this: wall time, CPU time")
    print(f"{'pipeline':<46} {'wall':>7} {'CPU':>7} {'idle':>7}  {'ratio':>6} {'ratio':>6}  {'62 h':>9}")
    print(f"{'':<46} {'x RT':>7} {'x RT':>7} {'x RT':>7}  {'wall':>6} {'CPU':>6}  {'idle':>9}")
    idle = {}
    for name, _fn, procs in pipelines:
        wall, cpu = best[name]
        mine = not name.startswith("report")  # librosa's BLAS threads: its wall is its idle figure
        idle[name] = procs * seconds / cpu if mine else seconds / wall
        print(
            f"{name:<46} {seconds / wall:>7.0f} {seconds / cpu:>7.0f} {f'{idle[name]:.0f}' if mine else '-':>7}  "
            f"{base_wall / wall:>6.1f} {base_cpu / cpu:>6.1f}  {LIBRITTS_HOURS * 3600 / idle[name] / 60:>5.1f} min"
        )

    # byte-identical across n_jobs; precision vs the report pipeline on every file
    assert results[pipelines[2][0]].tobytes() == results[pipelines[4][0]].tobytes(), "n_jobs changed the output"
    assert results[pipelines[3][0]].tobytes() == results[pipelines[5][0]].tobytes(), "n_jobs changed the output"
    print(
        "\nprecision vs report-style, worst file: criterion max|d|/max|ref|; per element: all bands / bands within 60 dB"
    )
    for ours_name, ref_name, label in (
        (pipelines[3][0], pipelines[0][0], "22050 Hz"),
        (pipelines[2][0], pipelines[1][0], "native"),
    ):
        a, b = results[ours_name].astype(np.float64), results[ref_name].astype(np.float64)
        d = np.abs(a - b)
        crit = (d.max(axis=1) / b.max(axis=1)).max()
        per = d / np.maximum(b, 1e-300)
        audible = b >= b.max(axis=1, keepdims=True) * 1e-6
        print(
            f"  {label:<9} criterion {crit:.1e}   per element {per.max():.1e} / {per[audible].max():.1e}"
            f"   -> {'OK' if crit <= 1e-4 else 'FAIL'} (<= 1e-4)"
        )

    goal, goal22 = pipelines[2][0], pipelines[3][0]
    wall_rt = seconds / best[goal][0]
    ratio_wall, ratio_cpu = base_wall / best[goal][0], base_cpu / best[goal][1]
    print(f"\nratio: {ratio_wall:.1f} (ours native, all cores, vs report-style 22050 Hz: wall, same run)")
    print(f"ratio: {ratio_cpu:.1f} (the same in CPU time)")
    print(f"goal ratio >= {GOAL_RATIO:.0f}: {'met' if min(ratio_wall, ratio_cpu) >= GOAL_RATIO else 'NOT met'}")
    single = idle[pipelines[4][0]] * n_jobs  # 1-process CPU rate times the processes: perfect scaling
    print(
        f"goal >= {GOAL_RT:,.0f}x real time (native, {n_jobs} processes): wall {wall_rt:,.0f}x measured at load "
        f"{os.getloadavg()[0]:.1f}; idle projection {idle[goal]:,.0f}x from the all-cores run's CPU time, "
        f"{single:,.0f}x from 1-process CPU time x {n_jobs} -> {'met' if min(idle[goal], single) >= GOAL_RT else 'NOT met'}"
    )
    print(f"  (floor, decode + 1 FFT/frame, 1-process CPU time x {n_jobs}: {idle[pipelines[7][0]] * n_jobs:,.0f}x)")
    print(
        f"22050 Hz: wall {seconds / best[goal22][0]:,.0f}x; idle projection {idle[goal22]:,.0f}x (all-cores run), "
        f"{idle[pipelines[5][0]] * n_jobs:,.0f}x (1 process x {n_jobs})"
    )
    print(
        f"LibriTTS train-clean-100 + test-clean ({LIBRITTS_HOURS:.1f} h), idle projection: ours native "
        f"{LIBRITTS_HOURS * 3600 / idle[goal] / 60:.1f} min, ours 22050 Hz {LIBRITTS_HOURS * 3600 / idle[goal22] / 60:.1f} min, "
        f"report-style {LIBRITTS_HOURS * 3600 / idle[pipelines[0][0]] / 60:.0f} min"
    )

    if args.rich:
        print(f"\n{'richer kinds (ours, all cores)':<46} {'wall':>9} {'CPU':>9} {'idle':>9}   {'62 h idle':>10}")
        for kind in ("log_mel_stats", "mfcc_stats", "pitch_stats", "pitch_mel", "log_mel_patch"):
            for rate in (22050, "native"):
                wall, cpu, _ = measure(
                    lambda: list(
                        extraction.extract_many(
                            iter(items), FeatureSettings(kind=kind, sample_rate=rate), n_jobs=args.n_jobs
                        )
                    )
                )
                rt_idle = n_jobs * seconds / cpu
                print(
                    f"{kind + ', ' + str(rate):<46} {seconds / wall:>9.0f} {seconds / cpu:>9.0f} {rt_idle:>9.0f}   "
                    f"{LIBRITTS_HOURS * 3600 / rt_idle / 60:>7.1f} min"
                )

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
            cfg = FeatureSettings(kind=kind, sample_rate=rate)
            X = np.stack([x for _, x, _ in extraction.extract_many(iter(items), cfg, n_jobs=n_jobs)])
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
