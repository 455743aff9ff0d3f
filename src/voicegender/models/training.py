"""The training loop, used by both the tune and the train stage.

Whole splits are held as tensors and batched by index: at the report's batch sizes (4-16) a
DataLoader's per-batch overhead costs more than the arithmetic of the small networks here.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from voicegender.models.networks import Standardized
from voicegender.runtime import torch_threads


def resolve_device(name: str) -> torch.device:
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


SGD_MOMENTUM = 0.9
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim's defaults, as the report used
#: train.optimizer's choices (the schema's: voicegender.params.Optimizer): torch.optim's class,
#: its own keyword arguments, and the fused kernel of :class:`_Update`
OPTIMIZERS = {
    "adam": (torch.optim.Adam, {}, "_fused_adam_"),
    "adamw": (torch.optim.AdamW, {}, "_fused_adamw_"),
    "sgd": (torch.optim.SGD, {"momentum": SGD_MOMENTUM}, "_fused_sgd_"),
}


def make_optimizer(name: str, params, *, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """``adam``, ``adamw`` or ``sgd`` (momentum 0.9): torch.optim's."""
    cls, extra, _ = OPTIMIZERS[name]
    return cls(params, lr=lr, weight_decay=weight_decay, **extra)


class _Update:
    """One optimizer step as a single fused kernel call (torch.optim's ``fused=True`` maths).

    At batch sizes 4-16 the networks here cost less to run than ``torch.optim``'s Python
    bookkeeping (~0.1 ms a step, measured): calling the fused kernel directly removes it. Falls
    back to :func:`make_optimizer` where the kernels are missing (torch < 2.4, non-CPU/CUDA).
    """

    def __init__(self, name: str, params: list[torch.Tensor], lr: float, weight_decay: float):
        self.name, self.params, self.lr, self.wd = name, params, lr, weight_decay
        device = params[0].device
        fused = OPTIMIZERS[name][2]
        self.kernel = getattr(torch, fused, None) if device.type in ("cpu", "cuda") else None
        self.fallback = None
        if self.kernel is None:
            self.fallback = make_optimizer(name, params, lr=lr, weight_decay=weight_decay)
            return
        self.state = [torch.zeros_like(p) for p in params]  # Adam's m; SGD's momentum buffer
        self.state2 = [torch.zeros_like(p) for p in params]  # Adam's v
        self.step_count = torch.zeros((), dtype=torch.float32, device=device)
        self.steps = [self.step_count] * len(params)  # one shared counter: one add per step

    def __call__(self, grads) -> None:
        if self.fallback is not None:
            for p, g in zip(self.params, grads):
                p.grad = g
            self.fallback.step()
            self.fallback.zero_grad(set_to_none=True)
            return
        if self.name == "sgd":
            first = bool(self.step_count == 0)
            self.step_count.add_(1)
            self.kernel(
                self.params,
                list(grads),
                self.state,
                weight_decay=self.wd,
                momentum=SGD_MOMENTUM,
                lr=self.lr,
                dampening=0.0,
                nesterov=False,
                maximize=False,
                is_first_step=first,
            )
            return
        self.step_count.add_(1)
        self.kernel(
            self.params,
            list(grads),
            self.state,
            self.state2,
            [],
            self.steps,
            amsgrad=False,
            lr=self.lr,
            beta1=ADAM_BETAS[0],
            beta2=ADAM_BETAS[1],
            weight_decay=self.wd,
            eps=ADAM_EPS,
            maximize=False,
        )


def fit_standardizer(X_train: np.ndarray, std_floor: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std over axis 0 of the *training* features (float32), for
    :class:`voicegender.models.networks.Standardized`; validation and test never contribute.

    Works for vectors (N, D) and patches (N, n_mels, T) alike (statistics per element).
    std is floored at ``std_floor`` (absolute) so that constant features do not divide by 0.
    """
    X = np.asarray(X_train, dtype=np.float64)
    if X.ndim < 2 or X.shape[0] == 0:
        raise ValueError(f"X_train must have shape (n_samples, ...) with n_samples > 0, got {X.shape}")
    mean = X.mean(axis=0)
    std = np.maximum(X.std(axis=0), std_floor)
    return mean.astype(np.float32), std.astype(np.float32)


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
    optimizer: str,
    weight_decay: float,
    patience: int | None,
    device: str | torch.device,
    on_epoch: Callable[[dict], None] | None = None,
) -> FitResult:
    """Train ``model`` with binary cross-entropy and keep the weights of its best validation-loss epoch.

    The settings are ``train:``'s (:class:`voicegender.params.TrainSettings`): ``optimizer``,
    ``weight_decay`` (L2), ``patience`` (None: never stop early); ``device``: a torch device.
    Each epoch's record (``epoch``, ``train_loss``, ``train_accuracy``, ``val_loss``,
    ``val_accuracy``) goes to ``on_epoch`` as soon as it is known. Training stops early after
    ``patience`` epochs without a lower validation loss. A non-finite loss raises
    ``FloatingPointError``. ``train_loss`` / ``train_accuracy`` are over each step's
    predictions as it was taken (before that step's update), as a running average would be.
    """
    seed_everything(seed)
    device = torch.device(device)
    model.to(device)
    Xt = torch.as_tensor(X_train, dtype=torch.float32, device=device)
    yt = torch.as_tensor(y_train, dtype=torch.float32, device=device)
    Xv = torch.as_tensor(X_val, dtype=torch.float32, device=device)
    yv = torch.as_tensor(y_val, dtype=torch.float32, device=device)
    # A standardising wrapper's z-score is a fixed elementwise map: apply it to the whole split
    # once instead of twice per step (same numbers) and train the wrapped network.
    net = model
    if isinstance(model, Standardized):
        with torch.no_grad():
            Xt = (Xt - model.mean) / model.std
        net = model.model
    params = [p for p in net.parameters() if p.requires_grad]
    update = _Update(optimizer, params, lr, weight_decay)
    # a network may compute a CPU step's gradients itself, faster than autograd (ReportCNN does)
    make_step = getattr(net, "hand_written_step", None) if device.type == "cpu" else None
    # its gradients cover every parameter, frozen ones too
    by_hand = make_step() if make_step is not None and len(params) == len(list(net.parameters())) else None
    bce = nn.functional.binary_cross_entropy_with_logits
    shuffler = torch.Generator().manual_seed(seed)

    history: list[dict] = []
    best_loss, best_epoch, best_state = math.inf, 0, None
    n = len(Xt)
    # BatchNorm cannot train on a batch of one: leave such a trailing example to the next
    # epoch's shuffle (it is seen in the other epochs)
    n_used = n - 1 if n > 1 and n % batch_size == 1 else n
    logits_seen = torch.empty(n, device=device)  # each step's train logits, for the epoch's metrics
    # NumPy's BLAS threads and torch's would fight over the cores on matmuls this small
    # (measured: ~15 ms a step instead of ~1.2 ms with two threads each); torch's own intra-op
    # threads only synchronise around a hand-written step's tiny tensors (the optimizer update,
    # the logits copy): the linear model at 33,000 x 256, batch 16, on 2 busy cores, measured
    # 50-63 s an epoch with two torch threads, 0.9-2.3 s with one
    with (
        threadpool_limits(1, user_api="blas") if by_hand is not None else contextlib.nullcontext(),
        torch_threads(1) if by_hand is not None else contextlib.nullcontext(),
    ):
        for epoch in range(1, epochs + 1):
            net.train()
            order = torch.randperm(n, generator=shuffler).to(device)
            # one gather per epoch; each batch is then a view (no per-step index copy)
            Xe, ye = Xt[order], yt[order]
            for start in range(0, n_used, batch_size):
                xb, yb = Xe[start : start + batch_size], ye[start : start + batch_size]
                if by_hand is not None:
                    logits, grads = by_hand(xb, yb)
                else:
                    logits = net(xb)
                    # gradients straight from autograd: nothing to zero, no .grad bookkeeping
                    grads = torch.autograd.grad(bce(logits, yb), params)
                update(grads)
                logits_seen[start : start + batch_size] = logits.detach()
            with torch.inference_mode():
                train_loss = bce(logits_seen[:n_used], ye[:n_used]).item()
                train_accuracy = ((logits_seen[:n_used] > 0) == (ye[:n_used] > 0.5)).float().mean().item()
            if not math.isfinite(train_loss):
                raise FloatingPointError(f"training loss became {train_loss} at epoch {epoch} (lr={lr})")
            val_loss, val_accuracy = evaluate_loss(model, Xv, yv)
            record = {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_accuracy": train_accuracy,
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


# Inference batches small enough that a network's intermediate tensors stay in the CPU caches:
# the report CNN evaluates 6,000 examples ~3x faster in batches of 1,024 than in one batch (measured)
EVAL_BATCH = 1024


@torch.inference_mode()
def evaluate_loss(
    model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = EVAL_BATCH
) -> tuple[float, float]:
    """Mean binary cross-entropy and accuracy (threshold 0.5) of ``model`` on ``X``, ``y``."""
    logits = predict_logits(model, X, batch_size)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, y).item()
    accuracy = ((logits > 0) == (y > 0.5)).float().mean().item()
    return loss, accuracy


@torch.no_grad()
def predict_logits(model: nn.Module, X, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """Logits of ``model`` (in eval mode) for every row of ``X``."""
    model.eval()
    device = next(model.parameters()).device
    X = torch.as_tensor(X, dtype=torch.float32, device=device)
    return torch.cat([model(X[i : i + batch_size]) for i in range(0, len(X), batch_size)])


def predict_proba(model: nn.Module, X, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Probability that each row of ``X`` is a female speaker."""
    return torch.sigmoid(predict_logits(model, X, batch_size)).cpu().numpy()
