"""Bug: an internal float32 downcast (e.g. a float32 buffer) in a float64 pipeline."""

import numpy as np


def cross_entropy_grad(z, y):
    z32 = z.astype(np.float32)
    e = np.exp(z32 - np.max(z32))
    s = e / np.sum(e)
    return (s * np.sum(y) - y).astype(np.float64)
