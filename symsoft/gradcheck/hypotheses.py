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
    """got = pred entry by entry: NaN/inf in the same places, the rest within tolerance."""
    if o.got is None:
        return False
    bad = ~np.isfinite(o.got)
    if not np.array_equal(bad, ~np.isfinite(pred)):
        return False
    tol = factor * entry_tolerance(dtype or st.dtype, st.k, o.case.z, scale, o.y64)
    return bool(np.all(np.abs(o.got[~bad] - pred[~bad]) <= tol[~bad]))


def distinct(o: Outcome, pred: np.ndarray, scale: np.ndarray, st: Settings) -> bool:
    """The alternative is itself clearly wrong: got cannot be close to both it and expected."""
    both = np.maximum(scale, o.ref.scale)
    tol = 2 * HYP_FACTOR * entry_tolerance(st.dtype, st.k, o.case.z, both, o.y64)
    with np.errstate(invalid="ignore"):
        return bool(np.any(~(np.abs(pred - o.ref.values) <= tol)))


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
    if abs(c - 1) < 1e-6:
        return
    label = f"got = {c:.6g} * expected"
    if o.rows > 1 and abs(c * o.rows - 1) < 1e-6:
        label = "got = expected / N (N = rows in the batch): the gradient of the batch mean"
    yield label, c * e, abs(c) * o.ref.scale


def _missing(o: Outcome, st: Settings) -> Iterator[Variant]:
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
    else:
        t = float(np.sum(y))
        yield "got = s*sum(y): the -y term is missing", s * t, s * abs(t)
        yield "got = -y: the softmax term s*sum(y) is missing", -y, np.abs(y)


def _transposed(o: Outcome, st: Settings) -> Iterator[Variant]:
    if st.jacobian:  # softmax's Jacobian is symmetric, so only log-softmax can show this
        yield "got = expected^T", o.ref.values.T, o.ref.scale.T


def _other_function(o: Outcome, st: Settings) -> Iterator[Variant]:
    other = {"softmax": "log_softmax", "log_softmax": "softmax"}.get(st.of)
    if other:
        label = {
            "log_softmax": "got = I - 1 s^T, the Jacobian of log-softmax (not of softmax)",
            "softmax": "got = diag(s) - s s^T, the Jacobian of softmax (not of log-softmax)",
        }[other]
        yield label, closed_form(other, o.ref.s, None), term_scale(other, o.ref.s, None)


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
        if st.of == "cross_entropy":
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


STRUCTURAL: tuple[tuple[str, Callable[[Outcome, Settings], Iterator[Variant]]], ...] = (
    ("sign_flipped", _sign),
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
    "transposed": "J_log = I - 1 s^T is not symmetric, so the transpose shows: row i must be "
    "the gradient of log s_i, column j the derivative by z_j.",
    "shifted": "An index is off by one.",
    "permuted": "Right values, wrong places: check the indexing.",
}
