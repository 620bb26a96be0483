"""Correct hand-written derivatives in plain NumPy: the checker must pass all of them.

Each works for float32 and float64 (the dtype of z is kept), one row or a batch (..., K).
"""

import numpy as np


def softmax(z):
    # the standard stable form: shifting by max(z) changes nothing mathematically, and keeps
    # exp from overflowing; -inf entries (masked classes) give exp(-inf) = 0
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def softmax_jacobian(z):
    s = softmax(z)
    eye = np.eye(z.shape[-1], dtype=z.dtype)
    return s[..., :, None] * eye - s[..., :, None] * s[..., None, :]


def log_softmax_jacobian(z):
    s = softmax(z)
    return np.eye(z.shape[-1], dtype=z.dtype) - s[..., None, :]


def cross_entropy_grad(z, y):
    """dL/dz = s * sum(y) - y: right for any y >= 0."""
    return softmax(z) * np.sum(y, axis=-1, keepdims=True) - y


def cross_entropy_grad_simplex(z, y):
    """s - y: right when sum(y) = 1 (the usual case)."""
    return softmax(z) - y


def cross_entropy_grad_loop(z, y):
    """One row, explicit loops, as a C port would do it."""
    k = len(z)
    m = max(z)
    e = [np.exp(z[i] - m) for i in range(k)]
    total = sum(e)
    y_total = sum(y)
    return np.array([e[i] / total * y_total - y[i] for i in range(k)], dtype=z.dtype)
