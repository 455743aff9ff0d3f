import numpy as np
import pytest
import torch

from voicegender.models.networks import build_model
from voicegender.params import ModelSettings
from voicegender.models.training import fit, predict_proba, resolve_device

#: train settings of these tests: plain Adam, no weight decay, no early stopping, on the CPU
PLAIN = dict(optimizer="adam", weight_decay=0.0, patience=None, device="cpu")


def separable(n=300, d=32, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.float32)
    return X, y


def run(seed=1, **kw):
    X, y = separable()
    model = build_model(ModelSettings(name="mlp", hidden=16), (32,), seed=seed)
    args = dict(lr=1.0e-2, batch_size=16, epochs=15, seed=seed, **PLAIN)
    args.update(kw)
    return model, fit(model, X[:200], y[:200], X[200:], y[200:], **args)


def test_fit_learns_and_keeps_the_best_epoch():
    model, result = run()
    assert result.best["val_accuracy"] > 0.8
    assert result.best["val_loss"] == min(r["val_loss"] for r in result.history)
    X, y = separable()
    proba = predict_proba(model, X[200:])
    assert ((proba >= 0.5) == (y[200:] > 0.5)).mean() == pytest.approx(result.best["val_accuracy"])


@pytest.mark.slow  # four trainings
def test_same_seed_same_history():
    assert run(seed=3)[1].history == run(seed=3)[1].history
    assert run(seed=3)[1].history != run(seed=4)[1].history


def test_early_stopping_stops_after_patience():
    _, result = run(epochs=60, lr=5.0e-2, patience=2)
    assert len(result.history) < 60
    assert len(result.history) - result.best_epoch == 2


def test_each_epoch_is_reported():
    seen = []
    run(epochs=3, on_epoch=seen.append)
    assert [r["epoch"] for r in seen] == [1, 2, 3]
    assert set(seen[0]) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"}


def test_diverging_training_raises():
    X, y = separable()
    X[0, 0] = np.nan
    model = build_model(ModelSettings(name="mlp"), (32,), seed=0)
    with pytest.raises(FloatingPointError):
        fit(model, X[:200], y[:200], X[200:], y[200:], lr=1.0e-2, batch_size=300, epochs=2, seed=0, **PLAIN)


def test_auto_device_is_cuda_when_present_else_cpu(monkeypatch):
    import torch

    # both branches, whatever this machine has: CUDA present, then absent (and no Apple MPS)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("cuda:1") == torch.device("cuda", 1)  # an explicit name is taken as given


def test_standardizer_uses_train_stats_and_floors_std():
    from voicegender.models.training import fit_standardizer

    rng = np.random.default_rng(0)
    X = rng.normal(5.0, 2.0, size=(200, 4)).astype(np.float32)
    X[:, 3] = 7.0  # constant column
    mean, std = fit_standardizer(X)
    Z = (X - mean) / std
    assert mean.dtype == np.float32 and np.isfinite(Z).all()
    np.testing.assert_allclose(Z[:, :3].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(Z[:, :3].std(axis=0), 1, atol=1e-4)
    assert np.all(Z[:, 3] == 0)


def test_a_trailing_batch_of_one_does_not_break_batchnorm():
    X, y = separable(n=300)
    model = build_model(ModelSettings(name="cnn1d", channels=[4], hidden=8), (32,), seed=0)
    result = fit(model, X[:201], y[:201], X[201:], y[201:], lr=1.0e-2, batch_size=8, epochs=2, seed=0, **PLAIN)
    assert len(result.history) == 2 and all(np.isfinite(r["train_loss"]) for r in result.history)


@pytest.mark.slow  # compiles the numba step on a fresh clone
def test_report_cnn_trains_the_same_by_hand_as_through_autograd():
    from voicegender.models.networks import ReportCNN

    class AutogradOnly(ReportCNN):
        hand_written_step = None

    X, y = separable(n=260, d=64, seed=5)
    histories = []
    for cls in (ReportCNN, AutogradOnly):
        torch.manual_seed(0)
        model = cls(64)
        result = fit(model, X[:200], y[:200], X[200:], y[200:], lr=3e-3, batch_size=8, epochs=3, seed=2, **PLAIN)
        histories.append(result.history)
    for fast, ref in zip(*histories):
        for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
            assert fast[key] == pytest.approx(ref[key], rel=1e-3, abs=1e-4), key


@pytest.mark.slow  # a fresh process that compiles or loads the numba step
def test_the_hand_written_step_runs_every_blas_on_one_thread():
    # In a fresh process: threadpoolctl limits only the BLAS libraries loaded when the limit is set,
    # and the compiled step's BLAS (scipy's) was once loaded later, on the first step. Two
    # concurrent trials then ran two BLAS threads each, ~5x slower a step.
    import json
    import subprocess
    import sys

    script = """
import json, numpy as np
from threadpoolctl import threadpool_info
from voicegender.models.networks import build_model
from voicegender.models.training import fit
from voicegender.params import ModelSettings
rng = np.random.default_rng(0)
X, y = rng.normal(size=(64, 128)).astype(np.float32), (np.arange(64) % 2).astype(np.float32)
seen = []
record = lambda _: seen.append({i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
fit(build_model(ModelSettings(name="report_cnn"), (128,), seed=0), X[:48], y[:48], X[48:], y[48:],
    lr=1e-3, batch_size=4, epochs=1, seed=0, optimizer="adam", weight_decay=0.0, patience=None, device="cpu",
    on_epoch=record)
print(json.dumps(seen))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    (threads,) = json.loads(out.stdout.strip().splitlines()[-1])
    assert any("scipy" in path for path in threads), threads  # the step's BLAS is among them
    assert set(threads.values()) == {1}, threads


def test_every_optimizer_of_the_schema_is_known():
    from typing import get_args

    from voicegender.models.training import OPTIMIZERS
    from voicegender.params import Optimizer

    assert set(OPTIMIZERS) == set(get_args(Optimizer))


@pytest.mark.parametrize("name, weight_decay", [("adam", 0.0), ("adam", 0.1), ("adamw", 0.1), ("sgd", 0.1)])
def test_the_fused_update_is_torch_optim(name, weight_decay):
    from voicegender.models.training import _Update, make_optimizer

    torch.manual_seed(0)
    shapes = [(32, 1, 3), (64, 32, 3), (7,), (1,)]
    ours = [torch.randn(s) for s in shapes]
    ref = [p.clone().requires_grad_() for p in ours]
    update = _Update(name, ours, lr=1e-2, weight_decay=weight_decay)
    optimizer = make_optimizer(name, ref, lr=1e-2, weight_decay=weight_decay)
    for _ in range(5):
        grads = [torch.randn(s) for s in shapes]
        update(grads)
        for p, g in zip(ref, grads):
            p.grad = g.clone()
        optimizer.step()
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-6)


def test_a_hand_written_step_trains_on_one_torch_thread_and_restores_the_count():
    from voicegender.models.networks import build_model

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 16)).astype(np.float32), (np.arange(64) % 2).astype(np.float32)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []
        fit(
            build_model(ModelSettings(name="linear"), (16,), seed=0),
            X[:48],
            y[:48],
            X[48:],
            y[48:],
            lr=1e-2,
            batch_size=8,
            epochs=2,
            seed=0,
            **PLAIN,
            on_epoch=lambda _: seen.append(torch.get_num_threads()),
        )
        assert seen == [1, 1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
