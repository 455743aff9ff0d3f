import math
import os
import tempfile
import time

import numpy as np
import pytest
import yaml

from voicegender.params import ModelSettings, ParamError, SpaceEntry, load_params, validate_params
from voicegender.models.tuning import (
    OrderedHalving,
    TrialSettings,
    check_reachable,
    max_epochs,
    run_search,
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
            address="127.0.0.1:1",
            storage_path="/tmp/unused",
            connect_timeout_s=5,
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
            *small_data(), space=SPACE, fixed=FIXED, num_samples=5, seed=7, cpus_per_trial=0.5, log=lambda m: None
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
        seed=3,
        search="tpe",
        cpus_per_trial=0.5,
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

    from voicegender.models.tuning import _remember_ctrl_c

    # Python's own Ctrl-C handler, whatever this test process inherited (a shell that starts a job
    # in the background may have it ignore SIGINT)
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    before = signal.getsignal(signal.SIGINT)
    with _remember_ctrl_c() as interrupted:
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:
            pass  # swallowed, as Ray sometimes does
    assert interrupted.is_set()
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler is back
    with _remember_ctrl_c() as quiet:
        pass
    assert not quiet.is_set()
    signal.signal(signal.SIGINT, outer)
