"""Softmax / cross-entropy backward passes as real code writes them: course solutions,
from-scratch libraries, autograd engines. Each is checked in the convention it was written in.
"""

import numpy as np


def _softmax(z):
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


# ---- integer labels, a batch mean, (loss, grad): the course-solution shape ----


def softmax_loss(scores, c):
    """Right gradient, wrong loss: -log(p) after p underflowed to 0 is inf."""
    n = scores.shape[0]
    probs = _softmax(scores)
    loss = -np.sum(np.log(probs[np.arange(n), c])) / n
    dscores = probs.copy()
    dscores[np.arange(n), c] -= 1
    return loss, dscores / n


def softmax_loss_stable(scores, c):
    """The loss from log-softmax: finite wherever the logits are."""
    n = scores.shape[0]
    shifted = scores - np.max(scores, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    loss = -np.sum(log_probs[np.arange(n), c]) / n
    dscores = np.exp(log_probs)
    dscores[np.arange(n), c] -= 1
    return loss, dscores / n


def softmax_loss_sum(scores, c):
    """(loss, grad) of the summed loss: the gradient is right for --reduction sum."""
    loss, grad = softmax_loss_stable(scores, c)
    return loss * scores.shape[0], grad * scores.shape[0]


def index_grad(z, c):
    """One row, an integer class: s - onehot(c)."""
    g = _softmax(z)
    g[c] -= 1
    return g


def index_grad_off_by_one(z, c):
    g = _softmax(z)
    g[c - 1] -= 1
    return g


# ---- a from-scratch library: the loss's backward, then softmax's backward ----


def unfused_chain(z, y):
    """dL/ds = -y/s through the softmax Jacobian: 0/0 where s_i underflowed to 0."""
    s = _softmax(z)
    dl_ds = -y / s
    return s * (dl_ds - np.sum(s * dl_ds, axis=-1, keepdims=True))


def clipped_chain(z, y):
    """The same with p clipped "for stability": where s_y < 1e-15 the gradient vanishes."""
    s = _softmax(z)
    p = np.clip(s, 1e-15, 1.0)
    dl_ds = -y / p
    return s * (dl_ds - np.sum(s * dl_ds, axis=-1, keepdims=True))


# ---- a layer's backward pass: g^T J ----


def softmax_backward(z, g):
    s = _softmax(z)
    return s * (g - np.sum(g * s, axis=-1, keepdims=True))


def log_softmax_backward(z, g):
    return g - _softmax(z) * np.sum(g, axis=-1, keepdims=True)


def log_softmax_backward_as_jvp(z, g):
    """J g where g^T J is due: log-softmax's Jacobian is not symmetric."""
    return g - np.sum(_softmax(z) * g, axis=-1, keepdims=True)


# ---- a model's logits come from X @ W: the contract excludes -inf ----


def ce_grad_finite_only(z, y):
    if not np.isfinite(z).all():
        raise ValueError("logits must be finite")
    return _softmax(z) * np.sum(y, axis=-1, keepdims=True) - y
