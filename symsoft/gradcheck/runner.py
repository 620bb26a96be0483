"""Call the user's function (in the worker) on every case and judge each result."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from symsoft.gradcheck.errors import CheckUsageError
from symsoft.gradcheck.expected import (
    Reference,
    ce_batch,
    distillation_reference,
    get_reference,
    hessian_reference,
    logsumexp_reference,
)
from symsoft.gradcheck.inputs import Case
from symsoft.gradcheck.settings import Settings
from symsoft.gradcheck.tolerance import C, entry_tolerance, logit_size, unit_roundoff
from symsoft.gradcheck.worker import Worker


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
    divisor: float = 1  # N for the gradient of a batch mean (options: the sum of weights)
    escaped: bool = False  # the call crashed, exited, hung or changed the process
    loss_got: float | None = None  # the loss fn returned beside the gradient (or the batch's)
    loss_expected: float | None = None
    loss_tol: float = 0.0
    loss_batch: bool = False  # the loss is the batch's sum or mean, shared by its rows
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
    def grad_failed(self) -> bool:
        return bool(self.wrong.any())

    @property
    def loss_error(self) -> float:
        if self.loss_got is None or self.loss_expected is None:
            return 0.0
        err = abs(self.loss_got - self.loss_expected)
        return err if np.isfinite(err) else np.inf

    @property
    def loss_wrong(self) -> bool:
        return self.loss_got is not None and not self.loss_error <= self.loss_tol

    @property
    def failed(self) -> bool:
        return self.grad_failed or self.loss_wrong

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
        """The labels as the reference counts them (divided by N for a batch mean; with
        options the effective weighted, smoothed labels over T and the normaliser)."""
        if self.ref.labels is not None:
            return self.ref.labels
        if self.case.y is None:
            return None
        return self.case.y.astype(np.float64) / self.divisor


def _arguments(settings: Settings, cases: list[Case]) -> tuple:
    """fn's arguments for these rows: one row as (K,) arrays (an int class), else stacked."""
    z = np.stack([c.z for c in cases])
    if settings.vjp:
        second = np.stack([c.g for c in cases])
    elif settings.distillation:
        second = np.stack([c.teacher for c in cases])
    elif settings.index_labels:
        second = np.array([c.label for c in cases], dtype=np.int64)
    elif settings.takes_labels:
        second = np.stack([c.y for c in cases])
    else:
        return (z,) if settings.batched else (z[0],)
    if settings.batched:
        return (z, second)
    return (z[0], int(second[0]) if settings.index_labels else second[0])


def _shape_hint(settings: Settings, shape: tuple[int, ...], wanted: tuple[int, ...]) -> str:
    if settings.batched and shape == settings.row_shape:
        return " (is the function written for one row? then drop --batched)"
    if not settings.batched and shape[1:] == settings.row_shape:
        return " (is the function written for batches? then pass --batched)"
    if shape == wanted[::-1]:
        return " (transposed?)"
    return ""


def _real(arr: np.ndarray, what: str, part: str) -> np.ndarray:
    if arr.dtype.kind not in "fiub":
        raise CheckUsageError(f"{what}: {part} has dtype {arr.dtype}; expected real numbers")
    return arr


def _read(
    out: tuple, settings: Settings, n_rows: int, what: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """The gradient, and the loss when fn returned (loss, grad); usage errors for the rest."""
    grad_shape = (n_rows, *settings.row_shape) if settings.batched else settings.row_shape
    if out[0] == "bad":
        raise CheckUsageError(f"{what}: the result is not an array: {out[1]}")
    if out[0] == "pair":
        loss, grad = out[1], out[2]
        if settings.batched and settings.reduction == "none":
            loss_shapes = {(n_rows,)}
        else:
            loss_shapes = {(), (1,)}
        if grad.shape == grad_shape and loss.shape in loss_shapes:
            if not settings.has_loss:
                raise CheckUsageError(
                    f"{what}: returned a pair; (loss, grad) is read for --of cross_entropy, "
                    "logsumexp and distillation_kl only"
                )
            return _real(grad, what, "the gradient"), _real(loss, what, "the loss").reshape(-1)
        try:
            whole = np.asarray([loss, grad])
        except ValueError:
            whole = None
        if whole is None or whole.dtype == object or whole.shape != grad_shape:
            raise CheckUsageError(
                f"{what}: returned a pair with shapes {loss.shape} and {grad.shape}; "
                f"(loss, grad) needs the loss of shape {' or '.join(map(str, loss_shapes))} "
                f"and the gradient of shape {grad_shape}"
            )
        out = ("array", whole)
    arr = _real(out[1], what, "the result")
    if arr.shape != grad_shape:
        raise CheckUsageError(
            f"{what}: returned shape {arr.shape}, expected {grad_shape}"
            + _shape_hint(settings, arr.shape, grad_shape)
        )
    return arr, None


class Runner:
    """Calls through one worker; each call's rows become Outcomes."""

    def __init__(self, worker: Worker, settings: Settings, cases: list[Case]) -> None:
        self.worker, self.settings, self.cases = worker, settings, cases

    def outcomes(self, indices: list[int], batch: int | None = None) -> list[Outcome]:
        """Each row's reference; a batch's rows together, since a mean's normaliser (the sum
        of the weights of the non-ignored rows) is the whole batch's."""
        st = self.settings
        cases = [self.cases[i] for i in indices]
        rows = len(indices) if st.batched else 1
        divisor: float = rows if st.reduction in ("mean", "batchmean") else 1
        if st.exact_reference:
            refs = [get_reference(st.of, c.z, c.y, c.g, divisor) for c in cases]
        elif st.of == "logsumexp":
            refs = [logsumexp_reference(c.z) for c in cases]
        elif st.of == "cross_entropy_hessian":
            refs = [hessian_reference(c.z, c.y.astype(np.float64) / divisor) for c in cases]
        elif st.distillation:
            refs = [distillation_reference(c.z, c.teacher, st.temperature, divisor) for c in cases]
        else:
            z = np.stack([c.z for c in cases]).astype(np.float64)
            labels = np.array([c.label for c in cases]) if st.index_labels else None
            y = None if st.index_labels else np.stack([c.y for c in cases]).astype(np.float64)
            refs = ce_batch(z, labels, y, st.options, st.reduction)
            if st.reduction == "mean":
                divisor = _normaliser(st, cases)
        out = []
        for index, case, ref in zip(indices, cases, refs, strict=True):
            y = ref.labels
            if y is None and case.y is not None:
                y = case.y.astype(np.float64) / divisor
            tol = entry_tolerance(st.dtype, st.k, case.size_z, ref.scale, y)
            out.append(Outcome(index, case, ref, tol, batch=batch, rows=rows, divisor=divisor))
        return out

    def run(self, batches: list[list[int]] | None) -> list[Outcome]:
        if batches is None:
            return [self.call([i])[0] for i in range(len(self.cases))]
        results: dict[int, Outcome] = {}
        for b, rows in enumerate(batches):
            results.update(zip(rows, self.call(rows, b), strict=True))
        return [results[i] for i in range(len(self.cases))]

    def call(self, rows: list[int], b: int | None = None) -> list[Outcome]:
        """One call with the given rows stacked (batched), or one row; also re-runs a row
        alone (N = 1)."""
        st = self.settings
        cases = [self.cases[i] for i in rows]
        answer = self.worker.call(_arguments(st, cases))
        if st.batched:
            kinds = sorted({c.kind for c in cases})
            what = f"{st.call} on a batch of {len(rows)} {'/'.join(kinds)} rows"
        else:
            what = f"{st.call} on a {cases[0].kind} input ({cases[0].note})"
        grad, loss = (None, None)
        if answer.error is None:
            grad, loss = _read(answer.out, st, len(rows), what)
        outcomes = self.outcomes(rows, b)
        for k, o in enumerate(outcomes):
            o.error, o.escaped = answer.error, answer.escaped
            if grad is not None:
                got = grad[k] if st.batched else grad
                o.out_dtype = got.dtype.name
                o.got = got.astype(np.float64)
            o.judge()
        if loss is not None:
            self._attach_loss(outcomes, loss.astype(np.float64))
        return outcomes

    def _attach_loss(self, outcomes: list[Outcome], loss: np.ndarray) -> None:
        st = self.settings
        if any(o.ref.loss is None for o in outcomes):
            return  # an undefined loss (0/0: every row ignored under mean) is not checked
        if loss.size == len(outcomes) and not (st.batched and st.reduction != "none"):
            for o, value in zip(outcomes, loss, strict=True):
                o.loss_got, o.loss_expected = float(value), o.ref.loss
                o.loss_tol = float(
                    entry_tolerance(
                        st.dtype, st.k, o.case.size_z, np.array(o.ref.loss_scale), o.y64
                    )
                )
            return
        # the batch's sum or mean: the rows' exact losses (already divided by N for a mean)
        expected = float(sum(o.ref.loss for o in outcomes))
        size = max(logit_size(o.case.size_z) for o in outcomes)
        scale = sum(o.ref.loss_scale for o in outcomes)
        weight = 1.0 + sum(float(np.sum(np.abs(o.y64))) for o in outcomes if o.y64 is not None)
        # the formula of tolerance.py with the batch's largest D, its summed terms and labels
        tol = C * (st.k + size) * unit_roundoff(st.dtype) * scale
        tol += C * float(np.finfo(st.dtype).tiny) * weight
        for o in outcomes:
            o.loss_got, o.loss_expected, o.loss_tol = float(loss[0]), expected, tol
            o.loss_batch = True


def _normaliser(st: Settings, cases: list[Case]) -> float:
    """The mean's divisor: the sum of the weights of the non-ignored rows (integer labels),
    or N (probability targets); 0 when every row is ignored."""
    if not st.index_labels:
        return float(len(cases))
    w = st.options.weight
    return float(sum(1.0 if w is None else w[c.label] for c in cases if not c.ignored))
