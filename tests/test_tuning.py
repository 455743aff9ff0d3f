import math
import os
import tempfile
import time

import numpy as np
import pytest
import yaml

from voicegender.params import (
    ModelSettings,
    ParamError,
    RaySettings,
    SpaceEntry,
    TuneSettings,
    load_params,
    validate_params,
)
from voicegender.models.tuning import (
    DISTRIBUTIONS,
    SEARCHERS,
    OrderedHalving,
    TrialSettings,
    check_reachable,
    max_epochs,
    run_search,
    to_ray_space,
    trial_settings,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_data(n=240, d=16, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.5).astype(np.float32)
    X = rng.normal(size=(n, d)).astype(np.float32) + y[:, None]
    return X[:180], y[:180], X[180:], y[180:]


FIXED = TrialSettings(
    model=ModelSettings(name="mlp", hidden=8),
    optimizer="adam",
    weight_decay=0.0,
    seed=0,
    epochs=2,
    patience=None,
    device="cpu",
)


def settings(**overrides) -> dict:
    """run_search's settings as the schema's defaults give them (tune.*, ray.*), except: CPU only,
    a local Ray and a temporary storage; ``overrides`` (``seed`` at least) replace any."""
    tune, ray = TuneSettings(), RaySettings()
    return {
        "metric": tune.metric,
        "mode": tune.mode,
        "search": tune.search,
        "grace_period": tune.asha.grace_period,
        "reduction_factor": tune.asha.reduction_factor,
        "cpus_per_trial": tune.cpus_per_trial,
        "gpus_per_trial": 0.0,
        "address": None,
        "storage_path": None,
        "connect_timeout_s": ray.connect_timeout_s,
        **overrides,
    }


# one model name in three does not exist: those trials fail, the search must go on
SPACE = {
    "lr": SpaceEntry(type="loguniform", low=1.0e-3, high=1.0e-1),
    "batch_size": SpaceEntry(type="choice", values=[16, 32]),
    "name": SpaceEntry(type="choice", values=["mlp", "cnn1d", "no_such_model"]),
}


def test_trial_settings_split_training_and_model_keys():
    train, model = trial_settings({"lr": 0.1, "hidden": 64, "model.dropout": 0.2}, FIXED)
    assert train == {"lr": 0.1, "epochs": 2}
    assert model == ModelSettings(name="mlp", hidden=64, dropout=0.2)
    assert FIXED.model == ModelSettings(name="mlp", hidden=8)  # the shared settings are left alone
    assert max_epochs({"epochs": SpaceEntry(type="choice", values=[10, 20])}, 5) == 20
    assert max_epochs({}, 5) == 5


def test_every_distribution_and_searcher_of_the_schema_is_known():
    from typing import get_args

    from voicegender.params import Distribution, Searcher

    assert set(DISTRIBUTIONS) == set(get_args(Distribution))
    assert set(SEARCHERS) == set(get_args(Searcher))


def test_ray_space_samples_within_the_entries():
    space = to_ray_space(
        {
            "lr": SpaceEntry(type="loguniform", low=1.0e-4, high=1.0e-2),
            "dropout": SpaceEntry(type="uniform", low=0.1, high=0.2),
            "hidden": SpaceEntry(type="randint", low=3, high=4),
            "batch_size": SpaceEntry(type="choice", values=[8, 16]),
        }
    )
    draws = {name: {domain.sample() for _ in range(50)} for name, domain in space.items()}
    assert all(1.0e-4 <= v <= 1.0e-2 for v in draws["lr"]) and all(0.1 <= v <= 0.2 for v in draws["dropout"])
    assert draws["hidden"] == {3, 4} and draws["batch_size"] == {8, 16}  # randint includes high


def test_default_search_is_the_reports_search():
    """The report (../shared/reference/REPORT.md, "Tuning"): a random search over {batch_size, lr,
    epochs} with ASHA, 20 trials; its best trial lr 0.000791, batch size 16, 20 epochs; lr below
    ~1e-4 did badly (so it was sampled there); no more than ~40 epochs advised. params.yaml's
    search, as the schema reads it, is that search: the same hyperparameters, the report's best
    trial inside the space, and ASHA's milestones at 1, 2, 4, 8, 16 epochs (docs/tuning.md)."""
    tune = load_params(os.path.join(ROOT, "params.yaml")).tune
    space = tune.space
    assert set(space) == {"lr", "batch_size", "epochs"}
    assert (tune.search, tune.num_samples) == ("random", 20)
    lr = space["lr"]
    assert lr.type == "loguniform" and lr.low <= 1.0e-4 < 7.91e-4 < lr.high
    assert 16 in space["batch_size"].values and 20 in space["epochs"].values
    assert max_epochs(space, default=0) <= 40
    halving = OrderedHalving(
        grace_period=tune.asha.grace_period, reduction_factor=tune.asha.reduction_factor, max_t=max_epochs(space, 0)
    )
    assert halving.milestones == [1, 2, 4, 8, 16]


@pytest.mark.parametrize(
    "name, dist, match",
    [
        ("hidden", {"type": "uniform", "low": 8, "high": 64}, "whole values"),
        ("name", {"type": "choice", "values": ["mlp", "resnet"]}, "must be one of"),
        ("momentum", {"type": "uniform", "low": 0.1, "high": 0.9}, "unknown hyperparameter"),
        ("dropout", {"type": "uniform", "low": 0.0, "high": 1.5}, "invalid value"),
    ],
)
def test_space_is_validated(name, dist, match):
    with open(os.path.join(ROOT, "params.yaml")) as f:
        params = yaml.safe_load(f)
    params["tune"]["space"][name] = dist
    with pytest.raises(ParamError, match=f"tune.space.{name}.*{match}"):
        validate_params(params)


def test_unreachable_cluster_fails_fast_naming_the_address():
    started = time.perf_counter()
    with pytest.raises(ConnectionError, match="127.0.0.1:1"):
        run_search(
            *small_data(),
            space=SPACE,
            fixed=FIXED,
            num_samples=1,
            **settings(address="127.0.0.1:1", storage_path="/tmp/unused", connect_timeout_s=5, seed=0),
        )
    assert time.perf_counter() - started < 20
    check_reachable("auto", 1)  # left to Ray


@pytest.fixture
def home(ray_home):
    """The test session's home for in-process Rays (conftest.ray_home says why)."""
    return ray_home


@pytest.mark.slow  # a Ray search
def test_local_search_records_failures_is_seeded_and_leaves_no_files(home, monkeypatch):
    monkeypatch.setenv("HOME", str(home))
    made = []  # run_search's temporary folders (Ray's session dir, the storage)
    real_mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: made.append(real_mkdtemp(*a, **k)) or made[-1])
    runs = [
        run_search(
            *small_data(),
            space=SPACE,
            fixed=FIXED,
            num_samples=5,
            **settings(seed=7, cpus_per_trial=0.5),
            log=lambda m: None,
        )
        for _ in range(2)
    ]
    configs = [[t["config"] for t in r["trials"]] for r in runs]
    assert configs[0] == configs[1]  # same seed, same sampled configurations, in sampling order
    trials = runs[0]["trials"]
    assert len(trials) == 5
    failed = [t for t in trials if t["error"]]
    assert failed and all(t["config"]["name"] == "no_such_model" for t in failed)
    assert "no_such_model" in failed[0]["error"]
    ok = [t for t in trials if not t["error"]]
    assert ok and all(1 <= t["epochs_run"] <= 2 and math.isfinite(t["val_loss"]) for t in ok)
    assert runs[0]["best"] in ok
    assert not (home / "ray_results").exists()
    assert made and not any(os.path.exists(p) for p in made)  # all removed


@pytest.mark.slow  # a Ray search
def test_tpe_search_runs_and_keeps_sampling_order(home, monkeypatch):
    from voicegender.models.tuning import _short

    monkeypatch.setenv("HOME", str(home))
    # Optuna names trials by random hex, not by sample index: the order must not come from the ids
    logged = []
    result = run_search(
        *small_data(),
        space=SPACE,
        fixed=FIXED,
        num_samples=4,
        **settings(seed=3, search="tpe", cpus_per_trial=0.5),
        log=logged.append,
    )
    trials = result["trials"]
    assert len(trials) == 4 and result["best"] in trials
    # trials start in the order they are sampled; the "start" lines end with the config
    started = [line.split(" start ")[1].split(maxsplit=1)[1] for line in logged if " start " in line]
    assert started == [_short(t["config"]) for t in trials]


def test_a_ctrl_c_that_some_code_swallows_is_still_known():
    # Ray can catch the KeyboardInterrupt of a Ctrl-C and go on: the search must still fail
    import os
    import signal

    from voicegender.cluster import remember_ctrl_c

    # Python's own Ctrl-C handler, whatever this test process inherited (a shell that starts a job
    # in the background may have it ignore SIGINT)
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    before = signal.getsignal(signal.SIGINT)
    with remember_ctrl_c() as interrupted:
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:
            pass  # swallowed, as Ray sometimes does
    assert interrupted.is_set()
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler is back
    with remember_ctrl_c() as quiet:
        pass
    assert not quiet.is_set()
    signal.signal(signal.SIGINT, outer)


def test_trial_storage_rules(tmp_path):
    from voicegender.models.tuning import SearchSetupError, trial_storage

    with pytest.raises(SearchSetupError, match="absolute"):
        with trial_storage("relative/path", on_cluster=False):
            pass
    with pytest.raises(SearchSetupError, match="shared storage"):
        with trial_storage(None, on_cluster=True):
            pass
    with trial_storage(str(tmp_path), on_cluster=True) as given:  # given: used and kept
        assert given == str(tmp_path)
    assert tmp_path.is_dir()
    with trial_storage("s3://bucket/runs", on_cluster=True) as uri:
        assert uri == "s3://bucket/runs"
    with pytest.raises(KeyboardInterrupt):
        with trial_storage(None, on_cluster=False) as scratch:
            assert os.path.isabs(scratch) and os.path.isdir(scratch)
            raise KeyboardInterrupt
    assert not os.path.exists(scratch)  # a temporary one is removed, interrupted or not


class _Seen:
    """What a search's Recorder saw (see tuning._Recorder): ids ``t0``, ``t1``... in sampling order."""

    def __init__(self, histories, finished, errors=None):
        self.finished = set(finished)
        self.errors = errors or {}
        self.history = histories

    def trials(self, index):
        return [(t, self.history[t], {"lr": 0.1 * (i + 1)}) for t, i in sorted(index.items(), key=lambda x: x[1])]


def _epochs(losses):
    return [{"epoch": e + 1, "val_loss": v, "val_accuracy": 1 - v} for e, v in enumerate(losses)]


def test_collect_trials_counts_the_epochs_the_rule_decided():
    from voicegender.models.tuning import OrderedHalving, SearchFailed, SearchInterrupted, collect_trials

    rule = OrderedHalving(grace_period=1, reduction_factor=2, max_t=4)  # milestones 1, 2
    index = {f"t{i}": rule.add() for i in range(2)}
    # t0 good; t1 worse at milestone 1 but trained on to epoch 3 before its decision (stop) came
    histories = {"t0": _epochs([0.5, 0.4, 0.3, 0.2]), "t1": _epochs([0.9, 0.8, 0.7])}
    for t, h in histories.items():
        for r in h:
            rule.result(index[t], r["epoch"], -r["val_loss"])
        rule.finish(index[t])
    args = dict(num_samples=2, metric="val_loss", mode="min", started=time.perf_counter(), log=lambda m: None)
    result = collect_trials([], _Seen(histories, ["t0", "t1"]), rule, index, **args)
    t0, t1 = result["trials"]
    assert (t0["epochs_run"], t1["epochs_run"]) == (4, 1)  # t1's epochs past its stop do not count
    assert t1["history"] == histories["t1"][:1] and t1["val_loss"] == 0.9 and t1["error"] is None
    assert result["best"] is t0 and result["epochs_trained"] == 7
    with pytest.raises(SearchInterrupted, match="after 1 of 2 trials"):
        collect_trials([], _Seen(histories, ["t0"]), rule, index, **args)
    # a failed trial is recorded, not picked; a stopped trial's error after its stop does not count
    failed = collect_trials([], _Seen(histories, ["t0", "t1"], {"t0": "failed", "t1": "failed"}), rule, index, **args)
    assert [t["error"] for t in failed["trials"]] == ["failed", None] and failed["best"] is failed["trials"][1]
    nan = {"t0": histories["t0"], "t1": _epochs([math.nan] * 3)}
    with pytest.raises(SearchFailed, match="all 2 trials failed"):
        collect_trials([], _Seen(nan, ["t0", "t1"], {"t0": "failed"}), rule, index, **args)
