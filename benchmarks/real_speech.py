"""Every model on every feature kind, on real speech: within LibriSpeech and across corpora.

The generated corpus tells whether the machinery works; this tells whether a feature or a model
works on real voices. Data, read in place from ../shared/data beside the repository, never copied into it:
the 251-speaker LibriSpeech clean-100 sample (one recording per speaker, 16 kHz flac) and the
cross-corpus set (166 recordings of 29 speakers from VCTK, EmoDB, AISHELL-3, LJSpeech and
LibriSpeech dev-clean: other microphones, rooms, rates, languages).

Two measurements per (features, model):
- ``librispeech``: speaker-disjoint cross-validation on the sample (below);
- ``cross-corpus``: trained on the whole sample (20 % of its speakers per sex held out for early
  stopping and the threshold, as the pipeline does), scored once on the cross-corpus set.
Each feature kind's extraction speed (x real time, ``--n-jobs`` processes) is printed beside it.

Protocol: ``--repeats`` x ``--folds``-fold StratifiedGroupKFold over speakers (sex-stratified).
Inside each training fold, 20 % of the speakers (per sex) are held out as validation for early
stopping and the decision threshold, as the pipeline does; the held-out fold is scored once.
Reported: mean +- std over folds of accuracy, balanced accuracy, ROC AUC.
Hyperparameters come from params.yaml (``model``, ``train``, ``baselines``); learning rate and
batch size from ``--lr`` / ``--batch-size`` (the tuned values depend on the corpus).

    python benchmarks/real_speech.py                       # everything, table to stdout
    python benchmarks/real_speech.py --kinds mean_mel --models report_cnn logistic --folds 5 --repeats 1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from voicegender.evaluation.baselines import BASELINES, fit_baseline, proba_female
from voicegender.corpora.labels import split_speakers
from voicegender.evaluation.metrics import choose_threshold, speaker_metrics, utterance_metrics
from voicegender.features.extraction import extract_many
from voicegender.features.kinds import KINDS, feature_shape
from voicegender.params import FeatureSettings, Params, load_params

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # beside the repository
SAMPLE = str(SHARED / "librispeech-clean100-sample")
CROSS = str(SHARED / "cross-corpus-dev")
NETWORKS = ("linear", "report_cnn", "cnn1d", "mlp", "cnn2d")  # torch, voicegender.models.networks
SKLEARN = tuple(f"sk_{name}" for name in BASELINES)  # sk_mlp is scikit-learn's MLP, mlp the torch one


def applicable(model: str, shape: tuple[int, ...]) -> bool:
    """Whether ``model`` takes features of ``shape`` (one example)."""
    if model == "cnn2d":
        return len(shape) == 2
    if model == "report_cnn":
        return len(shape) == 1 and shape[0] % 32 == 0
    if model == "cnn1d":
        # pooling a handful of values down to length 1 leaves BatchNorm one value per channel
        # (fails on a last batch of one); a CNN over 6 pitch statistics is no question anyway
        return len(shape) == 1 and shape[0] >= 32
    if model == "sk_hist_gradient_boosting":
        # 16k flattened patch pixels make histogram boosting take minutes per fold; trees on raw
        # pixels are not the question here (the random forest still covers trees on patches)
        return len(shape) == 1
    return True


def load_sample(directory: str) -> list[dict]:
    from voicegender.corpora.folder import read_folder_manifest

    return read_folder_manifest(Path(directory) / "manifest.csv")


def cache_path(
    cache: Path | None, config: FeatureSettings, rows: list[dict], ignore: tuple[str, ...], tag: str = ""
) -> Path | None:
    """Where the features of ``rows`` under ``config`` (but for the ``ignore`` keys) are cached."""
    if cache is None:
        return None
    settings = config.model_dump()  # the same keys and values as the feature dicts the caches were keyed by
    key = "_".join(f"{k}={settings[k]}" for k in sorted(settings) if k not in ignore)
    digest = hashlib.sha256((key + "\n" + "\n".join(r["path"] for r in rows)).encode()).hexdigest()[:16]
    return cache / f"{config.kind}{tag}-{digest}.npy"


def featurize_rows(
    rows: list[dict], config: FeatureSettings, cache: Path | None, n_jobs: int
) -> tuple[np.ndarray, float]:
    """(features of every row, extraction speed in x real time), cached in ``cache`` (outside the
    repository) per config; the speed is the one measured when the features were computed."""
    path = cache_path(cache, config, rows, ignore=("n_jobs", "augment"))  # augment: training copies only
    if path is not None and path.exists() and path.with_suffix(".json").exists():
        return np.load(path), json.loads(path.with_suffix(".json").read_text())["x_real_time"]
    items = [(r["id"], r["data"] if "data" in r else Path(r["path"]).read_bytes()) for r in rows]
    seconds = sum(r["duration_s"] for r in rows) if all(r.get("duration_s") for r in rows) else None
    out = []
    started = time.perf_counter()
    for uid, x, err in extract_many(items, config, n_jobs=n_jobs):
        if err:
            raise RuntimeError(f"{uid}: {err}")
        out.append(x)
    wall = time.perf_counter() - started
    if seconds is None:
        from voicegender.audio.decode import decode_audio

        seconds = sum(len(y) / sr for y, sr in (decode_audio(d) for _, d in items))
    X, speed = np.stack(out), seconds / wall
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, X)
        path.with_suffix(".json").write_text(json.dumps({"x_real_time": speed, "n_jobs": n_jobs}) + "\n")
    return X, speed


def augmented_features(rows: list[dict], config: FeatureSettings, cache: Path | None, n_jobs: int) -> np.ndarray | None:
    """Features of ``features.augment.copies`` altered versions of every row (voicegender.audio.augment),
    shape (copies, rows, *feature); None when augmentation is off. Cached like featurize_rows."""
    aug = config.augment
    if not aug.copies:
        return None
    path = cache_path(cache, config, rows, ignore=("n_jobs",), tag="-aug")
    if path is not None and path.exists():
        return np.load(path)

    def items():  # the copies are made in the extraction workers, as the featurize stage does
        for r in rows:
            yield r["id"], r["data"] if "data" in r else Path(r["path"]).read_bytes(), r["id"], aug.copies

    X = np.zeros((aug.copies, len(rows), *feature_shape(config)), dtype=np.float32)
    index = {r["id"]: i for i, r in enumerate(rows)}
    for key, x, err in extract_many(items(), config, n_jobs=n_jobs):
        if err:
            raise RuntimeError(f"{key}: {err}")
        if isinstance(key, tuple):  # (id, k): copy k of recording id
            X[key[1] - 1, index[key[0]]] = x
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, X)
    return X


def cross_corpus_split(y: np.ndarray, speakers: np.ndarray, n_train: int, val_fraction: float, seed: int):
    """The one (repeat, fold, train, val, test) of the cross-corpus measurement: rows < n_train are
    the training corpus (its val speakers drawn as the label stage does), the rest the test corpus."""
    idx = np.arange(n_train)
    sex = {str(speakers[i]): ("F" if y[i] == 1 else "M") for i in idx}
    val_spk = split_speakers(sex, val_fraction, seed)
    is_val = np.array([str(speakers[i]) in val_spk for i in idx])
    return 0, 0, idx[~is_val], idx[is_val], np.arange(n_train, len(y))


def folds(y: np.ndarray, speakers: np.ndarray, n_folds: int, repeats: int, seed: int):
    """(repeat, fold, train_idx, val_idx, test_idx): speaker-disjoint, sex-stratified."""
    from sklearn.model_selection import StratifiedGroupKFold

    for r in range(repeats):
        cv = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed + r)
        for k, (fit_idx, test_idx) in enumerate(cv.split(np.zeros(len(y)), y, speakers)):
            sex = {str(speakers[i]): ("F" if y[i] == 1 else "M") for i in fit_idx}
            val_spk = split_speakers(sex, 0.2, seed + 1000 * r + k)
            is_val = np.array([str(speakers[i]) in val_spk for i in fit_idx])
            yield r, k, fit_idx[~is_val], fit_idx[is_val], test_idx


def run_one(model: str, X, y, speakers, split, params: Params, args, X_aug=None) -> dict:
    """Fit one model on one fold; scores of the held-out fold at the validation threshold.
    With ``X_aug`` (copies, rows, ...), the training rows' augmented copies join the training set."""
    import torch

    torch.set_num_threads(1)  # two jobs in parallel on two cores
    r, k, tr, va, te = split
    X_fit, y_fit = X[tr], y[tr]
    if X_aug is not None:
        X_fit = np.concatenate([X_fit] + [copy[tr] for copy in X_aug])
        y_fit = np.concatenate([y_fit] * (1 + len(X_aug)))
    seed = args.seed + 100 * r + k
    started = time.perf_counter()
    if model in SKLEARN:
        name = model.removeprefix("sk_")
        est = fit_baseline(name, params.baselines, X_fit, y_fit, seed=seed, n_jobs=1)
        p_val, p_test = proba_female(est, X[va]), proba_female(est, X[te])
        epochs = None
    else:
        from voicegender.models.training import fit_standardizer
        from voicegender.models.networks import build_model
        from voicegender.models.training import fit, predict_proba

        config = params.model.model_copy(
            update={"name": model, **({"channels": args.cnn2d_channels} if model == "cnn2d" else {})}
        )
        mean, std = fit_standardizer(X_fit) if args.standardize else (None, None)
        net = build_model(config, X.shape[1:], mean, std, seed=seed)
        result = fit(
            net,
            X_fit,
            y_fit,
            X[va],
            y[va],
            lr=args.lr,
            batch_size=args.batch_size,
            epochs=args.epochs,
            seed=seed,
            optimizer=params.train.optimizer,
            weight_decay=params.train.weight_decay,
            patience=params.train.patience,
            device="cpu",
        )
        p_val, p_test = predict_proba(net, X[va]), predict_proba(net, X[te])
        epochs = result.best_epoch
    t = choose_threshold(y[va], p_val)
    u = utterance_metrics(y[te], p_test, t)
    s = speaker_metrics(speakers[te], y[te], p_test, t)
    return {
        "repeat": r,
        "fold": k,
        "accuracy": u["accuracy"],
        "balanced_accuracy": u["balanced_accuracy"],
        "roc_auc": u["roc_auc"],
        "speaker_accuracy": s["speaker_accuracy"],
        "threshold": t,
        "best_epoch": epochs,
        "seconds": time.perf_counter() - started,
    }


def summarize(results: dict) -> list[dict]:
    """One row per (dataset, kind, model): mean and std over folds."""
    rows = []
    for (dataset, kind, model), per_fold in results.items():
        row = {"dataset": dataset, "kind": kind, "model": model, "folds": len(per_fold)}
        for m in ("accuracy", "balanced_accuracy", "roc_auc", "speaker_accuracy", "seconds"):
            v = np.array([f[m] for f in per_fold], dtype=float)
            row[m], row[m + "_std"] = float(np.nanmean(v)), float(np.nanstd(v))
        rows.append(row)
    return sorted(rows, key=lambda r: (r["dataset"], -r["balanced_accuracy"]))


def table(rows: list[dict]) -> str:
    lines = [
        "| data | features | model | accuracy | balanced acc. | ROC AUC | s/fold |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['kind']} | {r['model']} | {r['accuracy']:.3f} ± {r['accuracy_std']:.3f} | "
            f"{r['balanced_accuracy']:.3f} ± {r['balanced_accuracy_std']:.3f} | "
            f"{r['roc_auc']:.3f} ± {r['roc_auc_std']:.3f} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines)


def synthetic_rows(args) -> list[dict] | None:
    """The generated corpus (``voicegender.corpora.synth``, written to ``--synthetic-dir`` outside the
    repo) as rows (id, speaker, sex, path, data), or None when skipped or the generator is absent."""
    if args.synthetic_speakers <= 0:
        return None
    try:
        from voicegender.corpora.synth import generate_corpus
    except ImportError:
        print("generated corpus: voicegender.corpora.synth is not available on this branch -- skipped", file=sys.stderr)
        return None
    from voicegender.corpora.libritts import iter_audio, scan_source

    n_test = max(2, args.synthetic_speakers // 4)
    archives = generate_corpus(
        Path(args.synthetic_dir),
        train_speakers=args.synthetic_speakers - n_test,
        test_speakers=n_test,
        utterances_per_speaker=args.synthetic_utterances,
        seed=args.seed,
        workers=args.n_jobs,
        progress=False,
    )
    rows = []
    for archive in archives.values():  # both subsets pooled: the CV below makes its own speaker splits
        utts = {u["member"]: u for u in scan_source(archive).utterances}
        for member, data in iter_audio(archive, list(utts)):
            u = utts[member]
            rows.append(
                {
                    "id": u["id"],
                    "speaker": f"synth{u['speaker']}",
                    "sex": u["sex"],
                    "path": f"{archive}::{member}",
                    "data": data,
                }
            )
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sample", default=SAMPLE, help="training corpus: folder with manifest.csv (path,speaker,sex)")
    ap.add_argument("--cross", default=CROSS, help="cross-corpus test set: folder with manifest.csv ('' = skip)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument(
        "--models",
        nargs="+",
        default=list(NETWORKS) + list(SKLEARN),
        choices=list(NETWORKS) + list(SKLEARN),
        help="torch networks and sk_* scikit-learn baselines",
    )
    ap.add_argument("--sample-rate", default=None, help="Hz or `native` (default: features.sample_rate of --params)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--lr", type=float, default=1.0e-3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument(
        "--cnn2d-channels",
        type=int,
        nargs="+",
        default=[16, 32, 64],
        help="cnn2d blocks (smaller than params' default: 2 CPU cores)",
    )
    ap.add_argument(
        "--no-standardize",
        dest="standardize",
        action="store_false",
        help="feed the networks raw features (train.standardize=false, as the report did)",
    )
    ap.add_argument(
        "--no-augment",
        dest="augment",
        action="store_false",
        help="train without features.augment's altered copies of the training recordings",
    )
    ap.add_argument("--synthetic-speakers", type=int, default=0, help="generated corpus speakers (0 = skip it)")
    ap.add_argument("--synthetic-utterances", type=int, default=6, help="utterances per generated speaker")
    ap.add_argument("--synthetic-dir", default="/tmp/voicegender-real-speech-synth", help="outside the repo")
    ap.add_argument("--skip-real", action="store_true", help="only the generated corpus")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--cache", default="/tmp/voicegender-real-speech-cache", help="feature cache (outside the repo)")
    ap.add_argument("--out", default="benchmarks/real_speech.json", help="per-fold results + summary")
    ap.add_argument("--resume", action="store_true", help="keep the results already in --out, run the rest")
    ap.add_argument(
        "--readme",
        metavar="FILE",
        help="only rewrite the real-speech block of FILE (docs/real-speech.md) from --out, run nothing",
    )
    args = ap.parse_args(argv)
    if args.readme:
        previous = json.loads(Path(args.out).read_text())
        write_readme_block(Path(args.readme), wide_table(previous["summary"], previous["x_real_time"]))
        return
    from joblib import Parallel, delayed

    params = load_params(args.params)
    if args.sample_rate is None:
        args.sample_rate = str(params.features.sample_rate)
    val_fraction = float(params.data.val_fraction)
    sample = [] if args.skip_real else load_sample(args.sample)
    cross = [] if args.skip_real or not args.cross else load_sample(args.cross)
    datasets = {"librispeech": [sample]} if sample else {}
    if cross:
        datasets["cross-corpus"] = [sample, cross]  # train on the first, test on the second
    synth = synthetic_rows(args)
    if synth:
        datasets["generated"] = [synth]
        print(
            f"generated corpus: {len(synth)} utterances of {len({r['speaker'] for r in synth})} speakers",
            file=sys.stderr,
            flush=True,
        )

    results: dict = {}
    speeds: dict = {}
    out = Path(args.out) if args.out else None
    if out is not None and out.is_file() and args.resume:
        previous = json.loads(out.read_text())
        speeds = previous.get("x_real_time", {})
        for f in previous["folds"]:
            results.setdefault((f.pop("dataset"), f.pop("kind"), f.pop("model")), []).append(f)
    for dataset, parts in datasets.items():
        rows = [r for part in parts for r in part]
        y = np.array([1.0 if r["sex"] == "F" else 0.0 for r in rows], dtype=np.float32)
        speakers = np.array([r["speaker"] for r in rows])
        if len(parts) == 2:
            splits = [cross_corpus_split(y, speakers, len(parts[0]), val_fraction, args.seed)]
        else:
            splits = list(folds(y, speakers, args.folds, args.repeats, args.seed))
        for kind in args.kinds:
            sr = args.sample_rate if args.sample_rate == "native" else int(args.sample_rate)
            config = FeatureSettings.model_validate({**params.features.model_dump(), "kind": kind, "sample_rate": sr})
            blocks = []
            for part in parts:
                X_part, speed = featurize_rows(part, config, Path(args.cache) if args.cache else None, args.n_jobs)
                blocks.append(X_part)
                speeds.setdefault(kind, {})[
                    Path(part[0]["path"]).parent.name if "::" not in part[0]["path"] else "generated"
                ] = speed
            X = np.concatenate(blocks)
            X_aug = (
                augmented_features(parts[0], config, Path(args.cache) if args.cache else None, args.n_jobs)
                if args.augment
                else None
            )
            if X_aug is not None and len(parts) == 2:  # only the training corpus is augmented
                X_aug = np.concatenate([X_aug, np.zeros((len(X_aug), len(parts[1]), *X_aug.shape[2:]), np.float32)], 1)
            print(
                f"{dataset} {kind}: features {X.shape}; extraction "
                + ", ".join(f"{v:.0f}x real time" for v in speeds[kind].values()),
                file=sys.stderr,
                flush=True,
            )
            for model in args.models:
                if not applicable(model, feature_shape(config)) or (dataset, kind, model) in results:
                    continue
                t0 = time.perf_counter()
                per_fold = Parallel(n_jobs=min(args.n_jobs, len(splits)))(
                    delayed(run_one)(model, X, y, speakers, split, params, args, X_aug) for split in splits
                )
                results[(dataset, kind, model)] = per_fold
                acc = np.array([f["balanced_accuracy"] for f in per_fold])
                print(
                    f"  {model:<24} balanced acc {acc.mean():.3f} ± {acc.std():.3f}  "
                    f"({time.perf_counter() - t0:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
                save(out, results, speeds, args)  # after every model: a crash or a kill loses one model only
    save(out, results, speeds, args)
    print(table(summarize(results)))
    print()
    print(wide_table(summarize(results), speeds))


def wide_table(rows: list[dict], speeds: dict) -> str:
    """One line per (features, model): cross-corpus accuracy, balanced accuracy and ROC AUC beside
    the LibriSpeech CV balanced accuracy and the kind's extraction speed."""
    by = {(r["dataset"], r["kind"], r["model"]): r for r in rows}
    pairs = sorted(
        {(k, m) for _, k, m in by},
        key=lambda km: (
            -by.get(("cross-corpus", *km), {}).get("balanced_accuracy", 0),
            -by.get(("librispeech", *km), {}).get("balanced_accuracy", 0),
        ),
    )
    lines = [
        "| features | model | cross-corpus accuracy | cross-corpus balanced acc. | cross-corpus ROC AUC | "
        "LibriSpeech CV balanced acc. | extraction (x real time) |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(d, key, std=False):
        r = by.get((d, *km))
        if r is None:
            return "-"
        return f"{r[key]:.3f} ± {r[key + '_std']:.3f}" if std else f"{r[key]:.3f}"

    for km in pairs:
        speed = speeds.get(km[0], {})
        lines.append(
            f"| {km[0]} | {km[1]} | {cell('cross-corpus', 'accuracy')} | {cell('cross-corpus', 'balanced_accuracy')} | "
            f"{cell('cross-corpus', 'roc_auc')} | {cell('librispeech', 'balanced_accuracy', True)} | "
            f"{min(speed.values()) if speed else float('nan'):.0f} |"
        )
    return "\n".join(lines)


def write_readme_block(readme: Path, table_text: str) -> None:
    """Replace the text between the real-speech markers of ``readme`` (docs/real-speech.md) with ``table_text``."""
    start, end = "<!-- real-speech:start -->", "<!-- real-speech:end -->"
    text = readme.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{readme}: markers {start} ... {end} not found")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    note = (
        "_Written by `python benchmarks/real_speech.py --readme docs/real-speech.md` from `benchmarks/real_speech.json`. "
        "Cross-corpus: trained on the LibriSpeech sample, scored on cross-corpus-dev; CV: speaker-disjoint, "
        "5 folds x 2 repeats, mean ± std; extraction on 2 processes (the slower of the two sets)._"
    )
    readme.write_text(f"{head}{start}\n{note}\n\n{table_text}\n{end}{tail}")


def save(out: Path | None, results: dict, speeds: dict, args) -> None:
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "protocol": {
                    k: getattr(args, k)
                    for k in (
                        "folds",
                        "repeats",
                        "seed",
                        "lr",
                        "batch_size",
                        "epochs",
                        "sample_rate",
                        "cnn2d_channels",
                        "standardize",
                        "augment",
                    )
                },
                "summary": summarize(results),
                "x_real_time": speeds,
                "folds": [{"dataset": d, "kind": k, "model": m, **f} for (d, k, m), fs in results.items() for f in fs],
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
