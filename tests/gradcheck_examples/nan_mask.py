"""Bug: d log s = ds / s, so J_log = J_s / s: 0/0 = NaN wherever s_i = 0 (masked classes)."""

import numpy as np


def log_softmax_jacobian(z):
    e = np.exp(z - np.max(z))
    s = e / np.sum(e)
    jacobian = np.diag(s) - np.outer(s, s)
    return jacobian / s[:, None]
