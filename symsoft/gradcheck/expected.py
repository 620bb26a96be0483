"""The right answers: symsoft.reference (mpmath, 50 digits) rounded once to float64, cached.

The closed forms below are evaluated in float64 only to size the tolerance (the magnitude of
each term) and to build the alternative answers the diagnosis tests; they are never the
reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from symsoft.derivation import reference


@dataclass(frozen=True, eq=False)
class Reference:
    values: np.ndarray  # the exact derivative rounded to float64
    s: np.ndarray  # the exact softmax rounded to float64
    scale: np.ndarray  # sum of |terms| of the closed form, per entry


def closed_form(of: str, s: np.ndarray, y: np.ndarray | None) -> np.ndarray:
    if of == "softmax":
        return np.diag(s) - np.outer(s, s)
    if of == "log_softmax":
        return np.eye(s.size) - s[None, :]
    return s * np.sum(y) - y


def term_scale(of: str, s: np.ndarray, y: np.ndarray | None) -> np.ndarray:
    s = np.abs(s)
    if of == "softmax":
        return np.diag(s) + np.outer(s, s)
    if of == "log_softmax":
        return np.eye(s.size) + s[None, :]
    return s * abs(float(np.sum(y))) + np.abs(y)


def _floats(a: np.ndarray | None) -> tuple[float, ...] | None:
    return None if a is None else tuple(float(v) for v in np.asarray(a, dtype=np.float64))


def get_reference(of: str, z: np.ndarray, y: np.ndarray | None) -> Reference:
    # the inputs are rounded to the checked dtype first, so the reference is exact for the
    # numbers the user's function actually receives
    return _cached(of, _floats(z), _floats(y) if of == "cross_entropy" else None)


# 50-digit arithmetic costs ~1 ms per K=10 Jacobian: reuse across checks with the same seed
@lru_cache(maxsize=16384)
def _cached(of: str, z: tuple[float, ...], y: tuple[float, ...] | None) -> Reference:
    s = np.array([float(v) for v in reference.softmax(z)])
    if of == "softmax":
        values = np.array([[float(v) for v in row] for row in reference.softmax_jacobian(z)])
    elif of == "log_softmax":
        values = np.array([[float(v) for v in row] for row in reference.log_softmax_jacobian(z)])
    else:
        values = np.array([float(v) for v in reference.cross_entropy_grad(z, y)])
    yv = None if y is None else np.array(y)
    for a in (values, s):
        a.flags.writeable = False
    scale = term_scale(of, s, yv)
    scale.flags.writeable = False
    return Reference(values, s, scale)
