"""check_gradient: generate inputs, run the function, judge, diagnose, report."""

from __future__ import annotations

import math
from collections.abc import Callable

from symsoft.gradcheck.cfunction import CFunction
from symsoft.gradcheck.diagnose import diagnose
from symsoft.gradcheck.errors import CheckUsageError
from symsoft.gradcheck.inputs import KINDS, generate
from symsoft.gradcheck.loader import check_signature, load_function
from symsoft.gradcheck.report import Report
from symsoft.gradcheck.runner import Outcome, Runner
from symsoft.gradcheck.second_opinion import finite_differences
from symsoft.gradcheck.settings import (
    DEFAULT_CHECK_TIMEOUT,
    DEFAULT_TIMEOUT,
    Settings,
    make_settings,
)
from symsoft.gradcheck.tolerance import logit_size
from symsoft.gradcheck.worker import Worker


def check_gradient(
    fn: Callable | str,
    k: int,
    of: str = "cross_entropy",
    *,
    batched: bool = False,
    dtype: str = "float64",
    labels: str = "simplex",
    seed: int | None = 0,
    n_random: int | None = None,
    name: str | None = None,
    reduction: str = "none",
    form: str = "jacobian",
    array: str = "numpy",
    finite: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    check_timeout: float = DEFAULT_CHECK_TIMEOUT,
    cflags: str | tuple[str, ...] = (),
    weight: object = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    temperature: float = 1.0,
    z_loss: float = 0.0,
) -> Report:
    """Check a hand-written derivative against symsoft's exact one.

    fn: a callable, or a target as the CLI takes it ("grads.py:ce_grad", "kernel.c:backward",
    "libk.so:backward"). of: "softmax" (fn(z) -> K x K Jacobian of s), "log_softmax" (of
    log s), "cross_entropy" (fn(z, y) -> dL/dz, or (loss, dL/dz)), "logsumexp" (fn(z) -> d lse/dz,
    or (lse, grad)), "distillation_kl" (fn(z_student, z_teacher) -> the gradient of T^2 KL(
    softmax(z_teacher/T) || softmax(z_student/T)) w.r.t. z_student, or (loss, grad)) or
    "cross_entropy_hessian" (fn(z, y) -> the K x K Hessian). z and y are 1-D arrays
    of length K in `dtype`, or (N, K) arrays with batched=True. labels is what the function
    assumes about y: "simplex" (y >= 0, sum 1), "one-hot", "any" (y >= 0) or "index" (fn(z,
    c) with an integer class; batched an int64 array (N,)). reduction "sum" / "mean": fn
    returns the gradient of the batch's summed / mean loss ("batchmean" for distillation_kl,
    as F.kl_div's). Cross-entropy's options as torch.nn.functional.cross_entropy's: weight (K
    numbers, "w1,...,wK" or a .npy path), ignore_index (labels="index"), label_smoothing; and
    temperature T (z/T first; distillation_kl's T too) and z_loss (lambda * lse(z/T)^2 per
    non-ignored row, unweighted, reduced like the loss). form "vjp": fn(z, g) returns
    g^T J. array: the inputs are "numpy", "torch" or "jax" arrays. finite: the contract
    excludes -inf logits. timeout: seconds per call; check_timeout: for the whole check.
    cflags: compiler flags for a .c target. n_random: how many random-logit inputs (default
    96; the special kinds come on top).

    fn runs in a child process: an exit, crash, hang or fork inside it is a WRONG verdict.
    Returns a Report (truthy when correct; .text(), .to_json(), .exit_code). Raises
    CheckUsageError (a SpecError) when the check cannot run: bad options, a signature that
    cannot take the inputs, or an output of the wrong shape.
    """
    settings = make_settings(
        of,
        k,
        batched=batched,
        dtype=dtype,
        labels=labels,
        seed=seed,
        n_random=n_random,
        reduction=reduction,
        form=form,
        array=array,
        finite=finite,
        timeout=timeout,
        check_timeout=check_timeout,
        weight=weight,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        temperature=temperature,
        z_loss=z_loss,
    )
    if isinstance(fn, str):
        fn, default_name = load_function(fn, settings, cflags)
        name = name or default_name
    elif cflags:
        raise CheckUsageError("cflags is for a .c target")
    name = name or getattr(fn, "__qualname__", None) or repr(fn)
    try:
        return _check(fn, settings, name)
    finally:
        close_function(fn)


def close_function(fn: Callable) -> None:
    """Removes what loading a C target made (its compiled library's temporary folder)."""
    if isinstance(fn, CFunction):
        fn.close()


def _check(fn: Callable, settings: Settings, name: str) -> Report:
    check_signature(fn, settings, name)
    cases, batches = generate(settings)
    with Worker(fn, settings.array, settings.dtype, settings.timeout, settings.check_timeout) as w:
        runner = Runner(w, settings, cases)
        outcomes = runner.run(batches)

        def alone(index: int) -> Outcome | None:
            try:
                return runner.call([index])[0]
            except CheckUsageError:  # a shape error on N = 1 is no evidence either way
                return None

        findings = diagnose(outcomes, settings, batches, alone)
        restarts = w.restarts
    worst = _worst(outcomes)
    fd = (
        finite_differences(settings.of, worst.case.z, worst.y64)
        if settings.exact_reference
        else None
    )
    return Report(
        name,
        settings,
        tuple(outcomes),
        tuple(findings),
        worst,
        fd,
        None if batches is None else len(batches),
        restarts,
    )


def _worst(outcomes: list[Outcome]) -> Outcome:
    """The input to show: the largest relative error; among errors of the same decade (all
    above 10% count as one) the most ordinary kind and the smallest logits, the clearest
    example. With no wrong values, an exception; with a right gradient, the worst loss; with
    no failure, the closest to failing."""
    failing = [o for o in outcomes if o.grad_failed]
    computed = [o for o in failing if o.error is None]
    if not computed:
        if failing:
            return failing[0]
        lossy = [o for o in outcomes if o.loss_wrong]
        if lossy:
            return max(lossy, key=lambda o: (o.loss_error / o.loss_tol, -o.index))
        return max(outcomes, key=lambda o: o.ratio)

    def key(o: Outcome) -> tuple[float, bool, int, float]:
        # decades of relative error; beyond 10% (NaN and inf included) it is simply wrong
        size = -1 if o.rel_err >= 0.1 else math.floor(math.log10(o.rel_err))
        degenerate = not math.isfinite(o.rel_err)  # NaN output, or an answer that is all 0
        return (-size, degenerate, KINDS.index(o.case.kind), logit_size(o.case.z))

    return min(computed, key=key)
