"""The networks, all built by :func:`build_model` from a plain config dict.

Every model maps a batch of features to one logit per example (positive = female). The report's
final sigmoid lives in the loss (``BCEWithLogitsLoss`` = sigmoid + binary cross-entropy, the
numerically stable form) and in :func:`voicegender.training.predict_proba`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import expit
from torch import nn


class ReportCNN(nn.Module):
    """The reference study's 1-D CNN, layer for layer as printed in its report.

    Input: (batch, 128) time-mean mel vectors, read as one channel of length 128.
    """

    def __init__(self, n_features: int = 128):
        super().__init__()
        if n_features % 32:
            raise ValueError(f"report_cnn needs a feature length divisible by 32, got {n_features}")
        self.blocks = nn.Sequential(
            nn.Conv1d(1, 32, kernel_size=3, stride=2, padding=1, bias=False),
            nn.BatchNorm1d(32, affine=False),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(2),
            nn.Conv1d(32, 64, kernel_size=3, stride=2, padding=1, bias=False),
            nn.BatchNorm1d(64, affine=False),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(2),
            nn.Conv1d(64, 128, kernel_size=3, stride=1, padding=1, bias=False),
            nn.MaxPool1d(2),
            nn.Flatten(),
            nn.Linear(128 * n_features // 32, 32),
            nn.Linear(32, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x.unsqueeze(1)).squeeze(1)

    def hand_written_step(self):
        """A training step by hand, on the CPU: returns ``step(x, y) -> (logits, gradients)``, the
        logits (batch,) of ``forward`` in train mode and the gradients of the mean binary
        cross-entropy (with logits) against ``y``, one per tensor of ``parameters()`` in that
        order. Each call updates the BatchNorm running statistics as ``forward`` would. Same
        numbers as autograd to float32 rounding (tested). ``step`` works on NumPy views of the
        parameters' memory taken here: it stays valid while they are updated in place (as an
        optimizer does), not after ``to()`` or a reassignment.

        Why: at the report's batch sizes (4-16) a step of this network is ~0.4 MFLOP per example,
        and autograd with torch's convolution, BatchNorm and max-pool kernels spends most of it
        on per-call overhead (~5-200 us a call here). Here each convolution is one matmul over a
        channels-last (batch, length, channels) layout, pooling an elementwise maximum, and the
        per-channel sums of BatchNorm matmuls with a ones row: 2-3x faster than autograd per step
        (``python benchmarks/train_step.py``). Callers should hold NumPy's BLAS to one thread (as
        ``fit`` does): at these sizes more threads only contend.
        """
        _, bn1, _, _, _, bn2, *_ = self.blocks
        w1, w2, w3, f1w, f1b, f2w, f2b = (p.detach().numpy() for p in self.parameters())
        w1, w2, w3 = w1.reshape(32, 3), w2.reshape(64, 96), w3.reshape(128, 192)
        norm1, norm2 = _BatchNormState(bn1), _BatchNormState(bn2)

        def step(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
            x, y = x.numpy(), y.numpy()
            B, D = x.shape
            # forward; rows are (batch * length, channels)
            cols1 = _im2col(x.reshape(B, D, 1), 2)
            n1, rstd1 = norm1.train(cols1 @ w1.T)
            h1, pick1 = _relu_pool(n1, B, 32)
            cols2 = _im2col(h1, 2)
            n2, rstd2 = norm2.train(cols2 @ w2.T)
            h2, pick2 = _relu_pool(n2, B, 64)
            cols3 = _im2col(h2, 1)
            z3 = (cols3 @ w3.T).reshape(B, -1, 2, 128)
            pick3 = z3[:, :, 1] > z3[:, :, 0]
            L4 = D // 32
            # nn.Flatten reads (channels, length); our rows are (length, channels): permute fc1 instead
            fc1_w = f1w.reshape(32, 128, L4).transpose(0, 2, 1).reshape(32, 128 * L4)
            flat = np.maximum(z3[:, :, 0], z3[:, :, 1]).reshape(B, L4 * 128)
            h4 = flat @ fc1_w.T + f1b
            logits = h4 @ f2w.T + f2b
            # backward; d(mean BCE-with-logits)/d logit = (sigmoid - y) / batch
            g = (expit(logits) - y.reshape(B, 1)) / B
            g_f2w, g_f2b = g.T @ h4, g.sum(0)
            g_h4 = g @ f2w
            g_f1w = (g_h4.T @ flat).reshape(32, L4, 128).transpose(0, 2, 1).reshape(32, 128 * L4)
            g_f1b = g_h4.sum(0)
            g_z3 = _pool_backward((g_h4 @ fc1_w).reshape(B, L4, 128), pick3)
            g_w3 = (g_z3.T @ cols3).reshape(128, 64, 3)
            g_h2 = _col2im((g_z3 @ w3).reshape(B, -1, 64, 3), 1)
            g_z2 = norm2.backward(_pool_backward(g_h2 * (h2 > 0), pick2), n2, rstd2)
            g_w2 = (g_z2.T @ cols2).reshape(64, 32, 3)
            g_h1 = _col2im((g_z2 @ w2).reshape(B, -1, 32, 3), 2)
            g_z1 = norm1.backward(_pool_backward(g_h1 * (h1 > 0), pick1), n1, rstd1)
            g_w1 = (g_z1.T @ cols1).reshape(32, 1, 3)
            grads = [g_w1, g_w2, g_w3, g_f1w, g_f1b, g_f2w, g_f2b]
            return torch.from_numpy(logits.reshape(B)), [torch.from_numpy(np.ascontiguousarray(g)) for g in grads]

        return step


# NumPy helpers of ReportCNN.hand_written_step; rows are (batch * length, channels)


def _im2col(h: np.ndarray, stride: int) -> np.ndarray:
    """(batch, length, channels) -> the kernel-3, padding-1 windows as rows (batch * out_length,
    channels * 3), columns in a Conv1d weight's (in_channel, tap) order."""
    B, L, C = h.shape
    padded = np.zeros((B, L + 2, C), np.float32)
    padded[:, 1:-1] = h
    s0, s1, s2 = padded.strides
    out_len = (L - 1) // stride + 1
    windows = np.ndarray((B, out_len, C, 3), np.float32, padded, 0, (s0, s1 * stride, s2, s1))
    return windows.reshape(B * out_len, C * 3)


def _col2im(g_cols: np.ndarray, stride: int) -> np.ndarray:
    """Adjoint of :func:`_im2col` for stride 1 or 2: (batch, out_length, channels, 3) window
    gradients -> (batch, out_length * stride, channels) input gradients."""
    B, L, C, _ = g_cols.shape
    if stride == 1:  # input position l gets tap 1 of window l, tap 2 of window l-1, tap 0 of window l+1
        g = g_cols[:, :, :, 1].copy()
        g[:, 1:] += g_cols[:, :-1, :, 2]
        g[:, :-1] += g_cols[:, 1:, :, 0]
        return g
    # stride 2: position 2l gets tap 1 of window l; 2l+1 gets tap 2 of window l and tap 0 of l+1
    g = np.empty((B, L, 2, C), np.float32)
    g[:, :, 0] = g_cols[:, :, :, 1]
    g[:, :, 1] = g_cols[:, :, :, 2]
    g[:, :-1, 1] += g_cols[:, 1:, :, 0]
    return g.reshape(B, 2 * L, C)


class _BatchNormState:
    """Train-mode BatchNorm (no affine) over rows (n, channels) in NumPy, updating an
    nn.BatchNorm1d's running statistics in place as it would."""

    def __init__(self, bn: nn.BatchNorm1d):
        self.running_mean, self.running_var = bn.running_mean.numpy(), bn.running_var.numpy()
        self.batches = bn.num_batches_tracked.numpy()
        self.momentum, self.eps = bn.momentum, bn.eps
        self.ones: dict[int, np.ndarray] = {}  # a (1, n) row of 1/n: sums as BLAS calls

    def _mean_row(self, n: int) -> np.ndarray:
        if n not in self.ones:
            self.ones[n] = np.full((1, n), 1.0 / n, np.float32)
        return self.ones[n]

    def train(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalise ``z`` in place; returns it and 1/std per channel."""
        n = z.shape[0]
        row = self._mean_row(n)
        mean = (row @ z)[0]
        z -= mean
        var = (row @ (z * z))[0]
        self.running_mean *= 1 - self.momentum
        self.running_mean += self.momentum * mean
        self.running_var *= 1 - self.momentum
        self.running_var += (self.momentum * n / (n - 1)) * var  # the running variance is the unbiased one
        self.batches += 1
        rstd = 1 / np.sqrt(var + self.eps)
        z *= rstd
        return z, rstd

    def backward(self, g: np.ndarray, normalised: np.ndarray, rstd: np.ndarray) -> np.ndarray:
        row = self._mean_row(g.shape[0])
        return (g - row @ g - normalised * (row @ (g * normalised))) * rstd


def _relu_pool(z: np.ndarray, B: int, C: int) -> tuple[np.ndarray, np.ndarray]:
    """ReLU then MaxPool1d(2) of rows (B * length, C) -> (B, length / 2, C) and where each
    maximum came from (True: the second of its pair). The two commute; pooling first is cheaper."""
    pairs = z.reshape(B, -1, 2, C)
    first, second = pairs[:, :, 0], pairs[:, :, 1]
    pick = second > first  # ties go to the first element, as in MaxPool1d
    pooled = np.maximum(first, second)
    return np.maximum(pooled, 0, out=pooled), pick


def _pool_backward(g: np.ndarray, pick: np.ndarray) -> np.ndarray:
    """Adjoint of MaxPool1d(2): (B, length / 2, C) gradients and :func:`_relu_pool`'s ``pick``
    -> rows (B * length, C)."""
    to_second = g * pick
    return np.stack((g - to_second, to_second), 2).reshape(-1, g.shape[2])


class CNN1d(nn.Module):
    """A configurable 1-D CNN over a feature vector: conv-BN-ReLU-pool blocks, then an MLP head.

    Input: (batch, n_features). ``channels`` sets one block per entry.
    """

    def __init__(self, n_features: int, channels=(32, 64, 128), hidden: int = 32, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch, length = 1, n_features
        for out_ch in channels:
            layers += [
                nn.Conv1d(in_ch, out_ch, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm1d(out_ch),
                nn.ReLU(inplace=True),
            ]
            if length >= 2:
                layers.append(nn.MaxPool1d(2))
                length //= 2
            in_ch = out_ch
        self.blocks = nn.Sequential(*layers, nn.Flatten())
        self.head = _head(in_ch * length, hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x.unsqueeze(1))).squeeze(1)


class CNN2d(nn.Module):
    """A 2-D CNN over log-mel patches: conv-BN-ReLU-pool blocks, global average pool, MLP head.

    Input: (batch, n_mels, n_frames).
    """

    def __init__(self, channels=(32, 64, 128), hidden: int = 32, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 1
        for out_ch in channels:
            layers += [
                nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(out_ch),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            in_ch = out_ch
        self.blocks = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = _head(in_ch, hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x.unsqueeze(1))).squeeze(1)


class MLP(nn.Module):
    """A multilayer perceptron over a flat feature vector: one hidden ReLU layer."""

    def __init__(self, n_features: int, hidden: int = 32, dropout: float = 0.0):
        super().__init__()
        self.head = _head(n_features, hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.flatten(1)).squeeze(1)


def _head(n_in: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(n_in, hidden), nn.ReLU(inplace=True),
                         nn.Dropout(dropout), nn.Linear(hidden, 1))


class Standardized(nn.Module):
    """Wraps a model with a fixed z-score of its input (train-split mean and std as buffers),
    so that a saved state dict carries its own normalisation."""

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


def build_model(config: dict, input_shape: tuple[int, ...], mean=None, std=None, seed: int = 0) -> nn.Module:
    """Build the network named by ``config["name"]`` for inputs of ``input_shape`` (one example).

    With ``mean`` and ``std`` (arrays of ``input_shape``), the model standardises its input.
    Initial weights depend on ``seed`` only (the global torch RNG is left untouched).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(config, tuple(input_shape), mean, std)


def _build(config: dict, input_shape: tuple[int, ...], mean, std) -> nn.Module:
    name = config["name"]
    n_features = math.prod(input_shape)
    channels = tuple(config.get("channels", (32, 64, 128)))
    hidden, dropout = config.get("hidden", 32), config.get("dropout", 0.0)
    if name == "report_cnn":
        _expect_vector(name, input_shape)
        model: nn.Module = ReportCNN(n_features)
    elif name == "cnn1d":
        _expect_vector(name, input_shape)
        model = CNN1d(n_features, channels, hidden, dropout)
    elif name == "cnn2d":
        if len(input_shape) != 2:
            raise ValueError(f"cnn2d needs 2-D features (features.kind: log_mel_patch), got shape {input_shape}")
        model = CNN2d(channels, hidden, dropout)
    elif name == "mlp":
        model = MLP(n_features, hidden, dropout)
    else:
        raise ValueError(f"model.name: unknown model {name!r}")
    if mean is not None:
        model = Standardized(model, torch.as_tensor(mean), torch.as_tensor(std))
    return model


def _expect_vector(name: str, input_shape: tuple[int, ...]) -> None:
    if len(input_shape) != 1:
        raise ValueError(f"{name} needs 1-D feature vectors, got shape {input_shape}: "
                         "use model.name=cnn2d for log_mel_patch features")


def load_trained(model_dir="models", device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the trained network saved by the train stage: ``(model in eval mode, card)``.

    ``model_dir`` holds ``model.pt`` (a state dict, loaded with ``weights_only=True``: no pickled
    code runs) and ``model.json`` (the card: ``model`` and ``features`` configs, ``input_shape``,
    ``standardized``, ``threshold``, ``positive_class``). Raises FileNotFoundError naming what
    is missing.
    """
    import json
    from pathlib import Path

    model_dir = Path(model_dir)
    card_path, weights_path = model_dir / "model.json", model_dir / "model.pt"
    for p in (card_path, weights_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found: train a model first (dvc repro train) or pass --model-dir")
    card = json.loads(card_path.read_text(encoding="utf-8"))
    shape = tuple(card["input_shape"])
    # placeholders of the right shape; the real train statistics come with the state dict
    mean, std = (torch.zeros(shape), torch.ones(shape)) if card.get("standardized") else (None, None)
    model = build_model(card["model"], shape, mean, std)
    model.load_state_dict(torch.load(weights_path, map_location=device, weights_only=True))
    model.to(device).eval()
    return model, card
