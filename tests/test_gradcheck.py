"""Tests for the gradient checker (symsoft.gradcheck).

Correct NumPy implementations (float32 and float64, one row and batched) must pass; one
deliberately buggy user file per bug class (tests/gradcheck_examples/) must fail with exactly
that class named; the CLI is run for real and its exit codes and JSON are checked. K is 3 and
few random inputs are drawn, so the whole file stays within a few tens of seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symsoft.derivation import reference
from symsoft.errors import SpecError
from symsoft.gradcheck import BUG_CLASSES, CheckUsageError, check_gradient
from symsoft.gradcheck.expected import get_reference
from symsoft.gradcheck.inputs import KINDS, generate, overflow_logit
from symsoft.gradcheck.loader import load_function
from symsoft.gradcheck.second_opinion import finite_differences
from symsoft.gradcheck.settings import make_settings
from symsoft.gradcheck.tolerance import C, entry_tolerance, logit_size, unit_roundoff

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = Path(__file__).resolve().parent / "gradcheck_examples"
K = 3
FAST = {"n_random": 12}


def example(target: str):
    return load_function(f"{EXAMPLES}/{target}")[0]


# ---- correct implementations pass ----

CORRECT = [
    ("softmax_jacobian", "softmax", "simplex"),
    ("log_softmax_jacobian", "log_softmax", "simplex"),
    ("cross_entropy_grad", "cross_entropy", "any"),
    ("cross_entropy_grad", "cross_entropy", "simplex"),
    ("cross_entropy_grad_simplex", "cross_entropy", "simplex"),
    ("cross_entropy_grad_simplex", "cross_entropy", "one-hot"),
]


@pytest.mark.parametrize("batched", [False, True], ids=["row", "batched"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("name", "of", "labels"), CORRECT)
def test_correct_implementations_pass(name, of, labels, dtype, batched):
    fn = example(f"correct.py:{name}")
    report = check_gradient(fn, K, of, batched=batched, dtype=dtype, labels=labels, **FAST)
    assert report.ok, report.text()
    assert report.exit_code == 0 and report.findings == ()
    kinds = set(KINDS) if batched else set(KINDS) - {"mixed-rows"}
    assert {o.case.kind for o in report.outcomes} == kinds
    assert max(o.ratio for o in report.outcomes) < 0.25  # a margin of 4 at least
    assert report.finite_differences is not None and report.finite_differences.agrees


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_loop_implementation_passes_with_margin(dtype):
    fn = example("correct.py:cross_entropy_grad_loop")
    report = check_gradient(fn, 5, dtype=dtype, labels="any", **FAST)
    assert report.ok, report.text()
    # margin: the worst entry uses well under half of its error budget
    assert max(o.ratio for o in report.outcomes) < 0.5


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    k=st.integers(2, 6),
    dtype=st.sampled_from(["float32", "float64"]),
)
def test_standard_stable_softmax_passes_for_any_seed(seed, k, dtype):
    fn = example("correct.py:cross_entropy_grad")
    report = check_gradient(fn, k, seed=seed, dtype=dtype, labels="any", n_random=8)
    assert report.ok, report.text()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    ("name", "of"), [("cross_entropy_grad", "cross_entropy"), ("softmax_jacobian", "softmax")]
)
def test_symsofts_own_emitted_numpy_kernels_pass(name, of, dtype):
    kernels = ROOT / "generated" / "k3" / "softmax_k3.py"
    if not kernels.is_file():
        pytest.skip("generated/k3 is not there")
    fn = load_function(f"{kernels}:{name}")[0]
    for batched in (False, True):
        report = check_gradient(fn, 3, of, batched=batched, dtype=dtype, labels="any", **FAST)
        assert report.ok, report.text()


def test_function_that_overwrites_its_input_does_not_corrupt_later_inputs():
    correct = example("correct.py:cross_entropy_grad")

    def scribbles(z, y):
        g = correct(z, y)
        z[:] = 0.0
        y[:] = 0.0
        return g

    assert check_gradient(scribbles, K, **FAST).ok


# ---- each bug class is named ----

BATCHED = {"batched": True}
BUGS = [
    ("sign_flipped.py:cross_entropy_grad", "cross_entropy", {}, "sign_flipped"),
    ("missing_term.py:softmax_jacobian", "softmax", {}, "missing_term"),
    ("transposed.py:log_softmax_jacobian", "log_softmax", {}, "transposed"),
    ("off_by_one.py:cross_entropy_grad", "cross_entropy", {"labels": "one-hot"}, "shifted"),
    ("misc.py:cross_entropy_grad_reversed", "cross_entropy", {}, "permuted"),
    ("sum_one.py:cross_entropy_grad", "cross_entropy", {"labels": "any"}, "assumes_sum_one"),
    ("one_hot.py:cross_entropy_grad", "cross_entropy", {}, "assumes_one_hot"),
    ("no_max.py:cross_entropy_grad", "cross_entropy", {}, "overflow"),
    ("no_max.py:softmax_jacobian", "softmax", {"dtype": "float32"}, "overflow"),
    ("nan_mask.py:log_softmax_jacobian", "log_softmax", {}, "divides_by_s"),
    ("nan_mask.py:cross_entropy_grad", "cross_entropy", {}, "nan_at_mask"),
    ("downcast.py:cross_entropy_grad", "cross_entropy", {}, "float32_precision"),
    (
        "batch_axis.py:cross_entropy_grad_sum_axis0",
        "cross_entropy",
        {"batched": True},
        "wrong_axis",
    ),
    (
        "batch_axis.py:cross_entropy_grad_global_max",
        "cross_entropy",
        {"batched": True},
        "wrong_axis",
    ),
    ("correct.py:softmax_jacobian", "log_softmax", {}, "wrong_function"),
    ("misc.py:cross_entropy_grad_no_masks", "cross_entropy", {}, "raised"),
    ("misc.py:cross_entropy_grad_tanh", "cross_entropy", {}, "unexplained"),
]


@pytest.mark.parametrize(("target", "of", "options", "bug"), BUGS, ids=[b[0] for b in BUGS])
def test_bug_class_is_named(target, of, options, bug):
    report = check_gradient(example(target), K, of, **options, **FAST)
    assert not report.ok and report.exit_code == 1
    # one finding, and it accounts for every failing input
    assert report.bugs == (bug,), report.text()
    assert report.findings[0].inputs == report.n_failed
    assert BUG_CLASSES[bug] in report.text()


def test_overflow_only_on_large_logits_and_moderate_ones_pass():
    report = check_gradient(example("no_max.py:cross_entropy_grad"), K, **FAST)
    kinds = {k.kind: k for k in report.kinds()}
    assert kinds["random"].failed == kinds["ties"].failed == 0
    assert kinds["large"].failed > 0
    limit = overflow_logit(np.dtype("float64"))
    failing = [o for o in report.outcomes if o.failed]
    # the dominant inputs that fail are those whose gap pushes max(z) past exp's overflow
    assert all(np.max(o.case.z) > limit or np.max(o.case.z) < -limit for o in failing)
    assert any(o.case.kind == "dominant" for o in failing)
    assert "where plain exp(z) is safe pass" in report.findings[0].message


def test_masked_nan_is_reported_at_masked_inputs():
    report = check_gradient(example("nan_mask.py:cross_entropy_grad"), K, **FAST)
    failing = [o for o in report.outcomes if o.failed]
    masked = [o for o in report.outcomes if o.case.kind == "masked"]
    assert all(o.failed for o in masked) and {o.case.kind for o in failing} == {"masked"}
    assert all(not np.isfinite(o.got).all() for o in failing)
    assert "-inf (masked)" in report.findings[0].message


def test_division_by_an_underflowed_probability_is_its_own_class():
    """J_log = J_s / s: NaN where s_i underflowed (a gap of 1e3), not only at masks; the
    function shifts by max(z), so the report must not say "subtract max(z)"."""
    report = check_gradient(example("nan_mask.py:log_softmax_jacobian"), K, "log_softmax", **FAST)
    assert report.bugs == ("divides_by_s",), report.text()
    kinds = dict(report.findings[0].kinds)
    assert kinds.get("dominant", 0) > 0 and kinds.get("masked", 0) > 0
    assert "divides by s_i, which is 0 here" in report.text()
    assert "Subtract max(z)" not in report.text()


def test_sum_one_passes_inside_the_simplex_contract_and_says_which_contract():
    fn = example("sum_one.py:cross_entropy_grad")
    simplex = check_gradient(fn, K, labels="simplex", **FAST)
    assert simplex.ok
    assert "labels contract: simplex (y >= 0, sum(y) = 1)" in simplex.text()
    wrong = check_gradient(fn, K, labels="any", **FAST)
    assert "labels contract: any (y >= 0, any sum)" in wrong.text()
    assert "inputs with sum(y) = 1 pass" in wrong.findings[0].message


def test_one_hot_assumption_passes_inside_the_one_hot_contract():
    assert check_gradient(example("one_hot.py:cross_entropy_grad"), K, labels="one-hot", **FAST)


def test_structural_bug_in_batched_mode_is_not_blamed_on_the_axis():
    correct = example("correct.py:cross_entropy_grad")
    report = check_gradient(lambda z, y: -correct(z, y), K, batched=True, labels="any", **FAST)
    assert report.bugs == ("sign_flipped",), report.text()


def test_nonzero_gradient_at_masked_classes_is_caught():
    correct = example("correct.py:cross_entropy_grad")

    def leaks(z, y):  # tiny but not the exact 0 the masked classes must get
        return correct(z, y) + np.where(np.isneginf(z), 1e-30, 0.0)

    report = check_gradient(leaks, K, **FAST)
    assert report.bugs == ("masked_nonzero",), report.text()
    assert {o.case.kind for o in report.outcomes if o.failed} == {"masked"}


def test_float32_output_in_float64_check_is_named_with_its_dtype():
    correct = example("correct.py:cross_entropy_grad")
    report = check_gradient(lambda z, y: correct(z, y).astype(np.float32), K, **FAST)
    assert report.bugs == ("float32_precision",)
    assert "returns float32 arrays" in report.findings[0].message


def test_gradient_of_the_batch_mean_is_named_as_a_scale_not_an_axis():
    correct = example("correct.py:cross_entropy_grad")
    report = check_gradient(lambda z, y: correct(z, y) / len(z), K, batched=True, **FAST)
    assert report.bugs == ("scaled",), report.text()
    assert "got = expected / N" in report.findings[0].message


def test_error_of_float32_size_but_wrong_pattern_is_not_called_a_downcast():
    correct = example("correct.py:cross_entropy_grad")
    report = check_gradient(lambda z, y: correct(z, y) + 1e-7, K, **FAST)
    assert report.bugs == ("unexplained",), report.text()


def test_tiny_relative_error_is_caught_in_float64():
    correct = example("correct.py:softmax_jacobian")
    report = check_gradient(lambda z: correct(z) * (1 + 1e-9), K, "softmax", **FAST)
    assert not report.ok


# ---- the tolerance, the reference and the inputs ----


def test_tolerance_formula():
    z = np.array([2.0, -1.0, -np.inf])
    assert logit_size(z) == 3.0 + 2.0  # spread of the finite entries plus |max|
    assert logit_size(np.array([-np.inf, -np.inf])) == 0.0
    scale, y = np.array([0.5, 0.0, 1.0]), np.array([0.25, 0.0, 0.75])
    u = unit_roundoff(np.dtype("float32"))
    assert u == 2.0**-24
    tiny = float(np.finfo(np.float32).tiny)
    expected = C * (3 + 5.0) * u * scale + C * tiny * 2.0
    got = entry_tolerance(np.dtype("float32"), 3, z, scale, y)
    np.testing.assert_allclose(got, expected, rtol=1e-15)
    assert got[1] < 1e-36  # a masked class must be 0 up to underflow


def test_reference_is_symsoft_reference_rounded_once():
    z, y = np.array([1e3, 0.5, -np.inf]), np.array([0.0, 1.0, 0.0])
    ref = get_reference("cross_entropy", z, y)
    exact = [float(v) for v in reference.cross_entropy_grad(list(z), list(y))]
    assert ref.values.tolist() == exact
    assert ref.values[2] == 0.0  # masked with y = 0: exactly 0
    jac = get_reference("log_softmax", z[:2], None)
    assert jac.values.tolist() == [
        [float(v) for v in row] for row in reference.log_softmax_jacobian(list(z[:2]))
    ]


@pytest.mark.parametrize("of", ["softmax", "log_softmax", "cross_entropy"])
def test_finite_differences_agree_with_the_reference(of):
    z = np.array([0.3, 1e3 - 999.0, -np.inf, -2.0])
    y = np.array([0.5, 0.25, 0.0, 0.25]) if of == "cross_entropy" else None
    fd = finite_differences(of, z, y)
    assert fd is not None and fd.agrees and fd.max_diff < 1e-25
    assert fd.skipped > 0  # the masked class has no neighbourhood to difference in


@pytest.mark.parametrize("labels", ["simplex", "one-hot", "any"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_inputs_cover_every_kind_inside_the_contract(labels, dtype):
    s = make_settings("cross_entropy", 5, batched=True, dtype=dtype, labels=labels, n_random=10)
    cases, batches = generate(s)
    assert {c.kind for c in cases} == set(KINDS)
    assert all(c.z.dtype == np.dtype(dtype) and c.y.dtype == np.dtype(dtype) for c in cases)
    limit = overflow_logit(np.dtype(dtype))
    assert any(np.max(c.z) > limit for c in cases)  # beyond exp's overflow
    assert any(np.max(c.z) < -limit for c in cases)  # every exp(z) underflows
    for c in cases:
        y = c.y.astype(float)
        assert (y >= 0).all() and (y[np.isneginf(c.z)] == 0).all()
        if labels == "simplex":
            assert abs(y.sum() - 1) < 1e-6
        if labels == "one-hot":
            assert sorted(y) == [0.0] * 4 + [1.0]
    if labels == "any":
        assert len({round(float(c.y.sum()), 3) for c in cases}) > 3
    # every row in exactly one batch; N != K so a transposed (K, N) result is a shape error
    assert sorted(i for b in batches for i in b) == list(range(len(cases)))
    assert all(len(b) != 5 for b in batches)
    mixed = [b for b in batches if cases[b[0]].kind == "mixed-rows"]
    assert mixed and all(np.ptp([np.max(cases[i].z) for i in b]) > 3 * limit for b in mixed)


def test_inputs_are_reproducible_and_thinned_for_large_k():
    a, _ = generate(make_settings("softmax", 4, seed=7))
    b, _ = generate(make_settings("softmax", 4, seed=7))
    assert all(np.array_equal(x.z, y.z) for x, y in zip(a, b, strict=True))
    big, _ = generate(make_settings("softmax", 200))
    assert 10 <= len(big) < len(a) and {c.kind for c in big} == set(KINDS) - {"mixed-rows"}


# ---- usage errors ----


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"k": 0}, "K must be between"),
        ({"k": 2.5}, "K must be an integer"),
        ({"k": 300, "of": "softmax"}, "too large for a Jacobian"),
        ({"of": "sigmoid"}, "of must be one of"),
        ({"dtype": "float16"}, "dtype must be one of"),
        ({"labels": "soft"}, "labels must be one of"),
        ({"seed": -1}, "seed must be"),
    ],
)
def test_bad_options_are_usage_errors(options, message):
    options = {"k": K, **options}
    with pytest.raises(CheckUsageError, match=message):
        check_gradient(example("correct.py:cross_entropy_grad"), **options)


def test_wrong_shape_and_signature_are_usage_errors():
    with pytest.raises(CheckUsageError, match=r"returned shape \(3, 1\), expected \(3,\)"):
        check_gradient(example("misc.py:cross_entropy_grad_column"), K, **FAST)
    with pytest.raises(CheckUsageError, match="cannot be called as fn\\(z, y\\)"):
        check_gradient(example("misc.py:cross_entropy_grad_one_arg"), K, **FAST)
    with pytest.raises(CheckUsageError, match="drop --batched"):
        check_gradient(lambda z, y: np.zeros(K), K, batched=True, **FAST)
    assert issubclass(CheckUsageError, SpecError)


def test_loader_errors():
    with pytest.raises(CheckUsageError, match="no such file"):
        load_function(f"{EXAMPLES}/absent.py:f")
    with pytest.raises(CheckUsageError, match="has no function 'absent'; it defines: "):
        load_function(f"{EXAMPLES}/misc.py:absent")
    with pytest.raises(CheckUsageError, match=r"expected path/to/file\.py:function"):
        load_function(f"{EXAMPLES}/misc.py")


# ---- the report ----


def test_text_report_shows_worst_input_with_wrong_entries_marked():
    report = check_gradient(example("missing_term.py:softmax_jacobian"), K, "softmax", **FAST)
    text = report.text()
    assert f"verdict: WRONG on {report.n_failed} of {len(report.outcomes)} inputs" in text
    for kind in ("random", "ties", "dominant", "large", "masked"):
        assert f"\n  {kind} " in text
    assert "worst input (#" in text and "  z = [" in text and "WRONG" in text.split("worst")[1]
    assert "C = 16" in text and "finite differences (second opinion)" in text
    entries, left_out = report.entries()
    assert len(entries) == K * K and left_out == 0
    assert any(e.wrong for e in entries)


def test_json_report_is_valid_json_with_nonfinite_values_as_strings():
    report = check_gradient(example("no_max.py:cross_entropy_grad"), K, **FAST)

    def refuse(token: str) -> None:
        raise AssertionError(f"{token} is not JSON")

    data = json.loads(report.to_json(), parse_constant=refuse)
    assert data["verdict"] == "wrong" and data["exit_code"] == 1
    assert data["kinds"]["large"]["max_abs_error"] == "inf"
    assert data["diagnosis"][0]["bug"] == "overflow"
    assert "nan" in [e["got"] for e in data["worst"]["entries"]]


# ---- the CLI, run for real ----


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "symsoft.gradcheck.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_cli_exit_0_and_json_structure():
    run = cli(
        f"{EXAMPLES}/correct.py:cross_entropy_grad",
        "-k",
        "3",
        "--batched",
        "--dtype",
        "float32",
        "--labels",
        "any",
        "--n-random",
        "8",
        "--json",
    )
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["verdict"] == "correct" and data["failed"] == 0
    assert (data["k"], data["dtype"], data["batched"], data["labels"]) == (
        3,
        "float32",
        True,
        "any",
    )
    assert data["labels_contract"] == "y >= 0, any sum"
    assert set(data["kinds"]) == set(KINDS)
    for stats in data["kinds"].values():
        assert set(stats) == {
            "inputs",
            "failed",
            "raised",
            "max_abs_error",
            "max_rel_error",
            "max_error_over_tolerance",
            "loss_failed",
        }
    assert data["tolerance"]["c"] == C and data["diagnosis"] == []
    assert data["finite_differences"]["agrees"] is True
    assert {"index", "expected", "got", "abs_error", "tolerance", "wrong"} == set(
        data["worst"]["entries"][0]
    )


def test_cli_exit_1_with_diagnosis():
    run = cli(
        f"{EXAMPLES}/transposed.py:log_softmax_jacobian",
        "-k",
        "3",
        "--of",
        "log_softmax",
        "--n-random",
        "8",
    )
    assert run.returncode == 1
    assert "verdict: WRONG" in run.stdout and "transposed Jacobian" in run.stdout
    run = cli(
        f"{EXAMPLES}/sign_flipped.py:cross_entropy_grad", "-k", "3", "--n-random", "8", "--json"
    )
    assert run.returncode == 1
    assert [d["bug"] for d in json.loads(run.stdout)["diagnosis"]] == ["sign_flipped"]


def test_cli_exception_in_user_code_is_exit_1_naming_the_kind():
    run = cli(f"{EXAMPLES}/misc.py:cross_entropy_grad_no_masks", "-k", "3", "--n-random", "8")
    assert run.returncode == 1
    assert "raises an exception" in run.stdout and "(masked " in run.stdout
    assert "ValueError: masked logits are not supported (at misc.py:" in run.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["absent.py:f", "-k", "3"], "no such file"),
        ([f"{EXAMPLES}/misc.py:absent", "-k", "3"], "has no function 'absent'"),
        ([f"{EXAMPLES}/misc.py:not_a_function", "-k", "3"], "is not callable"),
        ([f"{EXAMPLES}/misc.py:cross_entropy_grad_one_arg", "-k", "3"], "cannot be called"),
        ([f"{EXAMPLES}/misc.py:cross_entropy_grad_column", "-k", "3"], "returned shape (3, 1)"),
        ([f"{EXAMPLES}/correct.py:softmax_jacobian", "-k", "0", "--of", "softmax"], "K must be"),
    ],
)
def test_cli_usage_errors_exit_2(args, message):
    run = cli(*args)
    assert run.returncode == 2, run.stdout
    assert message in run.stderr and run.stdout == ""


def test_cli_usage_error_with_json_and_broken_import(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import numpy as np\nraise RuntimeError('boom')\n")
    run = cli(f"{broken}:f", "-k", "3", "--json")
    assert run.returncode == 2
    assert "importing" in run.stderr and "RuntimeError: boom" in run.stderr
    assert json.loads(run.stdout) == {
        "verdict": "usage error",
        "exit_code": 2,
        "error": run.stderr.strip().removeprefix("symsoft check: error: "),
    }
