"""The training loop, used by both the tune and the train stage.

Whole splits are held as tensors and batched by index: at the report's batch sizes (4-16) a
DataLoader's per-batch overhead costs more than the arithmetic of the small networks here.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else Apple's MPS, else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a rerun gives the same weights."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """``adam`` (default), ``adamw`` or ``sgd`` (momentum 0.9)."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"train.optimizer: unknown optimizer {name!r}")


@dataclass
class FitResult:
    """What :func:`fit` leaves behind: the best epoch's weights and per-epoch history."""

    state_dict: dict
    best_epoch: int
    history: list[dict] = field(default_factory=list)

    @property
    def best(self) -> dict:
        return self.history[self.best_epoch - 1]


def fit(
    model: nn.Module,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    lr: float,
    batch_size: int,
    epochs: int,
    seed: int,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    patience: int | None = None,
    device: str | torch.device = "cpu",
    on_epoch: Callable[[dict], None] | None = None,
) -> FitResult:
    """Train ``model`` with binary cross-entropy and keep the weights of its best validation-loss epoch.

    Each epoch's record (``epoch``, ``train_loss``, ``train_accuracy``, ``val_loss``,
    ``val_accuracy``) goes to ``on_epoch`` as soon as it is known. Training stops early after
    ``patience`` epochs without a lower validation loss. A non-finite loss raises
    ``FloatingPointError``.
    """
    seed_everything(seed)
    device = torch.device(device)
    model.to(device)
    Xt = torch.as_tensor(X_train, dtype=torch.float32, device=device)
    yt = torch.as_tensor(y_train, dtype=torch.float32, device=device)
    Xv = torch.as_tensor(X_val, dtype=torch.float32, device=device)
    yv = torch.as_tensor(y_val, dtype=torch.float32, device=device)
    opt = make_optimizer(optimizer, model.parameters(), lr, weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    shuffler = torch.Generator().manual_seed(seed)

    history: list[dict] = []
    best_loss, best_epoch, best_state = math.inf, 0, None
    n = len(Xt)
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(n, generator=shuffler).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            xb, yb = Xt[idx], yt[idx]
            logits = model(xb)
            loss = loss_fn(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            # accumulate on the device: a .item() per step would sync and cost more than the step
            loss_sum += loss.detach() * len(idx)
            correct += ((logits.detach() > 0) == (yb > 0.5)).sum()
        train_loss = float(loss_sum) / n
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"training loss became {train_loss} at epoch {epoch} (lr={lr})")
        val_loss, val_accuracy = evaluate_loss(model, Xv, yv)
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_accuracy": float(correct) / n,
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
        }
        history.append(record)
        if val_loss < best_loss:
            best_loss, best_epoch = val_loss, epoch
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        if on_epoch is not None:
            on_epoch(record)
        if patience is not None and epoch - best_epoch >= patience:
            break
    if best_state is None:  # validation loss was never finite
        raise FloatingPointError("validation loss was never finite")
    model.load_state_dict(best_state)
    return FitResult(state_dict=best_state, best_epoch=best_epoch, history=history)


@torch.no_grad()
def evaluate_loss(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> tuple[float, float]:
    """Mean binary cross-entropy and accuracy (threshold 0.5) of ``model`` on ``X``, ``y``."""
    logits = predict_logits(model, X, batch_size)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, y).item()
    accuracy = ((logits > 0) == (y > 0.5)).float().mean().item()
    return loss, accuracy


@torch.no_grad()
def predict_logits(model: nn.Module, X, batch_size: int = 4096) -> torch.Tensor:
    """Logits of ``model`` (in eval mode) for every row of ``X``."""
    model.eval()
    device = next(model.parameters()).device
    X = torch.as_tensor(X, dtype=torch.float32, device=device)
    return torch.cat([model(X[i : i + batch_size]) for i in range(0, len(X), batch_size)])


def predict_proba(model: nn.Module, X, batch_size: int = 4096) -> np.ndarray:
    """Probability that each row of ``X`` is a female speaker."""
    return torch.sigmoid(predict_logits(model, X, batch_size)).cpu().numpy()
