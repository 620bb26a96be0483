"""The structural hypotheses: what a wrong function computed instead of the derivative.

Each yields variants (label, predicted output, the term scale of that prediction), evaluated in
float64 from the reference softmax. A hypothesis explains an input when the output matches a
variant entry by entry within the dtype's tolerance (NaN/inf in the same places), and that
variant is itself clearly wrong, so it cannot also pass for imprecision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from symsoft.gradcheck.expected import closed_form, term_scale
from symsoft.gradcheck.runner import Outcome
from symsoft.gradcheck.settings import Settings
from symsoft.gradcheck.tolerance import entry_tolerance

# a hypothesis holds if it is this close to got, in units of the dtype's tolerance
HYP_FACTOR = 4.0

Variant = tuple[str, np.ndarray, np.ndarray]  # (label, predicted got, its term scale)


def finite(a: np.ndarray | None) -> bool:
    return a is not None and bool(np.all(np.isfinite(a)))


def close(
    o: Outcome,
    pred: np.ndarray,
    scale: np.ndarray,
    st: Settings,
    dtype: np.dtype | None = None,
    factor: float = HYP_FACTOR,
) -> bool:
    """got = pred entry by entry: NaN/inf in the same places, the rest within tolerance.

    A prediction with no finite entry explains nothing: any NaN output would match it."""
    if o.got is None or not np.isfinite(pred).any():
        return False
    bad = ~np.isfinite(o.got)
    if not np.array_equal(bad, ~np.isfinite(pred)):
        return False
    tol = factor * entry_tolerance(dtype or st.dtype, st.k, o.case.size_z, scale, o.y64)
    return bool(np.all(np.abs(o.got[~bad] - pred[~bad]) <= tol[~bad]))


def distinct(o: Outcome, pred: np.ndarray, scale: np.ndarray, st: Settings) -> bool:
    """The alternative is itself clearly wrong: somewhere it is outside the tolerance of the
    expected value (with a margin), so it cannot pass for imprecision."""
    tol = 2 * HYP_FACTOR * entry_tolerance(st.dtype, st.k, o.case.size_z, o.ref.scale, o.y64)
    with np.errstate(invalid="ignore"):
        return bool(np.any(~(np.abs(pred - o.ref.values) <= tol)))


def _project(o: Outcome, st: Settings, variants: Iterator[Variant]) -> Iterator[Variant]:
    """Jacobian variants as what a VJP would return: g^T J_variant."""
    if not st.vjp:
        yield from variants
        return
    g = o.case.g.astype(np.float64)
    for label, pred, scale in variants:
        yield f"{label} (inside g^T J)", g @ pred, np.abs(g) @ scale


def _shift_name(r: int, k: int) -> int:
    return r if r <= k // 2 else r - k


def _sign(o: Outcome, st: Settings) -> Iterator[Variant]:
    yield "got = -expected", -o.ref.values, o.ref.scale


def scaled(o: Outcome, st: Settings) -> Iterator[Variant]:
    e = o.ref.values
    if not finite(o.got) or not e.any():
        return
    best = np.unravel_index(np.argmax(np.abs(e) / o.tol), e.shape)  # the most precise entry
    c = float(o.got[best] / e[best])
    if abs(c - 1) < 1e-6 or c == 0 or not np.isfinite(c):  # c = 0: the answer is all 0
        return
    label = f"got = {c:.6g} * expected"
    near = max(1e-6, 1e3 * float(np.finfo(st.dtype).eps))  # c is read off one rounded entry
    if o.rows > 1 and o.divisor == 1 and abs(c * o.rows - 1) < near:
        label = "got = expected / N (N = rows in the batch): the gradient of the batch mean"
    elif o.divisor > 1 and abs(c - o.divisor) < near * c:
        label = "got = N * expected (N = rows in the batch): the gradient of the batch sum"
    yield label, c * e, abs(c) * o.ref.scale


def _missing(o: Outcome, st: Settings) -> Iterator[Variant]:
    yield from _project(o, st, _missing_terms(o, st))


def _missing_terms(o: Outcome, st: Settings) -> Iterator[Variant]:
    s, y = o.ref.s, o.y64
    if st.of == "softmax":
        ss = np.outer(s, s)
        yield "got = diag(s): the -s s^T term is missing", np.diag(s), np.diag(s)
        yield "got = -s s^T: the diag(s) term is missing", -ss, ss
        yield (
            "got = diag(s(1 - s)): only the diagonal, the off-diagonal -s_i s_j are missing",
            np.diag(s - s * s),
            np.diag(s + s * s),
        )
    elif st.of == "log_softmax":
        eye, ones_s = np.eye(st.k), np.broadcast_to(s, (st.k, st.k))
        yield "got = I: the -1 s^T term is missing", eye, eye
        yield "got = -1 s^T: the identity term is missing", -ones_s, ones_s
        yield (
            "got = diag(1 - s): only the diagonal, the off-diagonal -s_j are missing",
            np.diag(1 - s),
            np.diag(1 + s),
        )
    elif st.of == "cross_entropy":
        t = float(np.sum(y))
        yield "got = s*sum(y): the -y term is missing", s * t, s * abs(t)
        yield "got = -y: the softmax term s*sum(y) is missing", -y, np.abs(y)


def _transposed(o: Outcome, st: Settings) -> Iterator[Variant]:
    # softmax's Jacobian is symmetric, so only log-softmax can show this
    if st.matrix:
        yield "got = expected^T", o.ref.values.T, o.ref.scale.T
    elif st.vjp:  # J g instead of g^T J
        g = o.case.g.astype(np.float64)
        jac, scale = closed_form(st.of, o.ref.s, None), term_scale(st.of, o.ref.s, None)
        yield "got = J g, a Jacobian-vector product, not g^T J", jac @ g, scale @ np.abs(g)


def _other_function(o: Outcome, st: Settings) -> Iterator[Variant]:
    other = {"softmax": "log_softmax", "log_softmax": "softmax"}.get(st.of)
    if other:
        label = {
            "log_softmax": "got = I - 1 s^T, the Jacobian of log-softmax (not of softmax)",
            "softmax": "got = diag(s) - s s^T, the Jacobian of softmax (not of log-softmax)",
        }[other]
        variant = (label, closed_form(other, o.ref.s, None), term_scale(other, o.ref.s, None))
        yield from _project(o, st, iter([variant]))


def _sum_one(o: Outcome, st: Settings) -> Iterator[Variant]:
    if st.of == "cross_entropy" and st.labels == "any":
        s, y = o.ref.s, o.y64
        yield "got = s - y", s - y, s + np.abs(y)


def _one_hot(o: Outcome, st: Settings) -> Iterator[Variant]:
    if st.of == "cross_entropy" and st.labels != "one-hot":
        s, y = o.ref.s, o.y64
        t = float(np.sum(y))
        hard = np.zeros(st.k)
        hard[np.argmax(y)] = t
        yield "got = s*sum(y) - sum(y)*onehot(argmax(y))", s * t - hard, s * abs(t) + np.abs(hard)


def _shifted(o: Outcome, st: Settings) -> Iterator[Variant]:
    e, sc, s, y = o.ref.values, o.ref.scale, o.ref.s, o.y64
    # off by one or two; longer rotations are still caught as "permuted"
    for r in sorted({r % st.k for r in (1, -1, 2, -2)} - {0}):
        d = -_shift_name(r, st.k)  # np.roll(a, r)[i] == a[i - r]
        if st.vjp or (e.ndim == 1 and st.of != "cross_entropy"):
            yield f"entry i holds entry i{d:+d}", np.roll(e, r), np.roll(sc, r)
        elif st.of == "cross_entropy":
            t = float(np.sum(y))
            yield f"entry i holds entry i{d:+d}", np.roll(e, r), np.roll(sc, r)
            yield f"y[i{d:+d}] used for class i", s * t - np.roll(y, r), s * abs(t) + np.roll(y, r)
            yield f"s[i{d:+d}] used for class i", np.roll(s, r) * t - y, np.roll(s, r) * t + y
        else:
            yield f"row i holds row i{d:+d}", np.roll(e, r, 0), np.roll(sc, r, 0)
            yield f"column j holds column j{d:+d}", np.roll(e, r, 1), np.roll(sc, r, 1)
            both = (r, r)
            yield (
                f"entry (i, j) holds entry (i{d:+d}, j{d:+d})",
                np.roll(e, both, (0, 1)),
                np.roll(sc, both, (0, 1)),
            )


def _permuted(o: Outcome, st: Settings) -> Iterator[Variant]:
    if not finite(o.got):
        return
    # matching sorted values to sorted values is the closest any rearrangement can get
    where = np.argsort(o.got, axis=None, kind="stable")
    order = np.argsort(o.ref.values, axis=None, kind="stable")
    pred, scale = np.empty(o.got.size), np.empty(o.got.size)
    pred[where] = o.ref.values.ravel()[order]
    scale[where] = o.ref.scale.ravel()[order]
    yield (
        "the expected values, in other places",
        pred.reshape(o.got.shape),
        scale.reshape(o.got.shape),
    )


# the lower bounds people clip probabilities to: 1e-1 ... 1e-40, and the dtypes' eps and tiny
# the most common first: the first that matches names the input
_COMMON = (15, 7, 12, 8, 10, 6, 9, 5, 16, 20, 30)
CLIP_EPS = (
    *(10.0**-e for e in _COMMON),
    *(float(np.finfo(t).eps) for t in (np.float32, np.float64)),
    *(float(np.finfo(t).tiny) for t in (np.float32, np.float64)),
    *(10.0**-e for e in range(1, 41) if e not in _COMMON),
)


def _clipped(o: Outcome, st: Settings) -> Iterator[Variant]:
    """np.clip(p, eps, 1) (or 1 - eps) inside the gradient: the chain -y/p through the clipped
    p, the same with the clip's zero derivative where it clips (autograd), or p - y from the
    clipped p. Where s_y < eps the first two make the gradient vanish."""
    if st.of != "cross_entropy" or not finite(o.got):
        return
    s, y = o.ref.s, o.y64
    t = float(np.sum(y))
    live = np.isfinite(o.case.z)
    for eps in CLIP_EPS:
        low = s < eps
        if not (low & live).any():  # nothing clipped but masked classes: no evidence of a clip
            continue
        for top, name in ((1.0, "1"), (1.0 - eps, "1 - eps")):
            c = np.clip(s, eps, top)
            v = -y / c
            chain = s * (v - np.dot(s, v))
            scale = s * np.abs(v) + s * np.dot(s, np.abs(v))
            clip = f"clip(s, {eps:.3g}, {name})"
            yield f"got = J^T (-y / {clip}): the chain rule through clipped p", chain, scale
            held = np.where(low | (s > top), 0.0, v)  # d clip/d p = 0 where it clips
            yield (
                f"got = J^T (d{clip}/ds * -y / {clip}): autograd through the clip, "
                "0 where it clips",
                s * (held - np.dot(s, held)),
                s * np.abs(held) + s * np.dot(s, np.abs(held)),
            )
            yield f"got = {clip} * sum(y) - y", c * t - y, c * abs(t) + np.abs(y)


def _vjp_sum(o: Outcome, st: Settings) -> Iterator[Variant]:
    """Log-softmax's backward pass g - s*sum(g) written without the sum."""
    if st.of == "log_softmax" and st.vjp:
        g, s = o.case.g.astype(np.float64), o.ref.s
        if np.array_equal(s * g, s):  # g = 1: both mistakes give g - s
            yield "got = g - s (g = 1 here): s*g or s where the VJP needs s*sum(g)", g - s, g + s
            return
        yield (
            "got = g - s*g: s times g entry by entry where the VJP needs s*sum(g)",
            g - s * g,
            np.abs(g) + s * np.abs(g),
        )
        yield (
            "got = g - s: the factor sum(g) is missing (right only where sum(g) = 1)",
            g - s,
            np.abs(g) + s,
        )


def _nothing(o: Outcome, st: Settings) -> Iterator[Variant]:
    """Classes whose variants the reference computes (expected.py's alternatives) alone."""
    return iter(())


def with_alternatives(
    bug: str, hypothesis: Callable[[Outcome, Settings], Iterator[Variant]]
) -> Callable[[Outcome, Settings], Iterator[Variant]]:
    """The reference's own alternatives for this class first, then the hypothesis's."""

    def variants(o: Outcome, st: Settings) -> Iterator[Variant]:
        for name, label, pred, scale in o.ref.alternatives:
            if name == bug:
                yield label, pred, scale
        yield from hypothesis(o, st)

    return variants


# the specific classes first: the greedy cover gives a tie to the earlier class, so that
# "student and teacher swapped" is named rather than "sign flipped", "mean divides by N"
# rather than "scaled by a constant"
STRUCTURAL: tuple[tuple[str, Callable[[Outcome, Settings], Iterator[Variant]]], ...] = (
    ("kl_swapped", _nothing),
    ("temperature", _nothing),
    ("ignored_rows", _nothing),
    ("mean_normaliser", _nothing),
    ("z_loss_factor", _nothing),
    ("vjp_sum", _vjp_sum),
    ("sign_flipped", _sign),
    ("clipped", _clipped),
    ("scaled", scaled),
    ("missing_term", _missing),
    ("transposed", _transposed),
    ("wrong_function", _other_function),
    ("assumes_sum_one", _sum_one),
    ("assumes_one_hot", _one_hot),
    ("shifted", _shifted),
    ("permuted", _permuted),
)

EXPLAIN = {
    "clipped": "Where s_i is below the clip the gradient vanishes or is wrong: clip (if at all) "
    "inside the loss only, and compute the gradient as s*sum(y) - y from the unclipped s.",
    "transposed": "J_log = I - 1 s^T is not symmetric, so the transpose shows: row i must be "
    "the gradient of log s_i, column j the derivative by z_j.",
    "shifted": "An index is off by one.",
    "kl_swapped": "The loss is T^2 KL(p_teacher || p_student); its gradient with respect to "
    "the student's logits is T (p_student - p_teacher) per row.",
    "temperature": "The logits enter as z/T, so every derivative by z carries the chain rule's "
    "1/T; distillation's loss is T^2 KL, so its gradient is T^2 (1/T) (p_s - p_t).",
    "ignored_rows": "A row whose label is ignore_index contributes nothing: its gradient is 0 "
    "(smoothing and z-loss included), and its weight is not in the mean's normaliser.",
    "mean_normaliser": "With integer labels, PyTorch's mean divides by the sum of w[label] over "
    "the non-ignored rows (N only without weights and ignored rows).",
    "z_loss_factor": "d/dz of lambda lse(z/T)^2 is 2 lambda lse s / T.",
    "vjp_sum": "J^T g for J = I - 1 s^T is g - s * sum(g): every entry of g reaches every output.",
    "permuted": "Right values, wrong places: check the indexing.",
}
