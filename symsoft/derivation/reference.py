"""High-precision reference values, computed with mpmath straight from the formulas.

Independent of the SymPy derivation and of the emitted code: the tests, the reference
vectors and the gradient checker compare against these. Works for -inf entries (masked
classes); a row whose entries are all -inf has no defined softmax and raises ValueError.
"""

from __future__ import annotations

from collections.abc import Sequence

import mpmath

DIGITS = 50


def _mp(values: Sequence[float]) -> list[mpmath.mpf]:
    return [mpmath.mpf(v) for v in values]


def log_sum_exp(z: Sequence[float]) -> mpmath.mpf:
    with mpmath.workdps(DIGITS):
        zs = _mp(z)
        m = max(zs)
        if m == mpmath.ninf:
            raise ValueError("softmax of a row whose entries are all -inf is undefined")
        return m + mpmath.log(mpmath.fsum(mpmath.exp(v - m) for v in zs))


def softmax(z: Sequence[float]) -> list[mpmath.mpf]:
    with mpmath.workdps(DIGITS):
        lse = log_sum_exp(z)
        return [mpmath.exp(v - lse) for v in _mp(z)]


def log_softmax(z: Sequence[float]) -> list[mpmath.mpf]:
    with mpmath.workdps(DIGITS):
        lse = log_sum_exp(z)
        return [v - lse for v in _mp(z)]


def softmax_jacobian(z: Sequence[float]) -> list[list[mpmath.mpf]]:
    with mpmath.workdps(DIGITS):
        s = softmax(z)
        return [
            [si * ((1 if i == j else 0) - sj) for j, sj in enumerate(s)] for i, si in enumerate(s)
        ]


def log_softmax_jacobian(z: Sequence[float]) -> list[list[mpmath.mpf]]:
    """d log s_i / d z_j = delta_ij - s_j."""
    with mpmath.workdps(DIGITS):
        s = softmax(z)
        return [[(1 if i == j else 0) - sj for j, sj in enumerate(s)] for i in range(len(s))]


def cross_entropy(z: Sequence[float], y: Sequence[float]) -> mpmath.mpf:
    """-sum_i y_i log s_i; classes with y_i = 0 contribute 0 even where z_i = -inf."""
    with mpmath.workdps(DIGITS):
        logs = log_softmax(z)
        return -mpmath.fsum(yi * li for yi, li in zip(_mp(y), logs, strict=True) if yi != 0)


def cross_entropy_grad(z: Sequence[float], y: Sequence[float]) -> list[mpmath.mpf]:
    """s_i * sum_j y_j - y_i."""
    with mpmath.workdps(DIGITS):
        ys = _mp(y)
        total = mpmath.fsum(ys)
        return [si * total - yi for si, yi in zip(softmax(z), ys, strict=True)]


def cross_entropy_options(
    z: Sequence[float],
    y: Sequence[float] | None = None,
    label: int | None = None,
    *,
    weight: Sequence[float] | None = None,
    label_smoothing: float = 0.0,
    temperature: float = 1.0,
    z_loss: float = 0.0,
) -> tuple[mpmath.mpf, list[mpmath.mpf]]:
    """One row's loss and the gradient of that loss with respect to z, with the options.

    q = z / T; the targets y (or the one-hot row of label) are smoothed to
    (1 - eps) y + eps / K and weighted class by class, a_j = w_j ((1 - eps) y_j + eps / K);
    loss = sum_j a_j (lse - q_j) + lam lse^2 with lse = log sum_j e^{q_j}, a class with
    a_j = 0 adding 0 even where q_j = -inf; d loss / d z_j = (s_j sum a - a_j + 2 lam lse s_j)
    / T. Not reduced: the caller scales by its reduction's 1 / D.
    """
    with mpmath.workdps(DIGITS):
        k = len(z)
        T = mpmath.mpf(temperature)
        q = [v / T for v in _mp(z)]
        if y is None:
            if label is None:
                raise ValueError("give y or label")
            targets = [mpmath.mpf(int(j == label)) for j in range(k)]
        else:
            targets = _mp(y)
        eps, lam = mpmath.mpf(label_smoothing), mpmath.mpf(z_loss)
        w = _mp(weight) if weight is not None else [mpmath.mpf(1)] * k
        a = [wj * ((1 - eps) * yj + eps / k) for wj, yj in zip(w, targets, strict=True)]
        lse = log_sum_exp(q)
        s = [mpmath.exp(v - lse) for v in q]
        loss = mpmath.fsum(aj * (lse - qj) for aj, qj in zip(a, q, strict=True) if aj != 0)
        loss += lam * lse**2
        total = mpmath.fsum(a)
        grad = [(sj * total - aj + 2 * lam * lse * sj) / T for sj, aj in zip(s, a, strict=True)]
        return loss, grad
