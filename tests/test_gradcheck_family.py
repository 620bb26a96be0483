"""`symsoft check --of logsumexp | log_softmax --form vjp | distillation_kl |
cross_entropy_hessian` (issue 18): the references (NumPy extended precision, in
gradcheck/expected.py) held to torch autograd and torch.func.hessian on the very inputs the
checker tries, torch's own float32/float64 code passing, correct code passing over many
seeds, and each usual mistake named by its class."""

from __future__ import annotations

import functools
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from symsoft.gradcheck import check_gradient
from symsoft.gradcheck.inputs import generate
from symsoft.gradcheck.loader import load_function
from symsoft.gradcheck.runner import Runner
from symsoft.gradcheck.settings import make_settings
from tests.conftest import finite_masks
from tests.gradcheck_inprocess import failures, run

EXAMPLES = Path(__file__).resolve().parent / "gradcheck_examples"
K = 5


def example(name: str):
    return load_function(f"{EXAMPLES}/family.py:{name}")[0]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def batches_of(of: str, **options):
    """The checker's own batches and, for each, its outcomes (references, tolerances)."""
    st = make_settings(of, K, batched=True, n_random=24, **options)
    cases, batches = generate(st)
    runner = Runner(None, st, cases)
    for b, rows in enumerate(batches):
        yield st, [cases[i] for i in rows], runner.outcomes(rows, b)


def judge(outcomes, grads: np.ndarray) -> None:
    """torch's answer judged as the checker judges a user's: it must be correct."""
    for o, g in zip(outcomes, grads, strict=True):
        o.got = np.asarray(g, dtype=np.float64)
        o.judge()
        assert not o.grad_failed, (o.case.kind, o.case.note, o.ratio)


def judge_loss(runner_st, outcomes, loss: np.ndarray) -> None:
    Runner(None, runner_st, [])._attach_loss(outcomes, np.atleast_1d(loss))
    for o in outcomes:
        assert not o.loss_wrong, (o.case.kind, o.loss_got, o.loss_expected, o.loss_tol)


# ---- the references against torch ----


def test_logsumexp_reference_is_torch_autograd_of_logsumexp():
    for st, cases, outcomes in batches_of("logsumexp"):
        z = torch.tensor(finite_masks(np.stack([c.z for c in cases])), requires_grad=True)
        lse = torch.logsumexp(z, -1)
        lse.sum().backward()
        judge(outcomes, z.grad.numpy())
        judge_loss(st, outcomes, lse.detach().numpy())


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0, 4.0])
@pytest.mark.parametrize("reduction", ["none", "sum", "batchmean"])
def test_distillation_reference_is_torch_kl_div_times_t_squared(temperature, reduction):
    for st, cases, outcomes in batches_of(
        "distillation_kl", temperature=temperature, reduction=reduction
    ):
        zs = finite_masks(np.stack([c.z for c in cases]), temperature)
        zt = finite_masks(np.stack([c.teacher for c in cases]), temperature)
        zs_t = torch.tensor(zs, requires_grad=True)
        log_s = F.log_softmax(zs_t / temperature, -1)
        log_t = F.log_softmax(torch.tensor(zt) / temperature, -1)
        if reduction == "none":  # each row's own loss; its gradient is the sum's
            loss = F.kl_div(log_s, log_t, log_target=True, reduction="none").sum(-1)
        else:
            loss = F.kl_div(log_s, log_t, log_target=True, reduction=reduction)
        loss = loss * temperature**2
        loss.sum().backward()
        judge(outcomes, zs_t.grad.numpy())
        judge_loss(st, outcomes, loss.detach().numpy())


@pytest.mark.parametrize("labels", ["simplex", "any", "index"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_hessian_reference_is_torch_func_hessian(labels, reduction):
    for _, cases, outcomes in batches_of(
        "cross_entropy_hessian", labels=labels, reduction=reduction
    ):
        n = len(cases) if reduction == "mean" else 1
        hessians = []
        for c in cases:
            y = torch.tensor(c.y.astype(np.float64) / n)

            def loss(z, y=y):
                return -(y * F.log_softmax(z, -1)).sum()

            hessians.append(torch.func.hessian(loss)(torch.tensor(finite_masks(c.z))).numpy())
        judge(outcomes, np.stack(hessians))


# ---- correct code passes: torch's own, and the examples over many seeds ----


def _torch_distillation(zs, zt, temperature):
    zs = zs.detach().requires_grad_(True)
    loss = F.kl_div(
        F.log_softmax(zs / temperature, -1),
        F.log_softmax(zt / temperature, -1),
        log_target=True,
        reduction="batchmean",
    )
    (loss * temperature**2).backward()
    return zs.grad


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_autograd_of_kl_div_passes(dtype):
    fn = functools.partial(_torch_distillation, temperature=2.0)
    # --finite: F.kl_div computes 0 * (-inf - -inf) = NaN at masked classes
    outcomes, _ = run(
        fn,
        "distillation_kl",
        K,
        batched=True,
        reduction="batchmean",
        temperature=2.0,
        dtype=dtype,
        array="torch",
        finite=True,
    )
    assert not failures(outcomes), failures(outcomes)[:3]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_func_hessian_passes(dtype):
    def hessian(z, y):
        return torch.func.hessian(lambda z: -(y * F.log_softmax(z, -1)).sum())(z)

    outcomes, _ = run(
        hessian, "cross_entropy_hessian", K, labels="any", dtype=dtype, array="torch", finite=True
    )
    assert not failures(outcomes), failures(outcomes)[:3]


CORRECT = [
    ("lse_grad", "logsumexp", {}),
    ("lse_and_grad", "logsumexp", {"batched": True}),
    ("log_softmax_backward", "log_softmax", {"form": "vjp", "batched": True}),
    ("distill_grad", "distillation_kl", {"temperature": 2.0}),
    ("distill_grad", "distillation_kl", {"temperature": 2.0, "batched": True}),
    (
        "distill_batchmean",
        "distillation_kl",
        {"temperature": 2.0, "batched": True, "reduction": "batchmean"},
    ),
    ("ce_hessian", "cross_entropy_hessian", {"labels": "any"}),
    ("ce_hessian", "cross_entropy_hessian", {"labels": "simplex", "batched": True}),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("name", "of", "options"), CORRECT, ids=[c[0] for c in CORRECT])
def test_correct_code_passes_on_many_seeds(name, of, options, dtype):
    fn = example(name)
    for seed in range(12):
        outcomes, findings = run(
            fn, of, K + seed % 4, seed=seed, n_random=24, dtype=dtype, **options
        )
        assert not failures(outcomes), (seed, failures(outcomes)[:3])
        assert not findings


@pytest.mark.parametrize("temperature", [0.25, 1.0, 3.0])
def test_distillation_right_at_other_temperatures(temperature, tmp_path):
    script = tmp_path / "t.py"
    script.write_text(
        (EXAMPLES / "family.py").read_text().replace("T = 2.0", f"T = {temperature!r}")
    )
    report = check_gradient(
        f"{script}:distill_grad", K, of="distillation_kl", temperature=temperature
    )
    assert report.ok, report.text()


@pytest.mark.parametrize("name", ["distill_no_t2", "distill_no_chain"])
def test_temperature_mistakes_are_invisible_at_t_one(name, tmp_path):
    """At T = 1, T^2 and 1/T are 1: the 'mistakes' compute the right gradient, and pass."""
    script = tmp_path / "t1.py"
    script.write_text((EXAMPLES / "family.py").read_text().replace("T = 2.0", "T = 1.0"))
    outcomes, findings = run(load_function(f"{script}:{name}")[0], "distillation_kl", K)
    assert not failures(outcomes) and not findings


# ---- the mistakes, each named ----

MISTAKES = [
    ("lse_grad_unstable", "logsumexp", {}, "overflow"),
    ("log_softmax_backward_elementwise", "log_softmax", {"form": "vjp"}, "vjp_sum"),
    ("log_softmax_backward_no_sum", "log_softmax", {"form": "vjp", "batched": True}, "vjp_sum"),
    ("distill_no_t2", "distillation_kl", {"temperature": 2.0}, "temperature"),
    ("distill_no_chain", "distillation_kl", {"temperature": 2.0, "batched": True}, "temperature"),
    ("distill_swapped", "distillation_kl", {"temperature": 2.0}, "kl_swapped"),
    ("ce_hessian_no_sum", "cross_entropy_hessian", {"labels": "any"}, "assumes_sum_one"),
    ("ce_hessian_diagonal", "cross_entropy_hessian", {}, "missing_term"),
]


@pytest.mark.parametrize(("name", "of", "options", "bug"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_mistake_is_named(name, of, options, bug):
    report = check_gradient(f"{EXAMPLES}/family.py:{name}", K, of=of, **options)
    assert not report.ok
    assert report.bugs == (bug,), report.text()
    assert "unexplained" not in report.text()


@pytest.mark.parametrize(("name", "of", "options", "bug"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_mistake_is_named_on_every_seed_and_dtype(name, of, options, bug):
    fn = example(name)
    for dtype, seed in itertools.product(["float64", "float32"], range(4)):
        _, findings = run(fn, of, K, seed=seed, dtype=dtype, **options)
        assert [f.bug for f in findings] == [bug], (dtype, seed, findings)


def test_distillation_mistake_labels_say_which_factor():
    texts = {
        name: check_gradient(
            f"{EXAMPLES}/family.py:{name}", K, of="distillation_kl", temperature=2.0, n_random=16
        )
        .findings[0]
        .message
        for name in ("distill_no_t2", "distill_no_chain")
    }
    assert "T^2 is missing" in texts["distill_no_t2"]
    assert "1/T of d(z/T)/dz is missing" in texts["distill_no_chain"]


def test_hessian_without_sum_y_passes_when_sum_y_is_one():
    """The simplex contract has sum(y) = 1: the softmax Jacobian is then the Hessian."""
    report = check_gradient(
        f"{EXAMPLES}/family.py:ce_hessian_no_sum", K, of="cross_entropy_hessian", n_random=16
    )
    assert report.ok, report.text()


@pytest.mark.parametrize(
    ("function", "of", "options"),
    [
        ("logsumexp_grad", "logsumexp", {}),
        ("distillation_grad", "distillation_kl", {"temperature": 2.0, "batched": True}),
        ("cross_entropy_hessian", "cross_entropy_hessian", {"labels": "any"}),
    ],
)
def test_c_functions_of_the_kernels_convention(function, of, options):
    report = check_gradient(
        f"{EXAMPLES}/c/family_double.c:{function}", 4, of=of, cflags="-DK=4", **options
    )
    assert report.ok, report.text()


def test_c_distillation_at_the_wrong_temperature_is_named():
    report = check_gradient(
        f"{EXAMPLES}/c/family_double.c:distillation_grad",
        4,
        of="distillation_kl",
        temperature=2.0,
        cflags="-DK=4 -DTEMPERATURE=1.0",  # T = 1 in the code: T^2 and 1/T vanish there
    )
    assert not report.ok and report.bugs == ("temperature",), report.text()


# ---- the command line ----


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "symsoft", "check", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=EXAMPLES,
    )


def test_cli_json_names_the_teacher_and_temperature():
    run_ = cli(
        "family.py:distill_swapped",
        "-k",
        "4",
        "--of",
        "distillation_kl",
        "--temperature",
        "2",
        "--json",
        "--n-random",
        "8",
    )
    assert run_.returncode == 1, run_.stderr
    report = json.loads(run_.stdout)
    assert report["options"]["temperature"] == 2.0
    assert len(report["worst"]["teacher"]) == 4
    assert report["diagnosis"][0]["bug"] == "kl_swapped"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--of", "distillation_kl", "--temperature", "0"], "temperature must be > 0"),
        (["--of", "distillation_kl", "--temperature", "-2"], "temperature must be > 0"),
        (["--of", "softmax", "--temperature", "2"], "temperature is for"),
        (["--of", "distillation_kl", "--batched", "--reduction", "mean"], "use batchmean"),
        (["--of", "logsumexp", "--batched", "--reduction", "sum"], "reduction sum/mean is for"),
        (["--of", "distillation_kl", "--form", "vjp"], "form vjp is for"),
        (["--of", "logsumexp", "--weight", "1,1,1,1,1"], "are for --of cross_entropy"),
    ],
)
def test_cli_bad_options_exit_2_with_one_line(args, message):
    run_ = cli("family.py:lse_grad", "-k", "5", *args)
    assert run_.returncode == 2
    assert run_.stdout == ""
    lines = run_.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], run_.stderr
