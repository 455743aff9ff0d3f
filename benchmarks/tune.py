"""Time the report's Ray Tune search (20 trials; lr, batch_size, epochs; ASHA) on generated
features the size of LibriTTS train-clean-100 (33,000 x 128 train, 6,000 val, float32).

    PYTHONPATH=src python benchmarks/tune.py [--trials 20] [--search random|tpe] [--cpus N]
                                             [--grace-period N] [--reduction-factor R]

ASHA's settings default to params.yaml's tune.asha, and the search runs with its tune.metric,
mode, cpus_per_trial and gpus_per_trial (what `dvc repro` runs), on a local Ray.

Prints the wall time, its ratio to the report's 2,280 s, the epochs in the results and those
trained (a trial whose early-stopping decision waits on earlier trials trains on meanwhile) and
the training throughput, against the compute floor of the report's CNN (~1.9 MFLOP per sample).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

import numpy as np
import torch

from voicegender.models.networks import ReportCNN
from voicegender.params import ModelSettings, SpaceEntry, load_params
from voicegender.models.tuning import TrialSettings, run_search

PARAMS = pathlib.Path(__file__).resolve().parents[1] / "params.yaml"

REPORT_WALL_S = 2280.0  # the report's 20-trial search on 2 CPUs
REPORT_SPACE = {  # the report's search, as in params.yaml's default tune.space
    "lr": SpaceEntry(type="loguniform", low=1.0e-5, high=1.0e-2),
    "batch_size": SpaceEntry(type="choice", values=[4, 8, 12, 16]),
    "epochs": SpaceEntry(type="choice", values=[10, 20]),
}
FLOP_PER_SAMPLE = 1.9e6  # report_cnn forward + backward, per example


def gaussian_features(n: int, d: int, seed: int, shift: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping Gaussian clusters (class means ``shift`` apart per dimension)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.53).astype(np.float32)  # train-clean-100 is ~53 % female
    X = rng.normal(size=(n, d)).astype(np.float32) + (shift * (2 * y - 1))[:, None].astype(np.float32)
    return X, y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--train", type=int, default=33_000, help="training examples")
    ap.add_argument("--val", type=int, default=6_000, help="validation examples")
    ap.add_argument("--search", default="random", help="random | tpe")
    ap.add_argument("--cpus", type=int, default=os.cpu_count(), help="cores the search may use")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--json", help="also write the figures to this file")
    params = load_params(PARAMS)
    tune, asha = params.tune, params.tune.asha
    ap.add_argument("--grace-period", type=int, default=asha.grace_period, help="ASHA: epochs before a stop")
    ap.add_argument(
        "--reduction-factor",
        type=float,
        default=asha.reduction_factor,
        help="ASHA: keep the best 1/R at each milestone",
    )
    args = ap.parse_args()

    X, y = gaussian_features(args.train + args.val, 128, args.seed)
    Xt, yt, Xv, yv = X[: args.train], y[: args.train], X[args.train :], y[args.train :]
    # the report's network and optimizer; no early stopping inside a trial (ASHA stops trials)
    fixed = TrialSettings(
        model=ModelSettings(name="report_cnn"),
        optimizer="adam",
        weight_decay=0.0,
        seed=args.seed,
        epochs=20,
        patience=None,
        device="cpu",
        mean=Xt.mean(0),
        std=Xt.std(0),
    )
    # numba compiles the report CNN's step on a machine's first run (~20 s) and caches it on disk:
    # compile (or load) it here, so the wall time is the search as every later run sees it
    warm = time.perf_counter()
    ReportCNN(128).hand_written_step()(torch.zeros(2, 128), torch.zeros(2))
    print(f"compiled training step ready in {time.perf_counter() - warm:.1f} s (outside the wall time)")
    started = time.perf_counter()
    result = run_search(
        Xt,
        yt,
        Xv,
        yv,
        space=REPORT_SPACE,
        fixed=fixed,
        num_samples=args.trials,
        metric=tune.metric,
        mode=tune.mode,
        search=args.search,
        seed=args.seed,
        grace_period=args.grace_period,
        reduction_factor=args.reduction_factor,
        cpus_per_trial=tune.cpus_per_trial,
        gpus_per_trial=tune.gpus_per_trial,
        address=None,  # a local Ray (unless RAY_ADDRESS names a cluster)
        storage_path=None,  # a temporary folder, removed afterwards
        connect_timeout_s=params.ray.connect_timeout_s,
        log=lambda m: print(m, flush=True),
    )
    wall = time.perf_counter() - started
    trials = result["trials"]
    epochs = sum(t["epochs_run"] for t in trials)
    trained = result.get("epochs_trained", epochs)  # + epochs past a milestone whose decision was stop
    samples = trained * args.train
    per_core = samples / wall / args.cpus
    floor_s = samples * FLOP_PER_SAMPLE / 1e9  # seconds at 1 GFLOP/s, for scale
    best = result["best"]
    figures = {
        "wall_s": round(wall, 1),
        "trials": len(trials),
        "failed": sum(bool(t["error"]) for t in trials),
        "speedup_vs_report": round(REPORT_WALL_S / wall, 1),
        "epochs_total": epochs,
        "epochs_trained": trained,
        "samples_per_s_per_core": round(per_core),
        "gflop_per_s_per_core": round(floor_s / wall / args.cpus, 2),
        "best_val_accuracy": round(best["val_accuracy"], 4),
        "best_val_loss": round(best["val_loss"], 4),
        "best_config": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in best["config"].items()},
        "search": args.search,
        "cpus": args.cpus,
        "asha": {"grace_period": args.grace_period, "reduction_factor": args.reduction_factor},
    }
    print(f"wall: {wall:.1f} s")
    print(
        f"{len(trials)} trials ({figures['failed']} failed), {epochs} epochs in the results, {trained} trained "
        f"(ASHA's rule in trial order, grace period {args.grace_period}, reduction factor "
        f"{args.reduction_factor:g}, stopped the rest early)"
    )
    print(f"speed-up vs the report's {REPORT_WALL_S:.0f} s: {REPORT_WALL_S / wall:.1f}x")
    print(
        f"throughput: {per_core:,.0f} training samples/s per core "
        f"= {figures['gflop_per_s_per_core']} GFLOP/s per core at {FLOP_PER_SAMPLE / 1e6:.1f} MFLOP/sample "
        f"(one epoch = {args.train * FLOP_PER_SAMPLE / 1e9:.0f} GFLOP)"
    )
    print(f"best: val_accuracy {best['val_accuracy']:.4f} val_loss {best['val_loss']:.4f} {figures['best_config']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
