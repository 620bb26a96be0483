"""Bug: ds_i/dz_j written as s_i * delta_ij, forgetting the -s_i s_j term."""

import numpy as np


def softmax_jacobian(z):
    e = np.exp(z - np.max(z))
    s = e / np.sum(e)
    return np.diag(s)
