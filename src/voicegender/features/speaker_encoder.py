"""A frozen pretrained speaker encoder as a feature: GE2E speaker embeddings (256 numbers).

The network and its weights are Resemblyzer's (Jemine, 2019; the GE2E loss of Wan et al., 2018):
a 3-layer LSTM (256 units) over 40-band mel frames of 16 kHz audio, then Linear(256, 256) + ReLU
and L2 normalisation, trained to tell thousands of speakers apart (LibriSpeech, VoxCeleb 1 and 2).
The weights ship inside the ``resemblyzer`` wheel (``pretrained.pt``, 17 MB), so they work
offline. Only that file is read: importing the ``resemblyzer`` package would import ``webrtcvad``,
whose source build needs ``pkg_resources``, which current setuptools no longer has.

Why this feature: hand-made spectral features learn the training corpus's microphone and
band (16 kHz LibriSpeech has nothing above 8 kHz) as much as the voice; an encoder trained on
many corpora to ignore all but the speaker carries the voice, and sex is nearly linear in it
(see README, *Real speech*).

Units: samples float in [-1, 1] at any rate (resampled to 16 kHz here), rate in partial
utterances per second, levels in dBFS (dB re a full-scale square wave's RMS of 1.0).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from voicegender.runtime import torch_threads

#: The pretrained network's fixed front end: changing any of these breaks the weights.
SAMPLE_RATE = 16000  # Hz
N_FFT = 400  # samples: 25 ms windows
HOP_LENGTH = 160  # samples: 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # mel frames per partial utterance: 1.6 s
EMBEDDING_SIZE = 256


class GE2EEncoder(nn.Module):
    """Resemblyzer's VoiceEncoder network: (batch, frames, 40) mel power -> (batch, 256), L2-normed."""

    def __init__(self, n_mels: int = N_MELS, hidden: int = 256, layers: int = 3, size: int = EMBEDDING_SIZE):
        super().__init__()
        self.lstm = nn.LSTM(n_mels, hidden, layers, batch_first=True)
        self.linear = nn.Linear(hidden, size)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / torch.linalg.vector_norm(raw, dim=1, keepdim=True).clamp_min(1e-12)


def weights_path() -> Path:
    """Where the pretrained weights are: ``pretrained.pt`` inside the installed resemblyzer package."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the GE2E weights come with the `resemblyzer` package: pip install resemblyzer==0.1.4")
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    if not path.is_file():
        raise RuntimeError(
            f"{path} is missing: reinstall resemblyzer (pip install --force-reinstall resemblyzer==0.1.4)"
        )
    return path


@functools.lru_cache(maxsize=1)
def load_encoder() -> GE2EEncoder:
    """The pretrained encoder in eval mode on the CPU, loaded once per process."""
    model = GE2EEncoder()
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)["model_state"]
    # the checkpoint also holds the GE2E loss's similarity scale (similarity_weight/bias): not needed
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("similarity")})
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def normalize_level(y: np.ndarray, target_dbfs: float) -> np.ndarray:
    """Raise the signal's RMS level to ``target_dbfs`` if it is quieter (never lowered, as
    Resemblyzer does: loud recordings are left alone). All-zero input is returned unchanged."""
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if y.size else 0.0
    if rms == 0.0:
        return y
    gain_db = target_dbfs - 20.0 * math.log10(rms)
    return y if gain_db <= 0 else (y * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32)


def partial_starts(n_samples: int, rate: float, min_coverage: float) -> np.ndarray:
    """First mel frame of each 1.6 s partial utterance, ``rate`` partials per second; the last
    partial is kept if at least ``min_coverage`` of it lies inside the signal (Resemblyzer's
    ``compute_partial_slices``). Always at least one partial (short files are zero-padded).
    ``rate`` lies in [0.625, 100] (partials overlap or touch; a step of at least one frame):
    the schema bounds ``features.ge2e_rate`` and ``1 / predict.hop_s`` so."""
    n_frames = int(math.ceil((n_samples + 1) / HOP_LENGTH))
    frame_step = int(round((SAMPLE_RATE / rate) / HOP_LENGTH))
    starts = np.arange(0, max(1, n_frames - PARTIAL_FRAMES + frame_step + 1), frame_step)
    coverage = (n_samples - starts[-1] * HOP_LENGTH) / (PARTIAL_FRAMES * HOP_LENGTH)
    if coverage < min_coverage and len(starts) > 1:
        starts = starts[:-1]
    return starts


#: Partial utterances per encoder call. Every call gets exactly this many (the last block of a
#: batch is zero-padded): the LSTM's kernels then always see the same shapes, so a partial's
#: embedding is the same bytes whichever utterances share its batch, in any chunking or worker
#: count (measured: oneDNN's LSTM gives other last bits below ~11 rows). 32 is as fast per partial
#: as 128 or 512 on this machine's CPU (~140-270 partials/s per core, noisy) and 1.3x faster than
#: one utterance's ~7 partials.
ENCODER_BATCH = 32


def partial_mels(y: np.ndarray, sr: int, *, rate: float, min_coverage: float, target_dbfs: float) -> np.ndarray:
    """The encoder's input for one recording: (n_partials, 160, 40) float32 mel power frames.

    Resampled to 16 kHz (soxr HQ), raised to ``target_dbfs`` if quieter, cut into 1.6 s partial
    utterances (``rate`` per second, see ``partial_starts``; the last one zero-padded)."""
    from voicegender.audio.spectral import mel_spectrogram, resample  # the project's librosa-equal DSP

    w = normalize_level(resample(np.asarray(y, dtype=np.float32), sr, SAMPLE_RATE), target_dbfs)
    starts = partial_starts(len(w), rate, min_coverage)
    end = (starts[-1] + PARTIAL_FRAMES) * HOP_LENGTH
    if end > len(w):
        w = np.pad(w, (0, end - len(w)))
    # (frames, 40)
    mel = mel_spectrogram(w, SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP_LENGTH, n_mels=N_MELS, dtype=np.float32).T
    return np.stack([mel[s : s + PARTIAL_FRAMES] for s in starts])


def embed_partials(mels: np.ndarray, *, device: str | torch.device, precision: str) -> np.ndarray:
    """Encoder outputs (n, 256) float32 for (n, 160, 40) partials, in blocks of ``ENCODER_BATCH``.

    ``precision`` (``features.ge2e_precision``): ``float32`` is Resemblyzer's network as trained;
    ``mixed`` / ``bfloat16`` run LSTM layers in bfloat16 where the hardware computes it natively
    (see ``encoder_for``).
    On the CPU it runs on one thread, so that its bytes do not depend on how many cores the
    caller has (parallelism comes from worker processes). On CUDA the bytes are the GPU's own.
    """
    n = len(mels)
    padded = np.zeros((-(-n // ENCODER_BATCH) * ENCODER_BATCH, *mels.shape[1:]), dtype=np.float32)
    padded[:n] = mels
    model = encoder_for(str(torch.device(device)), precision)
    with torch_threads(1), torch.inference_mode():
        x = torch.from_numpy(padded).to(model.linear.weight.device)
        out = [model(x[i : i + ENCODER_BATCH]) for i in range(0, len(x), ENCODER_BATCH)]
        return torch.cat(out).cpu().numpy()[:n]


class MixedGE2EEncoder(nn.Module):
    """The pretrained encoder with LSTM layers 1-2 in bfloat16 and layer 3 and the head in float32.

    Why: the LSTM is nearly all of ge2e's extraction time, and bfloat16 matmuls on CPUs with AMX
    or AVX512-BF16 (and GPUs) are several times faster than float32 ones. Layers 1-2 in bfloat16
    change an utterance's embedding by cosine ~3e-5 (measured on cross-corpus-dev: min 0.99997);
    layer 3 in bfloat16 too would change it by up to 1.5e-3 (its rounded output is the
    embedding's input), so it stays float32.
    """

    def __init__(self, full: GE2EEncoder):
        super().__init__()
        lstm = full.lstm
        self.low = nn.LSTM(lstm.input_size, lstm.hidden_size, 2, batch_first=True)
        self.top = nn.LSTM(lstm.hidden_size, lstm.hidden_size, 1, batch_first=True)
        state = lstm.state_dict()
        self.low.load_state_dict({k: v for k, v in state.items() if not k.endswith("_l2")})
        self.top.load_state_dict({k.replace("_l2", "_l0"): v for k, v in state.items() if k.endswith("_l2")})
        self.low.to(torch.bfloat16)
        self.linear = copy.deepcopy(full.linear)  # not shared: moving this model must not move the other

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        low, _ = self.low(mels.to(torch.bfloat16))
        _, (hidden, _) = self.top(low.float())
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / torch.linalg.vector_norm(raw, dim=1, keepdim=True).clamp_min(1e-12)


class BFloat16GE2EEncoder(nn.Module):
    """The pretrained encoder with all three LSTM layers in bfloat16, the head in float32.

    Why: on CPUs with AMX / AVX512-BF16 (and recent GPUs) it runs ~2.3x faster than ``mixed``
    (layer 3 in float32 was most of mixed's time). Its embeddings move by up to cosine ~1.5e-3
    from float32's (layer 3's hidden state is rounded to bfloat16), far below what separates the
    sexes: real-speech accuracy is measured equal (README, *Speed*).
    """

    def __init__(self, full: GE2EEncoder):
        super().__init__()
        self.lstm = copy.deepcopy(full.lstm).to(torch.bfloat16)
        self.linear = copy.deepcopy(full.linear)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels.to(torch.bfloat16))
        raw = torch.relu(self.linear(hidden[-1].float()))
        return raw / torch.linalg.vector_norm(raw, dim=1, keepdim=True).clamp_min(1e-12)


def native_bfloat16(device: str) -> bool:
    """Whether ``device`` computes bfloat16 matmuls natively (CUDA: Ampere or later; CPU: oneDNN's
    AVX512-BF16 / AMX check). Elsewhere bfloat16 is emulated and slower than float32."""
    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check is not None and check())


@functools.lru_cache(maxsize=8)
def encoder_for(device: str, precision: str) -> nn.Module:
    """The encoder on ``device`` at ``precision`` (``features.ge2e_precision``: ``mixed`` and
    ``bfloat16`` fall back to float32 where bfloat16 is not native), built once per process;
    frozen, in eval mode."""
    model = load_encoder()
    if precision == "mixed" and native_bfloat16(device):
        model = MixedGE2EEncoder(model)
    elif precision == "bfloat16" and native_bfloat16(device):
        model = BFloat16GE2EEncoder(model)
    elif device != "cpu":
        model = copy.deepcopy(model)
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def combine_partials(partials: np.ndarray) -> np.ndarray:
    """The utterance's embedding: the L2-normed mean of its partial embeddings, (256,) float32."""
    raw = partials.mean(axis=0, dtype=np.float64)
    norm = np.linalg.norm(raw)
    return (raw / norm if norm > 0 else raw).astype(np.float32)


def ge2e_embeddings(mels: list[np.ndarray], *, device: str | torch.device, precision: str) -> list[np.ndarray]:
    """Embeddings of many recordings at once (each one's ``partial_mels``): all their partials go
    through the encoder together, in blocks of ``ENCODER_BATCH``. Equal, byte for byte, to
    ``ge2e_embedding`` of each one alone."""
    if not mels:
        return []
    partials = embed_partials(np.concatenate(mels), device=device, precision=precision)
    cuts = np.cumsum([0] + [len(m) for m in mels])
    return [combine_partials(partials[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]


def ge2e_embedding(
    y: np.ndarray,
    sr: int,
    *,
    rate: float,
    min_coverage: float,
    target_dbfs: float,
    device: str | torch.device,
    precision: str,
) -> np.ndarray:
    """GE2E speaker embedding (256,) float32, unit L2 norm, of mono samples at ``sr`` Hz:
    ``partial_mels`` -> ``embed_partials`` -> ``combine_partials``. The settings are
    ``features:``'s (``ge2e_rate``, ``ge2e_min_coverage``, ``target_dbfs``, the encoder's device,
    ``ge2e_precision``)."""
    mels = partial_mels(y, sr, rate=rate, min_coverage=min_coverage, target_dbfs=target_dbfs)
    return combine_partials(embed_partials(mels, device=device, precision=precision))
