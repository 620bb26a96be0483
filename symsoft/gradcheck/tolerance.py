"""How far a correct implementation in a given dtype may be from the exact answer.

Per entry:  |got - expected| <= C * (K + D) * u * scale  +  C * tiny * (1 + sum|y|)

- u is the unit roundoff of the dtype (2**-53 for float64, 2**-24 for float32).
- D = (max z - min z) + |max z| over the finite logits. exp turns an absolute error in its
  argument into a relative error of the result: z_i - max(z) carries u*(max z - min z), and
  implementations that form z - logsumexp(z) also carry u*|logsumexp| ~ u*|max z|.
- K covers the sum of the exponentials.
- scale is the sum of the absolute values of the terms of the closed form (s_i*delta_ij +
  s_i*s_j, delta_ij + s_j, s_i*sum(y) + y_i): cancellation between those terms is legal
  (1 - s_k when s_k -> 1), so the error is measured against the terms, not the result.
- the second part admits underflow: results below the dtype's smallest normal number are
  allowed to flush towards 0 (and masked entries, whose scale is 0, must be 0 up to that).
"""

from __future__ import annotations

import numpy as np

# Correct NumPy implementations (max shift, exp(z - logsumexp), exp of a torch-style
# log-softmax, scipy.special.softmax, a Python loop; float32 and float64; K = 1..17) reach at
# most 2.05 * (K + D) * u * scale: a Jacobian entry multiplies two softmax values, doubling
# their error. C = 16 leaves a margin of 8, while real bugs (float32 downcasts included) miss
# by many orders of magnitude.
C = 16.0


def unit_roundoff(dtype: np.dtype) -> float:
    return float(np.finfo(dtype).eps) / 2


def logit_size(z: np.ndarray) -> float:
    """D in the module docstring; 0 when every entry is -inf."""
    finite = np.asarray(z, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0
    top = float(finite.max())
    return top - float(finite.min()) + abs(top)


def budget(dtype: np.dtype, k: int, z: np.ndarray) -> float:
    """The relative part, C * (K + D) * u."""
    return C * (k + logit_size(z)) * unit_roundoff(dtype)


def entry_tolerance(
    dtype: np.dtype, k: int, z: np.ndarray, scale: np.ndarray, y: np.ndarray | None = None
) -> np.ndarray:
    weight = 1.0 if y is None else 1.0 + float(np.sum(np.abs(y)))
    floor = C * float(np.finfo(dtype).tiny) * weight
    return budget(dtype, k, z) * np.asarray(scale, dtype=np.float64) + floor


def describe(dtype: np.dtype) -> str:
    return (
        f"|got - expected| <= C*(K + D)*u*scale + C*tiny*(1 + sum|y|) per entry, C = {C:g}, "
        f"u = {unit_roundoff(dtype):.3g} ({np.dtype(dtype).name});\n"
        "  D = spread + |max| of the finite logits, scale = sum of |terms| of the closed form"
    )
