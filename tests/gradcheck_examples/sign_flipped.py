"""Bug: y - s instead of s - y (the gradient of +sum y log s)."""

import numpy as np


def cross_entropy_grad(z, y):
    e = np.exp(z - np.max(z))
    s = e / np.sum(e)
    return y - s
