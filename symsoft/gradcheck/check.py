"""check_gradient: generate inputs, run the function, judge, diagnose, report."""

from __future__ import annotations

import math
from collections.abc import Callable

from symsoft.gradcheck.diagnose import diagnose
from symsoft.gradcheck.inputs import KINDS, generate
from symsoft.gradcheck.loader import check_signature
from symsoft.gradcheck.report import Report
from symsoft.gradcheck.runner import Outcome, run, run_batch
from symsoft.gradcheck.second_opinion import finite_differences
from symsoft.gradcheck.settings import make_settings
from symsoft.gradcheck.tolerance import logit_size


def check_gradient(
    fn: Callable,
    k: int,
    of: str = "cross_entropy",
    *,
    batched: bool = False,
    dtype: str = "float64",
    labels: str = "simplex",
    seed: int | None = 0,
    n_random: int | None = None,
    name: str | None = None,
) -> Report:
    """Check a hand-written derivative against symsoft's exact one.

    of: "softmax" (fn(z) -> K x K Jacobian of s), "log_softmax" (fn(z) -> Jacobian of log s)
    or "cross_entropy" (fn(z, y) -> dL/dz). z and y are 1-D arrays of length K in `dtype`, or
    (N, K) arrays with batched=True (then fn returns (N, K) or (N, K, K)). labels is what the
    function assumes about y: "simplex" (y >= 0, sum 1), "one-hot" or "any" (y >= 0).
    n_random: how many random-logit inputs (default 96; the special kinds come on top).

    Returns a Report (truthy when correct; .text(), .to_json(), .exit_code). Raises
    CheckUsageError (a SpecError) when the check cannot run: bad options, a signature that
    cannot take the inputs, or an output of the wrong shape.
    """
    settings = make_settings(
        of, k, batched=batched, dtype=dtype, labels=labels, seed=seed, n_random=n_random
    )
    name = name or getattr(fn, "__qualname__", None) or repr(fn)
    check_signature(fn, settings, name)
    cases, batches = generate(settings)
    outcomes = run(fn, settings, cases, batches)

    def alone(index: int) -> Outcome | None:
        try:
            return run_batch(fn, settings, cases, [index])[0]
        except Exception:  # a shape error on N = 1 is no evidence either way
            return None

    findings = diagnose(outcomes, settings, batches, alone)
    worst = _worst(outcomes)
    fd = finite_differences(settings.of, worst.case.z, worst.case.y)
    return Report(
        name,
        settings,
        tuple(outcomes),
        tuple(findings),
        worst,
        fd,
        None if batches is None else len(batches),
    )


def _worst(outcomes: list[Outcome]) -> Outcome:
    """The input to show: the largest relative error; among errors of the same decade (all
    above 10% count as one) the most ordinary kind and the smallest logits, the clearest
    example. With no wrong values, an exception; with no failure, the closest to failing."""
    failing = [o for o in outcomes if o.failed]
    computed = [o for o in failing if o.error is None]
    if not computed:
        return (failing or [max(outcomes, key=lambda o: o.ratio)])[0]

    def key(o: Outcome) -> tuple[float, bool, int, float]:
        # decades of relative error; beyond 10% (NaN and inf included) it is simply wrong
        size = -1 if o.rel_err >= 0.1 else math.floor(math.log10(o.rel_err))
        degenerate = not math.isfinite(o.rel_err)  # NaN output, or an answer that is all 0
        return (-size, degenerate, KINDS.index(o.case.kind), logit_size(o.case.z))

    return min(computed, key=key)
