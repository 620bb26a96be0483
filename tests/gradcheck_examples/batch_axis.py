"""Batched bugs: reductions over the wrong axis of an (N, K) array."""

import numpy as np


def cross_entropy_grad_sum_axis0(z, y):
    e = np.exp(z - np.max(z, axis=1, keepdims=True))
    s = e / np.sum(e, axis=0, keepdims=True)  # normalises over the batch, not the classes
    return s * np.sum(y, axis=1, keepdims=True) - y


def cross_entropy_grad_global_max(z, y):
    e = np.exp(z - np.max(z))  # max over the whole batch: far-apart rows underflow to 0/0
    s = e / np.sum(e, axis=1, keepdims=True)
    return s * np.sum(y, axis=1, keepdims=True) - y
