"""The right answers: symsoft.reference (mpmath, 50 digits) rounded once to float64, cached.

The closed forms below are evaluated in float64 only to size the tolerance (the magnitude of
each term) and to build the alternative answers the diagnosis tests; they are never the
reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import mpmath
import numpy as np

from symsoft.derivation import reference


@dataclass(frozen=True, eq=False)
class Reference:
    values: np.ndarray  # the exact derivative (or g^T J) rounded to float64
    s: np.ndarray  # the exact softmax rounded to float64
    scale: np.ndarray  # sum of |terms| of the closed form, per entry
    loss: float | None = None  # the exact cross-entropy (divided as the gradient is)
    loss_scale: float = 0.0  # sum of |terms| of sum_i y_i (lse - z_i)


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


def get_reference(
    of: str,
    z: np.ndarray,
    y: np.ndarray | None,
    g: np.ndarray | None = None,
    divisor: int = 1,
) -> Reference:
    """The inputs are rounded to the checked dtype first, so the reference is exact for the
    numbers the user's function actually receives. g: the vector of a VJP g^T J. divisor: N
    for the gradient of a batch mean (the labels count 1/N each)."""
    ys = _floats(y) if of == "cross_entropy" else None
    return _cached(of, _floats(z), ys, _floats(g), divisor)


# 50-digit arithmetic costs ~1 ms per K=10 Jacobian: reuse across checks with the same seed
@lru_cache(maxsize=16384)
def _cached(
    of: str,
    z: tuple[float, ...],
    y: tuple[float, ...] | None,
    g: tuple[float, ...] | None,
    divisor: int,
) -> Reference:
    s = np.array([float(v) for v in reference.softmax(z)])
    loss, loss_scale = None, 0.0
    if of == "cross_entropy":
        with mpmath.workdps(reference.DIGITS):
            yd = [mpmath.mpf(v) / divisor for v in y]
            values = np.array([float(v) for v in reference.cross_entropy_grad(z, yd)])
            loss = float(reference.cross_entropy(z, yd))
            lse = abs(float(reference.log_sum_exp(z)))
        loss_scale = sum(
            abs(float(b)) * (abs(a) + lse) for a, b in zip(z, yd, strict=True) if b != 0
        )
        yv = np.array([float(v) for v in yd])
        scale = term_scale(of, s, yv)
    else:
        jac = (reference.softmax_jacobian if of == "softmax" else reference.log_softmax_jacobian)(z)
        scale = term_scale(of, s, None)
        if g is None:
            values = np.array([[float(v) for v in row] for row in jac])
        else:  # g^T J at 50 digits, rounded once
            with mpmath.workdps(reference.DIGITS):
                gm = [mpmath.mpf(v) for v in g]
                values = np.array(
                    [
                        float(mpmath.fsum(gm[i] * jac[i][j] for i in range(len(z))))
                        for j in range(len(z))
                    ]
                )
            scale = np.abs(np.array(g)) @ scale
    for a in (values, s, scale):
        a.flags.writeable = False
    return Reference(values, s, scale, loss, loss_scale)
