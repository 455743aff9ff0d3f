"""The networks, all built by :func:`build_model` from the ``model:`` settings (:class:`ModelSettings`).

Every model maps a batch of features to one logit per example (positive = female). The report's
final sigmoid lives in the loss (``BCEWithLogitsLoss`` = sigmoid + binary cross-entropy, the
numerically stable form) and in :func:`voicegender.models.training.predict_proba`.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import nn

from voicegender.params import ModelSettings


class ReportCNN(nn.Module):
    """The reference study's 1-D CNN, layer for layer as printed in its report.

    Input: (batch, 128) time-mean mel vectors, read as one channel of length 128.
    """

    def __init__(self, n_features: int):
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
        optimizer does), not after ``to()`` or a reassignment. The gradient tensors are reused:
        each call overwrites the previous call's.

        Why: at the report's batch sizes (4-16) a step of this network is ~1.9 MFLOP per example
        (forward ~0.32 M multiply-adds, i.e. ~0.63 MFLOP, backward about twice that),
        and autograd with torch's convolution, BatchNorm and max-pool kernels spends most of it
        on per-call overhead (~5-200 us a call here). The step here is one compiled call
        (:func:`voicegender.models.report_cnn_kernels.train_step`): ~7-10x faster than autograd per step
        (``python benchmarks/train_step.py``). Callers should hold the BLAS to one thread (as
        ``fit`` does): at these sizes more threads only contend.
        """
        from voicegender.models.report_cnn_kernels import train_step  # numba compiles on first use

        _, bn1, _, _, _, bn2, *_ = self.blocks
        w1, w2, w3, f1w, f1b, f2w, f2b = (p.detach().numpy() for p in self.parameters())
        weights = (w1.reshape(32, 3), w2.reshape(64, 96), w3.reshape(128, 192), f1w, f1b, f2w, f2b)
        norms = tuple(
            (bn.running_mean.numpy(), bn.running_var.numpy(), bn.num_batches_tracked.numpy().reshape(1))
            for bn in (bn1, bn2)
        )
        momentum, eps = bn1.momentum, bn1.eps
        grads = [torch.zeros_like(p, memory_format=torch.contiguous_format) for p in self.parameters()]
        grad_views = tuple(g.numpy().reshape(w.shape) for g, w in zip(grads, weights))

        def step(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
            logits = np.empty(len(x), np.float32)
            train_step(x.numpy(), y.numpy(), *weights, *norms, momentum, eps, logits, grad_views)
            return torch.from_numpy(logits), grads

        return step


class CNN1d(nn.Module):
    """A configurable 1-D CNN over a feature vector: conv-BN-ReLU-pool blocks, then an MLP head.

    Input: (batch, n_features). ``channels`` sets one block per entry.
    """

    def __init__(self, n_features: int, *, channels: tuple[int, ...], hidden: int, dropout: float):
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

    def __init__(self, *, channels: tuple[int, ...], hidden: int, dropout: float):
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

    def __init__(self, n_features: int, *, hidden: int, dropout: float):
        super().__init__()
        self.head = _head(n_features, hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.flatten(1)).squeeze(1)


class Linear(nn.Module):
    """Logistic regression: one linear unit over a flat feature vector (regularise with
    ``train.weight_decay``). The probe that suits a pretrained embedding (``features.kind: ge2e``)."""

    def __init__(self, n_features: int, *, dropout: float):
        super().__init__()
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_features, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.flatten(1)).squeeze(1)

    def hand_written_step(self):
        """A CPU training step by hand, as ``ReportCNN.hand_written_step`` (same contract): logits
        ``x @ w + b`` and the mean BCE's gradients ``(sigmoid(logits) - y) / n`` times ``x`` and
        summed, in NumPy on views of the parameters. None with dropout (its masks need autograd).

        Why: a logistic regression's step is ~0.5 kFLOP per example; at batch sizes 4-16 autograd
        and torch's per-op dispatch cost ~5-20x more than NumPy's few calls (measured on this
        machine, busy: ~1.4 ms vs 0.07 ms a step at batch 8). Same numbers as autograd to float32
        rounding (tested).
        """
        if self.head[0].p > 0:
            return None
        linear = self.head[1]
        w, b = linear.weight.detach().numpy(), linear.bias.detach().numpy()
        grads = [torch.zeros_like(linear.weight), torch.zeros_like(linear.bias)]
        gw, gb = (g.numpy() for g in grads)

        def step(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
            xn = x.numpy().reshape(len(x), -1)
            logits = xn @ w[0] + b[0]
            # sigmoid as 0.5 (1 + tanh(z / 2)): no overflow for large |z|
            g = (0.5 * (1.0 + np.tanh(0.5 * logits)) - y.numpy()) / np.float32(len(xn))
            np.matmul(g, xn, out=gw[0])
            gb[0] = g.sum()
            return torch.from_numpy(logits), grads

        return step


def _head(n_in: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Dropout(dropout), nn.Linear(n_in, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, 1)
    )


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


#: the networks, by model.name (the schema's choices, voicegender.params.ModelName): each built
#: from the number of input features and the ``model:`` settings
NETWORKS: dict[str, Callable[[int, ModelSettings], nn.Module]] = {
    "report_cnn": lambda n, c: ReportCNN(n),
    "cnn1d": lambda n, c: CNN1d(n, channels=tuple(c.channels), hidden=c.hidden, dropout=c.dropout),
    "cnn2d": lambda n, c: CNN2d(channels=tuple(c.channels), hidden=c.hidden, dropout=c.dropout),
    "mlp": lambda n, c: MLP(n, hidden=c.hidden, dropout=c.dropout),
    "linear": lambda n, c: Linear(n, dropout=c.dropout),
}


def build_model(config: ModelSettings, input_shape: tuple[int, ...], mean=None, std=None, *, seed: int) -> nn.Module:
    """Build the network named by ``config.name`` for inputs of ``input_shape`` (one example).

    With ``mean`` and ``std`` (arrays of ``input_shape``), the model standardises its input.
    Initial weights depend on ``seed`` (``train.seed``) only (the global torch RNG is left untouched).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(config, tuple(input_shape), mean, std)


def _build(config: ModelSettings, input_shape: tuple[int, ...], mean, std) -> nn.Module:
    name = config.name
    n_features = math.prod(input_shape)
    if name in ("report_cnn", "cnn1d"):
        _expect_vector(name, input_shape)
    if name == "cnn2d" and len(input_shape) != 2:
        raise ValueError(f"cnn2d needs 2-D features (features.kind: log_mel_patch), got shape {input_shape}")
    model = NETWORKS[name](n_features, config)
    if mean is not None:
        model = Standardized(model, torch.as_tensor(mean), torch.as_tensor(std))
    return model


def _expect_vector(name: str, input_shape: tuple[int, ...]) -> None:
    if len(input_shape) != 1:
        raise ValueError(
            f"{name} needs 1-D feature vectors, got shape {input_shape}: "
            "use model.name=cnn2d for log_mel_patch features"
        )


def save_trained(
    model_dir,
    state_dict: dict,
    *,
    model: ModelSettings,
    features,
    predict,
    input_shape: tuple[int, ...],
    standardized: bool,
    threshold: float,
    data: dict,
) -> None:
    """Write what :func:`load_trained` reads: ``model.pt`` (the state dict) and ``model.json`` (the
    card: the ``model``, ``features`` and ``predict`` settings as JSON, the input shape, whether
    inputs are standardised, the decision ``threshold`` on P(female), and the training ``data``'s
    provenance), so that ``voicegender predict`` needs no params.yaml."""
    import json
    from pathlib import Path

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    torch.save(state_dict, model_dir / "model.pt")
    card = {
        "model": model.model_dump(mode="json"),
        "features": features.model_dump(mode="json"),
        "input_shape": list(input_shape),
        "standardized": standardized,
        "threshold": threshold,
        "positive_class": "female",
        "predict": predict.model_dump(mode="json"),
        "data": data,
    }
    (model_dir / "model.json").write_text(json.dumps(card, indent=2) + "\n")


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
    # any seed: the trained weights replace the initial ones
    model = build_model(ModelSettings.model_validate(card["model"]), shape, mean, std, seed=0)
    model.load_state_dict(torch.load(weights_path, map_location=device, weights_only=True))
    model.to(device).eval()
    return model, card
