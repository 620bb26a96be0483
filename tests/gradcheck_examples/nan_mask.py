"""Bug: d log s = ds / s, so J_log = J_s / s: 0/0 = NaN wherever s_i = 0 (masked classes)."""

import numpy as np


def log_softmax_jacobian(z):
    e = np.exp(z - np.max(z))
    s = e / np.sum(e)
    jacobian = np.diag(s) - np.outer(s, s)
    return jacobian / s[:, None]


def cross_entropy_grad(z, y):
    """Bug: a leftover 0 * (z - max z) (kept to "connect the graph") is 0 * -inf = NaN at
    masked classes, and only there: underflowed classes have finite z."""
    shifted = z - np.max(z)
    e = np.exp(shifted)
    return e / np.sum(e) * np.sum(y) - y + 0.0 * shifted
