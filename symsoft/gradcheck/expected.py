"""The right answers.

softmax, log-softmax and the plain cross-entropy: symsoft.reference (mpmath, 50 digits)
rounded once to float64, cached. The later members (log-sum-exp, distillation, the Hessian)
and cross-entropy with options: the definitions' derivatives written out here in NumPy's
extended precision (x86's 80-bit long double, 11 bits more than float64; the tests hold them
to torch autograd), rounded once, so they are independent of symsoft's derivation and of the
kernels. Beside each reference they give what the usual mistakes compute instead
(`alternatives`: bug class, label, prediction, its term scale), for the diagnosis.

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
from symsoft.gradcheck.settings import LossOptions

# (bug class, label, predicted output, its term scale)
Alternative = tuple[str, str, np.ndarray, np.ndarray]


@dataclass(frozen=True, eq=False)
class Reference:
    values: np.ndarray  # the exact derivative (or g^T J) rounded to float64
    s: np.ndarray  # the exact softmax (of z/T; distillation: the student's) rounded to float64
    scale: np.ndarray  # sum of |terms| of the closed form, per entry
    loss: float | None = None  # the exact loss (divided as the gradient is); None: unchecked
    loss_scale: float = 0.0  # sum of |terms| of the loss
    alternatives: tuple[Alternative, ...] = ()  # what the usual mistakes give instead
    labels: np.ndarray | None = None  # the effective labels y/divisor (options: see ce_batch)


def closed_form(of: str, s: np.ndarray, y: np.ndarray | None) -> np.ndarray | None:
    """The derivative from a softmax s (None: not a function of s and y alone)."""
    if of == "softmax":
        return np.diag(s) - np.outer(s, s)
    if of == "log_softmax":
        return np.eye(s.size) - s[None, :]
    if of == "logsumexp":
        return s
    if of == "cross_entropy_hessian":
        return float(np.sum(y)) * (np.diag(s) - np.outer(s, s))
    if of == "cross_entropy":
        return s * np.sum(y) - y
    return None


def term_scale(of: str, s: np.ndarray, y: np.ndarray | None) -> np.ndarray | None:
    s = np.abs(s)
    if of == "softmax":
        return np.diag(s) + np.outer(s, s)
    if of == "log_softmax":
        return np.eye(s.size) + s[None, :]
    if of == "logsumexp":
        return s
    if of == "cross_entropy_hessian":
        return abs(float(np.sum(y))) * (np.diag(s) + np.outer(s, s))
    if of == "cross_entropy":
        return s * abs(float(np.sum(y))) + np.abs(y)
    return None


# ---- extended precision (NumPy long double) ----

LD = np.longdouble


def _ld(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).astype(LD)


def softmax_ld(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """softmax and log-sum-exp along the last axis, max-shifted, -inf entries giving 0."""
    top = np.max(u, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, LD(0))
    e = np.exp(u - top)
    total = np.sum(e, axis=-1, keepdims=True)
    return e / total, (top + np.log(total))[..., 0]


def _frozen(*arrays: np.ndarray | None) -> None:
    for a in arrays:
        if a is not None:
            a.flags.writeable = False


def _f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def logsumexp_reference(z: np.ndarray) -> Reference:
    """d lse / dz = softmax(z); the loss beside it is lse itself."""
    s, lse = softmax_ld(_ld(z))
    values = _f64(s)
    _frozen(values)
    return Reference(values, values, values, float(lse), abs(float(lse)) + 1.0)


def hessian_reference(z: np.ndarray, y: np.ndarray) -> Reference:
    """d^2/dz^2 of -sum y log softmax(z) = sum(y) (diag(s) - s s^T); y already divided."""
    s, _ = softmax_ld(_ld(z))
    total = np.sum(_ld(y))
    outer = np.outer(s, s)
    values = _f64(total * (np.diag(s) - outer))
    scale = _f64(abs(total) * (np.diag(s) + outer))
    s64 = _f64(s)
    yv = _f64(y)
    alternatives = (
        (
            "assumes_sum_one",
            "got = diag(s) - s s^T: the factor sum(y) is missing",
            _f64(np.diag(s) - outer),
            _f64(np.diag(s) + outer),
        ),
        (
            "missing_term",
            "got = sum(y) diag(s): the -sum(y) s s^T term is missing (diagonal of diag(s) only)",
            _f64(total * np.diag(s)),
            _f64(abs(total) * np.diag(s)),
        ),
        (
            "missing_term",
            "got = sum(y) diag(s (1 - s)): only the diagonal, the off-diagonal -s_i s_j missing",
            _f64(total * np.diag(s - s * s)),
            _f64(abs(total) * np.diag(s + s * s)),
        ),
        (
            "missing_term",
            "got = -sum(y) s s^T: the sum(y) diag(s) term is missing",
            _f64(-total * outer),
            _f64(abs(total) * outer),
        ),
    )
    _frozen(values, scale, s64, yv)
    return Reference(values, s64, scale, alternatives=alternatives, labels=yv)


def distillation_reference(
    zs: np.ndarray, zt: np.ndarray, temperature: float, divisor: float
) -> Reference:
    """d/dz_s of T^2 KL(p_t || p_s) with p = softmax(z/T): T (p_s - p_t), / divisor."""
    t = LD(temperature)
    us, ut = _ld(zs) / t, _ld(zt) / t
    ps, lse_s = softmax_ld(us)
    pt, lse_t = softmax_ld(ut)
    d = LD(divisor)
    values = _f64(t * (ps - pt) / d)
    scale = _f64(t * (ps + pt) / d)
    live = pt > 0  # classes masked in both (-inf) contribute 0
    log_s = np.where(live, us - lse_s, LD(0))
    log_t = np.where(live, ut - lse_t, LD(0))
    loss = t * t * np.sum(np.where(live, pt * (log_t - log_s), LD(0))) / d
    # each log p carries an absolute error of about u*D (D: the tolerance's logit size, which
    # the budget multiplies): a term of size 1 per log, beside |log p| itself
    sizes = abs(log_t) + abs(log_s) + 2
    loss_scale = t * t * np.sum(np.where(live, pt * sizes, LD(0))) / d
    # the gradient of T^2 KL(p_s || p_t) (arguments swapped): T p_s (a - <p_s, a>)
    a = np.where(ps > 0, (us - lse_s) - np.where(np.isfinite(ut), ut - lse_t, LD(0)), LD(0))
    reverse = t * ps * (a - np.sum(ps * a)) / d
    plain_s, _ = softmax_ld(_ld(zs))
    plain_t, _ = softmax_ld(_ld(zt))
    alternatives = (
        (
            "kl_swapped",
            "got = T (p_t - p_s): student and teacher swapped",
            -values,
            scale,
        ),
        (
            "kl_swapped",
            "got = the gradient of T^2 KL(p_s || p_t): KL's arguments swapped",
            _f64(reverse),
            _f64(t * ps * (abs(a) + np.sum(ps * abs(a))) / d),
        ),
        (
            "temperature",
            "got = (p_s - p_t) / T = expected / T^2: the loss's factor T^2 is missing",
            _f64((ps - pt) / t / d),
            _f64((ps + pt) / t / d),
        ),
        (
            "temperature",
            "got = T^2 (p_s - p_t) = T * expected: the 1/T of d(z/T)/dz is missing",
            _f64(t * t * (ps - pt) / d),
            _f64(t * t * (ps + pt) / d),
        ),
        (
            "temperature",
            "got = p_s - p_t = expected / T: both T^2 and 1/T are missing",
            _f64((ps - pt) / d),
            _f64((ps + pt) / d),
        ),
        (
            "temperature",
            "got = T (softmax(z_s) - softmax(z_t)): the logits are not divided by T",
            _f64(t * (plain_s - plain_t) / d),
            _f64(t * (plain_s + plain_t) / d),
        ),
        (
            "temperature",
            "got = softmax(z_s) - softmax(z_t): no temperature at all (the function's T is 1?)",
            _f64((plain_s - plain_t) / d),
            _f64((plain_s + plain_t) / d),
        ),
    )
    s64 = _f64(ps)
    _frozen(values, scale, s64)
    return Reference(values, s64, scale, float(loss), float(loss_scale), alternatives)


def ce_batch(
    z: np.ndarray,
    labels: np.ndarray | None,
    y: np.ndarray | None,
    options: LossOptions,
    reduction: str,
) -> list[Reference]:
    """Cross-entropy with options on a batch (N, K), as torch.nn.functional.cross_entropy
    defines it, plus temperature and z-loss. With a = the row's weighted, smoothed target
    (integer labels: (1 - eps) w_c onehot(c) + (eps/K) w; probabilities: w (1 - eps) y +
    (eps/K) w; 0 on ignored rows), u = z/T and D the normaliser (mean: sum of w_c over the
    non-ignored rows, or N for probability targets; else 1):

        loss_n = (-sum_k a_k log softmax(u)_k + lambda lse(u)^2 [not ignored]) / D
        grad_n = (s (sum(a) + 2 lambda lse(u) [not ignored]) - a) / (T D)

    A batch whose rows are all ignored has D = 0 under mean: the gradient is 0 (PyTorch's)
    and the loss (0/0, NaN in PyTorch) is not checked."""
    n, k = z.shape
    t, eps, lam = LD(options.temperature), LD(options.label_smoothing), LD(options.z_loss)
    w = np.ones(k, dtype=LD) if options.weight is None else np.array(options.weight, dtype=LD)
    u = _ld(z) / t
    s, lse = softmax_ld(u)
    ignored = np.zeros(n, dtype=bool)
    smooth = eps / k * w  # the smoothing part of a, per class
    if labels is not None:
        if options.ignore_index is not None:
            ignored = labels == options.ignore_index
        a = np.zeros((n, k), dtype=LD)
        row_w = np.zeros(n, dtype=LD)
        for i in np.flatnonzero(~ignored):
            a[i] = smooth
            a[i, labels[i]] += (1 - eps) * w[labels[i]]
            row_w[i] = w[labels[i]]
        total = np.sum(row_w)
    else:
        a = w * ((1 - eps) * _ld(y) + eps / k)
        total = LD(n)
    live = ~ignored
    d = total if reduction == "mean" else LD(1)
    empty = d == 0  # every row ignored under mean
    if empty:
        d = LD(1)
    big = np.array([np.max(np.abs(r[np.isfinite(r)]), initial=0) for r in u], dtype=LD)
    zl = np.where(live, 2 * lam * lse, LD(0))  # the z-loss's coefficient of s
    zl_scale = np.where(live, 2 * lam * (abs(lse) + big + 1), LD(0))
    suma = np.sum(a, axis=1)
    grad = (s * (suma + zl)[:, None] - a) / (t * d)
    scale = (s * (abs(suma) + zl_scale)[:, None] + abs(a)) / (t * d)
    logs = np.where(a != 0, u - lse[:, None], LD(0))
    loss = (-np.sum(a * logs, axis=1) + np.where(live, lam * lse * lse, LD(0))) / d
    loss_scale = np.sum(a * (abs(np.where(a != 0, u, LD(0))) + abs(lse)[:, None]), axis=1)
    loss_scale = (loss_scale + np.where(live, lam * (lse * lse + 2 * abs(lse) * (big + 1)), 0)) / d
    # the normalisers of the usual mistakes
    n_live = LD(np.sum(live))
    counted = total
    if labels is not None and options.ignore_index is not None and 0 <= options.ignore_index < k:
        counted = total + w[options.ignore_index] * np.sum(ignored)
    refs = []
    for i in range(n):
        alts: list[Alternative] = []
        g, sc = grad[i], scale[i]

        def alt(bug: str, label: str, pred: np.ndarray, sc_: np.ndarray, alts: list = alts) -> None:
            alts.append((bug, label, _f64(pred), _f64(sc_)))

        if live[i] and reduction == "mean" and labels is not None and not empty:
            alt(
                "mean_normaliser",
                "got = expected * sum(w)/N: mean divides by N (every row) where it should "
                "divide by the sum of the weights of the non-ignored rows",
                g * d / n,
                sc * d / n,
            )
            if options.weight is not None:
                alt(
                    "mean_normaliser",
                    "got = expected * sum(w)/N_kept: mean divides by the number of non-ignored "
                    "rows where it should divide by the sum of their weights",
                    g * d / n_live,
                    sc * d / n_live,
                )
            if counted != total:
                alt(
                    "ignored_rows",
                    "the mean's normaliser counts the weights of ignored rows",
                    g * d / counted,
                    sc * d / counted,
                )
        if ignored[i]:
            d_bug = LD(1) if reduction != "mean" else (total if not empty else LD(n))
            smoothing = (s[i] * np.sum(smooth) - smooth) / (t * d_bug)
            smoothing_scale = (s[i] * np.sum(smooth) + smooth) / (t * d_bug)
            z_row = 2 * lam * lse[i] * s[i] / (t * d_bug)
            z_scale = 2 * lam * (abs(lse[i]) + big[i] + 1) * s[i] / (t * d_bug)
            if eps:
                alt(
                    "ignored_rows",
                    "an ignored row's gradient holds the smoothing term (eps/K)(sum(w) s - w)/T",
                    smoothing,
                    smoothing_scale,
                )
            if lam:
                alt(
                    "ignored_rows",
                    "an ignored row's gradient holds the z-loss term 2 lambda lse s/T",
                    z_row,
                    z_scale,
                )
            if eps and lam:
                alt(
                    "ignored_rows",
                    "an ignored row's gradient holds the smoothing and z-loss terms",
                    smoothing + z_row,
                    smoothing_scale + z_scale,
                )
            c = options.ignore_index
            if labels is not None and c is not None and 0 <= c < k:
                whole = smooth.copy()
                whole[c] += (1 - eps) * w[c]
                alt(
                    "ignored_rows",
                    "an ignored row is computed as if its label were a class (weighted)",
                    (s[i] * np.sum(whole) - whole) / (t * d_bug) + z_row,
                    (s[i] * np.sum(whole) + whole) / (t * d_bug) + z_scale,
                )
        if options.temperature != 1.0:
            alt("temperature", "got = T * expected: the 1/T of d(z/T)/dz is missing", g * t, sc * t)
        if lam and live[i]:
            half = lam * lse[i] * s[i] / (t * d)
            alt(
                "z_loss_factor",
                "got = expected - lambda lse s/T: the z-loss gradient 2 lambda lse s/T "
                "without its factor 2",
                g - half,
                sc,
            )
            alt(
                "z_loss_factor",
                "got = expected - 2 lambda lse s/T: the z-loss term's gradient is missing",
                g - 2 * half,
                sc,
            )
        values, sc64, s64 = _f64(g), _f64(sc), _f64(s[i])
        eff = _f64(a[i] / (t * d))
        _frozen(values, sc64, s64, eff)
        refs.append(
            Reference(
                values,
                s64,
                sc64,
                None if empty else float(loss[i]),
                float(loss_scale[i]),
                tuple(alts),
                eff,
            )
        )
    return refs


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
