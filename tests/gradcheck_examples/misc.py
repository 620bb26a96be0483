"""Functions for the remaining outcomes: a bug no class fits, exceptions, usage errors."""

import numpy as np


def _softmax(z):
    e = np.exp(z - np.max(z))
    return e / np.sum(e)


def cross_entropy_grad_tanh(z, y):
    return np.tanh(_softmax(z)) - y  # no known bug class


def cross_entropy_grad_reversed(z, y):
    return (_softmax(z) - y)[::-1]  # entries in the wrong places, not a rotation


def cross_entropy_grad_no_masks(z, y):
    if np.isinf(z).any():
        raise ValueError("masked logits are not supported")
    return _softmax(z) - y


def cross_entropy_grad_column(z, y):
    return (_softmax(z) - y)[:, None]  # shape (K, 1): a usage error


def cross_entropy_grad_one_arg(z):
    return _softmax(z)  # cannot take y: a usage error


not_a_function = 3
