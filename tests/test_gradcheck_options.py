"""`symsoft check --of cross_entropy` with F.cross_entropy's options (issue 17, Checkable):
weight, ignore_index, reduction, label_smoothing, plus temperature and z-loss. The
reference (NumPy extended precision, gradcheck/expected.py) is held to torch's
F.cross_entropy + autograd on the checker's own batches for every combination; torch's own
float32/float64 code and the NumPy example pass; each usual mistake is named; bad options
are one-line usage errors."""

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

from symsoft.gradcheck import CheckUsageError, check_gradient
from symsoft.gradcheck.inputs import generate
from symsoft.gradcheck.loader import load_function
from symsoft.gradcheck.runner import Runner
from symsoft.gradcheck.settings import make_settings
from tests.conftest import finite_masks
from tests.gradcheck_inprocess import failures, run

EXAMPLES = Path(__file__).resolve().parent / "gradcheck_examples"
K = 5
W = (1.0, 2.0, 0.5, 0.0, 1.5)  # a zero weight among them
WEIGHTS = (None, W)
SMOOTHING = (0.0, 0.1, 1.0)
TEMPERATURES = (1.0, 0.5, 3.0)
Z_LOSS = (0.0, 1e-3)


def combinations(labels: str, temperatures: tuple[float, ...] = TEMPERATURES):
    ignore = (None, -100, 2) if labels == "index" else (None,)
    for weight, ii, eps, t, lam in itertools.product(
        WEIGHTS, ignore, SMOOTHING, temperatures, Z_LOSS
    ):
        yield {
            "weight": weight,
            "ignore_index": ii,
            "label_smoothing": eps,
            "temperature": t,
            "z_loss": lam,
        }


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def torch_loss_and_grad(z, labels, y, options, reduction, dtype=torch.float64):
    """F.cross_entropy(z/T, ...) + z_loss * lse(z/T)^2 per non-ignored row, reduced like it."""
    n = z.shape[0]
    zt = torch.tensor(z, dtype=dtype, requires_grad=True)
    u = zt / options["temperature"]
    w = None if options["weight"] is None else torch.tensor(options["weight"], dtype=dtype)
    kw = {"weight": w, "reduction": reduction, "label_smoothing": options["label_smoothing"]}
    if labels is not None:
        target = torch.as_tensor(labels, dtype=torch.int64)
        keep = torch.ones(n, dtype=torch.bool)
        if options["ignore_index"] is not None:
            kw["ignore_index"] = options["ignore_index"]
            keep = target != options["ignore_index"]
        safe = torch.where(keep, target, 0)
        norm = ((torch.ones(n, dtype=dtype) if w is None else w[safe]) * keep).sum()
    else:
        target = torch.tensor(y, dtype=dtype)
        keep = torch.ones(n, dtype=torch.bool)
        norm = torch.tensor(float(n), dtype=dtype)
    loss = F.cross_entropy(u, target, **kw)
    z_term = options["z_loss"] * torch.logsumexp(u, -1) ** 2 * keep
    if reduction == "none":
        loss = loss + z_term
    elif reduction == "sum":
        loss = loss + z_term.sum()
    elif norm > 0:  # every row ignored: PyTorch's loss is NaN, its gradient 0
        loss = loss + z_term.sum() / norm
    loss.sum().backward()
    return loss.detach().numpy(), zt.grad.numpy()


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("labels", ["index", "simplex", "any"])
def test_reference_is_torch_cross_entropy_for_every_combination(labels, reduction):
    checked = 0
    for options in combinations(labels):
        st = make_settings(
            "cross_entropy",
            K,
            batched=True,
            labels=labels,
            reduction=reduction,
            n_random=4,
            **options,
        )
        cases, batches = generate(st)
        runner = Runner(None, st, cases)
        for b, rows in enumerate(batches):
            outcomes = runner.outcomes(rows, b)
            z = finite_masks(np.stack([o.case.z for o in outcomes]), options["temperature"])
            labels_ = [o.case.label for o in outcomes] if labels == "index" else None
            y = None if labels == "index" else np.stack([o.case.y for o in outcomes])
            loss, grad = torch_loss_and_grad(z, labels_, y, options, reduction)
            for o, g in zip(outcomes, grad, strict=True):
                o.got = g
                o.judge()
                assert not o.grad_failed, (options, o.case.note, o.ref.values, g)
            runner._attach_loss(outcomes, np.atleast_1d(loss))
            for o in outcomes:
                assert not o.loss_wrong, (options, o.case.note, o.loss_expected, o.loss_got)
            checked += len(rows)
    assert checked > 1000


def test_every_row_ignored_gives_gradient_0_and_an_unchecked_loss():
    st = make_settings(
        "cross_entropy", K, batched=True, labels="index", reduction="mean", ignore_index=-100
    )
    cases, batches = generate(st)
    empty = [rows for rows in batches if all(cases[i].ignored for i in rows)]
    assert empty
    outcomes = Runner(None, st, cases).outcomes(empty[-1])
    assert all(o.divisor == 0 and not o.ref.values.any() for o in outcomes)
    assert all(o.ref.loss is None for o in outcomes)
    loss, grad = torch_loss_and_grad(
        np.stack([o.case.z for o in outcomes]),
        [o.case.label for o in outcomes],
        None,
        {
            "weight": None,
            "ignore_index": -100,
            "label_smoothing": 0.0,
            "temperature": 1.0,
            "z_loss": 0.0,
        },
        "mean",
    )
    assert np.isnan(loss) and not grad.any()  # PyTorch's


# ---- correct code passes ----


def _torch_user(z, target, *, options, reduction):
    """A user's gradient: torch's F.cross_entropy and autograd, in the inputs' dtype."""
    labels = target.numpy() if target.dtype == torch.int64 else None
    y = None if labels is not None else target.numpy()
    _, grad = torch_loss_and_grad(z.numpy(), labels, y, options, reduction, dtype=z.dtype)
    return torch.from_numpy(grad)


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("labels", ["index", "simplex"])
def test_torch_cross_entropy_passes_for_every_combination(labels, dtype, temperature):
    combos = combinations(labels, (temperature,))
    for options, reduction in itertools.product(combos, ["sum", "mean"]):
        fn = functools.partial(_torch_user, options=options, reduction=reduction)
        outcomes, findings = run(
            fn,
            "cross_entropy",
            K,
            batched=True,
            labels=labels,
            reduction=reduction,
            dtype=dtype,
            array="torch",
            n_random=4,
            finite=labels != "index",
            **options,
        )
        assert not failures(outcomes), (options, reduction, failures(outcomes)[:2])
        assert not findings


def _numpy_example():
    return load_function(f"{EXAMPLES}/ce_options.py:grad")[0]


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("labels", ["index", "any"])
def test_numpy_example_passes_for_every_combination(labels, dtype, temperature):
    grad = _numpy_example()
    for i, options in enumerate(combinations(labels, (temperature,))):
        for reduction, batched in (("none", False), ("none", True), ("sum", True), ("mean", True)):
            fn = functools.partial(grad, reduction=reduction, **options)
            outcomes, findings = run(
                fn,
                "cross_entropy",
                K,
                batched=batched,
                labels=labels,
                seed=i,
                reduction=reduction,
                dtype=dtype,
                n_random=6,
                **options,
            )
            assert not failures(outcomes), (options, reduction, failures(outcomes)[:2])
            assert not findings


def test_explicit_defaults_are_the_plain_check():
    plain = check_gradient(f"{EXAMPLES}/grads.py:ce_grad", K, labels="any", n_random=8)
    explicit = check_gradient(
        f"{EXAMPLES}/grads.py:ce_grad",
        K,
        labels="any",
        n_random=8,
        weight=None,
        label_smoothing=0.0,
        temperature=1.0,
        z_loss=0.0,
    )
    assert plain.text() == explicit.text() and plain.ok
    assert "finite differences (second opinion)" in plain.text()


# ---- the mistakes, each named ----

WEIGHTED_MEAN = [
    "--labels",
    "index",
    "--batched",
    "--reduction",
    "mean",
    "--weight",
    "1,2,0.5,0,1.5",
]
TRAIN = [*WEIGHTED_MEAN, "--ignore-index", "-100", "--label-smoothing", "0.1", "--temperature", "2"]
CLASS0 = [*WEIGHTED_MEAN, "--ignore-index", "0"]
MISTAKES = [
    ("train_grad_mean_by_n", TRAIN, "mean_normaliser"),
    ("train_grad_smoothing_on_ignored", TRAIN, "ignored_rows"),
    ("train_grad_no_inverse_t", TRAIN, "temperature"),
    ("train_grad_nan_when_all_ignored", TRAIN, "empty_mean"),
    ("class0_ignored_grad_counts_ignored", CLASS0, "ignored_rows"),
    ("zloss_grad_no_2", ["--z-loss", "1e-3"], "z_loss_factor"),
]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "symsoft", "check", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=EXAMPLES,
    )


@pytest.mark.parametrize(("name", "args", "bug"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_mistake_is_named(name, args, bug):
    run_ = cli(f"ce_options.py:{name}", "-k", "5", *args, "--json")
    assert run_.returncode == 1, run_.stderr
    report = json.loads(run_.stdout)
    assert [d["bug"] for d in report["diagnosis"]] == [bug], report["diagnosis"]


def _options(args: list[str]) -> dict:
    """The CLI's arguments as check_gradient's keywords."""
    out: dict = {}
    it = iter(args)
    for flag in it:
        key = flag.removeprefix("--").replace("-", "_")
        if key == "batched":
            out[key] = True
            continue
        value = next(it)
        if key == "weight":
            out[key] = [float(v) for v in value.split(",")]
        elif key == "ignore_index":
            out[key] = int(value)
        elif key in ("label_smoothing", "temperature", "z_loss"):
            out[key] = float(value)
        else:
            out[key] = value
    return out


@pytest.mark.parametrize(("name", "args", "bug"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_mistake_is_named_on_every_seed_and_dtype(name, args, bug):
    fn = load_function(f"{EXAMPLES}/ce_options.py:{name}")[0]
    for dtype, seed in itertools.product(["float64", "float32"], range(4)):
        _, findings = run(fn, "cross_entropy", K, seed=seed, dtype=dtype, **_options(args))
        assert [f.bug for f in findings] == [bug], (dtype, seed, findings)


@pytest.mark.parametrize(
    ("name", "args"),
    [("train_grad", TRAIN), ("class0_ignored_grad", CLASS0), ("zloss_grad", ["--z-loss", "1e-3"])],
)
def test_right_examples_pass_on_the_command_line(name, args):
    run_ = cli(f"ce_options.py:{name}", "-k", "5", *args)
    assert run_.returncode == 0, run_.stdout[-2000:]


def test_weight_from_a_npy_file(tmp_path):
    path = tmp_path / "w.npy"
    np.save(path, np.array(W))
    args = [str(path) if a == "1,2,0.5,0,1.5" else a for a in TRAIN]
    run_ = cli("ce_options.py:train_grad", "-k", "5", *args)
    assert run_.returncode == 0, run_.stdout[-2000:] + run_.stderr


# ---- bad options ----


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--temperature", "-1"], "temperature must be > 0"),
        (["--temperature", "nan"], "temperature must be finite"),
        (["--label-smoothing", "1.5"], "label_smoothing must be in [0, 1]"),
        (["--label-smoothing", "-0.1"], "label_smoothing must be in [0, 1]"),
        (["--weight", "1,2,3"], "weight must have K = 5 entries"),
        (["--weight", "1,2,-3,1,1"], "weight must be finite and >= 0"),
        (["--weight", "1,2,x,1,1"], "weight must be K numbers"),
        (["--weight", "missing.npy"], "weight: cannot read missing.npy"),
        (["--ignore-index", "2"], "ignore_index is for integer labels"),
        (["--z-loss", "-1"], "z_loss must be >= 0"),
        (["--labels", "index", "--reduction", "mean"], "reduction sum/mean is for a batched"),
    ],
)
def test_bad_option_is_a_one_line_usage_error(args, message):
    run_ = cli("ce_options.py:zloss_grad", "-k", "5", *args)
    assert run_.returncode == 2 and run_.stdout == ""
    lines = run_.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], run_.stderr


def test_bad_option_from_python_raises_before_the_function_runs():
    def never(z, y):
        raise AssertionError("must not run")

    with pytest.raises(CheckUsageError, match="weight must have K = 5 entries"):
        check_gradient(never, 5, weight=[1.0, 2.0])
    with pytest.raises(CheckUsageError, match="ignore_index is for integer labels"):
        check_gradient(never, 5, labels="simplex", ignore_index=-100)
