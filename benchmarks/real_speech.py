"""Every model on every feature kind, on real speech, with speaker-disjoint cross-validation.

The generated corpus tells whether the machinery works; this tells whether a feature or a model
works on real voices. Default data: the 251-speaker LibriSpeech clean-100 sample (one recording
per speaker, 16 kHz flac) in /work/shared; it is read in place, never copied into the repo.

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
import yaml

from voicegender.baselines import BASELINES, fit_baseline, proba_female
from voicegender.dataset import split_speakers
from voicegender.evaluation import choose_threshold, speaker_metrics, utterance_metrics
from voicegender.features import KINDS, extract_many, feature_shape, validate_feature_config

SAMPLE = "/work/shared/data/librispeech-clean100-sample"
NETWORKS = ("report_cnn", "cnn1d", "mlp", "cnn2d")  # torch, voicegender.models
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
    from voicegender.corpus import read_folder_manifest

    return read_folder_manifest(Path(directory) / "manifest.csv")


def featurize_rows(rows: list[dict], config: dict, cache: Path | None, n_jobs: int) -> np.ndarray:
    """Features of every row, cached in ``cache`` (outside the repository) per config."""
    key = "_".join(f"{k}={config[k]}" for k in sorted(config) if k != "n_jobs")
    digest = hashlib.sha256((key + "\n" + "\n".join(r["path"] for r in rows)).encode()).hexdigest()[:16]
    path = cache / f"{config['kind']}-{digest}.npy" if cache else None
    if path is not None and path.exists():
        return np.load(path)
    items = ((r["id"], r["data"] if "data" in r else Path(r["path"]).read_bytes()) for r in rows)
    out = []
    for uid, x, err in extract_many(items, config, n_jobs=n_jobs):
        if err:
            raise RuntimeError(f"{uid}: {err}")
        out.append(x)
    X = np.stack(out)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, X)
    return X


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


def run_one(model: str, X, y, speakers, split, params: dict, args) -> dict:
    """Fit one model on one fold; scores of the held-out fold at the validation threshold."""
    import torch

    torch.set_num_threads(1)  # two jobs in parallel on two cores
    r, k, tr, va, te = split
    seed = args.seed + 100 * r + k
    started = time.perf_counter()
    if model in SKLEARN:
        name = model.removeprefix("sk_")
        est = fit_baseline(name, params.get("baselines", {}).get(name, {}), X[tr], y[tr], seed)
        p_val, p_test = proba_female(est, X[va]), proba_female(est, X[te])
        epochs = None
    else:
        from voicegender.training import fit_standardizer
        from voicegender.models import build_model
        from voicegender.training import fit, predict_proba

        config = {**params["model"], "name": model}
        if model == "cnn2d":
            config["channels"] = args.cnn2d_channels
        mean, std = fit_standardizer(X[tr]) if args.standardize else (None, None)
        net = build_model(config, X.shape[1:], mean, std, seed=seed)
        result = fit(net, X[tr], y[tr], X[va], y[va], lr=args.lr, batch_size=args.batch_size, epochs=args.epochs,
                     seed=seed, optimizer=params["train"]["optimizer"], weight_decay=params["train"]["weight_decay"],
                     patience=params["train"]["patience"])
        p_val, p_test = predict_proba(net, X[va]), predict_proba(net, X[te])
        epochs = result.best_epoch
    t = choose_threshold(y[va], p_val)
    u = utterance_metrics(y[te], p_test, t)
    s = speaker_metrics(speakers[te], y[te], p_test, t)
    return {"repeat": r, "fold": k, "accuracy": u["accuracy"], "balanced_accuracy": u["balanced_accuracy"],
            "roc_auc": u["roc_auc"], "speaker_accuracy": s["speaker_accuracy"], "threshold": t,
            "best_epoch": epochs, "seconds": time.perf_counter() - started}


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
    lines = ["| data | features | model | accuracy | balanced acc. | ROC AUC | s/fold |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['kind']} | {r['model']} | {r['accuracy']:.3f} ± {r['accuracy_std']:.3f} | "
                     f"{r['balanced_accuracy']:.3f} ± {r['balanced_accuracy_std']:.3f} | "
                     f"{r['roc_auc']:.3f} ± {r['roc_auc_std']:.3f} | {r['seconds']:.1f} |")
    return "\n".join(lines)


def synthetic_rows(args) -> list[dict] | None:
    """The generated corpus (``voicegender.synth``, written to ``--synthetic-dir`` outside the
    repo) as rows (id, speaker, sex, path, data), or None when skipped or the generator is absent."""
    if args.synthetic_speakers <= 0:
        return None
    try:
        from voicegender.synth import generate_corpus
    except ImportError:
        print("generated corpus: voicegender.synth is not available on this branch -- skipped", file=sys.stderr)
        return None
    from voicegender.corpus import iter_audio, scan_source

    n_test = max(2, args.synthetic_speakers // 4)
    archives = generate_corpus(Path(args.synthetic_dir), train_speakers=args.synthetic_speakers - n_test,
                               test_speakers=n_test, utterances_per_speaker=args.synthetic_utterances,
                               seed=args.seed, workers=args.n_jobs, progress=False)
    rows = []
    for archive in archives.values():  # both subsets pooled: the CV below makes its own speaker splits
        utts = {u["member"]: u for u in scan_source(archive).utterances}
        for member, data in iter_audio(archive, list(utts)):
            u = utts[member]
            rows.append({"id": u["id"], "speaker": f"synth{u['speaker']}", "sex": u["sex"],
                         "path": f"{archive}::{member}", "data": data})
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sample", default=SAMPLE, help="folder with manifest.csv (path,speaker,sex)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--models", nargs="+", default=list(NETWORKS) + list(SKLEARN),
                    choices=list(NETWORKS) + list(SKLEARN), help="torch networks and sk_* scikit-learn baselines")
    ap.add_argument("--sample-rate", default="22050", help="Hz or `native` (features.sample_rate)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--lr", type=float, default=1.0e-3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--cnn2d-channels", type=int, nargs="+", default=[16, 32, 64],
                    help="cnn2d blocks (smaller than params' default: 2 CPU cores)")
    ap.add_argument("--no-standardize", dest="standardize", action="store_false",
                    help="feed the networks raw features (train.standardize=false, as the report did)")
    ap.add_argument("--synthetic-speakers", type=int, default=32, help="generated corpus speakers (0 = skip it)")
    ap.add_argument("--synthetic-utterances", type=int, default=6, help="utterances per generated speaker")
    ap.add_argument("--synthetic-dir", default="/tmp/voicegender-real-speech-synth", help="outside the repo")
    ap.add_argument("--skip-real", action="store_true", help="only the generated corpus")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--cache", default="/tmp/voicegender-real-speech-cache", help="feature cache (outside the repo)")
    ap.add_argument("--out", default="benchmarks/real_speech.json", help="per-fold results + summary")
    ap.add_argument("--resume", action="store_true", help="keep the results already in --out, run the rest")
    args = ap.parse_args(argv)
    from joblib import Parallel, delayed

    params = yaml.safe_load(Path(args.params).read_text())
    datasets = {} if args.skip_real else {"librispeech": load_sample(args.sample)}
    synth = synthetic_rows(args)
    if synth:
        datasets["generated"] = synth
        print(f"generated corpus: {len(synth)} utterances of {len({r['speaker'] for r in synth})} speakers",
              file=sys.stderr, flush=True)

    results: dict = {}
    out = Path(args.out) if args.out else None
    if out is not None and out.is_file() and args.resume:
        for f in json.loads(out.read_text())["folds"]:
            results.setdefault((f.pop("dataset"), f.pop("kind"), f.pop("model")), []).append(f)
    for dataset, rows in datasets.items():
        y = np.array([1.0 if r["sex"] == "F" else 0.0 for r in rows], dtype=np.float32)
        speakers = np.array([r["speaker"] for r in rows])
        splits = list(folds(y, speakers, args.folds, args.repeats, args.seed))
        for kind in args.kinds:
            sr = args.sample_rate if args.sample_rate == "native" else int(args.sample_rate)
            config = validate_feature_config({**{k: v for k, v in params["features"].items() if k != "n_jobs"},
                                              "kind": kind, "sample_rate": sr})
            t0 = time.perf_counter()
            X = featurize_rows(rows, config, Path(args.cache) if args.cache else None, args.n_jobs)
            print(f"{dataset} {kind}: features {X.shape} in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
            for model in args.models:
                if not applicable(model, feature_shape(config)) or (dataset, kind, model) in results:
                    continue
                t0 = time.perf_counter()
                per_fold = Parallel(n_jobs=args.n_jobs)(
                    delayed(run_one)(model, X, y, speakers, split, params, args) for split in splits)
                results[(dataset, kind, model)] = per_fold
                acc = np.array([f["balanced_accuracy"] for f in per_fold])
                print(f"  {model:<24} balanced acc {acc.mean():.3f} ± {acc.std():.3f}  "
                      f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
                save(out, results, args)  # after every model: a crash or a kill loses one model only
    save(out, results, args)
    print(table(summarize(results)))


def save(out: Path | None, results: dict, args) -> None:
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "protocol": {k: getattr(args, k) for k in ("folds", "repeats", "seed", "lr", "batch_size", "epochs",
                                                  "sample_rate", "cnn2d_channels", "standardize")},
        "summary": summarize(results),
        "folds": [{"dataset": d, "kind": k, "model": m, **f} for (d, k, m), fs in results.items() for f in fs],
    }, indent=1) + "\n")


if __name__ == "__main__":
    main()
