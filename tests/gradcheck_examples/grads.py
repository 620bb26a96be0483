"""The functions the README's `symsoft check` examples name (run from this folder)."""

import numpy as np


def softmax(z):
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def ce_grad(z, y):
    """fn(z, y) -> dL/dz for any y >= 0, one row or a batch."""
    return softmax(z) * np.sum(y, axis=-1, keepdims=True) - y


def jac(z):
    """fn(z) -> the Jacobian of softmax, (K, K) or (N, K, K)."""
    s = softmax(z)
    return s[..., :, None] * np.eye(z.shape[-1], dtype=z.dtype) - s[..., :, None] * s[..., None, :]


def log_jac(z):
    """fn(z) -> the Jacobian of log-softmax."""
    return np.eye(z.shape[-1], dtype=z.dtype) - softmax(z)[..., None, :]


def ce_index(z, c):
    """fn(z, c) with an integer class c: s - onehot(c)."""
    g = softmax(z)
    g[c] -= 1
    return g


def loss_and_grad(scores, c):
    """(loss, dL/dscores) of the batch mean, integer labels (N,)."""
    n = scores.shape[0]
    shifted = scores - np.max(scores, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    grad = np.exp(log_probs)
    grad[np.arange(n), c] -= 1
    return -np.mean(log_probs[np.arange(n), c]), grad / n


def softmax_backward(z, g):
    """A layer's backward pass: g^T J of softmax, (N, K), (N, K) -> (N, K)."""
    s = softmax(z)
    return s * (g - np.sum(g * s, axis=-1, keepdims=True))


def ce_grad_finite(z, y):
    """Written for logits that come from X @ W: never -inf."""
    if not np.isfinite(z).all():
        raise ValueError("logits must be finite")
    return ce_grad(z, y)
