"""The calling conventions of issue 19, each checked on real code written in it: integer
labels, (loss, grad), batch reductions, VJPs, torch and JAX arrays, --finite, C functions."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from symsoft.gradcheck import CheckUsageError, check_gradient
from symsoft.gradcheck.loader import load_function

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "tests" / "gradcheck_examples"
C_DIR = EXAMPLES / "c"
FAST = {"n_random": 8}


def example(target: str):
    return load_function(f"{EXAMPLES}/{target}")[0]


# ---- --labels index ----


def test_index_labels_pass_an_int_per_row_and_int64_per_batch():
    # fn runs in the worker process: it checks its arguments itself, and raises if wrong
    correct = example("real.py:index_grad")

    def row(z, c):
        if type(c) is not int:
            raise TypeError(f"c is {type(c)}")
        return correct(z, c)

    def batch(z, c):
        if c.dtype != np.int64 or c.shape != (z.shape[0],):
            raise TypeError(f"c is {c.dtype} {c.shape}")
        s = np.exp(z - z.max(axis=1, keepdims=True))
        s /= s.sum(axis=1, keepdims=True)
        s[np.arange(len(c)), c] -= 1
        return s

    report = check_gradient(row, 5, labels="index", **FAST)
    assert report.ok, report.text()
    assert "contract: fn(z, c): z (K,) float64 numpy array; c an int, the class index" in (
        report.text()
    )
    report = check_gradient(batch, 5, labels="index", batched=True, **FAST)
    assert report.ok, report.text()
    # the classes are the argmax of the one-hot labels the reference uses
    assert all(o.case.y[o.case.label] == 1 and o.case.y.sum() == 1 for o in report.outcomes)


def test_index_labels_off_by_one_is_named():
    report = check_gradient(example("real.py:index_grad_off_by_one"), 5, labels="index", **FAST)
    assert report.bugs == ("shifted",), report.text()


# ---- (loss, grad) ----


def test_loss_beside_the_gradient_is_checked_and_reported():
    report = check_gradient(
        example("real.py:softmax_loss_stable"),
        5,
        labels="index",
        batched=True,
        reduction="mean",
        **FAST,
    )
    assert report.ok, report.text()
    assert report.loss_checked == len(report.outcomes)
    assert "gradient and the returned loss both right" in report.text()
    assert report.to_dict()["worst"]["loss"]["of_batch"] is True


def test_right_gradient_beside_a_loss_taken_after_underflow_is_wrong():
    """-log(p[c]) with p[c] = 0 (a dominant gap of 1e3): inf, the exact loss ~1e3."""
    report = check_gradient(
        example("real.py:softmax_loss"), 5, labels="index", batched=True, reduction="mean", **FAST
    )
    assert not report.ok and report.exit_code == 1
    assert report.n_grad_failed == 0 and report.n_loss_failed > 0
    assert report.wrong_parts == "loss"
    assert report.bugs == ("loss_log_underflow",), report.text()
    assert "the loss wrong (gradient on 0, loss on" in report.text()
    assert "WRONG" in report.text().split("the batch's loss:")[1].splitlines()[0]


def test_one_row_loss_and_wrong_gradient_are_told_apart():
    correct = example("correct.py:cross_entropy_grad")

    def pair(z, y):
        s = np.exp(z - np.max(z))
        log_s = z - np.max(z) - np.log(np.sum(s))
        loss = -np.sum(np.where(y > 0, y * log_s, 0.0))
        return loss, -correct(z, y)

    report = check_gradient(pair, 4, labels="any", **FAST)
    assert report.wrong_parts == "gradient" and report.n_loss_failed == 0
    assert report.bugs == ("sign_flipped",), report.text()


def test_pair_with_the_wrong_loss_shape_is_a_usage_error():
    def pair(z, y):
        return np.zeros(3), z * 0

    with pytest.raises(CheckUsageError, match=r"\(loss, grad\) needs the loss of shape"):
        check_gradient(pair, 4, **FAST)


# ---- --reduction ----


def test_reduction_sum_and_mean():
    mean = example("real.py:softmax_loss_stable")
    total = example("real.py:softmax_loss_sum")
    opts = {"labels": "index", "batched": True, **FAST}
    assert check_gradient(total, 5, reduction="sum", **opts).ok
    assert check_gradient(mean, 5, reduction="mean", **opts).ok
    wrong = check_gradient(total, 5, reduction="mean", **opts)
    assert wrong.bugs == ("scaled", "loss_scaled"), wrong.text()
    assert "got = N * expected" in wrong.findings[0].message
    assert "the sum where the mean was asked" in wrong.findings[1].message
    per_row = check_gradient(lambda z, c: mean(z, c)[1], 5, reduction="none", **opts)
    assert per_row.bugs == ("scaled",) and "got = expected / N" in per_row.text()
    with pytest.raises(CheckUsageError, match=r"needs the loss of shape \(\d+,\)"):
        check_gradient(mean, 5, reduction="none", **opts)  # a scalar loss: which reduction?


def test_reduction_needs_a_batched_cross_entropy():
    with pytest.raises(CheckUsageError, match="reduction sum/mean is for a batched"):
        check_gradient(example("grads.py:ce_grad"), 3, reduction="mean")


# ---- --form vjp ----


@pytest.mark.parametrize("batched", [False, True], ids=["row", "batched"])
@pytest.mark.parametrize(
    ("name", "of"),
    [("softmax_backward", "softmax"), ("log_softmax_backward", "log_softmax")],
)
def test_vjp_of_a_correct_backward_pass_passes(name, of, batched):
    fn = example(f"real.py:{name}")
    report = check_gradient(fn, 4, of, form="vjp", batched=batched, **FAST)
    assert report.ok, report.text()
    assert "g^T J" in report.text().splitlines()[0]
    # g = 1 makes the softmax VJP cancel to 0: it is among the vectors tried
    assert any(np.array_equal(o.case.g, np.ones(4)) for o in report.outcomes)


def test_vjp_computed_as_jvp_is_named():
    report = check_gradient(
        example("real.py:log_softmax_backward_as_jvp"), 4, "log_softmax", form="vjp", **FAST
    )
    assert report.bugs == ("transposed",), report.text()
    assert "got = J g" in report.findings[0].message


def test_vjp_with_a_missing_term_is_named_inside_gtj():
    report = check_gradient(lambda z, g: g, 4, "log_softmax", form="vjp", **FAST)
    assert report.bugs == ("missing_term",), report.text()
    assert "(inside g^T J)" in report.findings[0].message


def test_vjp_is_for_softmax_and_log_softmax_only():
    with pytest.raises(CheckUsageError, match="form vjp is for --of softmax or log_softmax"):
        check_gradient(example("grads.py:ce_grad"), 3, form="vjp")


# ---- --array torch / jax ----


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_tensors_in_and_tensors_that_require_grad_out(dtype):
    report = check_gradient(
        f"{EXAMPLES}/torch_grads.py:ce_sum",
        4,
        labels="index",
        batched=True,
        reduction="sum",
        array="torch",
        dtype=dtype,
        **FAST,
    )
    assert report.ok, report.text()
    assert report.loss_checked == len(report.outcomes)
    assert {o.out_dtype for o in report.outcomes} == {dtype}


def test_torch_inputs_are_tensors_of_the_dtype():
    import torch

    def spy(z, g):
        assert isinstance(z, torch.Tensor) and z.dtype == torch.float32
        assert isinstance(g, torch.Tensor) and g.dtype == torch.float32
        return torch.zeros_like(z)

    report = check_gradient(spy, 3, "softmax", form="vjp", array="torch", dtype="float32", **FAST)
    assert report.bugs != ("raised",) and not any(o.error for o in report.outcomes)


def test_jax_arrays_in_64_bit_mode_when_float64(tmp_path):
    """In a fresh process, as `symsoft check` always runs: the worker is forked, and a parent
    that has already run JAX computations (other tests here) may leave XLA's threads behind
    (the README says so)."""
    script = tmp_path / "jax_check.py"
    # one row per call: one shape, one compile (the README runs a batched JAX check)
    script.write_text(
        "from symsoft.gradcheck import check_gradient\n"
        f"r = check_gradient({f'{EXAMPLES}/jax_grads.py:softmax_jacobian'!r}, 3, 'softmax',\n"
        "    array='jax', n_random=4)\n"
        "print(r.ok, sorted({o.out_dtype for o in r.outcomes}))\n"
        "print(r.text())\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    # float64 only passes the float64 tolerance if JAX computed in float64
    assert done.stdout.startswith("True ['float64']"), done.stdout + done.stderr


# ---- --finite ----


def test_finite_contract_skips_masked_inputs_and_says_so():
    fn = example("real.py:ce_grad_finite_only")
    assert check_gradient(fn, 4, **FAST).bugs == ("raised",)
    report = check_gradient(fn, 4, finite=True, **FAST)
    assert report.ok, report.text()
    assert all(np.isfinite(o.case.z).all() for o in report.outcomes)
    assert "masked (-inf) inputs: not tried (--finite" in report.text()
    assert report.to_dict()["finite"] is True


# ---- C functions ----

TRAIN = f"{C_DIR}/train_step.c"
FIXED = "-Iinclude -DK=5 -DMAXVAL_START=-INFINITY"
C32 = {"dtype": "float32", "labels": "index", **FAST}


def test_c_trainer_kernel_with_cflags_and_a_relative_include():
    report = check_gradient(f"{TRAIN}:ce_backward", 5, cflags=FIXED, **C32)
    assert report.ok, report.text()
    batched = check_gradient(f"{TRAIN}:ce_backward", 5, cflags=FIXED, batched=True, **C32)
    assert batched.ok, batched.text()
    mean = f"{TRAIN}:ce_backward_mean"
    assert check_gradient(mean, 5, cflags=FIXED, batched=True, reduction="mean", **C32).ok


def test_c_trainer_kernel_whose_maximum_starts_at_minus_10000():
    report = check_gradient(f"{TRAIN}:ce_backward", 5, cflags="-Iinclude -DK=5", **C32)
    assert report.bugs == ("max_start",), report.text()
    failing = [o for o in report.outcomes if o.failed]
    assert failing and all(np.max(o.case.z) < -1e4 for o in failing)
    assert "Start it at -INFINITY" in report.text()


def test_c_trainer_mean_without_the_division():
    target = f"{TRAIN}:ce_backward_mean_unscaled"
    report = check_gradient(target, 5, cflags=FIXED, batched=True, reduction="mean", **C32)
    assert report.bugs[0] == "scaled" and "got = N * expected" in report.findings[0].message


def test_double_c_kernels_jacobian_and_vjp(tmp_path):
    source = C_DIR / "softmax_double.c"
    assert check_gradient(f"{source}:log_softmax_jacobian", 4, "log_softmax", **FAST).ok
    assert check_gradient(f"{source}:softmax_vjp", 4, "softmax", form="vjp", batched=True).ok
    wrong = check_gradient(f"{source}:log_softmax_vjp_as_jvp", 4, "log_softmax", form="vjp")
    assert wrong.bugs == ("transposed",), wrong.text()


def test_shared_library_target(tmp_path):
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    assert compiler, "a C compiler is required"
    library = tmp_path / "libsoftmax.so"
    subprocess.run(
        [compiler, "-O2", "-fPIC", "-shared", str(C_DIR / "softmax_double.c"), "-o", library],
        check=True,
    )
    assert check_gradient(f"{library}:softmax_vjp", 4, "softmax", form="vjp", **FAST).ok
    with pytest.raises(CheckUsageError, match="has no function 'absent'"):
        check_gradient(f"{library}:absent", 4, "softmax", **FAST)


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "symsoft.gradcheck.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_c_file_that_does_not_compile_is_a_one_line_usage_error(tmp_path):
    broken = tmp_path / "broken.c"
    broken.write_text("void fn(const double *z, double *jac, size_t n) { undeclared(); }\n")
    run = cli(f"{broken}:fn", "-k", "3", "--of", "softmax")
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith("symsoft check: error: compiling broken.c failed: ")
    assert run.stderr.count("\n") == 1
    run = cli(f"{TRAIN}:ce_backward", "-k", "5", "--labels", "index", "--cflags=-Iinclude")
    assert run.returncode == 2 and "compile with -DK=<classes>" in run.stderr


def test_cli_runs_the_c_kernel_with_cflags():
    run = cli(
        f"{TRAIN}:ce_backward",
        "-k",
        "5",
        "--dtype",
        "float32",
        "--labels",
        "index",
        "--batched",
        "--cflags",
        FIXED,
        "--n-random",
        "8",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "contract: fn(Z, C): z (N, K) float32 numpy array" in run.stdout


def test_torch_functions_after_the_caller_ran_parallel_torch_code(tmp_path):
    """The worker is forked: a parent whose torch thread pool is already running (any
    training loop) used to leave the child's first parallel op waiting forever."""
    script = tmp_path / "after_parallel_torch.py"
    script.write_text(
        "import torch\n"
        "x = torch.randn(2000, 2000)\n"
        "(x @ x).sum()  # the parent's intra-op threads are running\n"
        "from symsoft.gradcheck import check_gradient\n"
        f"r = check_gradient({f'{EXAMPLES}/torch_grads.py:ce_sum'!r}, 4, labels='index',\n"
        "    batched=True, reduction='sum', array='torch', n_random=8)\n"
        "print('ok' if r.ok else r.text())\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip() == "ok", done.stdout + done.stderr
