"""Run a check's inputs, reference, verdict and diagnosis in this process (no worker), for
tests that sweep many option combinations or seeds: the forked worker costs ~0.3 s a check,
and what it adds (isolation) is tested in test_gradcheck_isolation.py."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from symsoft.gradcheck.arrays import convert_output, input_converter
from symsoft.gradcheck.diagnose import Finding, diagnose
from symsoft.gradcheck.inputs import generate
from symsoft.gradcheck.runner import Outcome, Runner
from symsoft.gradcheck.settings import Settings, make_settings
from symsoft.gradcheck.worker import Answer


class InProcess:
    """The Worker's call(), here: the function's exceptions become error answers."""

    def __init__(self, fn: Callable, settings: Settings) -> None:
        self.fn = fn
        self.convert = input_converter(settings.array, settings.dtype)

    def call(self, args: tuple) -> Answer:
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                out = self.fn(*(self.convert(a) for a in args))
        except Exception as exc:
            return Answer(None, f"{type(exc).__name__}: {exc}")
        return Answer(convert_output(out))


def run(fn: Callable, of: str, k: int, **options: object) -> tuple[list[Outcome], list[Finding]]:
    """The outcomes and findings check_gradient would report (options as it takes them)."""
    st = make_settings(of, k, **options)
    cases, batches = generate(st)
    runner = Runner(InProcess(fn, st), st, cases)
    outcomes = runner.run(batches)
    findings = diagnose(outcomes, st, batches, lambda i: runner.call([i])[0])
    return outcomes, findings


def failures(outcomes: list[Outcome]) -> list[str]:
    """What failed, for an assertion message."""
    return [
        f"#{o.index} {o.case.kind} ({o.case.note}): rel err {o.rel_err:.3g}, "
        f"err/tol {o.ratio:.3g}, loss {o.loss_got} vs {o.loss_expected}"
        for o in outcomes
        if o.failed
    ]
