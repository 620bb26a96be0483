"""Cross-entropy with the options people train with, derived from the definitions and proved.

The options are those of torch.nn.functional.cross_entropy (class weights w, ignore_index,
the reductions, label smoothing eps) plus a temperature T and a z-loss coefficient lam:

* the logits are divided by T first: q = z / T, s = softmax(q);
* the smoothed target is the mixture (1 - eps) y + eps / K; each class's term carries its
  weight, where PyTorch puts it: for an integer label c the row's loss is
  (1 - eps) w_c (-log s_c) + (eps / K) sum_j w_j (-log s_j), for probability targets
  -sum_j w_j ((1 - eps) y_j + eps / K) log s_j;
* the z-loss adds lam (log sum_j e^{q_j})^2 to each row, unweighted;
* an ignored row (its label is ignore_index) has loss 0, z-loss included;
* reduction "none" keeps the rows, "sum" adds them, "mean" divides the sum by D: the sum
  of w_c over the rows not ignored for integer labels, the number of rows N for probability
  targets (so a batch whose rows are all ignored has mean 0 / 0 = NaN, as in PyTorch).

Every closed form a kernel computes for these (OptionForms) is proved equal, for every
combination of the options (COMBINATIONS), to the derivative of the reduced definition over
two rows, with SymPy's derivative of q = z / T giving the chain rule's 1 / T. An option that
is off is its neutral value substituted into both sides (eps = 0, T = 1, lam = 0, w = 1).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import sympy

from symsoft.derivation import fixed_k
from symsoft.derivation import general_k as gk
from symsoft.derivation.bundle import KernelForms, OptionForms
from symsoft.derivation.fixed_k import FixedK
from symsoft.errors import ProofError
from symsoft.family.members import MEMBERS, Member
from symsoft.proof import Identity, is_zero_difference, prove_entries

REDUCTIONS = ("none", "sum", "mean")
TARGET_KINDS = ("probabilities", "labels")
# the switches of one combination; ignore_index exists for integer labels only
SWITCHES = ("weight", "label_smoothing", "temperature", "z_loss")
# Up to this K every combination is proved at the generation K, every entry. Above it the
# combinations with every switch on are proved at representative entries (the others follow
# by relabelling the classes, as in closed_forms.proof_indices) at min(K, LARGE_K_CAP), and
# the others, their specialisations at the neutral values, at K = SPECIALISATION_K. The
# forms are per element (K enters as the literal of eps / K and through the sums, which the
# templates lay out for any K); LARGE_K_CAP bounds the cost (K = 64: 2 s, K = 1024: 30 s).
EVERY_COMBINATION_K_MAX = 8
SPECIALISATION_K = 3
LARGE_K_CAP = 64


@dataclass(frozen=True)
class Combination:
    """One way of calling a cross-entropy function: which options are on."""

    targets: str  # "probabilities" or "labels"
    reduction: str
    weight: bool
    label_smoothing: bool
    temperature: bool
    z_loss: bool
    ignore_index: bool  # labels only: the second row of the proof is ignored

    @property
    def name(self) -> str:
        on = [s for s in (*SWITCHES, "ignore_index") if getattr(self, s)]
        return f"{self.targets}-{self.reduction}-{'+'.join(on) or 'plain'}"


def combinations() -> Iterator[Combination]:
    """Every combination the API allows, probability targets first."""
    for targets in TARGET_KINDS:
        ignores = (False, True) if targets == "labels" else (False,)
        for reduction, switches, ignore in itertools.product(
            REDUCTIONS, itertools.product((False, True), repeat=len(SWITCHES)), ignores
        ):
            yield Combination(targets, reduction, *switches, ignore_index=ignore)


COMBINATIONS = tuple(combinations())


def option_forms(k: int, kernel: KernelForms) -> OptionForms:
    T, eps, lam, scale = sympy.symbols("T epsilon lambda scale", positive=True)
    z_i, w_i, a_i, sum_a, rest_a, ce, lse, g = sympy.symbols(
        "x_i w_i a_i sum_a rest_a ce lse g", real=True
    )
    f = kernel
    return OptionForms(
        z_i=z_i,
        T=T,
        eps=eps,
        lam=lam,
        w_i=w_i,
        a_i=a_i,
        sum_a=sum_a,
        rest_a=rest_a,
        ce=ce,
        lse=lse,
        scale=scale,
        g=g,
        tempered=z_i / T,
        target=w_i * ((1 - eps) * f.y_i + eps / sympy.Integer(k)),
        log_sum_exp=f.log_S + f.m,
        loss_term=sympy.Piecewise((0, sympy.Eq(a_i, 0)), (a_i * (f.log_S - f.d_i), True)),
        row_loss=ce + lam * lse**2,
        row_factor=scale / T,
        gradient=(f.s_i * sum_a - a_i + 2 * lam * lse * f.s_i) * g,
        # s_c sum_a - a_c = s_c rest_a - a_c (1 - s_c), and 1 - s_c = rest / S without the
        # cancellation of 1 - s_c as s_c -> 1
        gradient_label=(f.s_i * rest_a - a_i * f.rest / f.S + 2 * lam * lse * f.s_i) * g,
    )


# --- the definitions, for two rows ------------------------------------------------------


def _row(k: int, prime: str) -> FixedK:
    """A second row's symbols, named apart from fixed_k's (its logits are other variables)."""

    def numbered(stem: str, **assumptions: bool) -> tuple[sympy.Symbol, ...]:
        return tuple(sympy.Symbol(f"{stem}{prime}_{{{i}}}", **assumptions) for i in range(1, k + 1))

    z, y = numbered("z", real=True), numbered("y", real=True)
    e = numbered("e", positive=True)
    classes = {symbol: i for group in (z, y, e) for i, symbol in enumerate(group)}
    return FixedK(k, z, y, e, sympy.Symbol(f"S{prime}", positive=True), classes)


@dataclass(frozen=True)
class _Parameters:
    """The options' values in a combination: symbols where on, neutral values where off."""

    T: sympy.Expr
    eps: sympy.Expr
    lam: sympy.Expr
    w: tuple[sympy.Expr, ...]

    @classmethod
    def of(cls, combo: Combination, forms: OptionForms, k: int) -> _Parameters:
        weights = tuple(sympy.Symbol(f"w_{{{i}}}", positive=True) for i in range(1, k + 1))
        return cls(
            T=forms.T if combo.temperature else sympy.Integer(1),
            eps=forms.eps if combo.label_smoothing else sympy.Integer(0),
            lam=forms.lam if combo.z_loss else sympy.Integer(0),
            w=weights if combo.weight else (sympy.Integer(1),) * k,
        )

    def substitution(self, forms: OptionForms) -> dict[sympy.Symbol, sympy.Expr]:
        return {forms.T: self.T, forms.eps: self.eps, forms.lam: self.lam}


def row_definition(sym: FixedK, p: _Parameters, label: int | None) -> sympy.Expr:
    """One row's loss in the tempered logits q (sym.e[i] stands for e^{q_i}), as PyTorch
    defines it, plus the z-loss: for a label, (1 - eps) w_c nll + (eps / K) sum_j w_j nll_j;
    for targets, -sum_j w_j y'_j log s_j with the mixture y' = (1 - eps) y + eps / K."""
    k, log_s = sym.k, fixed_k.log_softmax(sym)
    uniform = p.eps / k
    if label is None:
        mixture = [(1 - p.eps) * yj + uniform for yj in sym.y]
        terms = [-wj * yj * lj for wj, yj, lj in zip(p.w, mixture, log_s, strict=True)]
    else:
        terms = [-(1 - p.eps) * p.w[label] * log_s[label]]
        terms += [-uniform * wj * lj for wj, lj in zip(p.w, log_s, strict=True)]
    return sympy.Add(*terms, p.lam * sympy.log(sym.S) ** 2)


@dataclass(frozen=True)
class _Batch:
    """The reduced loss of two rows, the first one's label 0 (a label's class is any class
    up to relabelling) and the second's label 1, or probability targets."""

    combo: Combination
    first: FixedK
    second: FixedK
    p: _Parameters
    D: sympy.Symbol  # mean's normaliser: sum of w_c over the rows kept, or N

    @property
    def labels(self) -> tuple[int | None, int | None]:
        return (0, min(1, self.first.k - 1)) if self.combo.targets == "labels" else (None, None)

    def rows(self) -> list[sympy.Expr]:
        """Each row's loss; an ignored row's is 0 by definition."""
        first = row_definition(self.first, self.p, self.labels[0])
        second = row_definition(self.second, self.p, self.labels[1])
        return [first, sympy.Integer(0) if self.combo.ignore_index else second]

    def factor(self) -> sympy.Expr:
        return 1 / self.D if self.combo.reduction == "mean" else sympy.Integer(1)

    def total(self) -> sympy.Expr:
        """What the gradient is of: a row's own loss under none, else the reduction."""
        rows = self.rows()
        if self.combo.reduction == "none":
            rows = rows[:1]
        factor = self.factor()
        return sympy.Add(*(factor * t for row in rows for t in sympy.Add.make_args(row)))

    def gradient(self, total: sympy.Expr, row: FixedK, j: int) -> sympy.Expr:
        """d total / d z_j of a row: the chain rule through q = z / T, whose derivative SymPy
        takes, times the derivative in q (fixed_k.d_dz through e and S)."""
        x = sympy.Symbol("x", real=True)
        dq_dz = sympy.diff(x / self.p.T, x)
        return fixed_k.d_dz(total, j, row) * dq_dz


# --- the kernel's forms, instantiated -----------------------------------------------------


class _Kernel:
    """The options path's forms for every class of the first row, with row maximum M of the
    tempered logits: e^{q_i - M} = e_i C, the shifted sum S_M = C S (as closed_forms)."""

    def __init__(self, kernel: KernelForms, forms: OptionForms, batch: _Batch) -> None:
        self.f, self.o, self.batch = kernel, forms, batch
        sym = batch.first
        self.M = sympy.Symbol("M", real=True)
        self.C = sympy.Symbol("C", positive=True)
        self.S_M = sympy.Symbol("S_M", positive=True)
        self.relations = ((self.S_M, self.C * sym.S), (sym.S, sympy.Add(*sym.e)))
        self.logs = {**dict(zip(sym.e, sym.z, strict=True)), self.S_M: -self.M + sympy.log(sym.S)}
        p = batch.p
        label = batch.labels[0]
        # the targets the kernel reads: y, or the label's one-hot row
        y = sym.y if label is None else tuple(sympy.Integer(int(i == label)) for i in range(sym.k))
        self.a = [self.at(forms.target, i, y=y) for i in range(sym.k)]
        self.common = {
            **batch.p.substitution(forms),
            forms.sum_a: sympy.Add(*self.a),
            forms.lse: self.at(forms.log_sum_exp, 0),
            forms.g: forms.row_factor.xreplace({forms.scale: batch.factor(), forms.T: p.T}),
        }

    def at(self, expr: sympy.Expr, i: int, y: tuple[sympy.Expr, ...] | None = None) -> sympy.Expr:
        """expr for class i: the tempered logit of z_i = T q_i is q_i (checked), shifted by
        M; its exponential e_i C; log S the log of the shifted sum."""
        f, o, sym, p = self.f, self.o, self.batch.first, self.batch.p
        q = o.tempered.xreplace({o.z_i: p.T * sym.z[i], o.T: p.T})
        if sympy.simplify(q - sym.z[i]) != 0:
            raise ProofError("the tempered logit of T q_i is not q_i")
        ys = sym.y if y is None else y
        e = sym.e[i] * self.C  # e^{q_i - M} = e^{q_i} e^{-M}
        exponential = f.exponential.xreplace({f.d_i: f.shifted.xreplace({f.z_i: q, f.m: self.M})})
        if exponential != sympy.exp(sym.z[i] - self.M):
            raise ProofError("the kernel's exponential is not e^{q_i - M}")
        return expr.xreplace({f.s_i: f.probability}).xreplace(
            {
                f.d_i: f.shifted.xreplace({f.z_i: q, f.m: self.M}),
                f.e_i: e,
                f.y_i: ys[i],
                o.w_i: p.w[i],
                f.m: self.M,
                f.S: self.S_M,
                f.log_S: sympy.log(self.S_M),
                **p.substitution(self.o),
            }
        )

    def loss(self) -> sympy.Expr:
        """The row's loss as the kernel computes it (the a_i = 0 guard shown harmless)."""
        o = self.o
        (zero, cond), (value, _) = o.loss_term.args
        if cond != sympy.Eq(o.a_i, 0) or value.xreplace({o.a_i: 0}) != zero:
            raise ProofError("option loss term: the guard is not the formula at a_i = 0")
        ce = sympy.Add(
            *(self.at(value, i).xreplace({o.a_i: self.a[i]}) for i in range(len(self.a)))
        )
        return o.row_loss.xreplace({**self.common, o.ce: ce})

    def gradient(self, j: int) -> sympy.Expr:
        o = self.o
        label = self.batch.labels[0]
        if label is not None and j == label:
            sym = self.batch.first
            # the other classes' share and targets, as the kernel reduces them
            rest = sympy.Add(*(sym.e[i] * self.C for i in range(sym.k) if i != label))
            rest_a = sympy.Add(*(self.a[i] for i in range(sym.k) if i != label))
            expr = self.at(o.gradient_label, j).xreplace({self.f.rest: rest, o.rest_a: rest_a})
        else:
            expr = self.at(o.gradient, j)
        return expr.xreplace({**self.common, o.a_i: self.a[j]})


def _batch(combo: Combination, k: int, forms: OptionForms) -> _Batch:
    return _Batch(
        combo,
        fixed_k.fixed_k(k),
        _row(k, "'"),
        _Parameters.of(combo, forms, k),
        sympy.Symbol("D", positive=True),
    )


@lru_cache(maxsize=4096)
def _proved(lhs: sympy.Expr, rhs: sympy.Expr, relations: tuple, logs: tuple) -> bool:
    return is_zero_difference(lhs, rhs, relations, dict(logs))


def prove_combination(
    combo: Combination, k: int, kernel: KernelForms, forms: OptionForms, indices: tuple[int, ...]
) -> Identity:
    """The kernel's loss and gradient entries (indices) of the first row equal the definition's,
    and an ignored second row's gradient is 0."""
    batch = _batch(combo, k, forms)
    inst = _Kernel(kernel, forms, batch)
    definition = batch.rows()[0]
    lhs = [inst.loss(), *(inst.gradient(j) for j in indices)]
    total = batch.total()
    rhs = [definition, *(batch.gradient(total, batch.first, j) for j in indices)]
    relations = inst.relations
    logs = tuple(sorted(inst.logs.items(), key=str))
    name = f"options-{combo.name}"
    for n, (left, right) in enumerate(zip(lhs, rhs, strict=True)):
        if not _proved(left, right, relations, logs):
            what = "loss" if n == 0 else f"gradient entry {indices[n - 1] + 1}"
            raise ProofError(f"could not prove {name}: the {what} differs from the definition")
    if combo.ignore_index:  # the ignored row's gradient, which the kernel writes as 0
        second = [batch.gradient(total, batch.second, j) for j in indices]
        prove_entries(
            f"{name}-ignored-row", sympy.ImmutableMatrix(second), sympy.zeros(len(indices), 1), ""
        )
    method = (
        f"K = {k}: the row's loss and gradient entries {[i + 1 for i in indices]} of the "
        "kernel's forms minus the derivative of the reduced two-row definition are 0"
    )
    return Identity(name, sympy.ImmutableMatrix(lhs), sympy.ImmutableMatrix(rhs), method)


def prove_options(k: int, kernel: KernelForms, forms: OptionForms) -> tuple[Identity, ...]:
    """One identity per combination (COMBINATIONS); raises ProofError on the first failure,
    and unless every option proof a family member declares was made."""
    if k <= EVERY_COMBINATION_K_MAX:
        identities = [prove_combination(c, k, kernel, forms, tuple(range(k))) for c in COMBINATIONS]
    else:
        small = option_forms(SPECIALISATION_K, kernel)
        large = min(k, LARGE_K_CAP)
        general = forms if large == k else option_forms(large, kernel)
        indices = tuple(sorted({0, 1, large // 2, large - 1}))
        identities = []
        for combo in COMBINATIONS:
            if all(getattr(combo, s) for s in SWITCHES):
                identities.append(prove_combination(combo, large, kernel, general, indices))
            else:
                identities.append(
                    prove_combination(combo, SPECIALISATION_K, kernel, small, (0, 1, 2))
                )
    identities.extend(_prove_tempered(kernel, forms))
    identities.extend(general_k_option_identities())
    proved = {identity.name for identity in identities}
    for member in MEMBERS:
        missing = sorted(set(required_proofs(member)) - proved)
        if missing:
            raise ProofError(f"{member.name}: option proofs {', '.join(missing)} were not made")
    return tuple(identities)


def required_proofs(member: Member) -> tuple[str, ...]:
    """The option identities a member's options path relies on: every combination of its
    kind of targets (with ignore_index if it takes it), or the tempered probabilities."""
    if "reduction" in member.options:
        targets = "labels" if "labels" in member.inputs else "probabilities"
        ignore = "ignore_index" in member.options
        return tuple(
            f"options-{c.name}"
            for c in COMBINATIONS
            if c.targets == targets and (ignore or not c.ignore_index)
        )
    if "temperature" in member.options:
        return ("options-tempered-softmax", "options-tempered-log-softmax")
    return ()


def _prove_tempered(kernel: KernelForms, forms: OptionForms) -> list[Identity]:
    """softmax(z / T) and log softmax(z / T): the stable forms on the tempered logits."""
    k = SPECIALISATION_K
    combo = next(c for c in COMBINATIONS if c.temperature)
    inst = _Kernel(kernel, forms, _batch(combo, k, forms))
    sym = inst.batch.first
    identities = []
    for name, form, definition in (
        ("softmax", kernel.probability, fixed_k.softmax(sym)),
        ("log-softmax", kernel.log_probability, fixed_k.log_softmax(sym)),
    ):
        identities.append(
            prove_entries(
                f"options-tempered-{name}",
                sympy.ImmutableMatrix([inst.at(form, i) for i in range(k)]),
                sympy.ImmutableMatrix([definition[i] for i in range(k)]),
                f"K = {k}: the stable form on q = z / T (q_i - M, e^{{q_i}} e^{{-M}}) "
                f"minus the definition in q is 0; it does not depend on K",
                relations=inst.relations,
                logs=inst.logs,
            )
        )
    return identities


# --- symbolic K -------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def general_k_option_identities() -> tuple[Identity, ...]:
    """The new closed forms for a symbolic K (general_k's notation and rules), each step
    derived by SymPy and checked by reducing lhs - rhs to 0:

    1. d/dz_j sum_k e^{z_k / T} = e^{z_j / T} / T (SymPy's Kronecker-delta sum, sifted);
    2. PyTorch's smoothed, weighted loss for a label c is sum_j a_j (-log s_j) with
       a_j = w_j ((1 - eps) delta_jc + eps / K) (linearity and sifting);
    3. d/dz_j [sum_i a_i (-log s_i) + lam (log sum_k e^{z_k / T})^2]
       = (s_j sum_i a_i - a_j + 2 lam lse s_j) / T, s_j = e^{z_j / T} / sum_k e^{z_k / T};
    4. at the label, the kernels' form (s_c rest_a - a_c rest / sum + 2 lam lse s_c) / T.
    """
    K, i, j, k, c, z = gk.K, gk.i, gk.j, gk.k, gk.c, gk.z
    a = sympy.IndexedBase("a", real=True)
    w = sympy.IndexedBase("w", real=True)
    T = sympy.Symbol("T", positive=True)
    eps, lam = sympy.symbols("epsilon lambda", real=True)
    sigma = sympy.Sum(sympy.exp(z[k] / T), (k, 1, K))

    def s(x: sympy.Expr) -> sympy.Expr:
        return sympy.exp(z[x] / T) / sigma

    steps = []
    raw = sigma.diff(z[j])
    d_sigma = sympy.exp(z[j] / T) / T
    gk.check_equal("general-k-tempered-sum-derivative", gk.sift(gk.linearity(raw)), d_sigma)
    steps.append(
        Identity(
            "general-k-tempered-sum-derivative",
            sympy.Derivative(sigma, z[j]),
            d_sigma,
            "SymPy differentiates the sum term-wise; sifting collapses the Kronecker delta",
            r"$1 \le j \le K$",
        )
    )
    torch_form = (1 - eps) * w[c] * -sympy.log(s(c)) + eps / K * sympy.Sum(
        w[i] * -sympy.log(s(i)), (i, 1, K)
    )
    target = w[i] * ((1 - eps) * sympy.KroneckerDelta(i, c) + eps / K)
    mixture = sympy.Sum(target * -sympy.log(s(i)), (i, 1, K))
    gk.check_equal("general-k-smoothed-label-loss", mixture, torch_form)
    steps.append(
        Identity(
            "general-k-smoothed-label-loss",
            mixture,
            torch_form,
            "linearity splits the mixture; sifting collapses the label's delta",
            r"$1 \le c \le K$",
        )
    )
    loss = sympy.Sum(a[i] * -sympy.log(s(i)), (i, 1, K)) + lam * sympy.log(sigma) ** 2
    derived = loss.diff(z[j]).xreplace({raw: d_sigma})
    closed = (s(j) * sympy.Sum(a[i], (i, 1, K)) - a[j] + 2 * lam * sympy.log(sigma) * s(j)) / T
    gk.check_equal("general-k-options-gradient", derived, closed)
    steps.append(
        Identity(
            "general-k-options-gradient",
            sympy.Derivative(loss, z[j]),
            closed,
            "SymPy differentiates the loss; step 1 replaces the sum's derivative; the "
            "difference from the closed form reduces to 0",
            r"$1 \le j \le K$",
        )
    )
    # 4. the label's entry as the kernels compute it: the others' share rest = sum_k e^{z_k/T}
    # - e^{z_c/T} and rest_a = sum_i a_i - a_c, free of the cancellation of 1 - s_c
    rest = sigma - sympy.exp(z[c] / T)
    rest_a = sympy.Sum(a[i], (i, 1, K)) - a[c]
    label_entry = (s(c) * rest_a - a[c] * rest / sigma + 2 * lam * sympy.log(sigma) * s(c)) / T
    at_label = closed.xreplace({j: c})
    gk.check_equal("general-k-options-gradient-label", label_entry, at_label)
    steps.append(
        Identity(
            "general-k-options-gradient-label",
            label_entry,
            at_label,
            "the closed form at j = c, with s_c sum a - a_c written as s_c (sum a - a_c) "
            "- a_c (1 - s_c) and 1 - s_c as the others' share over the sum; reduces to 0",
            r"$1 \le c \le K$",
        )
    )
    return tuple(steps)
