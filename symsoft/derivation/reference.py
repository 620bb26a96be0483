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


def _shifted(z: Sequence[float]) -> tuple[list[mpmath.mpf], mpmath.mpf]:
    """(z_i - m for each i, log sum_j e^(z_j - m)), m = max z. Kept apart: at |z| ~ 1e308, m +
    log(...) has no digit left for the logarithm (log 2 vanishes next to 1e308 at 50 digits),
    so softmax as exp(z_i - (m + log S)) would give [1, 1] for [1e308, 1e308]."""
    zs = _mp(z)
    m = max(zs)
    if m == mpmath.ninf:
        raise ValueError("softmax of a row whose entries are all -inf is undefined")
    d = [v - m for v in zs]
    return d, mpmath.log(mpmath.fsum(mpmath.exp(v) for v in d))


def log_sum_exp(z: Sequence[float]) -> mpmath.mpf:
    with mpmath.workdps(DIGITS):
        return max(_mp(z)) + _shifted(z)[1]


def softmax(z: Sequence[float]) -> list[mpmath.mpf]:
    with mpmath.workdps(DIGITS):
        d, log_s = _shifted(z)
        return [mpmath.exp(v - log_s) for v in d]


def log_softmax(z: Sequence[float]) -> list[mpmath.mpf]:
    with mpmath.workdps(DIGITS):
        d, log_s = _shifted(z)
        return [v - log_s for v in d]


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


def distillation_kl(zs: Sequence[float], zt: Sequence[float], temperature: float) -> mpmath.mpf:
    """T^2 sum_i q_i (log q_i - log s_i), q = softmax(zt / T), s = softmax(zs / T); classes
    with q_i = 0 contribute 0."""
    with mpmath.workdps(DIGITS):
        t = mpmath.mpf(temperature)
        log_s = log_softmax([mpmath.mpf(v) / t for v in zs])
        log_q = log_softmax([mpmath.mpf(v) / t for v in zt])
        return t**2 * mpmath.fsum(
            mpmath.exp(lq) * (lq - ls)
            for lq, ls in zip(log_q, log_s, strict=True)
            if lq != mpmath.ninf
        )


def log_softmax_vjp(z: Sequence[float], g: Sequence[float]) -> list[mpmath.mpf]:
    """sum_i g_i d log s_i / d z_j = g_j - s_j sum_i g_i (d log s_i / dz_j = delta_ij - s_j)."""
    with mpmath.workdps(DIGITS):
        gs = _mp(g)
        total = mpmath.fsum(gs)
        return [gj - sj * total for gj, sj in zip(gs, softmax(z), strict=True)]


def log_softmax_jvp(z: Sequence[float], v: Sequence[float]) -> list[mpmath.mpf]:
    """sum_j (delta_ij - s_j) v_j = v_i - <s, v>."""
    with mpmath.workdps(DIGITS):
        vs = _mp(v)
        inner = mpmath.fsum(sj * vj for sj, vj in zip(softmax(z), vs, strict=True))
        return [vi - inner for vi in vs]


def cross_entropy_hvp(
    z: Sequence[float], y: Sequence[float], v: Sequence[float]
) -> list[mpmath.mpf]:
    """sum_j sum(y) s_i (delta_ij - s_j) v_j = sum(y) s_i (v_i - <s, v>)."""
    with mpmath.workdps(DIGITS):
        s, vs = softmax(z), _mp(v)
        total = mpmath.fsum(_mp(y))
        inner = mpmath.fsum(sj * vj for sj, vj in zip(s, vs, strict=True))
        return [total * si * (vi - inner) for si, vi in zip(s, vs, strict=True)]


def distillation_kl_grad(
    zs: Sequence[float], zt: Sequence[float], temperature: float
) -> list[mpmath.mpf]:
    """d/d zs of distillation_kl's row: T (softmax(zs / T) - softmax(zt / T))."""
    with mpmath.workdps(DIGITS):
        t = mpmath.mpf(temperature)
        s = softmax([mpmath.mpf(v) / t for v in zs])
        q = softmax([mpmath.mpf(v) / t for v in zt])
        return [t * (si - qi) for si, qi in zip(s, q, strict=True)]


def cross_entropy_hessian(z: Sequence[float], y: Sequence[float]) -> list[list[mpmath.mpf]]:
    """d^2 L / dz_i dz_j = sum(y) s_i (delta_ij - s_j)."""
    with mpmath.workdps(DIGITS):
        total = mpmath.fsum(_mp(y))
        return [[total * entry for entry in row] for row in softmax_jacobian(z)]


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
