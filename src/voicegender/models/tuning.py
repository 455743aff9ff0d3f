"""Hyperparameter search with Ray Tune: random search + ASHA's early stopping, decided in trial order.

Each trial runs :func:`voicegender.models.training.fit` and reports every epoch to Tune; the scheduler
stops weak trials at ASHA's milestones, deciding as if the trials had run one after another
(:class:`OrderedHalving`), so that the same search gives the same trials, epochs and results
on every run, while the trials still run concurrently. Works locally or on a Ray cluster.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np

# (cluster sets Ray's environment: no usage stats, quiet output, trial processes at normal priority)
from voicegender.cluster import (  # noqa: F401 (ClusterUnreachable, check_reachable: re-exported)
    ClusterUnreachable,
    check_reachable,
    ray_session,
    remember_ctrl_c,
    resolve_address,
)
from voicegender.errors import UserError
from voicegender.params import TRAIN_KEYS, ModelSettings, SpaceEntry

# no result files from Tune's default logger callbacks (the Recorder keeps the results)
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")


@dataclass(frozen=True)
class TrialSettings:
    """What every trial shares (the train stage's own settings): the ``model`` (a searched key
    replaces its value), ``optimizer``, ``weight_decay``, ``seed``, ``patience``, ``device``,
    ``epochs`` (and ``lr`` / ``batch_size``) for any training key the space does not search, and
    the train-split standardisation ``mean`` / ``std`` (None: none)."""

    model: ModelSettings
    optimizer: str
    weight_decay: float
    seed: int
    epochs: int
    patience: int | None
    device: str
    lr: float | None = None
    batch_size: int | None = None
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    threads_per_trial: int = 1  # set by run_search from cpus_per_trial


#: tune.space's distributions (the schema's: voicegender.params.Distribution): Ray Tune's
#: sampler of a SpaceEntry, given the ``ray.tune`` module
DISTRIBUTIONS = {
    "loguniform": lambda tune, d: tune.loguniform(d.low, d.high),
    "uniform": lambda tune, d: tune.uniform(d.low, d.high),
    "randint": lambda tune, d: tune.randint(int(d.low), int(d.high) + 1),  # inclusive of high, like the params say
    "choice": lambda tune, d: tune.choice(d.values),
}


def to_ray_space(space: dict[str, SpaceEntry]) -> dict:
    """Turn params.yaml's ``tune.space`` (``{name: SpaceEntry(type, low, high | values)}``) into Ray
    Tune sampling objects. Names other than lr / batch_size / epochs are model settings."""
    from ray import tune

    return {name: DISTRIBUTIONS[d.type](tune, d) for name, d in space.items()}


def max_epochs(space: dict[str, SpaceEntry], default: int) -> int:
    """The most epochs any trial of ``space`` can run (ASHA's ``max_t``)."""
    d = space.get("epochs")
    if d is None:
        return default
    return int(max(d.values) if d.type == "choice" else d.high)


def trial_settings(config: dict, fixed: TrialSettings) -> tuple[dict, ModelSettings]:
    """Split a sampled ``config`` into training settings and the model settings it implies
    (``fixed.model`` with the searched keys replaced)."""
    train = {k: getattr(fixed, k) for k in TRAIN_KEYS if getattr(fixed, k) is not None}
    model = {}
    for name, value in config.items():
        if name in TRAIN_KEYS:
            train[name] = value
        else:
            model[name.removeprefix("model.")] = value
    return train, fixed.model.model_copy(update=model)


def _trainable(config, X_train, y_train, X_val, y_val, fixed):
    """One trial: fit the model with ``config`` and report each epoch to Tune."""
    import torch
    from ray import tune

    from voicegender.models.networks import build_model
    from voicegender.models.training import fit, resolve_device

    # one thread per trial: concurrent trials each spawning all-core BLAS pools oversubscribe the CPU
    torch.set_num_threads(max(1, int(fixed.threads_per_trial)))
    train, model_config = trial_settings(config, fixed)
    model = build_model(model_config, X_train.shape[1:], fixed.mean, fixed.std, seed=int(fixed.seed))
    fit(
        model,
        X_train,
        y_train,
        X_val,
        y_val,
        lr=float(train["lr"]),
        batch_size=int(train["batch_size"]),
        epochs=int(train["epochs"]),
        seed=int(fixed.seed),
        optimizer=fixed.optimizer,
        weight_decay=fixed.weight_decay,
        patience=fixed.patience,
        device=resolve_device(fixed.device),
        on_epoch=lambda record: tune.report(record),
    )


def run_search(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    space: dict[str, SpaceEntry],
    fixed: TrialSettings,
    num_samples: int,
    metric: str,
    mode: str,
    search: str,
    grace_period: int,
    reduction_factor: float,
    cpus_per_trial: float,
    gpus_per_trial: float | str,
    address: str | None,
    storage_path: str | None,
    connect_timeout_s: float,
    seed: int,
    log=print,
) -> dict:
    """Run ``num_samples`` trials sampled from ``space``; return the trials and the best one.

    ``fixed`` holds what trials share (:class:`TrialSettings`). ``search`` is
    ``random`` (the report's) or ``tpe`` (Optuna's Tree-structured Parzen Estimator), both seeded
    by ``seed``. ``address`` (or the ``RAY_ADDRESS`` environment variable) joins an existing
    cluster, checked for within ``connect_timeout_s`` seconds; trial results then go to
    ``storage_path``, which must be shared storage (an NFS path or a URI such as ``s3://…``).
    Locally, ``storage_path`` None is a temporary folder, removed afterwards.
    ``gpus_per_trial`` > 0 gives each trial that share of a GPU and trains it on CUDA; ``auto``
    is :func:`resolve_gpus_per_trial` of what the Ray cluster (or this machine) has.

    Weak trials are stopped at ASHA's milestones (``grace_period``, ``reduction_factor``) by
    :class:`OrderedHalving`: decided in trial order, so with random search the same arguments give
    the same trials, epochs and results however the concurrent trials' results interleave.
    Returns :func:`collect_trials`'s ``{"trials", "best", "wall_s", "epochs_trained"}``.
    An interrupted search (Ctrl-C: KeyboardInterrupt; fewer trials finished than asked:
    :class:`SearchInterrupted`) raises, after Ray and the temporary folders are cleaned up.
    """
    started = time.perf_counter()
    address = resolve_address(address)
    session = ray_session(address or "local", connect_timeout_s, log=lambda m: log(f"tune: {m}"))
    with trial_storage(storage_path, on_cluster=address is not None) as storage, session:
        fixed, resources = place_trials(fixed, cpus_per_trial, gpus_per_trial, log)
        rule = OrderedHalving(
            grace_period=grace_period, reduction_factor=reduction_factor, max_t=max_epochs(space, fixed.epochs)
        )
        scheduler = _OrderedScheduler(rule, metric, mode)
        recorder = _Recorder(num_samples, metric, log)
        tuner = make_tuner(
            (X_train, y_train, X_val, y_val),
            fixed,
            space=space,
            num_samples=num_samples,
            metric=metric,
            mode=mode,
            searcher=make_searcher(search, seed),
            scheduler=scheduler,
            resources=resources,
            storage_path=storage,
            callbacks=[recorder],
        )
        grid = fit_uninterrupted(tuner)
    return collect_trials(
        grid,
        recorder,
        rule,
        scheduler.index,
        num_samples=num_samples,
        metric=metric,
        mode=mode,
        started=started,
        log=log,
    )


@contextlib.contextmanager
def trial_storage(storage_path: str | None, *, on_cluster: bool) -> Iterator[str]:
    """Where Tune writes the trials' results for the ``with`` block: ``storage_path`` as given
    (absolute or a URI; kept), or None: a temporary folder, removed afterwards. On a cluster the
    trials write from every node, so it must be given (shared storage)."""
    if storage_path is not None:
        if "://" not in storage_path and not os.path.isabs(storage_path):
            raise SearchSetupError(f"storage_path must be absolute or a URI, got {storage_path!r}")
        yield storage_path
        return
    if on_cluster:
        raise SearchSetupError(
            "on a cluster, trial results need shared storage: set ray.storage "
            "to a URI (s3://…, gs://…) or a path every node mounts"
        )
    scratch = str(Path(tempfile.mkdtemp(prefix="vg-tune-")).resolve())
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def place_trials(
    fixed: TrialSettings, cpus_per_trial: float, gpus_per_trial: float | str, log
) -> tuple[TrialSettings, dict]:
    """``fixed`` and the Ray resources per trial on the joined Ray: torch threads from
    ``cpus_per_trial``; the GPU share (:func:`resolve_gpus_per_trial` of the cluster's CPUs and
    GPUs), and device cuda, when it is > 0."""
    import ray

    fixed = replace(fixed, threads_per_trial=max(1, int(cpus_per_trial)))
    available = ray.cluster_resources()
    gpus = resolve_gpus_per_trial(gpus_per_trial, cpus_per_trial, available.get("CPU", 1.0), available.get("GPU", 0.0))
    if gpus == 0:
        return fixed, {"cpu": cpus_per_trial}
    log(f"tune: {gpus:.3g} GPU per trial")
    # Ray sets CUDA_VISIBLE_DEVICES to the trial's GPU
    return replace(fixed, device="cuda"), {"cpu": cpus_per_trial, "gpu": gpus}


def make_tuner(
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    fixed: TrialSettings,
    *,
    space: dict[str, SpaceEntry],
    num_samples: int,
    metric: str,
    mode: str,
    searcher,
    scheduler,
    resources: dict,
    storage_path: str,
    callbacks: list,
):
    """A Tune ``Tuner`` running :func:`_trainable` on ``data`` (X_train, y_train, X_val, y_val,
    sent to the object store once) with ``resources`` per trial, ``num_samples`` configurations
    from ``space`` drawn by ``searcher``, stopped by ``scheduler``; quiet (``callbacks`` report)."""
    from ray import tune

    X_train, y_train, X_val, y_val = data
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, X_train=X_train, y_train=y_train, X_val=X_val, y_val=y_val, fixed=fixed),
        resources,
    )
    return tune.Tuner(
        trainable,
        param_space=to_ray_space(space),
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            num_samples=num_samples,
            scheduler=scheduler,
            search_alg=searcher,
            # one worker process per concurrent trial, kept for the next trial: saves the
            # torch import and data transfer of a fresh process per trial
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name="search",
            storage_path=storage_path,
            verbose=0,
            callbacks=callbacks,
            log_to_file=False,
            failure_config=tune.FailureConfig(fail_fast=False, max_failures=0),
        ),
    )


def fit_uninterrupted(tuner):
    """``tuner.fit()``'s ResultGrid, or KeyboardInterrupt on a Ctrl-C. Tune's own SIGINT handler
    would end the search early and return normally, as if it were complete; and a
    KeyboardInterrupt can land inside Ray code that swallows it and goes on: the search may then
    even finish, but it was interrupted and records nothing. Ray's per-trial tracebacks (pages;
    the Recorder prints one line per failed trial) are kept quiet meanwhile."""
    tune_logger = logging.getLogger("ray.tune")
    level = tune_logger.level
    tune_logger.setLevel(logging.CRITICAL)
    sigint = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    try:
        with remember_ctrl_c() as interrupted:
            grid = tuner.fit()
    finally:
        tune_logger.setLevel(level)
        if sigint is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = sigint
    if interrupted.is_set():
        raise KeyboardInterrupt
    return grid


def collect_trials(
    grid,
    recorder,
    rule: OrderedHalving,
    index: dict[str, int],
    *,
    num_samples: int,
    metric: str,
    mode: str,
    started: float,
    log,
) -> dict:
    """The search's result from what the ``recorder`` saw and ``rule`` decided (``index``: trial id
    -> the rule's trial index; ``grid``: Tune's ResultGrid, for the trials' errors): ``{"trials": [...], "best": {...}, "wall_s": float,
    "epochs_trained": int}``. Trials are in sampling order, each with its ``config``, final
    ``val_loss`` / ``val_accuracy``, ``epochs_run``, per-epoch ``history`` and ``error`` (None
    when it finished); ``epochs_trained`` also counts epochs trained past a milestone whose
    decision was *stop*. ``wall_s`` counts from ``started`` (``time.perf_counter()``).
    Raises :class:`SearchInterrupted` when fewer than ``num_samples`` trials finished and
    :class:`SearchFailed` when none has a finite ``metric``."""
    finished = len(recorder.finished)
    if finished < num_samples:
        raise SearchInterrupted(
            f"the search ended after {finished} of {num_samples} trials (interrupted?): nothing was recorded"
        )
    errors = {Path(r.path).name: r.error for r in grid if r.path}
    trials, trained = [], 0
    for trial_id, history, config in recorder.trials(index):
        error = next((e for name, e in errors.items() if trial_id in name), None)
        trained += len(history)
        trials.append(_trial_result(config, history, error or recorder.errors.get(trial_id), rule, index[trial_id]))
    counted = sum(t["epochs_run"] for t in trials)
    log(
        f"tune: {counted} epochs count ({trained - counted} more trained while decisions waited on "
        f"earlier trials), {time.perf_counter() - started:.1f} s"
    )
    ok = [t for t in trials if t["error"] is None and math.isfinite(t.get(metric, math.nan))]
    if not ok:
        raise SearchFailed(
            f"all {len(trials)} trials failed; first error: {trials[0]['error']}. "
            "Check tune.space (e.g. a learning rate too high gives NaN losses)"
        )
    pick = min if mode == "min" else max
    best = pick(ok, key=lambda t: t[metric])
    return {"trials": trials, "best": best, "wall_s": time.perf_counter() - started, "epochs_trained": trained}


def _trial_result(config: dict, history: list[dict], error, rule: OrderedHalving, i: int) -> dict:
    """Trial ``i``'s entry in the result: the epochs that count under ``rule``, the last one's figures."""
    counted = rule.epochs(i)
    if counted < len(history) or (error is not None and rule.stopped(i)):
        # trained on while its decision waited on earlier trials, then stopped at a milestone:
        # the epochs after it do not count (nor an error they ran into)
        history, error = history[:counted], None
    last = history[-1] if history else {}
    return {
        "config": config,
        "val_loss": last.get("val_loss", math.nan),
        "val_accuracy": last.get("val_accuracy", math.nan),
        "epochs_run": len(history),
        "history": history,
        "error": None if error is None else _error_text(error),
    }


class SearchSetupError(UserError, ValueError):
    """The search cannot start as configured (tune.* / ray.* params)."""


class SearchFailed(UserError, RuntimeError):
    """Every trial failed."""


class SearchInterrupted(UserError, RuntimeError):
    """The search stopped before all its trials finished (Ctrl-C, a lost cluster)."""


class OrderedHalving:
    """ASHA's promotion rule, decided as if the trials ran one after another in creation order.

    Ray's AsyncHyperBand stops a trial at a milestone (``grace_period * reduction_factor**k``
    epochs) when its result is worse than the ``1 - 1/reduction_factor`` quantile of the results
    *recorded so far* at that milestone: with concurrent trials, what is recorded so far depends on
    which trial reported first, so two runs of the same search stop different trials. Here trial
    ``t``'s decision at a milestone is taken against the trials ``0 … t-1`` that reached it, exactly
    what ASHA decides when the trials run one by one, so the decisions depend on the results only.

    Trials still run concurrently: a trial whose decision waits on earlier trials keeps training
    (speculatively); if the decision turns out to be *stop*, its epochs after the milestone are
    dropped from the results (:meth:`epochs`). Pure bookkeeping, no Ray: unit-testable.
    """

    def __init__(self, *, grace_period: int, reduction_factor: float, max_t: int):
        milestones, k = [], 0
        while grace_period * reduction_factor**k < max_t:  # at max_t a trial ends anyway
            milestones.append(math.ceil(grace_period * reduction_factor**k - 1e-9))
            k += 1
        self.milestones = sorted(set(milestones))
        self.quantile = (1 - 1 / reduction_factor) * 100
        self.values: list[dict[int, float]] = []  # per trial: milestone -> reward (higher is better)
        self.last: list[int] = []  # per trial: last epoch reported
        self.finished: list[bool] = []
        self.decided: list[list[str]] = []  # per trial: "continue" / "stop" per milestone so far

    def add(self) -> int:
        """A new trial (in creation order); returns its index."""
        for lst, v in ((self.values, {}), (self.last, 0), (self.finished, False), (self.decided, [])):
            lst.append(v)
        return len(self.values) - 1

    def result(self, i: int, epoch: int, reward: float) -> None:
        self.last[i] = max(self.last[i], epoch)
        if epoch in self.milestones:
            self.values[i][epoch] = reward
        self._resolve()

    def finish(self, i: int) -> None:
        self.finished[i] = True
        self._resolve()

    def stopped(self, i: int) -> bool:
        return "stop" in self.decided[i]

    def epochs(self, i: int) -> int:
        """Epochs of trial ``i`` that count: up to the milestone where it was stopped."""
        d = self.decided[i]
        return self.milestones[len(d) - 1] if d and d[-1] == "stop" else self.last[i]

    def _reach(self, i: int, k: int) -> bool | None:
        """Does trial ``i`` (effectively) reach milestone ``k``? None: not known yet."""
        d = self.decided[i]
        if len(d) < k:  # an earlier milestone is undecided: reached (and pending) or never reached?
            return False if "stop" in d or self._reach(i, len(d)) is False else None
        if "stop" in d[:k]:
            return False
        if self.milestones[k] in self.values[i]:
            return True
        return False if self.finished[i] else None

    def _resolve(self) -> None:
        """Take every decision whose inputs are known, in trial order then milestone order."""
        progress = True
        while progress:
            progress = False
            for t in range(len(self.values)):
                k = len(self.decided[t])
                if k >= len(self.milestones) or "stop" in self.decided[t] or not self._reach(t, k):
                    continue
                earlier = [self._reach(j, k) for j in range(t)]
                if any(r is None for r in earlier):
                    continue
                m = self.milestones[k]
                recorded = [self.values[j][m] for j in range(t) if earlier[j]]
                reward = self.values[t][m]
                stop = False
                if recorded and not all(math.isnan(r) for r in recorded):
                    cutoff = float(np.nanpercentile(recorded, self.quantile))
                    stop = reward < cutoff  # NaN compares False: continue, as Ray's ASHA does
                self.decided[t].append("stop" if stop else "continue")
                progress = True


def _OrderedScheduler(rule: OrderedHalving, metric: str, mode: str):
    """A Tune scheduler applying ``rule``: trial indices in creation order, STOP when it says so."""
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler

    class OrderedScheduler(FIFOScheduler):
        _supports_buffered_results = False

        def __init__(self):
            super().__init__()
            self.index: dict[str, int] = {}
            self.sign = -1.0 if mode == "min" else 1.0

        def set_search_properties(self, metric, mode, **spec):  # metric and mode are ours already
            return True

        def on_trial_add(self, tune_controller, trial):
            self.index[trial.trial_id] = rule.add()

        def on_trial_result(self, tune_controller, trial, result):
            i = self.index[trial.trial_id]
            if "training_iteration" in result and metric in result:
                rule.result(i, int(result["training_iteration"]), self.sign * float(result[metric]))
            return TrialScheduler.STOP if rule.stopped(i) else TrialScheduler.CONTINUE

        def on_trial_complete(self, tune_controller, trial, result):
            rule.finish(self.index[trial.trial_id])

        def on_trial_error(self, tune_controller, trial):
            rule.finish(self.index[trial.trial_id])

        def on_trial_remove(self, tune_controller, trial):
            rule.finish(self.index[trial.trial_id])

        def debug_string(self) -> str:
            return "OrderedHalving (ASHA's rule in trial order)"

    return OrderedScheduler()


def resolve_gpus_per_trial(value: float | str, cpus_per_trial: float, n_cpus: float, n_gpus: float) -> float:
    """GPUs per trial: a number as given (0 = CPU only); ``auto`` shares the ``n_gpus`` GPUs
    evenly among the trials that run at once (``n_cpus / cpus_per_trial`` of them), 0 without one.
    A positive share needs a GPU: asking for one on a machine without is an error, not a wait."""
    if value == "auto":
        if n_gpus <= 0:
            return 0.0
        concurrent = max(1, int(n_cpus // cpus_per_trial))
        return n_gpus / concurrent if n_gpus < concurrent else float(int(n_gpus // concurrent))
    if value > 0 and n_gpus < min(value, 1.0):
        raise ValueError(f"tune.gpus_per_trial is {value} but the Ray cluster has {n_gpus:g} GPUs: use 0 or auto")
    return float(value)


def _random_searcher(seed: int):
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(random_state=seed)


def _tpe_searcher(seed: int):
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return OptunaSearch(sampler=optuna.samplers.TPESampler(seed=seed))


#: tune.search's choices (the schema's: voicegender.params.Searcher): ``random``, Ray's seeded
#: random sampler (the report's search); ``tpe``, Optuna's TPE, which starts random and then
#: samples where good trials were
SEARCHERS = {"random": _random_searcher, "tpe": _tpe_searcher}


def make_searcher(name: str, seed: int):
    """The searcher ``name`` of :data:`SEARCHERS`, seeded by ``seed``."""
    return SEARCHERS[name](seed)


def _error_text(error) -> str:
    if isinstance(error, str):
        return error
    error = getattr(error, "cause", None) or error  # a RayTaskError wraps the trial's own exception
    text = f"{type(error).__name__}: {error}".strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


HISTORY_KEYS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy")


def _Recorder(total: int, metric: str, log):
    """A Tune callback that keeps every trial's per-epoch results (no log files needed) and
    prints one line per trial event instead of Ray's pages of tables."""
    from ray.tune import Callback

    class Recorder(Callback):
        def __init__(self):
            self.history: dict[str, list[dict]] = {}
            self.configs: dict[str, dict] = {}
            self.errors: dict[str, str] = {}
            self.created: dict[str, int] = {}
            self.done = 0
            self.finished: set[str] = set()  # trials that completed or failed
            self.started = time.perf_counter()

        def stamp(self) -> str:
            return f"[tune {time.perf_counter() - self.started:6.1f}s]"

        def trials(self, index: dict[str, int]):
            """(trial_id, history, config) in creation (= sampling) order, ``index`` = the
            scheduler's trial indices."""
            order = sorted(self.configs, key=index.__getitem__)
            return [(t, self.history.get(t, []), self.configs[t]) for t in order]

        def note(self, trials, trial):
            # ``trials`` is Tune's list in creation (= sampling) order; ids are not ordered
            # (a searcher such as Optuna's names trials by random hex)
            self.configs.setdefault(trial.trial_id, dict(trial.config))
            self.created.setdefault(trial.trial_id, trials.index(trial))

        def on_trial_start(self, iteration, trials, trial, **info):
            self.note(trials, trial)
            log(f"{self.stamp()} start      {trial.trial_id} {_short(trial.config)}")

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.history.setdefault(trial.trial_id, []).append({k: result[k] for k in HISTORY_KEYS if k in result})

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.done += 1
            self.finished.add(trial.trial_id)
            last = (self.history.get(trial.trial_id) or [{}])[-1]
            log(
                f"{self.stamp()} {self.done:>3}/{total} done {trial.trial_id} epochs={last.get('epoch')} "
                f"{metric}={last.get(metric, float('nan')):.4f} "
                f"val_accuracy={last.get('val_accuracy', float('nan')):.4f}"
            )

        def on_trial_error(self, iteration, trials, trial, **info):
            self.done += 1
            self.note(trials, trial)
            self.errors[trial.trial_id] = "failed"
            self.finished.add(trial.trial_id)
            log(
                f"{self.stamp()} {self.done:>3}/{total} FAILED {trial.trial_id} {_short(trial.config)} "
                "(recorded; the search goes on)"
            )

    return Recorder()


def _short(config: dict) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in config.items())


# -- the search's results as the tune stage writes them -------------------------------------------


def best_settings(best: dict) -> dict:
    """models/tuned.yaml: the best trial's sampled settings with its validation loss and accuracy."""
    return {
        **{k: _plain(v) for k, v in best["config"].items()},
        "val_loss": float(best["val_loss"]),
        "val_accuracy": float(best["val_accuracy"]),
    }


def search_summary(result: dict, search: str) -> dict:
    """metrics/tune.json: the best trial, how many trials (failed) and epochs. No wall time: it
    changes from run to run, and this file is hashed (dvc.lock) and diffed."""
    best, trials = result["best"], result["trials"]
    return {
        "best": {
            "config": {k: _plain(v) for k, v in best["config"].items()},
            "val_loss": best["val_loss"],
            "val_accuracy": best["val_accuracy"],
        },
        "trials": len(trials),
        "failed": sum(bool(t["error"]) for t in trials),
        "epochs_total": sum(t["epochs_run"] for t in trials),
        "search": search,
    }


def trials_table(trials: list[dict], names: list[str]) -> list[dict]:
    """One row per trial in sampling order with its ``names`` settings, epochs and validation
    figures: no trial ids, paths or timestamps, so the table diffs across runs."""
    return [
        {
            "trial": i,
            **{k: _cell(t["config"].get(k)) for k in names},
            "epochs_run": t["epochs_run"],
            "val_loss": t["val_loss"],
            "val_accuracy": t["val_accuracy"],
            "status": "error" if t["error"] else "ok",
            "error": t["error"] or "",
        }
        for i, t in enumerate(trials)
    ]


def curves_table(trials: list[dict]) -> list[dict]:
    """Every trial's validation loss and accuracy per epoch (trial = sampling order)."""
    return [
        {"trial": i, "epoch": h["epoch"], "val_loss": h["val_loss"], "val_accuracy": h["val_accuracy"]}
        for i, t in enumerate(trials)
        for h in t["history"]
    ]


def describe_best(best: dict) -> str:
    """The best trial in one log line: its settings and validation loss."""
    return _short({k: _plain(v) for k, v in best["config"].items()}) + f" val_loss={best['val_loss']:.4f}"


def _cell(v):
    """A table cell: lists (e.g. channels) as 32-64-128, so the CSV stays one value per cell."""
    return "-".join(map(str, v)) if isinstance(v, (list, tuple)) else _plain(v)


def _plain(v):
    return v.item() if hasattr(v, "item") else v
