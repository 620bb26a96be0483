"""Finite differences as a second opinion on the reference itself.

Central differences of the mpmath forward functions (softmax, log-softmax, cross-entropy) at
50 digits with step 1e-20 keep ~30 digits (truncation ~1e-40, the difference cancels 20), so
they must agree with the closed-form reference to ~1e-30 of the size of the terms the forward
function is computed from, far below any float tolerance. Those terms grow with |z| (exp's
argument z_i - lse carries 1e-50 * |z|), so the agreement is measured against them, not the
function's value: with a fixed threshold against the value, correct code at |z| ~ 1e4 was
reported as a symsoft bug. A disagreement would be a symsoft bug, not the user's: the report
then says so instead of blaming the function under test. For a VJP the Jacobian g^T J is taken
of is checked.
"""

from __future__ import annotations

from dataclasses import dataclass

import mpmath
import numpy as np

from symsoft.derivation import reference

MAX_K = 64  # K^2 forward evaluations of K terms each at 50 digits
STEP = "1e-20"
AGREE = 1e-25  # relative to the size of the terms (see term_size); expect ~1e-30


@dataclass(frozen=True)
class FiniteDifferences:
    max_diff: float  # largest |FD - reference| over the entries checked
    agrees: bool
    skipped: int  # entries not checked: derivatives at or of masked (-inf) classes


def _forward(of: str, z: list, y: list | None) -> list:
    if of == "softmax":
        return reference.softmax(z)
    if of == "log_softmax":
        return reference.log_softmax(z)
    return [reference.cross_entropy(z, y)]


def _derivative(of: str, z: list, y: list | None) -> list[list]:
    """Rows: outputs, columns: d/dz_j (a single row for cross-entropy)."""
    if of == "softmax":
        return reference.softmax_jacobian(z)
    if of == "log_softmax":
        return reference.log_softmax_jacobian(z)
    return [reference.cross_entropy_grad(z, y)]


def term_size(z: list[float], y: list[float] | None) -> float:
    """The magnitude the forward function's rounding scales with: the logits (and logsumexp,
    at most max|z| + log K away), times the labels' weight for the loss."""
    finite = [abs(v) for v in z if np.isfinite(v)]
    weight = 1.0 if y is None else 1.0 + sum(abs(v) for v in y)
    return (1.0 + max(finite, default=0.0) + float(np.log(len(z)))) * weight


def finite_differences(of: str, z: np.ndarray, y: np.ndarray | None) -> FiniteDifferences | None:
    if z.size > MAX_K:
        return None
    zs = [float(v) for v in z]
    ys = None if y is None else [float(v) for v in y]
    with mpmath.workdps(reference.DIGITS):
        h = mpmath.mpf(STEP)
        exact = _derivative(of, zs, ys)
        # the difference quotient is accurate to ~1e-30 of the terms the function values are
        # made of, which can be far larger than the derivative (s_k -> 1 has a derivative ~0)
        top = max(max(abs(v) for row in exact for v in row), term_size(zs, ys))
        worst, skipped = mpmath.mpf(0), 0
        for j, zj in enumerate(zs):
            if zj == -np.inf:  # no neighbourhood to difference in
                skipped += len(exact)
                continue
            up = _forward(of, [*zs[:j], zj + h, *zs[j + 1 :]], ys)
            down = _forward(of, [*zs[:j], zj - h, *zs[j + 1 :]], ys)
            for i, (a, b) in enumerate(zip(up, down, strict=True)):
                if not (mpmath.isfinite(a) and mpmath.isfinite(b)):  # log s_i of a masked i
                    skipped += 1
                    continue
                top = max(top, abs(a), abs(b))
                worst = max(worst, abs((a - b) / (2 * h) - exact[i][j]))
        return FiniteDifferences(float(worst), bool(worst <= AGREE * top), skipped)
