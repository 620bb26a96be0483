"""Call the user's function on every case and judge each result against the reference."""

from __future__ import annotations

import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from symsoft.gradcheck.errors import CheckUsageError
from symsoft.gradcheck.expected import Reference, get_reference
from symsoft.gradcheck.inputs import Case
from symsoft.gradcheck.settings import Settings
from symsoft.gradcheck.tolerance import entry_tolerance


@dataclass(eq=False)
class Outcome:
    index: int  # position in the case list
    case: Case
    ref: Reference
    tol: np.ndarray
    got: np.ndarray | None = None  # float64 copy of the output; None if fn raised
    out_dtype: str | None = None
    error: str | None = None  # "ValueError: ... (at file.py:12)"
    batch: int | None = None
    rows: int = 1  # rows in the call that produced got
    diff: np.ndarray = field(init=False)  # |got - expected|, inf where got is not finite
    wrong: np.ndarray = field(init=False)  # entries outside the tolerance

    def __post_init__(self) -> None:
        self.judge()

    def judge(self) -> None:
        if self.got is None:
            self.diff = np.full(self.ref.values.shape, np.inf)
        else:
            with np.errstate(invalid="ignore"):
                diff = np.abs(self.got - self.ref.values)
            self.diff = np.where(np.isfinite(self.got), diff, np.inf)
        self.wrong = ~(self.diff <= self.tol)

    @property
    def failed(self) -> bool:
        return bool(self.wrong.any())

    @property
    def abs_err(self) -> float:
        return float(self.diff.max())

    @property
    def rel_err(self) -> float:
        """The largest error over the largest term of the closed form at this input.

        The largest term is at least the largest |expected| entry, and stays meaningful when
        the derivative is ~0 (a confident, correct prediction).
        """
        top = float(self.ref.scale.max())
        return self.abs_err / top if top > 0 else (0.0 if self.abs_err == 0 else np.inf)

    @property
    def ratio(self) -> float:
        """How much of its error budget the worst entry uses (> 1 means wrong)."""
        return float((self.diff / self.tol).max())

    @property
    def z64(self) -> np.ndarray:
        return self.case.z.astype(np.float64)

    @property
    def y64(self) -> np.ndarray | None:
        return None if self.case.y is None else self.case.y.astype(np.float64)


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    here = str(Path(__file__).resolve().parent)
    user = [f for f in frames if not str(Path(f.filename).resolve()).startswith(here)]
    if not user:
        return ""
    last = user[-1]
    return f" (at {Path(last.filename).name}:{last.lineno})"


def _call(fn: Callable, args: tuple[np.ndarray, ...]) -> tuple[object, str | None]:
    # copies: a function that writes into its input must not change the next case
    args = tuple(a.copy() for a in args)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overflow warnings are part of what is being judged
        try:
            return fn(*args), None
        except Exception as exc:
            message = str(exc).splitlines()[0][:200] if str(exc) else ""
            return None, f"{type(exc).__name__}: {message}{_where(exc)}"


def _as_array(out: object, shape: tuple[int, ...], settings: Settings, what: str) -> np.ndarray:
    try:
        arr = np.asarray(out)
    except Exception as exc:  # e.g. a ragged list
        raise CheckUsageError(f"{what}: the result is not an array ({exc})") from exc
    if arr.dtype.kind not in "fiub":
        raise CheckUsageError(
            f"{what}: returned {type(out).__name__} with dtype {arr.dtype}; expected real numbers"
        )
    if arr.shape != shape:
        hint = ""
        if settings.batched and arr.shape == settings.row_shape:
            hint = " (is the function written for one row? then drop --batched)"
        elif not settings.batched and arr.shape[1:] == settings.row_shape:
            hint = " (is the function written for batches? then pass --batched)"
        elif arr.shape == shape[::-1]:
            hint = " (transposed?)"
        raise CheckUsageError(f"{what}: returned shape {arr.shape}, expected {shape}{hint}")
    return arr


def _outcome(
    index: int, case: Case, settings: Settings, batch: int | None = None, rows: int = 1
) -> Outcome:
    ref = get_reference(settings.of, case.z, case.y)
    tol = entry_tolerance(settings.dtype, settings.k, case.z, ref.scale, case.y)
    return Outcome(index, case, ref, tol, batch=batch, rows=rows)


def _attach(outcome: Outcome, got: np.ndarray | None, error: str | None) -> Outcome:
    if got is not None:
        outcome.out_dtype = got.dtype.name
        outcome.got = got.astype(np.float64)
    outcome.error = error
    outcome.judge()
    return outcome


def run(
    fn: Callable, settings: Settings, cases: list[Case], batches: list[list[int]] | None
) -> list[Outcome]:
    if batches is None:
        outcomes = []
        for i, case in enumerate(cases):
            args = (case.z, case.y) if settings.takes_labels else (case.z,)
            out, error = _call(fn, args)
            what = f"{settings.call} on a {case.kind} input ({case.note})"
            got = None if error else _as_array(out, settings.row_shape, settings, what)
            outcomes.append(_attach(_outcome(i, case, settings), got, error))
        return outcomes
    results: dict[int, Outcome] = {}
    for b, rows in enumerate(batches):
        results.update(zip(rows, run_batch(fn, settings, cases, rows, b), strict=True))
    return [results[i] for i in range(len(cases))]


def run_batch(
    fn: Callable, settings: Settings, cases: list[Case], rows: list[int], b: int | None = None
) -> list[Outcome]:
    """One call with the given rows stacked; also used to re-run a row alone (N = 1)."""
    z = np.stack([cases[i].z for i in rows])
    args = (z, np.stack([cases[i].y for i in rows])) if settings.takes_labels else (z,)
    out, error = _call(fn, args)
    kinds = sorted({cases[i].kind for i in rows})
    what = f"{settings.call} on a batch of {len(rows)} {'/'.join(kinds)} rows"
    got = None if error else _as_array(out, (len(rows), *settings.row_shape), settings, what)
    return [
        _attach(
            _outcome(i, cases[i], settings, b, len(rows)), None if got is None else got[n], error
        )
        for n, i in enumerate(rows)
    ]
