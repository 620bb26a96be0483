"""Accuracy of emitted kernels against the 50-digit reference, as a fraction of their budgets.

Budgets, with u the unit roundoff of the dtype and K the number of classes:
  softmax              relative error per component <= (K + 3 + 2 max_j |z_j - max z|) u
                       (the shifted algorithm's bound, Blanchard, Higham & Higham 2021)
  log_softmax          absolute error <= (2 |l_i| + K + 3) u
  cross_entropy_index  absolute error <= (|L| + K + 3) u
  logsumexp            absolute error <= (|L| + K + 3) u
  log_softmax_vjp      absolute error per entry <= (|out_i| + (2K + 6 + 2 D) s_i sum_j |g_j|) u
  log_softmax_jvp      absolute error per entry <= (|out_i| + (2K + 6 + 2 D) sum_j s_j |v_j|) u
  cross_entropy_hvp    absolute error per entry
                       <= (2K + 6 + 2 D) sum(y) s_i (|v_i| + sum_j s_j |v_j|) u
  distillation_kl      absolute error per row <= T^2 (2K + 6 + (2K + 6 + 2 D_T) W) u, with
                       W = sum_i q_i (|log q_i| + |log s_i|) and D_T the larger spread of the
                       two tempered rows (the log-probabilities' budgets, weighted by q)
with D = max z - min z over the row (the spread of the softmax budget).
Results below the smallest normal number only need absolute accuracy of a few subnormal steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy

from symsoft.derivation import reference


@dataclass(frozen=True)
class Measurement:
    kernel: str
    dtype: str
    rows: int
    # worst error in ulps: of the reference value for relative budgets (softmax); of
    # max(|value|, 1) for absolute ones, where values near 0 would make ulps meaningless
    worst_ulps: float
    worst_fraction: float  # worst error / budget: must be <= 1


def sample_logits(k: int, dtype: type, rows: int, seed: int = 0) -> numpy.ndarray:
    """Equal parts N(0,1), N(0,30), 1e4 + N(0,1), one dominant logit, ties, and uniform
    over the range where exp does not overflow (|z| <= 700 for float64, 80 for float32)."""
    rng = numpy.random.default_rng([seed, k])
    part = -(-rows // 6)
    wide = 700.0 if dtype == numpy.float64 else 80.0
    dominant = rng.normal(size=(part, k))
    dominant[numpy.arange(part), rng.integers(0, k, part)] += rng.uniform(10, 40, part)
    ties = numpy.repeat(rng.normal(size=(part, 1)), k, axis=1)
    ties[:, : k // 2] += 1.0
    z = numpy.concatenate(
        [
            rng.normal(0, 1, (part, k)),
            rng.normal(0, 30, (part, k)),
            1e4 + rng.normal(0, 1, (part, k)),
            dominant,
            ties,
            rng.uniform(-wide, wide, (part, k)),
        ]
    )[:rows]
    return z.astype(dtype)


class Reference:
    """Reference values as an unevaluated sum hi + lo of two float64 arrays: rounding them to
    one float64 would itself cost up to half an ulp, as much as the budgets allow."""

    def __init__(self, function: Callable[..., object], *arrays: numpy.ndarray) -> None:
        flat = [a.astype(numpy.float64).tolist() for a in arrays]
        exact = numpy.array([function(*row) for row in zip(*flat, strict=True)], dtype=object)
        self.hi = exact.astype(numpy.float64)
        self.lo = (exact - self.hi).astype(numpy.float64)

    def error(self, got: numpy.ndarray) -> numpy.ndarray:
        # got - hi is exact when got is close to hi (Sterbenz), so this loses nothing
        return numpy.abs((got.astype(numpy.float64) - self.hi) - self.lo)


def _ulps(error: numpy.ndarray, expected: numpy.ndarray, dtype: type, floor: float) -> float:
    finfo = numpy.finfo(dtype)
    spacing = numpy.maximum(numpy.abs(expected), floor) * finfo.eps
    return float(numpy.max(error / spacing))


@cache
def _case(k: int, dtype_name: str, rows: int) -> tuple:
    """Inputs and references, shared by every backend measured on the same case."""
    z = sample_logits(k, numpy.dtype(dtype_name).type, rows)
    labels = numpy.random.default_rng(k).integers(0, k, rows)
    return (
        z,
        labels,
        Reference(reference.softmax, z),
        Reference(reference.log_softmax, z),
        Reference(reference.cross_entropy, z, numpy.eye(k)[labels]),
    )


def measure(kernels: object, k: int, dtype: type, rows: int = 10_000) -> list[Measurement]:
    """Run softmax, log_softmax and cross_entropy_index of `kernels` against the reference."""
    finfo = numpy.finfo(dtype)
    u = float(finfo.eps) / 2
    z, labels, s_ref, l_ref, c_ref = _case(k, numpy.dtype(dtype).name, rows)
    spread = (z.max(axis=-1, keepdims=True) - z.min(axis=-1, keepdims=True)).astype(numpy.float64)
    floor = float(finfo.tiny) * float(finfo.eps) * 4  # a few subnormal steps

    s_err = s_ref.error(kernels.softmax(z))
    s_budget = (k + 3 + 2 * spread) * u * numpy.abs(s_ref.hi) + floor
    l_err = l_ref.error(kernels.log_softmax(z))
    l_budget = (2 * numpy.abs(l_ref.hi) + k + 3) * u
    c_err = c_ref.error(kernels.cross_entropy_index(z, labels))
    c_budget = (numpy.abs(c_ref.hi) + k + 3) * u

    name = numpy.dtype(dtype).name
    return [
        Measurement(
            kernel,
            name,
            rows,
            _ulps(err, ref.hi, dtype, ulp_floor),
            float(numpy.max(err / budget)),
        )
        for kernel, err, ref, budget, ulp_floor in [
            ("softmax", s_err, s_ref, s_budget, float(finfo.tiny)),
            ("log_softmax", l_err, l_ref, l_budget, 1.0),
            ("cross_entropy_index", c_err, c_ref, c_budget, 1.0),
        ]
    ]


@cache
def _family_case(k: int, dtype_name: str, rows: int) -> tuple:
    """Inputs and references for the members measured by measure_family."""
    dtype = numpy.dtype(dtype_name).type
    z = sample_logits(k, dtype, rows)
    rng = numpy.random.default_rng([k, 18])
    v = rng.normal(size=(rows, k)).astype(dtype)
    y = rng.random((rows, k)).astype(dtype)
    teacher = sample_logits(k, dtype, rows, seed=1)
    references = {
        "logsumexp": Reference(reference.log_sum_exp, z),
        "log_softmax_vjp": Reference(reference.log_softmax_vjp, z, v),
        "log_softmax_jvp": Reference(reference.log_softmax_jvp, z, v),
        "cross_entropy_hvp": Reference(reference.cross_entropy_hvp, z, y, v),
        "s": Reference(reference.softmax, z),
    }
    for temperature in DISTILLATION_TEMPERATURES:
        references[f"kl{temperature}"] = Reference(
            lambda a, b, t=temperature: reference.distillation_kl(a, b, t), z, teacher
        )
    return z, v, y, teacher, references


# T = 1 divides exactly; T = 3 rounds every tempered logit
DISTILLATION_TEMPERATURES = (1.0, 3.0)


def measure_family(kernels: object, k: int, dtype: type, rows: int = 3000) -> list[Measurement]:
    """logsumexp, the log-softmax products, H v and distillation_kl of `kernels` against the
    reference, with the budgets of the module docstring."""
    finfo = numpy.finfo(dtype)
    u = float(finfo.eps) / 2
    z, v, y, teacher, ref = _family_case(k, numpy.dtype(dtype).name, rows)
    s = ref["s"].hi
    spread = (z.max(axis=-1, keepdims=True) - z.min(axis=-1, keepdims=True)).astype(numpy.float64)
    growth = 2 * k + 6 + 2 * spread
    a_v, a_y = numpy.abs(v.astype(numpy.float64)), numpy.abs(y.astype(numpy.float64))
    sv = numpy.sum(s * a_v, axis=-1, keepdims=True)
    floor = float(finfo.tiny) * 4
    results = []

    def record(name: str, got: numpy.ndarray, expected: Reference, budget: numpy.ndarray):
        err = expected.error(got)
        results.append(
            Measurement(
                name,
                numpy.dtype(dtype).name,
                rows,
                _ulps(err, expected.hi, dtype, 1.0),
                float(numpy.max(err / (budget + floor))),
            )
        )

    lse = ref["logsumexp"]
    record("logsumexp", kernels.logsumexp(z), lse, (numpy.abs(lse.hi) + k + 3) * u)
    out = ref["log_softmax_vjp"]
    total_g = numpy.sum(a_v, axis=-1, keepdims=True)
    record(
        "log_softmax_vjp",
        kernels.log_softmax_vjp(z, v),
        out,
        (numpy.abs(out.hi) + growth * s * total_g) * u,
    )
    out = ref["log_softmax_jvp"]
    record(
        "log_softmax_jvp", kernels.log_softmax_jvp(z, v), out, (numpy.abs(out.hi) + growth * sv) * u
    )
    out = ref["cross_entropy_hvp"]
    scale = numpy.sum(a_y, axis=-1, keepdims=True) * s * (a_v + sv)
    record("cross_entropy_hvp", kernels.cross_entropy_hvp(z, y, v), out, growth * scale * u)
    for temperature in DISTILLATION_TEMPERATURES:
        out = ref[f"kl{temperature}"]
        got = kernels.distillation_kl(z, teacher, temperature=temperature, reduction="none")
        weights = _tempered_weights(z, teacher, temperature)
        spread_t = numpy.maximum(_spread(z), _spread(teacher)) / temperature
        budget = temperature**2 * (2 * k + 6 + (2 * k + 6 + 2 * spread_t) * weights) * u
        record(f"distillation_kl (T={temperature:g})", got, out, budget)
    return results


def _spread(z: numpy.ndarray) -> numpy.ndarray:
    z = z.astype(numpy.float64)
    return z.max(axis=-1) - z.min(axis=-1)


def _tempered_weights(zs: numpy.ndarray, zt: numpy.ndarray, temperature: float) -> numpy.ndarray:
    """sum_i q_i (|log q_i| + |log s_i|) in float64 (a weight in the budget, not a result)."""

    def log_softmax(z: numpy.ndarray) -> numpy.ndarray:
        w = z.astype(numpy.float64) / temperature
        w = w - w.max(axis=-1, keepdims=True)
        return w - numpy.log(numpy.sum(numpy.exp(w), axis=-1, keepdims=True))

    log_s, log_q = log_softmax(zs), log_softmax(zt)
    with numpy.errstate(invalid="ignore"):
        terms = numpy.exp(log_q) * (numpy.abs(log_q) + numpy.abs(log_s))
    return numpy.sum(numpy.where(numpy.isfinite(terms), terms, 0), axis=-1)


# --- the cross-entropy with options (issue 17) ------------------------------------------------
#
# Budgets, normwise, with q = z / T, lse = log sum_j e^{q_j}, a the weighted smoothed targets,
# s = softmax(q), lam the z-loss coefficient, spread = max q - min q and Q = max_j |q_j| (the
# rounding of z / T moves q_j by up to Q u, and s_j relatively by 2 Q u):
#   loss of a row   |error| <= (K + 5) u (sum_j a_j (|lse| + Q) + 3 lam lse^2)
#   gradient entry  |error| <= 8 u ((s_j sum a + 2 lam |lse| s_j) (K + 3 + 2 spread + 2 Q)
#                                  + a_j + 2 lam s_j (Q + K)) / T
# (reduction "none"; the reductions scale both by 1 / D, and a sum of rows adds the usual
# n u of a sum). Measured worst on 1,200 mixed rows, K = 5, C and NumPy, both types: 0.36 of
# the loss budget and 0.50 of the gradient's.
OPTIONS_CASE = {"label_smoothing": 0.1, "temperature": 0.7, "z_loss": 1e-3}


@cache
def _options_case(k: int, dtype_name: str, rows: int, labelled: bool) -> tuple:
    dtype = numpy.dtype(dtype_name).type
    z = sample_logits(k, dtype, rows, seed=17)
    rng = numpy.random.default_rng([17, k])
    weight = rng.uniform(0, 2, k).astype(dtype)
    weight[0] = 0  # a class of weight 0
    labels = rng.integers(0, k, rows)
    y = rng.dirichlet(numpy.ones(k), rows).astype(dtype)
    w = weight.astype(numpy.float64).tolist()
    refs = [
        reference.cross_entropy_options(
            row.astype(numpy.float64).tolist(),
            **({"label": int(c)} if labelled else {"y": t.astype(numpy.float64).tolist()}),
            weight=w,
            **OPTIONS_CASE,
        )
        for row, c, t in zip(z, labels, y, strict=True)
    ]
    loss = numpy.array([float(r[0]) for r in refs])
    grad = numpy.array([[float(g) for g in r[1]] for r in refs])
    return z, labels, y, weight, loss, grad


def option_budgets(
    z: numpy.ndarray, a: numpy.ndarray, k: int, u: float
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """The budgets above for rows z (float64) and their weighted smoothed targets a."""
    T, lam = OPTIONS_CASE["temperature"], OPTIONS_CASE["z_loss"]
    q = z / T
    m = q.max(axis=-1, keepdims=True)
    lse = m + numpy.log(numpy.exp(q - m).sum(axis=-1, keepdims=True))
    s = numpy.exp(q - lse)
    Q = numpy.abs(q).max(axis=-1, keepdims=True)
    spread = m - q.min(axis=-1, keepdims=True)
    sum_a = a.sum(axis=-1, keepdims=True)
    loss = (k + 5) * u * ((a * (numpy.abs(lse) + Q)).sum(axis=-1) + 3 * lam * lse[..., 0] ** 2)
    main = (s * sum_a + 2 * lam * numpy.abs(lse) * s) * (k + 3 + 2 * spread + 2 * Q)
    grad = 8 * u * (main + a + 2 * lam * s * (Q + k)) / T
    return loss, grad


def measure_options(kernels: object, k: int, dtype: type, rows: int = 1200) -> list[Measurement]:
    """The fused loss and gradient with options (weights with a zero, smoothing,
    temperature, z-loss; reduction none), integer labels and probability targets."""
    finfo = numpy.finfo(dtype)
    u = float(finfo.eps) / 2
    name = numpy.dtype(dtype).name
    results = []
    for labelled in (True, False):
        z, labels, y, weight, ref_loss, ref_grad = _options_case(k, name, rows, labelled)
        targets = numpy.eye(k)[labels] if labelled else y.astype(numpy.float64)
        eps = OPTIONS_CASE["label_smoothing"]
        a = weight.astype(numpy.float64) * ((1 - eps) * targets + eps / k)
        kw = {"weight": weight, **OPTIONS_CASE}
        if labelled:
            loss, grad = kernels.cross_entropy_with_grad_index(z, labels, **kw)
        else:
            loss, grad = kernels.cross_entropy_with_grad(z, y, **kw)
        loss_budget, grad_budget = option_budgets(z.astype(numpy.float64), a, k, u)
        loss_err = numpy.abs(loss.astype(numpy.float64) - ref_loss)
        grad_err = numpy.abs(grad.astype(numpy.float64) - ref_grad)
        kind = "labels" if labelled else "targets"
        for what, err, ref, budget in (
            ("loss", loss_err, ref_loss, loss_budget),
            ("grad", grad_err, ref_grad, grad_budget + float(finfo.tiny)),
        ):
            results.append(
                Measurement(
                    f"cross_entropy_with_grad options ({kind}, {what})",
                    name,
                    rows,
                    _ulps(err, ref, dtype, 1.0),
                    float(numpy.max(err / budget)),
                )
            )
    return results
