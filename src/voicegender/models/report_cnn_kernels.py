"""The report CNN's training step (forward + backward) compiled with numba: one call a step.

Used by :meth:`voicegender.models.networks.ReportCNN.hand_written_step`. At the report's batch sizes (4-16)
a step is ~8-30 MFLOP, so per-call overhead decides its speed: written as NumPy calls (~60 a step)
it took 0.54 ms at batch 4, of which ~0.18 ms were the matmuls; compiled, the elementwise parts
cost little and the matmuls (BLAS through ``np.dot``) are ~70 % of the step.

Activations are rows of (batch * length, channels); each convolution is one matmul of the
kernel-3 windows (columns in a Conv1d weight's (in_channel, tap) order) with the weight.
Compiled code is cached on disk (``cache=True``): the first call on a machine compiles (~20 s),
later processes load it in ~1 s.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg.cython_blas  # noqa: F401
from numba import njit

# numba's np.dot calls the BLAS of scipy.linalg.cython_blas. Imported here so that it is loaded
# before the caller limits the BLAS threads (threadpoolctl only limits libraries already loaded):
# loaded lazily on the first step, it ran two threads per trial, and two concurrent trials then
# took ~5x longer per step (measured).


@njit(cache=True, error_model="numpy")
def _batch_norm_train(z, running_mean, running_var, batches, momentum, eps):
    """Train-mode BatchNorm1d (no affine) of rows ``z`` (n, channels) in place; updates the
    running statistics as nn.BatchNorm1d does and returns 1/std per channel."""
    n, C = z.shape
    mean = np.zeros(C, np.float64)
    var = np.zeros(C, np.float64)
    for r in range(n):
        for c in range(C):
            mean[c] += z[r, c]
    mean /= n
    for r in range(n):
        for c in range(C):
            d = z[r, c] - mean[c]
            var[c] += d * d
    var /= n
    rstd = np.empty(C, np.float32)
    for c in range(C):
        rstd[c] = 1.0 / np.sqrt(var[c] + eps)
        running_mean[c] = (1 - momentum) * running_mean[c] + momentum * mean[c]
        # the running variance is the unbiased one
        running_var[c] = (1 - momentum) * running_var[c] + momentum * var[c] * n / (n - 1)
    batches[0] += 1
    for r in range(n):
        for c in range(C):
            z[r, c] = (z[r, c] - mean[c]) * rstd[c]
    return rstd


@njit(cache=True, error_model="numpy")
def _batch_norm_backward(g, normalised, rstd):
    """Gradient through :func:`_batch_norm_train`, in place on ``g`` (n, channels)."""
    n, C = g.shape
    mean_g = np.zeros(C, np.float64)
    mean_gn = np.zeros(C, np.float64)
    for r in range(n):
        for c in range(C):
            mean_g[c] += g[r, c]
            mean_gn[c] += g[r, c] * normalised[r, c]
    mean_g /= n
    mean_gn /= n
    for r in range(n):
        for c in range(C):
            g[r, c] = (g[r, c] - mean_g[c] - normalised[r, c] * mean_gn[c]) * rstd[c]


@njit(cache=True, error_model="numpy")
def _relu_pool(z, B):
    """ReLU then MaxPool1d(2) of rows (B * 2L, C) -> (B, L, C), and where each maximum came from
    (True: the second of its pair; ties go to the first, as in MaxPool1d). The two commute."""
    C = z.shape[1]
    L = z.shape[0] // (2 * B)
    h = np.empty((B, L, C), np.float32)
    pick = np.empty((B, L, C), np.bool_)
    for b in range(B):
        for l in range(L):
            r = (b * L + l) * 2
            for c in range(C):
                first, second = z[r, c], z[r + 1, c]
                p = second > first
                m = second if p else first
                pick[b, l, c] = p
                h[b, l, c] = m if m > 0 else 0.0
    return h, pick


@njit(cache=True, error_model="numpy")
def _relu_pool_backward(g, h, pick):
    """Adjoint of :func:`_relu_pool`: (B, L, C) gradients -> rows (B * 2L, C)."""
    B, L, C = g.shape
    out = np.empty((B * L * 2, C), np.float32)
    for b in range(B):
        for l in range(L):
            r = (b * L + l) * 2
            for c in range(C):
                v = g[b, l, c] if h[b, l, c] > 0 else np.float32(0)
                second = pick[b, l, c]
                out[r, c] = np.float32(0) if second else v
                out[r + 1, c] = v if second else np.float32(0)
    return out


@njit(cache=True, error_model="numpy")
def _im2col(h, stride):
    """(B, L, C) -> the kernel-3, padding-1 windows as rows (B * out_length, C * 3)."""
    B, L, C = h.shape
    out_len = (L - 1) // stride + 1
    cols = np.zeros((B * out_len, C * 3), np.float32)
    for b in range(B):
        for l in range(out_len):
            r = b * out_len + l
            for k in range(3):
                p = l * stride + k - 1
                if 0 <= p < L:
                    for c in range(C):
                        cols[r, c * 3 + k] = h[b, p, c]
    return cols


@njit(cache=True, error_model="numpy")
def _col2im(g_cols, B, stride, L):
    """Adjoint of :func:`_im2col`: window gradients (B * out_length, C * 3) -> (B, L, C)."""
    C = g_cols.shape[1] // 3
    out_len = g_cols.shape[0] // B
    g = np.zeros((B, L, C), np.float32)
    for b in range(B):
        for l in range(out_len):
            r = b * out_len + l
            for k in range(3):
                p = l * stride + k - 1
                if 0 <= p < L:
                    for c in range(C):
                        g[b, p, c] += g_cols[r, c * 3 + k]
    return g


@njit(cache=True, error_model="numpy")
def train_step(x, y, w1, w2, w3, fc1_w, fc1_b, fc2_w, fc2_b, bn1, bn2, momentum, eps, logits, grads):
    """One step of ReportCNN in train mode on ``x`` (B, D), ``y`` (B,) in {0, 1}.

    Weights: ``w1`` (32, 3), ``w2`` (64, 96), ``w3`` (128, 192) (Conv1d weights with the
    (in_channel, tap) axes flattened), the two Linear layers as stored. ``bn1`` / ``bn2``:
    (running_mean, running_var, num_batches_tracked as a (1,) array), updated in place.
    Writes the logits (B,) into ``logits`` and the gradients of the mean binary cross-entropy
    with logits into ``grads``, shaped and ordered like the weights.
    """
    g_w1, g_w2, g_w3, g_fc1_w, g_fc1_b, g_fc2_w, g_fc2_b = grads
    B, D = x.shape
    L3, P3 = D // 16, D // 32  # conv3's output length, the length after the last pool
    cols1 = _im2col(np.ascontiguousarray(x).reshape(B, D, 1), 2)
    z1 = np.dot(cols1, w1.T)
    rstd1 = _batch_norm_train(z1, bn1[0], bn1[1], bn1[2], momentum, eps)
    h1, pick1 = _relu_pool(z1, B)
    cols2 = _im2col(h1, 2)
    z2 = np.dot(cols2, w2.T)
    rstd2 = _batch_norm_train(z2, bn2[0], bn2[1], bn2[2], momentum, eps)
    h2, pick2 = _relu_pool(z2, B)
    cols3 = _im2col(h2, 1)
    z3 = np.dot(cols3, w3.T)
    # last pool, written in (channel, position) order as nn.Flatten reads it
    flat = np.empty((B, 128 * P3), np.float32)
    pick3 = np.empty((B, P3, 128), np.bool_)
    for b in range(B):
        for l in range(P3):
            r = b * L3 + 2 * l
            for c in range(128):
                first, second = z3[r, c], z3[r + 1, c]
                p = second > first
                pick3[b, l, c] = p
                flat[b, c * P3 + l] = second if p else first
    h4 = np.dot(flat, fc1_w.T)
    g = np.empty(B, np.float32)  # d(mean BCE with logits) / d logit = (sigmoid - y) / B
    for b in range(B):
        for j in range(32):
            h4[b, j] += fc1_b[j]
        s = fc2_b[0]
        for j in range(32):
            s += h4[b, j] * fc2_w[0, j]
        logits[b] = s
        sigmoid = 1.0 / (1.0 + np.exp(-s)) if s >= 0 else np.exp(s) / (1.0 + np.exp(s))
        g[b] = (sigmoid - y[b]) / B
    # backward
    g_h4 = np.empty((B, 32), np.float32)
    g_fc2_b[0] = 0
    g_fc2_w[0, :] = 0
    g_fc1_b[:] = 0
    for b in range(B):
        g_fc2_b[0] += g[b]
        for j in range(32):
            g_fc2_w[0, j] += g[b] * h4[b, j]
            g_h4[b, j] = g[b] * fc2_w[0, j]
            g_fc1_b[j] += g_h4[b, j]
    np.dot(g_h4.T, flat, g_fc1_w)
    g_flat = np.dot(g_h4, fc1_w)
    g_z3 = np.zeros((B * L3, 128), np.float32)
    for b in range(B):
        for l in range(P3):
            r = b * L3 + 2 * l
            for c in range(128):
                g_z3[r + pick3[b, l, c], c] = g_flat[b, c * P3 + l]
    np.dot(g_z3.T, cols3, g_w3)
    g_z2 = _relu_pool_backward(_col2im(np.dot(g_z3, w3), B, 1, h2.shape[1]), h2, pick2)
    _batch_norm_backward(g_z2, z2, rstd2)
    np.dot(g_z2.T, cols2, g_w2)
    g_z1 = _relu_pool_backward(_col2im(np.dot(g_z2, w2), B, 2, h1.shape[1]), h1, pick1)
    _batch_norm_backward(g_z1, z1, rstd1)
    np.dot(g_z1.T, cols1, g_w1)
