"""Hyperparameter search with Ray Tune: random search + AsyncHyperBand (ASHA).

Each trial runs :func:`voicegender.training.fit` and reports every epoch to Tune, so ASHA can
stop weak trials early. Works on the local machine or on an existing Ray cluster.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

# Ray reads these at import time: no usage stats, the classic quiet output.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")

TRAIN_KEYS = ("lr", "batch_size", "epochs")


def to_ray_space(space: dict) -> dict:
    """Turn ``{name: {type, low, high | values}}`` (params.yaml's ``tune.space``) into Ray Tune
    sampling objects. Names other than lr / batch_size / epochs are model settings."""
    from ray import tune

    out = {}
    for name, d in space.items():
        kind = d["type"]
        if kind == "loguniform":
            out[name] = tune.loguniform(d["low"], d["high"])
        elif kind == "uniform":
            out[name] = tune.uniform(d["low"], d["high"])
        elif kind == "randint":
            out[name] = tune.randint(d["low"], d["high"] + 1)  # inclusive of high, like the params say
        elif kind == "choice":
            out[name] = tune.choice(d["values"])
        else:
            raise ValueError(f"tune.space.{name}: unknown distribution {kind!r}")
    return out


def max_epochs(space: dict, default: int) -> int:
    """The most epochs any trial of ``space`` can run (ASHA's ``max_t``)."""
    d = space.get("epochs")
    if d is None:
        return default
    return int(max(d["values"]) if d["type"] == "choice" else d["high"])


def trial_settings(config: dict, fixed: dict) -> tuple[dict, dict]:
    """Split a sampled ``config`` into training settings and the model config it implies."""
    train = {k: fixed[k] for k in TRAIN_KEYS if k in fixed}
    model = dict(fixed["model"])
    for name, value in config.items():
        if name in TRAIN_KEYS:
            train[name] = value
        else:
            model[name.removeprefix("model.")] = value
    return train, model


def _trainable(config, X_train, y_train, X_val, y_val, fixed):
    """One trial: fit the model with ``config`` and report each epoch to Tune."""
    import torch
    from ray import tune

    from voicegender.models import build_model
    from voicegender.training import fit

    # one thread per trial: concurrent trials each spawning all-core BLAS pools oversubscribe the CPU
    torch.set_num_threads(max(1, int(fixed.get("threads_per_trial", 1))))
    train, model_config = trial_settings(config, fixed)
    mean, std = fixed.get("mean"), fixed.get("std")
    model = build_model(model_config, X_train.shape[1:], mean, std, seed=int(fixed["seed"]))
    fit(model, X_train, y_train, X_val, y_val,
        lr=float(train["lr"]), batch_size=int(train["batch_size"]), epochs=int(train["epochs"]),
        seed=int(fixed["seed"]), optimizer=fixed["optimizer"], weight_decay=fixed["weight_decay"],
        device=fixed.get("device", "cpu"), on_epoch=lambda record: tune.report(record))


def run_search(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    space: dict,
    fixed: dict,
    num_samples: int,
    metric: str = "val_loss",
    mode: str = "min",
    grace_period: int = 1,
    reduction_factor: float = 2,
    cpus_per_trial: float = 1.0,
    address: str | None = None,
    storage_path: str | None = None,
    seed: int = 0,
    log=print,
) -> dict:
    """Run ``num_samples`` trials sampled from ``space``; return the trials and the best one.

    ``fixed`` holds what trials share: ``model`` (config), ``optimizer``, ``weight_decay``,
    ``seed``, and defaults for any of lr / batch_size / epochs not searched. ``address`` (or the
    ``RAY_ADDRESS`` environment variable) joins an existing cluster; trial results then go to
    ``storage_path``, which must be shared storage (an NFS path or a URI such as ``s3://…``).
    Returns ``{"trials": [...], "best": {...}, "wall_s": float}``; trials are in sampling
    order, each with its ``config``, final ``val_loss`` / ``val_accuracy``, ``epochs_run``,
    per-epoch ``history`` and ``error`` (None when it finished).
    """
    import ray
    from ray import tune
    from ray.tune.schedulers import AsyncHyperBandScheduler
    from ray.tune.search import BasicVariantGenerator

    started = time.perf_counter()
    address = address or os.environ.get("RAY_ADDRESS")
    init_kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    scratch: list[str] = []  # temporary folders of ours, removed at the end
    if address:
        init_kwargs["address"] = address
    else:
        # Unix socket paths are capped at 107 bytes: keep Ray's session dir short
        scratch.append(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
        init_kwargs["_temp_dir"] = scratch[-1]
    if storage_path is None:
        scratch.append(str(Path(tempfile.mkdtemp(prefix="vg-tune-")).resolve()))
        storage_path = scratch[-1]
    ray.init(**init_kwargs)
    try:
        recorder = _Recorder(num_samples, metric, log)
        trainable = tune.with_resources(
            tune.with_parameters(_trainable, X_train=X_train, y_train=y_train,
                                 X_val=X_val, y_val=y_val, fixed=fixed),
            {"cpu": cpus_per_trial},
        )
        scheduler = AsyncHyperBandScheduler(
            time_attr="training_iteration", max_t=max_epochs(space, fixed.get("epochs", 1)),
            grace_period=grace_period, reduction_factor=reduction_factor)
        tuner = tune.Tuner(
            trainable,
            param_space=to_ray_space(space),
            tune_config=tune.TuneConfig(
                metric=metric, mode=mode, num_samples=num_samples, scheduler=scheduler,
                search_alg=BasicVariantGenerator(random_state=seed)),
            run_config=tune.RunConfig(
                name="search", storage_path=storage_path, verbose=0,
                callbacks=[recorder],
                failure_config=tune.FailureConfig(fail_fast=False)),
        )
        grid = tuner.fit()
    finally:
        ray.shutdown()
        for path in scratch:
            shutil.rmtree(path, ignore_errors=True)
    errors = {Path(r.path).name: r.error for r in grid if r.path}
    trials = []
    for trial_id, history, config in recorder.trials():
        error = next((e for name, e in errors.items() if trial_id in name), None)
        last = history[-1] if history else {}
        trials.append({
            "config": config,
            "val_loss": last.get("val_loss", math.nan),
            "val_accuracy": last.get("val_accuracy", math.nan),
            "epochs_run": len(history),
            "history": history,
            "error": None if error is None else f"{type(error).__name__}: {error}",
        })
    ok = [t for t in trials if t["error"] is None and math.isfinite(t.get(metric, math.nan))]
    if not ok:
        raise RuntimeError(f"all {len(trials)} trials failed; first error: {trials[0]['error']}")
    pick = min if mode == "min" else max
    best = pick(ok, key=lambda t: t[metric])
    return {"trials": trials, "best": best, "wall_s": time.perf_counter() - started}


HISTORY_KEYS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy")


def _Recorder(total: int, metric: str, log):
    """A Tune callback that keeps every trial's per-epoch results (no log files needed) and
    prints one line per trial event instead of Ray's pages of tables."""
    from ray.tune import Callback

    class Recorder(Callback):
        def __init__(self):
            self.history: dict[str, list[dict]] = {}
            self.configs: dict[str, dict] = {}
            self.done = 0

        def trials(self):
            """(trial_id, history, config) in sampling order (Ray's ids end in the sample index)."""
            order = sorted(self.configs, key=lambda t: int(t.rsplit("_", 1)[-1]))
            return [(t, self.history.get(t, []), self.configs[t]) for t in order]

        def on_trial_start(self, iteration, trials, trial, **info):
            self.configs[trial.trial_id] = dict(trial.config)
            log(f"[tune] start      {trial.trial_id} {_short(trial.config)}")

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.history.setdefault(trial.trial_id, []).append(
                {k: result[k] for k in HISTORY_KEYS if k in result})

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.done += 1
            last = (self.history.get(trial.trial_id) or [{}])[-1]
            log(f"[tune] {self.done:>3}/{total} done {trial.trial_id} epochs={last.get('epoch')} "
                f"{metric}={last.get(metric, float('nan')):.4f} "
                f"val_accuracy={last.get('val_accuracy', float('nan')):.4f}")

        def on_trial_error(self, iteration, trials, trial, **info):
            self.done += 1
            self.configs.setdefault(trial.trial_id, dict(trial.config))
            log(f"[tune] {self.done:>3}/{total} FAILED {trial.trial_id} {_short(trial.config)} "
                "(recorded; the search goes on)")

    return Recorder()


def _short(config: dict) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in config.items())
