"""The verdict and its evidence, as text for people and as JSON for machines."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from symsoft.gradcheck import tolerance
from symsoft.gradcheck.diagnose import Finding
from symsoft.gradcheck.inputs import KIND_HELP, KINDS
from symsoft.gradcheck.runner import Outcome
from symsoft.gradcheck.second_opinion import FiniteDifferences
from symsoft.gradcheck.settings import CONTRACTS, Settings

TABLE_ALL = 16  # show every entry up to this many, else the worst ones
TABLE_ROWS = 12


@dataclass(frozen=True)
class KindStats:
    kind: str
    inputs: int
    failed: int
    raised: int
    max_abs_err: float
    max_rel_err: float
    max_ratio: float  # largest error over its tolerance
    loss_failed: int = 0


@dataclass(frozen=True)
class Entry:
    index: tuple[int, ...]
    expected: float
    got: float
    error: float
    tol: float

    @property
    def wrong(self) -> bool:
        return not self.error <= self.tol


@dataclass(frozen=True)
class Report:
    name: str
    settings: Settings
    outcomes: tuple[Outcome, ...]
    findings: tuple[Finding, ...]
    worst: Outcome
    finite_differences: FiniteDifferences | None
    n_batches: int | None
    restarts: int = 0  # worker processes started again after a crash, exit or timeout

    @property
    def ok(self) -> bool:
        return not any(o.failed for o in self.outcomes)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    @property
    def n_failed(self) -> int:
        return sum(o.failed for o in self.outcomes)

    @property
    def n_grad_failed(self) -> int:
        return sum(o.grad_failed for o in self.outcomes)

    @property
    def n_loss_failed(self) -> int:
        return sum(o.loss_wrong for o in self.outcomes)

    @property
    def loss_checked(self) -> int:
        """Inputs whose call returned (loss, grad)."""
        return sum(o.loss_got is not None for o in self.outcomes)

    @property
    def wrong_parts(self) -> str:
        """Which of the two is wrong: "gradient", "loss", "gradient and loss" or ""."""
        parts = [
            p for p, n in (("gradient", self.n_grad_failed), ("loss", self.n_loss_failed)) if n
        ]
        return " and ".join(parts)

    @property
    def bugs(self) -> tuple[str, ...]:
        return tuple(f.bug for f in self.findings)

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        return self.text()

    def kinds(self) -> list[KindStats]:
        stats = []
        for kind in KINDS:
            group = [o for o in self.outcomes if o.case.kind == kind]
            if group:
                stats.append(
                    KindStats(
                        kind,
                        len(group),
                        sum(o.failed for o in group),
                        sum(o.error is not None for o in group),
                        max(o.abs_err for o in group),
                        max(o.rel_err for o in group),
                        max(o.ratio for o in group),
                        sum(o.loss_wrong for o in group),
                    )
                )
        return stats

    def entries(self) -> tuple[list[Entry], int]:
        """The worst input's entries to show, and how many were left out."""
        o = self.worst
        got = o.got if o.got is not None else np.full(o.ref.values.shape, np.nan)
        all_entries = [
            Entry(
                idx,
                float(o.ref.values[idx]) + 0.0,  # + 0.0: print -0 as 0
                float(got[idx]) + 0.0,
                float(o.diff[idx]),
                float(o.tol[idx]),
            )
            for idx in np.ndindex(o.ref.values.shape)
        ]
        if len(all_entries) <= TABLE_ALL:
            return all_entries, 0
        ranked = sorted(all_entries, key=lambda e: -e.error / e.tol)[:TABLE_ROWS]
        return sorted(ranked, key=lambda e: e.index), len(all_entries) - len(ranked)

    # ---- text ----

    def text(self) -> str:
        st = self.settings
        lines = [f"symsoft check: {self.name}: {st.what}", "  " + self._setup()]
        lines.append(f"  contract: {st.contract}")
        if st.finite:
            lines.append("  masked (-inf) inputs: not tried (--finite: the contract excludes -inf)")
        elif st.options.label_smoothing:
            lines.append(
                "  masked (-inf) inputs: not tried (label smoothing puts eps/K on every class: "
                "the loss is +inf there and has no gradient)"
            )
        n = len(self.outcomes)
        verdict = (
            f"verdict: CORRECT on all {n} inputs"
            if self.ok
            else f"verdict: WRONG on {self.n_failed} of {n} inputs"
        )
        if self.loss_checked:
            verdict += (
                f"; the {self.wrong_parts} wrong (gradient on {self.n_grad_failed}, "
                f"loss on {self.n_loss_failed})"
                if not self.ok
                else "; gradient and the returned loss both right"
            )
        lines += [verdict, ""]
        loss_head = f"{'loss':>6}" if self.loss_checked else ""
        lines.append(
            f"  {'kind':<11}{'inputs':>7}{'failed':>8}{loss_head}{'max abs err':>13}"
            f"{'max rel err':>13}{'err/tol':>10}   what"
        )
        for k in self.kinds():
            loss = f"{k.loss_failed:>6}" if self.loss_checked else ""
            lines.append(
                f"  {k.kind:<11}{k.inputs:>7}{k.failed:>8}{loss}{_num(k.max_abs_err):>13}"
                f"{_num(k.max_rel_err):>13}{_num(k.max_ratio, 2):>10}   {KIND_HELP[k.kind]}"
            )
        lines += ["", "tolerance: " + tolerance.describe(st.dtype), ""]
        lines += self._worst_text()
        lines += ["", "diagnosis:"]
        if not self.findings:
            lines.append("  no bug found: every entry of every input is within its tolerance")
        for f in self.findings:
            lines.append(f"  - {f.title}: {f.message}")
        lines += ["", self._fd_text()]
        if self.restarts:
            lines.append(
                f"worker: the process running the function was started again {self.restarts} "
                "times (after an exit, crash, timeout or fork)"
            )
        return "\n".join(lines)

    def _setup(self) -> str:
        st = self.settings
        parts = [f"K={st.k}", st.dtype.name]
        parts.append(f"batched ({self.n_batches} batches)" if st.batched else "one row per call")
        if st.takes_labels:
            parts.append(f"labels contract: {st.labels} ({CONTRACTS[st.labels]})")
        if st.batched and st.reduction != "none":
            parts.append(f"reduction {st.reduction}")
        if st.options.describe():
            parts.append(st.options.describe())
        parts.append(f"seed {st.seed}")
        return ", ".join(parts)

    def _worst_text(self) -> list[str]:
        o = self.worst
        head = "worst input" if not self.ok else "closest to failing"
        where = f"#{o.index}, kind {o.case.kind}: {o.case.note}"
        if o.batch is not None:
            where += f", row of batch {o.batch}"
        lines = [f"{head} ({where}):", f"  z = {_vector(o.case.z)}"]
        if o.case.teacher is not None:
            lines.append(f"  z_teacher = {_vector(o.case.teacher)}")
        if o.case.label is not None:
            lines.append(f"  c = {o.case.label}" + (" (ignored)" if o.case.ignored else ""))
        elif o.case.y is not None:
            lines.append(f"  y = {_vector(o.case.y)}")
        if o.case.g is not None:
            lines.append(f"  g = {_vector(o.case.g)}")
        if o.divisor != 1 and o.divisor == o.rows:
            lines.append(f"  (gradient of the mean over the {o.divisor} rows of its batch)")
        elif o.divisor != 1:
            lines.append(
                f"  (gradient of the mean: divided by {o.divisor:g}, the sum of the weights of "
                f"the non-ignored rows of its batch of {o.rows})"
            )
        if o.error is not None:
            verb = "" if o.escaped else "raised "
            return [*lines, f"  {verb}{o.error}"]
        if o.loss_got is not None:
            whose = "the batch's loss" if o.loss_batch else "loss"
            mark = "  WRONG" if o.loss_wrong else ""
            lines.append(
                f"  {whose}: expected {o.loss_expected!r}, got {o.loss_got!r}, |error| "
                f"{_num(o.loss_error)}, tolerance {_num(o.loss_tol)}{mark}"
            )
        entries, left_out = self.entries()
        lines.append(f"  {'entry':<10}{'expected':>25}{'got':>25}{'|error|':>11}{'tolerance':>11}")
        for e in entries:
            index = "[" + ", ".join(map(str, e.index)) + "]"
            mark = "  WRONG" if e.wrong else ""
            lines.append(
                f"  {index:<10}{e.expected:>25.17g}{e.got:>25.17g}{_num(e.error):>11}"
                f"{_num(e.tol):>11}{mark}"
            )
        if left_out:
            wrong = int(o.wrong.sum()) - sum(e.wrong for e in entries)
            lines.append(f"  ... {left_out} more entries ({wrong} of them wrong)")
        return lines

    def _fd_text(self) -> str:
        fd = self.finite_differences
        if fd is None and not self.settings.exact_reference:
            return (
                "finite differences: not run (this reference is NumPy's extended precision, "
                "held to torch autograd by symsoft's tests)"
            )
        if fd is None:
            return "finite differences: skipped (K too large for a 50-digit second opinion)"
        skipped = f" ({fd.skipped} entries at masked classes skipped)" if fd.skipped else ""
        if fd.agrees:
            return (
                "finite differences (second opinion): central differences of the 50-digit "
                f"forward function at the worst input agree with the reference to "
                f"{fd.max_diff:.1e}{skipped}"
            )
        return (
            f"finite differences DISAGREE with the reference by {fd.max_diff:.1e} at the worst "
            "input: this is a bug in symsoft, not in the checked function; please report it"
        )

    # ---- JSON ----

    def to_dict(self) -> dict:
        st, o = self.settings, self.worst
        entries, left_out = self.entries()
        return {
            "verdict": "correct" if self.ok else "wrong",
            "exit_code": self.exit_code,
            "function": self.name,
            "of": st.of,
            "k": st.k,
            "dtype": st.dtype.name,
            "batched": st.batched,
            "batches": self.n_batches,
            "contract": st.contract,
            "reduction": st.reduction,
            "form": st.form,
            "array": st.array,
            "finite": st.finite,
            "options": {
                "weight": None if st.options.weight is None else list(st.options.weight),
                "ignore_index": st.options.ignore_index,
                "label_smoothing": st.options.label_smoothing,
                "temperature": st.options.temperature,
                "z_loss": st.options.z_loss,
            },
            "timeout": st.timeout,
            "check_timeout": st.check_timeout,
            "wrong": self.wrong_parts or None,
            "gradient_failed": self.n_grad_failed,
            "loss_checked": self.loss_checked,
            "loss_failed": self.n_loss_failed,
            "restarts": self.restarts,
            "labels": st.labels if st.takes_labels else None,
            "labels_contract": CONTRACTS[st.labels] if st.takes_labels else None,
            "seed": st.seed,
            "inputs": len(self.outcomes),
            "failed": self.n_failed,
            "tolerance": {
                "c": tolerance.C,
                "unit_roundoff": tolerance.unit_roundoff(st.dtype),
                "formula": " ".join(tolerance.describe(st.dtype).split()),
            },
            "kinds": {
                k.kind: {
                    "inputs": k.inputs,
                    "failed": k.failed,
                    "raised": k.raised,
                    "max_abs_error": _json(k.max_abs_err),
                    "max_rel_error": _json(k.max_rel_err),
                    "max_error_over_tolerance": _json(k.max_ratio),
                    "loss_failed": k.loss_failed,
                }
                for k in self.kinds()
            },
            "worst": {
                "index": o.index,
                "kind": o.case.kind,
                "note": o.case.note,
                "batch": o.batch,
                "z": [_json(v) for v in o.case.z.astype(float)],
                "y": None if o.case.y is None else [_json(v) for v in o.case.y.astype(float)],
                "label": o.case.label,
                "ignored": o.case.ignored,
                "teacher": None
                if o.case.teacher is None
                else [_json(v) for v in o.case.teacher.astype(float)],
                "g": None if o.case.g is None else [_json(v) for v in o.case.g.astype(float)],
                "error": o.error,
                "loss": None
                if o.loss_got is None
                else {
                    "expected": _json(o.loss_expected),
                    "got": _json(o.loss_got),
                    "tolerance": _json(o.loss_tol),
                    "wrong": o.loss_wrong,
                    "of_batch": o.loss_batch,
                },
                "entries": [
                    {
                        "index": list(e.index),
                        "expected": _json(e.expected),
                        "got": _json(e.got),
                        "abs_error": _json(e.error),
                        "tolerance": _json(e.tol),
                        "wrong": e.wrong,
                    }
                    for e in entries
                ]
                if o.error is None
                else [],
                "entries_left_out": left_out if o.error is None else 0,
            },
            "diagnosis": [
                {
                    "bug": f.bug,
                    "title": f.title,
                    "message": f.message,
                    "inputs": f.inputs,
                    "kinds": dict(f.kinds),
                }
                for f in self.findings
            ],
            "finite_differences": None
            if self.finite_differences is None
            else {
                "max_abs_diff": self.finite_differences.max_diff,
                "agrees": self.finite_differences.agrees,
                "skipped_entries": self.finite_differences.skipped,
            },
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _json(x: float) -> float | str:
    """JSON has no NaN or infinity: those become the strings "nan", "inf", "-inf"."""
    x = float(x)
    return x if math.isfinite(x) else str(x)


def _num(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}e}" if math.isfinite(x) else str(x)


def _vector(a: np.ndarray) -> str:
    # numpy scalars print the shortest repr that round-trips in their dtype: paste-able
    return "[" + ", ".join(str(v) for v in a) + "]"
