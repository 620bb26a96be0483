"""Name the bug from the evidence.

Each bug class is a concrete hypothesis about what the function computed instead ("got =
-expected", "got = diag(s)", "got = expected^T", "got = s - y", ...), evaluated in float64 from
the reference softmax and tested entry by entry, within the dtype's tolerance, on the failing
inputs. What a call did to its process (exit, crash, timeout, fork) comes first; classes tied
to a kind of input (exceptions, batch rows, a maximum started at a constant, a division by an
underflowed s, overflow, masks) next, each explaining only the inputs it can; the structural
classes then explain the rest, the one that explains the most inputs first. Whatever nothing
explains is reported as such. A loss returned beside the gradient is diagnosed on its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from symsoft.gradcheck.expected import closed_form, term_scale
from symsoft.gradcheck.hypotheses import (
    EXPLAIN,
    STRUCTURAL,
    close,
    distinct,
    finite,
    scaled,
    with_alternatives,
)
from symsoft.gradcheck.inputs import overflow_logit
from symsoft.gradcheck.runner import Outcome
from symsoft.gradcheck.settings import Settings
from symsoft.gradcheck.tolerance import entry_tolerance

TITLES = {
    "escaped": "exits, crashes, hangs or takes over the process",
    "raised": "raises an exception",
    "wrong_axis": "wrong reduction axis in batched mode",
    "max_start": "running maximum starts at a finite constant",
    "divides_by_s": "divides by s_i, which is 0 here",
    "overflow": "overflow or NaN at large logits",
    "nan_at_mask": "NaN at -inf masks",
    "masked_nonzero": "wrong values at masked classes",
    "sign_flipped": "sign flipped",
    "clipped": "probabilities clipped inside the gradient",
    "scaled": "scaled by a constant",
    "missing_term": "a term is missing",
    "transposed": "transposed Jacobian",
    "wrong_function": "derivative of the other function",
    "assumes_sum_one": "assumes sum(y) = 1",
    "assumes_one_hot": "assumes one-hot labels",
    "shifted": "entries shifted (off by one)",
    "permuted": "entries permuted",
    "float32_precision": "float32 precision where float64 was given",
    "kl_swapped": "KL's arguments swapped (teacher and student)",
    "temperature": "temperature applied wrongly (a factor T, 1/T or T^2 off)",
    "ignored_rows": "smoothing, z-loss or weights applied to ignored rows",
    "mean_normaliser": "mean divides by N where it should divide by the sum of the weights",
    "z_loss_factor": "z-loss gradient wrong (its factor 2 forgotten, or left out)",
    "empty_mean": "mean of a batch whose rows are all ignored divides 0 by 0",
    "vjp_sum": "log-softmax VJP without sum(g): g - s*g or g - s where g - s*sum(g) is needed",
    "unexplained": "no known bug class fits",
    "loss_log_underflow": "loss: log of a probability that underflowed to 0",
    "loss_scaled": "loss: scaled by a constant",
    "loss_wrong": "loss: no known bug class fits",
}
LOSS_BUGS = frozenset(b for b in TITLES if b.startswith("loss_"))
# classes judged on the size of the error alone, not its pattern: only credible when they
# explain everything left (a constant offset of 1e-7 is not a downcast, it fails at 0 too)
WHOLE_ONLY = frozenset({"float32_precision"})
MAX_RERUNS = 64  # rows re-run alone to test for interference between batch rows


@dataclass(frozen=True)
class Finding:
    bug: str  # a key of TITLES
    message: str  # the evidence, one or two sentences
    inputs: int  # how many failing inputs this explains
    kinds: tuple[tuple[str, int], ...]  # (kind, count) among them

    @property
    def title(self) -> str:
        return TITLES[self.bug]


# ---- helpers for the input-specific classes ----


def _logits(o: Outcome, st: Settings) -> np.ndarray:
    """What the softmax is taken of: z, or z/T, in the checked dtype."""
    if st.temperature == 1.0:
        return o.case.z
    with np.errstate(all="ignore"):
        return (o.case.z / st.dtype.type(st.temperature)).astype(st.dtype)


def _naive_softmax(z: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """exp(z)/sum(exp(z)) in the checked dtype, without subtracting max(z)."""
    with np.errstate(all="ignore"):
        e = np.exp(z.astype(dtype))
        return (e / e.sum()).astype(np.float64)


def _naive_breaks(o: Outcome, st: Settings) -> bool:
    """Plain exp(z)/sum(exp(z)) is not accurate here (overflow, or underflow to 0/subnormal)."""
    s = _naive_softmax(_logits(o, st), st.dtype)
    if not finite(s):
        return True
    tol = entry_tolerance(st.dtype, st.k, o.case.size_z, o.ref.s)
    return bool(np.any(np.abs(s - o.ref.s) > tol))


def _matches_naive(o: Outcome, st: Settings) -> bool:
    if not st.options.plain:  # the plain closed forms do not hold with options
        return False
    s = _naive_softmax(o.case.z, st.dtype)
    with np.errstate(all="ignore"):
        pred = closed_form(st.of, s, o.y64)
        scale = term_scale(st.of, s, o.y64)
    return pred is not None and close(o, pred, scale, st)


def _zero_classes(o: Outcome, st: Settings) -> np.ndarray:
    """Entries that involve a class whose softmax is exactly 0 in the checked dtype."""
    with np.errstate(all="ignore"):
        z = _logits(o, st)
        e = np.exp(z - np.max(z))
        zero = (e / e.sum()) == 0
    return zero[:, None] | zero[None, :] if st.jacobian else zero


def _nan_where_s_is_zero(o: Outcome, st: Settings) -> bool:
    """NaN/inf only at classes with s_i = 0 (masked, or underflow), the rest right normwise.

    Normwise, because what divides by s_i also spoils entries far below the scale of the
    input when s_i is merely tiny.
    """
    if o.error is not None or finite(o.got):
        return False
    zero = _zero_classes(o, st)
    if not zero.any() or (~np.isfinite(o.got) & ~zero).any():
        return False
    top = np.full(o.ref.scale.shape, float(o.ref.scale.max()))
    normwise = entry_tolerance(st.dtype, st.k, o.case.size_z, top, o.y64)
    return bool(np.all(o.diff[~zero] <= normwise[~zero]))


def _softmax_in_dtype(o: Outcome, st: Settings) -> np.ndarray:
    """exp(z - max z) / sum, computed the stable way in the checked dtype."""
    with np.errstate(all="ignore"):
        z = _logits(o, st)
        e = np.exp(z - np.max(z))
        return (e / e.sum()).astype(np.float64)


def _some_s_vanishes(o: Outcome, st: Settings) -> bool:
    """Some s_i is 0 or subnormal in the checked dtype: 1/s_i is inf or overflows."""
    s = _softmax_in_dtype(o, st)
    return bool((s < np.finfo(st.dtype).tiny).any())


def _masked(o: Outcome) -> bool:
    return bool(np.isneginf(o.case.z).any())


def _masked_entries(o: Outcome, st: Settings) -> np.ndarray:
    m = np.isneginf(o.case.z)
    return m[:, None] | m[None, :] if st.jacobian else m


def _softmax_over(z: np.ndarray, shift_axis: int | None, total_axis: int | None) -> np.ndarray:
    with np.errstate(all="ignore"):
        e = np.exp(z - np.max(z, axis=shift_axis, keepdims=True))
        return e / np.sum(e, axis=total_axis, keepdims=True)


def _kinds(group: list[Outcome]) -> tuple[tuple[str, int], ...]:
    return tuple(Counter(o.case.kind for o in group).items())


def _kinds_text(group: list[Outcome]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in _kinds(group))


class _Diagnosis:
    def __init__(
        self,
        outcomes: list[Outcome],
        st: Settings,
        batches: list[list[int]] | None,
        alone: Callable[[int], Outcome | None] | None,
    ) -> None:
        self.outcomes, self.st = outcomes, st
        self.batches, self.alone = batches, alone
        self.failing = [o for o in outcomes if o.grad_failed]
        self.todo = list(self.failing)
        self.findings: list[Finding] = []

    def add(self, bug: str, group: list[Outcome], message: str) -> None:
        if not group:
            return
        explained = {id(o) for o in group}
        earlier = [f for f in self.findings if f.bug == bug]
        if earlier:  # one finding per class: merge the evidence
            f = earlier[0]
            counts = Counter(dict(f.kinds)) + Counter(dict(_kinds(group)))
            merged = Finding(
                bug, f"{f.message} {message}", f.inputs + len(group), tuple(counts.items())
            )
            self.findings[self.findings.index(f)] = merged
        else:
            self.findings.append(Finding(bug, message, len(group), _kinds(group)))
        self.todo = [o for o in self.todo if id(o) not in explained]

    def of_n(self, group: list[Outcome]) -> str:
        return f"{len(group)} of {len(self.failing)} failing inputs ({_kinds_text(group)})"

    def run(self) -> list[Finding]:
        self.escaped()
        self.raised()
        if self.batches is not None:
            self.wrong_axis()
        self.empty_mean()
        self.max_start()
        self.divides_by_s()
        self.overflow_and_masks()
        self.compete()
        if self.todo:
            self.add(
                "unexplained",
                self.todo,
                f"No known bug class fits {self.of_n(self.todo)}; see the entries of the "
                "worst input.",
            )
        self.loss()
        return self.findings

    # ---- the loss returned beside the gradient ----

    def loss(self) -> None:
        st = self.st
        lossy = [o for o in self.outcomes if o.loss_wrong]
        if not lossy:
            return
        n = len(lossy)

        def of_n(group: list[Outcome]) -> str:
            return f"{len(group)} of {n} inputs with a wrong loss ({_kinds_text(group)})"

        def log_zero(o: Outcome) -> bool:
            """Some class with y_i > 0 has s_i = 0 in the dtype (any row of its batch)."""
            rows = [o]
            if o.loss_batch and self.batches is not None and o.batch is not None:
                rows = [self.outcomes[i] for i in self.batches[o.batch]]
            return any(
                r.case.y is not None
                and bool(((_softmax_in_dtype(r, st) == 0) & (r.case.y > 0)).any())
                for r in rows
            )

        under = [o for o in lossy if not np.isfinite(o.loss_got) and log_zero(o)]
        if under:
            example = min(under, key=lambda o: o.loss_expected)
            self.add_loss(
                "loss_log_underflow",
                under,
                f"The loss is inf/NaN on {of_n(under)}, each with s_i = 0 in {st.dtype.name} at "
                f"a class with y_i > 0, where the exact loss is finite (e.g. "
                f"{example.loss_expected:.6g}): -log(p) was taken after p underflowed. Compute "
                "it as logsumexp(z) - z_c, or -sum(y * log_softmax(z)).",
            )
        rest = [o for o in lossy if o not in under]
        ratios = np.array(
            [
                o.loss_got / o.loss_expected
                for o in rest
                if o.loss_expected and np.isfinite(o.loss_got) and o.loss_got != 0
            ]
        )
        near = max(1e-6, 1e3 * float(np.finfo(st.dtype).eps))
        if rest and ratios.size == len(rest):
            rows = np.array([o.rows for o in rest], dtype=float)
            text = None
            if np.all(np.abs(ratios - ratios[0]) <= near * abs(ratios[0])):
                text = f"loss = {ratios[0]:.6g} * the exact loss"
            elif np.all(np.abs(ratios - rows) <= near * rows):
                text = "loss = N * the exact loss (N = rows): the sum where the mean was asked"
            elif np.all(np.abs(ratios * rows - 1) <= near):
                text = "loss = the exact loss / N (N = rows): the mean where the sum was asked"
            if text:
                self.add_loss("loss_scaled", rest, f"{text}, on {of_n(rest)}.")
                rest = []
        if rest:
            worst = max(rest, key=lambda o: o.loss_error / o.loss_tol)
            self.add_loss(
                "loss_wrong",
                rest,
                f"No known bug class fits the loss on {of_n(rest)}; e.g. got {worst.loss_got!r}, "
                f"exact {worst.loss_expected!r} (#{worst.index}, {worst.case.kind}).",
            )

    def add_loss(self, bug: str, group: list[Outcome], message: str) -> None:
        self.findings.append(Finding(bug, message, len(group), _kinds(group)))

    def escaped(self) -> None:
        group = [o for o in self.todo if o.escaped]
        events = Counter(o.error for o in group).most_common(3)
        text = "; ".join(f"{e} ({n}x)" for e, n in events)
        self.add(
            "escaped",
            group,
            f"On {self.of_n(group)}: {text}. The function runs in a separate process, so the "
            "check went on (a new process for the next call); calls must return normally, "
            "within --timeout.",
        )

    def raised(self) -> None:
        group = [o for o in self.todo if o.error is not None]
        errors = Counter(o.error for o in group).most_common(3)
        text = "; ".join(f"{e} ({n}x)" for e, n in errors)
        hint = ""
        if len(group) == len(self.outcomes):
            hint = f" It raised on every input: is it meant to be called as {self.st.call}?"
            hint += " (--batched: (N, K) arrays)" if not self.st.batched else ""
        self.add("raised", group, f"Raised on {self.of_n(group)}: {text}.{hint}")

    def wrong_axis(self) -> None:
        st, matched = self.st, {}
        for rows in self.batches or []:
            # a constant factor (N for a sum where the mean was asked) is a scale, not an axis
            fail = [
                self.outcomes[i]
                for i in rows
                if self.outcomes[i] in self.todo and not self._is_scaled(self.outcomes[i])
            ]
            fail = [o for o in fail if not self._is_alternative(o)]
            if not fail:
                continue
            for label, preds in self._batch_variants(rows).items():
                for o in fail:
                    pred = preds[o.index]
                    if id(o) not in matched and close(o, *pred, st) and distinct(o, *pred, st):
                        matched[id(o)] = (o, label.split(" (")[0])
        reruns = 0
        for o in self.todo:
            if id(o) in matched or o.batch is None or self.alone is None:
                continue
            if len(self.batches[o.batch]) < 2 or reruns >= MAX_RERUNS:
                continue
            if self._is_scaled(o) or self._is_alternative(o):
                continue  # e.g. divided by N: right alone, but a scale, not an axis
            reruns += 1
            single = self.alone(o.index)
            if single is not None and not single.failed:
                matched[id(o)] = (o, self._interference_label(o))
        group = [o for o, _ in matched.values()]
        labels = Counter(label for _, label in matched.values())
        detail = "; ".join(label for label, _ in labels.most_common(2))
        self.add(
            "wrong_axis",
            group,
            f"{detail}: on {self.of_n(group)}. Reduce over the last axis (axis=-1, keepdims=True).",
        )

    def _is_alternative(self, o: Outcome) -> bool:
        """A mistake the reference foresaw (an ignored row's smoothing term, the mean's
        normaliser) explains it: such rows can be right alone (N = 1) and wrong in a batch."""
        return any(
            close(o, pred, scale, self.st) and distinct(o, pred, scale, self.st)
            for _, _, pred, scale in o.ref.alternatives
        )

    def _is_scaled(self, o: Outcome) -> bool:
        return any(close(o, pred, scale, self.st) for _, pred, scale in scaled(o, self.st))

    def _batch_variants(self, rows: list[int]) -> dict[str, dict[int, tuple]]:
        st = self.st
        if st.distillation or not st.options.plain:
            return {}  # the closed forms below are the plain members'
        z = np.stack([self.outcomes[i].z64 for i in rows])
        y = np.stack([self.outcomes[i].y64 for i in rows]) if st.takes_labels else None
        variants: dict[str, dict[int, tuple]] = {}
        where = {0: "axis 0 (the batch axis)", None: "the whole batch"}
        # the shift matters once the sum runs over the wrong axis: try each max with each sum
        for total_axis in (0, None):
            for shift_axis in (-1, 0, None):
                s = _softmax_over(z, shift_axis, total_axis)
                label = f"got matches softmax normalised over {where[total_axis]}"
                variants[f"{label} ({shift_axis})"] = {
                    i: (
                        closed_form(st.of, s[n], None if y is None else y[n]),
                        term_scale(st.of, s[n], None if y is None else y[n]),
                    )
                    for n, i in enumerate(rows)
                }
        if y is not None:
            s = np.stack([self.outcomes[i].ref.s for i in rows])
            for total, axis in ((y.sum(axis=0), "axis 0"), (np.full(st.k, y.sum()), "the batch")):
                variants[f"got matches sum(y) taken over {axis}"] = {
                    i: (s[n] * total - y[n], s[n] * np.abs(total) + y[n])
                    for n, i in enumerate(rows)
                }
        return variants

    def _interference_label(self, o: Outcome) -> str:
        rows = self.batches[o.batch]
        top = max(float(np.max(self.outcomes[i].z64)) for i in rows)
        if not finite(o.got) and float(np.max(o.z64)) < top - overflow_logit(self.st.dtype):
            return (
                "rows far below the batch's largest logit come out NaN/0 but are right alone: "
                "max(z) is taken over the whole batch"
            )
        return "rows are right alone (N = 1) but wrong inside a batch whose rows differ"

    def empty_mean(self) -> None:
        """NaN/inf on the rows of a batch with nothing to average: every row ignored."""
        if self.st.reduction != "mean" or self.st.options.ignore_index is None:
            return
        group = [o for o in self.todo if o.error is None and o.divisor == 0 and not finite(o.got)]
        self.add(
            "empty_mean",
            group,
            f"NaN/inf on {self.of_n(group)}, rows of batches whose rows are all ignored: the "
            "mean's normaliser (the sum of the weights of the non-ignored rows) is 0 there. "
            "PyTorch's gradient is 0 on such a batch (its loss is NaN); guard the division.",
        )

    def max_start(self) -> None:
        """NaN only on rows whose logits all lie far below 0, every higher row right (even
        where plain exp(z) overflows, so the function does shift): the maximum it subtracts
        never goes below a finite start value."""
        st = self.st
        limit = overflow_logit(st.dtype)
        bad = [o for o in self.todo if o.error is None and not finite(o.got)]
        if not bad:
            return
        top = max(float(np.max(o.z64)) for o in bad)
        if top >= -limit:
            return
        above = [o for o in self.outcomes if float(np.max(o.z64)) > top]
        huge = [o for o in above if float(np.max(o.z64)) > limit]
        if not huge or any(o.grad_failed for o in above):
            return
        self.add(
            "max_start",
            bad,
            f"NaN/inf (0/0) on {self.of_n(bad)}, all with every logit below {top:.6g}, while all "
            f"{len(above)} inputs with a larger maximum pass, {len(huge)} of them where exp(z) "
            "unshifted overflows. The maximum that is subtracted starts at a finite constant "
            "(e.g. maxval = -10000) instead of -inf or z[0]: on rows below it every "
            "exp(z_i - maxval) underflows to 0. Start it at -INFINITY (or the row's first entry).",
        )

    def divides_by_s(self) -> None:
        """NaN/inf exactly on inputs where some s_i is 0 (or subnormal), every other input
        right, including those where plain exp(z) overflows: the function shifts, and then
        divides by s_i (the unfused chain -y/s through the softmax Jacobian, J / s)."""
        st = self.st
        bad = [o for o in self.todo if o.error is None and not finite(o.got)]
        zero = [o for o in bad if _some_s_vanishes(o, st)]
        if not zero or len(zero) < len(bad) or all(_masked(o) for o in zero):
            return  # NaN elsewhere too, or only at -inf masks: other classes say more
        shifted = [o for o in self.outcomes if _naive_breaks(o, st) and not _some_s_vanishes(o, st)]
        if any(o.grad_failed for o in shifted):
            return  # fails where only a missing shift fails: the overflow class says that
        masked = sum(_masked(o) for o in zero)
        where = f" ({masked} of them with -inf logits)" if masked else ""
        safe = sum(not _some_s_vanishes(o, st) for o in self.outcomes)
        self.add(
            "divides_by_s",
            zero,
            f"NaN/inf on {self.of_n(zero)}, each with some s_i = 0 or subnormal in "
            f"{st.dtype.name}{where}; all {safe} inputs where every s_i is normal pass"
            + (f", {len(shifted)} of them where exp(z) unshifted overflows" if shifted else "")
            + ". s_i underflows legitimately (z_i - max z < "
            f"{np.log(np.finfo(st.dtype).tiny):.0f}); a division by it (the chain -y/s times "
            "the softmax Jacobian, or d log s = ds / s) gives 0/0. Use the fused forms: "
            "s*sum(y) - y, delta_ij - s_j.",
        )

    def overflow_and_masks(self) -> None:
        st = self.st
        # NaN exactly where s_i = 0 is a division by s (or 0 * log s), not an overflow, even
        # on huge inputs where some s_i underflow
        zero = [o for o in self.todo if _nan_where_s_is_zero(o, st)]
        if any(_masked(o) for o in zero):
            masked = sum(_masked(o) for o in zero)
            under = f" and {len(zero) - masked} where exp underflows" if masked < len(zero) else ""
            self.add(
                "nan_at_mask",
                zero,
                f"NaN/inf exactly at the classes whose softmax is 0, everything else right, on "
                f"{self.of_n(zero)}: {masked} with -inf (masked) logits{under}. Look for a "
                "division by s_i, 0 * log(s_i) or -inf - (-inf); the derivative there is finite.",
            )
        # NaN on ordinary inputs too: then NaN on huge or masked ones is no evidence of either
        nan_anywhere = any(
            o.error is None and not finite(o.got) and not _naive_breaks(o, st) and not _masked(o)
            for o in self.outcomes
        )
        big = [
            o
            for o in self.todo
            if o.error is None
            and _naive_breaks(o, st)
            and ((not finite(o.got) and not nan_anywhere) or _matches_naive(o, st))
        ]
        nan = [
            o
            for o in self.todo
            if o.error is None and _masked(o) and not finite(o.got) and not nan_anywhere
        ]
        # an input both masked and huge is blamed on whichever cause shows up on its own
        big_alone = any(not _masked(o) for o in big)
        nan_alone = any(not _naive_breaks(o, st) for o in nan)
        nan_ids = {id(o) for o in nan}
        to_big = [o for o in big if big_alone or not nan_alone or id(o) not in nan_ids]
        big_ids = {id(o) for o in to_big}
        to_nan = [o for o in nan if id(o) not in big_ids]
        if to_big:
            safe = [o for o in self.outcomes if not _naive_breaks(o, st)]
            bad_safe = sum(o.failed for o in safe)
            limit = overflow_logit(st.dtype)
            tail = (
                f"all {len(safe)} inputs where plain exp(z) is safe pass"
                if bad_safe == 0
                else f"{bad_safe} failures on inputs where plain exp(z) is safe have other causes"
            )
            self.add(
                "overflow",
                to_big,
                f"NaN, inf, 0 or lost digits on {self.of_n(to_big)}, all inputs where exp(z) "
                f"without a shift overflows {st.dtype.name} (z > {limit:.2f}) or underflows "
                f"(every z below about {-limit:.0f}); {tail}. Subtract max(z) before exp.",
            )
        if to_nan:
            where = (
                "only at masked classes"
                if all(np.isfinite(o.got)[~_masked_entries(o, st)].all() for o in to_nan)
                else "throughout"
            )
            self.add(
                "nan_at_mask",
                to_nan,
                f"NaN/inf {where} on {self.of_n(to_nan)} with -inf (masked) logits. exp(-inf) "
                "= 0 must give a clean 0 (or delta_ij - s_j for log-softmax); look for "
                "-inf - (-inf), 0 * (-inf) or a division by s.",
            )

    # ---- the classes about what was computed: the one explaining most inputs goes first ----

    def matchers(self) -> list[tuple[str, Callable[[Outcome], str | None]]]:
        st = self.st
        out = []
        for bug, own in STRUCTURAL:
            hypothesis = with_alternatives(bug, own)

            def first(o: Outcome, hypothesis: Callable = hypothesis) -> str | None:
                for label, pred, scale in hypothesis(o, st):
                    if close(o, pred, scale, st) and distinct(o, pred, scale, st):
                        return label
                return None

            out.append((bug, first))
        out.append(("masked_nonzero", self._masked_only))
        if st.dtype == np.float64:
            out.append(("float32_precision", self._float32_level))
        return out

    def _masked_only(self, o: Outcome) -> str | None:
        inside = _masked(o) and finite(o.got)
        if inside and not (o.wrong & ~_masked_entries(o, self.st)).any():
            return "wrong only at entries of masked (-inf) classes, everything else right"
        return None

    def _float32_level(self, o: Outcome) -> str | None:
        f32 = np.dtype(np.float32)
        if close(o, o.ref.values, o.ref.scale, self.st, f32, 1.0):
            return "within float32's tolerance, outside float64's"
        return None

    def compete(self) -> None:
        """Greedy cover: a class matching a subset of another's inputs never goes first."""
        seen: dict[tuple[str, int], str | None] = {}
        matchers = self.matchers()
        start = len(self.todo)
        while self.todo:
            best: tuple[str, list[tuple[Outcome, str]]] | None = None
            for bug, matcher in matchers:
                hits = []
                for o in self.todo:
                    key = (bug, id(o))
                    if key not in seen:
                        seen[key] = matcher(o)
                    if seen[key]:
                        hits.append((o, seen[key]))
                if bug in WHOLE_ONLY and len(hits) < start:
                    continue
                if hits and (best is None or len(hits) > len(best[1])):
                    best = (bug, hits)
                if len(hits) == len(self.todo):  # nothing can explain more: skip the rest
                    break
            if best is None:
                return
            bug, hits = best
            group = [o for o, _ in hits]
            labels = Counter(label for _, label in hits)
            detail = "; ".join(label for label, _ in labels.most_common(2))
            self.add(bug, group, f"{detail}: on {self.of_n(group)}.{self._extra(bug, group)}")
            self.absorb(bug)

    def absorb(self, bug: str) -> None:
        """Inputs the class's prediction matches but cannot be told from the right answer
        (its distance to the expected value is within a few tolerances: float32 at |z| ~ 1e6)
        join the class that explained the others, rather than a looser class or none."""
        own = dict(STRUCTURAL).get(bug)
        if own is None:
            return
        variants = with_alternatives(bug, own)
        group = [
            o
            for o in self.todo
            if any(close(o, pred, scale, self.st) for _, pred, scale in variants(o, self.st))
        ]
        if group:
            self.add(
                bug,
                group,
                f"Also consistent with it: {self.of_n(group)}, where the tolerance is too wide "
                "to tell it clearly from the right answer.",
            )

    def _extra(self, bug: str, group: list[Outcome]) -> str:
        st = self.st
        if bug == "assumes_sum_one":
            u = st.k * float(np.finfo(st.dtype).eps)
            one = [o for o in self.outcomes if abs(float(np.sum(o.y64)) - 1) <= u]
            ok = sum(not o.failed for o in one)
            form = "sum(y) (diag(s) - s s^T)" if st.matrix else "s*sum(y) - y"
            return (
                f" The contract 'any' allows any sum: the {st.what.split(',')[0]} is {form}. "
                f"{ok} of {len(one)} inputs with sum(y) = 1 pass."
            )
        if bug == "float32_precision":
            f32 = np.dtype(np.float32)
            of32 = max(
                float(
                    np.max(o.diff / entry_tolerance(f32, st.k, o.case.size_z, o.ref.scale, o.y64))
                )
                for o in group
            )
            dtypes = sorted({o.out_dtype for o in group if o.out_dtype})
            exact = all(np.array_equal(o.got, o.got.astype(np.float32)) for o in group)
            return (
                " The errors are far outside float64's tolerance but within float32's (at "
                f"most {of32:.2f} of it): an internal float32 "
                f"downcast. The function returns {'/'.join(dtypes)} arrays"
                + ("; every value it returns is a float32 number." if exact else ".")
            )
        text = EXPLAIN.get(bug, "")
        return f" {text}" if text else ""


def diagnose(
    outcomes: list[Outcome],
    settings: Settings,
    batches: list[list[int]] | None = None,
    alone: Callable[[int], Outcome | None] | None = None,
) -> list[Finding]:
    """Findings that together explain every failing input (the last may be 'unexplained')."""
    return _Diagnosis(outcomes, settings, batches, alone).run()
