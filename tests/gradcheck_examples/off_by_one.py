"""Bug: a loop that reads the label of the previous class."""

import numpy as np


def cross_entropy_grad(z, y):
    e = np.exp(z - np.max(z))
    s = e / np.sum(e)
    g = np.empty_like(s)
    for i in range(len(z)):
        g[i] = s[i] - y[i - 1]
    return g
