"""What the checker tries: logits (and labels) of several kinds, rounded to the checked dtype.

Each kind targets a way hand-written backward passes go wrong: random logits for the algebra,
ties and a dominant logit for cancellation (s_k -> 1) and for probabilities that are
subnormal or exactly 0 (a division by s), large magnitudes for overflow and rows far below
zero (a running maximum started at a finite constant), -inf for masked classes (not with
--finite), and (batched only) batches whose rows sit at very different offsets for
reductions over the wrong axis.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from symsoft.gradcheck.settings import Settings
from symsoft.gradcheck.tolerance import logit_size

KINDS = ("random", "ties", "dominant", "large", "masked", "mixed-rows")
KIND_HELP = {
    "random": "random logits, scales 0.1 to 30",
    "ties": "equal logits",
    "dominant": "one logit far above the rest: s_k -> 1, the rest subnormal or 0",
    "large": "magnitudes 1e3 to 1e6, around exp's overflow threshold, all far below 0",
    "masked": "-inf entries (masked classes, y = 0 there)",
    "mixed-rows": "batch rows at very different offsets",
}
RANDOM_SCALES = (0.1, 1.0, 3.0, 10.0, 30.0)
# 50-digit work per check, in multiplications (~14 us each; an exp costs about 1.5): ~3 s
REFERENCE_BUDGET = 200_000


@dataclass(frozen=True, eq=False)
class Case:
    kind: str
    z: np.ndarray  # (K,), in the checked dtype
    y: np.ndarray | None  # (K,), in the checked dtype; None unless cross-entropy
    note: str
    label: int | None = None  # the class index with --labels index (then y is its one-hot)
    g: np.ndarray | None = None  # (K,), the vector of g^T J with --form vjp
    teacher: np.ndarray | None = None  # (K,), distillation's teacher logits, -inf where z is
    ignored: bool = False  # label == --ignore-index: the row contributes nothing
    sized: np.ndarray | None = None  # the logits the tolerance's D is taken of (z/T), if not z

    @property
    def size_z(self) -> np.ndarray:
        return self.z if self.sized is None else self.sized


def overflow_logit(dtype: np.dtype) -> float:
    """exp(z) overflows above this: ~709.78 for float64, ~88.72 for float32."""
    return float(np.log(np.finfo(dtype).max))


LABEL_VARIANTS = {
    "simplex": ("soft", "one-hot", "sparse", "uniform"),
    "one-hot": ("one-hot",),
    # some with sum 1 on purpose: they show whether only sum(y) != 1 fails
    "any": ("scaled", "one-hot", "heavy", "soft", "zero", "scaled-one-hot"),
    "index": ("one-hot",),
}
# the vectors g of g^T J: g = 1 makes the softmax VJP cancel to 0 exactly
G_VARIANTS = ("normal", "ones", "one-hot", "normal", "wide")


class _Labels:
    """Labels inside the contract, cycling through variants so every kind sees several."""

    def __init__(self, contract: str, rng: np.random.Generator) -> None:
        self.variants = itertools.cycle(LABEL_VARIANTS[contract])
        self.rng = rng

    def draw(self, z: np.ndarray) -> np.ndarray:
        live = np.flatnonzero(np.isfinite(z))  # y = 0 on masked classes
        y = np.zeros(z.size)
        variant = next(self.variants)
        rng = self.rng
        if variant in ("one-hot", "scaled-one-hot"):
            y[rng.choice(live)] = 1.0 if variant == "one-hot" else 2.5
        elif variant == "sparse":
            keep = rng.choice(live, size=max(1, live.size // 2), replace=False)
            y[keep] = rng.dirichlet(np.ones(keep.size))
        elif variant == "uniform":
            y[live] = 1.0 / live.size
        elif variant == "soft":
            y[live] = rng.dirichlet(np.ones(live.size))
        elif variant == "heavy":
            y[live] = 7.0 * rng.dirichlet(np.ones(live.size))
        elif variant == "scaled":
            y[live] = rng.uniform(0.0, 3.0, live.size)
        return y  # "zero": y = 0, a legal input when any sum is allowed


# teacher logits beside a student's: unrelated, sharper, equal (the gradient is 0), nearly
# equal (cancellation), and at another offset (softmax does not see it)
TEACHER_VARIANTS = ("random", "sharp", "equal", "near", "offset")


class _Teachers:
    def __init__(self, rng: np.random.Generator) -> None:
        self.variants = itertools.cycle(TEACHER_VARIANTS)
        self.rng = rng

    def draw(self, z: np.ndarray) -> np.ndarray:
        variant, k = next(self.variants), z.size
        with np.errstate(invalid="ignore"):
            if variant == "random":
                t = 3.0 * self.rng.standard_normal(k)
            elif variant == "sharp":
                t = 10.0 * self.rng.standard_normal(k)
            elif variant == "equal":
                t = z.copy()
            elif variant == "near":
                t = z + 0.01 * self.rng.standard_normal(k)
            else:
                t = 2.0 * self.rng.standard_normal(k) + self.rng.choice((-1e3, 50.0, 1e3))
        return np.where(np.isneginf(z), -np.inf, t)  # masked classes are masked in both


class _Cotangents:
    """The g of a VJP, cycling through variants."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.variants = itertools.cycle(G_VARIANTS)
        self.rng = rng

    def draw(self, k: int) -> np.ndarray:
        variant = next(self.variants)
        if variant == "ones":
            return np.ones(k)
        if variant == "one-hot":
            g = np.zeros(k)
            g[self.rng.integers(k)] = 1.0
            return g
        return self.rng.standard_normal(k) * (100.0 if variant == "wide" else 1.0)


def _random(rng: np.random.Generator, k: int, n: int) -> Iterator[tuple[np.ndarray, str]]:
    for i in range(n):
        scale = RANDOM_SCALES[i % len(RANDOM_SCALES)]
        offset = rng.uniform(-5, 5) if i % 2 else 0.0
        yield scale * rng.standard_normal(k) + offset, f"scale {scale:g}"


def _ties(rng: np.random.Generator, k: int) -> Iterator[tuple[np.ndarray, str]]:
    for c in (0.0, 3.5, -20.0):
        yield np.full(k, c), f"all equal to {c:g}"
    for top in (2, 3):
        if k >= top:
            z = rng.standard_normal(k)
            z[rng.choice(k, size=top, replace=False)] = z.max() + 0.5
            yield z, f"{top}-way tie at the maximum"


def _what_underflows(z: np.ndarray, dtype: np.dtype) -> str:
    """What the gap does to the softmax in this dtype, for the note."""
    with np.errstate(all="ignore"):
        zd = z.astype(dtype)
        e = np.exp(zd - zd.max())
        s = e / e.sum()
    if (s == 0).any():
        return "the other s_i are exactly 0"
    if (s < np.finfo(dtype).tiny).any():
        return "the other s_i are subnormal"
    if s.max() == 1:
        return "s_k rounds to exactly 1"
    return "s_k -> 1"


def _dominant(
    rng: np.random.Generator, k: int, dtype: np.dtype
) -> Iterator[tuple[np.ndarray, str]]:
    if k < 2:
        return
    # beyond -log(tiny) the other probabilities are subnormal, beyond it by log(2^52) they
    # are 0: a function that divides by s_i meets 0/0 there
    subnormal = -float(np.log(np.finfo(dtype).tiny)) + 8.0
    gaps = (12.0, 25.0, 40.0, 80.0, 200.0, round(subnormal), 1e3, 1e4)
    for i, gap in enumerate(gaps):
        z = rng.standard_normal(k)
        z[i % k] = z.max() + gap
        yield z, f"z[{i % k}] above the rest by {gap:g}: {_what_underflows(z, dtype)}"


def _large(rng: np.random.Generator, k: int, limit: float) -> Iterator[tuple[np.ndarray, str]]:
    offsets = (1e3, -1e3, 1e4, -1e4, limit - 5, limit + 1, limit + 20, -(limit + 20))
    offsets += (-(limit + 60), 2 * limit, -1e5, -1e6)
    for offset in offsets:
        note = f"offset {offset:+.6g}"
        if offset <= -1e4:  # a running maximum that starts at -1e4 or so is never updated
            note += ": every logit far below 0"
        yield offset + 2 * rng.standard_normal(k), note
    z = rng.standard_normal(k) * limit / 2
    yield z, f"spread ~{limit:.0f}"
    if k >= 2:
        z = np.full(k, -1e3)
        z[rng.integers(k)] = 1e3
        yield z, "one +1e3, the rest -1e3"


def _masked(rng: np.random.Generator, k: int) -> Iterator[tuple[np.ndarray, str]]:
    if k < 2:
        return
    patterns = (
        (1, 0.0, "1 masked"),
        (k - 1, 0.0, f"{k - 1} masked, one live class"),
        (k // 2, 0.0, f"{k // 2} masked"),
        (1, 1e3, "1 masked, offset +1e3"),
        (max(1, k // 2), -1e3, f"{max(1, k // 2)} masked, offset -1e3"),
    )
    for n_masked, offset, note in patterns:
        z = 3 * rng.standard_normal(k) + offset
        z[rng.choice(k, size=n_masked, replace=False)] = -np.inf
        yield z, note
    z = rng.standard_normal(k)
    z[rng.integers(k)] = 40.0
    z[np.flatnonzero(z < 40.0)[:1]] = -np.inf
    yield z, "1 masked, one dominant logit"


def _mixed_rows(rng: np.random.Generator, k: int, limit: float) -> list[list[np.ndarray]]:
    """Rows far apart: a max or sum over the wrong axis breaks some of them."""
    offsets = (0.0, 2 * limit, -2 * limit, limit, -5.0, 0.5)
    n = len(offsets) - (1 if len(offsets) == k else 0)  # keep N != K, see batches()
    return [[3 * rng.standard_normal(k) + offsets[(i + b) % n] for i in range(n)] for b in range(2)]


def _thin(cases: list[Case], keep: int) -> list[Case]:
    """Fewer inputs for large K (the reference costs K^2 per input), every kind kept."""
    if len(cases) <= keep:
        return cases
    out: list[Case] = []
    for kind in KINDS:
        group = [c for c in cases if c.kind == kind]
        if group:
            n = max(1, round(len(group) * keep / len(cases)))
            out += [group[i] for i in np.linspace(0, len(group) - 1, n).round().astype(int)]
    return out


def generate(settings: Settings) -> tuple[list[Case], list[list[int]] | None]:
    """The cases, and for batched checks the rows of each batch (indices into the cases)."""
    k, dtype = settings.k, settings.dtype
    rng = np.random.default_rng(settings.seed)
    labels = _Labels(settings.labels, rng)
    limit = overflow_logit(dtype)
    raw: list[tuple[str, np.ndarray, str]] = []
    raw += [("random", z, n) for z, n in _random(rng, k, settings.n_random)]
    raw += [("ties", z, n) for z, n in _ties(rng, k)]
    raw += [("dominant", z, n) for z, n in _dominant(rng, k, dtype)]
    raw += [("large", z, n) for z, n in _large(rng, k, limit)]
    # the contract excludes -inf logits; with label smoothing a masked class's log s = -inf
    # carries weight eps/K, so the loss is +inf and has no gradient
    if not settings.finite and not settings.options.label_smoothing:
        raw += [("masked", z, n) for z, n in _masked(rng, k)]
    cotangents = _Cotangents(rng)
    teachers = _Teachers(rng)
    count = itertools.count()

    def case(kind: str, z: np.ndarray, note: str, ignore: bool = False) -> Case:
        z = z.astype(dtype)
        y = labels.draw(z).astype(dtype) if settings.takes_labels else None
        label = int(np.argmax(y)) if settings.index_labels else None
        g = cotangents.draw(k).astype(dtype) if settings.vjp else None
        teacher = teachers.draw(z).astype(dtype) if settings.distillation else None
        ignored = False
        if label is not None and not settings.options.plain:
            label, y, ignored = _option_label(settings, z, label, y, ignore or next(count) % 3 == 2)
        return Case(kind, z, y, note, label, g, teacher, ignored, _sized(settings, z, teacher))

    per_input = k * k + 3 * k if settings.jacobian else 3 * k  # products, and 2 softmaxes
    keep = max(len(KINDS) * 2, REFERENCE_BUDGET // per_input)
    cases = _thin([case(*r) for r in raw], keep)
    if not settings.batched:
        return cases, None
    batches = _batches(cases, k)
    for rows in _mixed_rows(rng, k, limit):
        start = len(cases)
        cases += [case("mixed-rows", z, "rows at offsets 0, +-limit, +-2*limit") for z in rows]
        batches.append(list(range(start, len(cases))))
    if settings.options.ignore_index is not None:  # mean: 0/0, PyTorch's gradient is 0
        start = len(cases)
        note = "every row of the batch ignored"
        cases += [case("random", 3 * rng.standard_normal(k), note, True) for _ in range(3)]
        batches.append(list(range(start, len(cases))))
    return cases, batches


def _option_label(
    settings: Settings, z: np.ndarray, label: int, y: np.ndarray, ignore: bool
) -> tuple[int, np.ndarray, bool]:
    """The class, its one-hot and whether the row is ignored, under --weight/--ignore-index.

    Every third row is ignored. Under mean the label avoids zero-weight classes where it can:
    a batch whose non-ignored rows all weigh 0 divides 0 by 0 (PyTorch: NaN)."""
    opt = settings.options
    k = settings.k
    if opt.ignore_index is not None and (ignore or label == opt.ignore_index):
        onehot = np.zeros(k, dtype=y.dtype)
        if 0 <= opt.ignore_index < k:
            onehot[opt.ignore_index] = 1
        return opt.ignore_index, onehot, True
    if opt.weight is not None and settings.reduction == "mean" and opt.weight[label] == 0:
        live = [c for c in range(k) if np.isfinite(z[c]) and opt.weight[c] > 0]
        live = [c for c in live if c != opt.ignore_index]
        if live:
            label = live[label % len(live)]
            y = np.zeros(k, dtype=y.dtype)
            y[label] = 1
    return label, y, False


def _sized(settings: Settings, z: np.ndarray, teacher: np.ndarray | None) -> np.ndarray | None:
    """The logits the tolerance is sized by: z/T (and the teacher's, if larger)."""
    t = settings.temperature
    if t == 1.0 and teacher is None:
        return None
    with np.errstate(over="ignore"):
        scaled = [z.astype(np.float64) / t]
        if teacher is not None:
            scaled.append(teacher.astype(np.float64) / t)
    return max(scaled, key=logit_size)


def _batches(cases: list[Case], k: int) -> list[list[int]]:
    """Rows of one kind per batch, sizes varied and != K so a (K, N) result is a shape error."""
    sizes = itertools.cycle((5, 1, 7, 3, 9))
    batches: list[list[int]] = []
    for kind in KINDS:
        todo = [i for i, c in enumerate(cases) if c.kind == kind]
        while todo:
            n = next(sizes)
            n = min(n + 1 if n == k else n, len(todo))
            if n == k and k > 1:
                n -= 1
            batches.append(todo[:n])
            todo = todo[n:]
    return batches
