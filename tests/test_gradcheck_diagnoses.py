"""Issue 19's inputs and diagnoses: probabilities that underflow to 0 or are subnormal, rows
far below 0, and the classes that name the bugs real code has (a division by an underflowed
s, a clip inside the gradient, a running maximum started at a constant); no class claims what
it cannot show; the finite-difference second opinion never blames symsoft for correct code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from symsoft.gradcheck import check_gradient
from symsoft.gradcheck.inputs import generate
from symsoft.gradcheck.loader import load_function
from symsoft.gradcheck.second_opinion import finite_differences
from symsoft.gradcheck.settings import make_settings

EXAMPLES = Path(__file__).resolve().parent / "gradcheck_examples"
FAST = {"n_random": 8}


def example(target: str):
    return load_function(f"{EXAMPLES}/{target}")[0]


def softmax_in(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - np.max(z))
    return e / np.sum(e)


# ---- the inputs ----


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_dominant_gaps_make_probabilities_subnormal_zero_and_one(dtype):
    cases, _ = generate(make_settings("cross_entropy", 4, dtype=dtype, n_random=4))
    dominant = [c for c in cases if c.kind == "dominant"]
    tiny = np.finfo(dtype).tiny
    with np.errstate(under="ignore"):
        s = [softmax_in(c.z) for c in dominant]
    assert max(np.ptp(c.z) for c in dominant) >= 1e3
    assert any((p == 0).any() for p in s)  # underflowed to exactly 0
    assert any(((p > 0) & (p < tiny)).any() for p in s)  # subnormal
    assert any(p.max() == 1 for p in s)  # s_k rounds to exactly 1


def test_rows_far_below_zero():
    cases, _ = generate(make_settings("cross_entropy", 4, dtype="float32", n_random=4))
    tops = [float(np.max(c.z)) for c in cases if c.kind == "large"]
    assert min(tops) < -5e5 and any(-2e5 < t < -5e4 for t in tops)


# ---- the classes ----


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batched", [False, True], ids=["row", "batched"])
def test_unfused_chain_divides_by_an_underflowed_probability(dtype, batched):
    report = check_gradient(
        example("real.py:unfused_chain"), 4, dtype=dtype, batched=batched, **FAST
    )
    assert report.bugs == ("divides_by_s",), report.text()
    kinds = dict(report.findings[0].kinds)
    assert kinds.get("dominant", 0) > 0  # not only at -inf masks
    assert "Subtract max(z)" not in report.text()  # it does subtract it


def test_no_shift_is_still_named_overflow_not_division():
    report = check_gradient(example("no_max.py:cross_entropy_grad"), 4, **FAST)
    assert report.bugs == ("overflow",), report.text()


@pytest.mark.parametrize("labels", ["simplex", "one-hot"])
def test_probabilities_clipped_inside_the_gradient(labels):
    report = check_gradient(example("real.py:clipped_chain"), 4, labels=labels, **FAST)
    assert report.bugs == ("clipped",), report.text()
    assert "clip(s, 1e-15, 1)" in report.findings[0].message
    # the gradient vanishes where the labelled class's probability is below the clip
    vanished = [
        o
        for o in report.outcomes
        if o.failed and np.abs(o.got).max() < 1e-3 and np.abs(o.ref.values).max() > 0.5
    ]
    assert vanished


def test_autograd_through_a_clamp_is_named_too():
    def clamped(z, y):
        s = softmax_in(z)
        p = np.clip(s, 1e-15, 1.0)
        v = np.where(s < 1e-15, 0.0, -y / p)  # d clamp / d s = 0 where it clamps
        return s * (v - np.sum(s * v))

    report = check_gradient(clamped, 4, labels="one-hot", **FAST)
    assert report.bugs == ("clipped",), report.text()


def test_running_maximum_started_at_a_constant_in_python():
    def grad(z, y):
        m = max(-1e4, float(np.max(z)))  # maxval = -10000 before the loop
        e = np.exp(z - m)
        return e / np.sum(e) * np.sum(y) - y

    report = check_gradient(grad, 4, **FAST)
    assert report.bugs == ("max_start",), report.text()
    assert "Subtract max(z)" not in report.text()


def test_scaled_never_with_c_zero():
    report = check_gradient(lambda z, y: np.zeros_like(z), 4, **FAST)
    assert "scaled" not in report.bugs, report.text()
    assert "0 * expected" not in report.text()


def test_all_nan_output_is_no_axis_overflow_or_mask_bug():
    report = check_gradient(lambda z, y: np.full_like(z, np.nan), 4, batched=True, **FAST)
    assert report.bugs == ("unexplained",), report.text()


def test_wrong_axis_only_when_its_prediction_differs_from_the_expected_value():
    # off by 1e-12 relative: one-row batches make "sum over the batch" equal to the right
    # answer, which must not count as evidence of a wrong axis
    correct = example("correct.py:cross_entropy_grad")
    report = check_gradient(
        lambda z, y: correct(z, y) * (1 + 1e-12), 3, batched=True, labels="any", **FAST
    )
    assert not report.ok and "wrong_axis" not in report.bugs, report.text()


# ---- the second opinion ----


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("of", ["cross_entropy", "softmax", "log_softmax"])
def test_finite_differences_agree_on_every_input_a_check_tries(of, dtype):
    """With a fixed threshold against the function's value, 6 of these inputs (|z| up to
    1e6, s_k -> 1) were reported as symsoft bugs."""
    labels = "any" if of == "cross_entropy" else "simplex"
    settings = make_settings(of, 3, dtype=dtype, labels=labels, batched=True, n_random=10)
    cases, _ = generate(settings)
    disagree = [
        (c.kind, c.note)
        for c in cases
        if not finite_differences(of, c.z, c.y).agrees  # type: ignore[union-attr]
    ]
    assert disagree == []
