"""Checks of the fixed-K equalities that the document displays.

The document writes its formulas with symbolic indices (``s_i``, ``delta_ij``, sums up to
the given K), the way a reader expects them. Such a formula is a statement about every entry,
so it is checked by instantiating it at concrete entries: indices become numbers,
``e^{z_m}`` and ``S`` become the symbols of :mod:`symsoft.derive`, and a derivative
``d/dz_m`` is taken with the same chain rule that derived the Bundle. Each equality of a
displayed chain is then proved with :func:`symsoft.proof.prove_entries`; a failure raises
ProofError and stops generation.

A sum over the K classes stays exact but is not built term by term: the classes named in
its summand (the entries being checked, say i = 1 and j = 2) get their own terms, and the
summand is instantiated once more for a class n_* that stands for every other class, where
delta_{n_* i} = 0 and d e^{z_{n_*}}/dz_j = 0. That term becomes a
:class:`symsoft.proof.ClassSum`, which the proof's normal form renames once per remaining
class. So an entry costs O(K) dictionary work instead of O(K) SymPy expressions, and a
derivative of a sum is taken term by term (linearity).

Beyond the softmax itself the checker knows the vectors of the products (``v_i``, ``g_i``),
the tempered probabilities of distillation (``p_i`` of the student's logits over a temperature
``T``, ``q_i`` of an independent teacher row, when the checker is made with ``tempered=True``)
and the cross-entropy's Hessian ``H_ij``, the derivative of the proved gradient.

Entries: every one up to ``ENTRYWISE_K_MAX``, above it representatives at both ends and in the
middle (the rest follow by relabelling the classes). The Bundle's own proofs of the closed
forms cover every entry up to ``closed_forms.ENTRYWISE_PROOF_K_MAX``, and general_k.py proves them
for symbolic K, so these checks only need to show that the displayed formula is the one proved.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import sympy
from sympy.matrices.expressions.matexpr import MatrixElement, MatrixExpr

from symsoft import proof
from symsoft.derivation import fixed_k
from symsoft.derivation import general_k as gk
from symsoft.errors import ProofError

# Above this K the displayed formulas are checked at representative entries: every entry
# adds nothing that relabelling the classes does not already give.
ENTRYWISE_K_MAX = 6

# Notation of the displayed formulas: general_k's indexed symbols, plus these.
S = sympy.Symbol("S", positive=True)  # the normaliser, sum_k e^{z_k}
L = sympy.Symbol("L", real=True)  # the cross-entropy loss
m = sympy.Symbol("m", real=True)  # a shift; in the stable form the largest logit
Jij = sympy.IndexedBase("J")  # J_ij, printed with both indices as a subscript
g = sympy.IndexedBase("g", real=True)  # an upstream gradient (a vector-Jacobian product's)
T = sympy.Symbol("T", positive=True)  # the temperature of distillation
p = sympy.IndexedBase("p")  # the student's softmax of z / T (tempered checkers)
q = sympy.IndexedBase("q")  # the teacher's softmax of t / T, constant in z (tempered checkers)
Hij = sympy.IndexedBase("H")  # the cross-entropy's Hessian d^2 L / dz_i dz_j
H = sympy.MatrixSymbol("H", gk.K, gk.K)
JLij = sympy.IndexedBase(r"J_{\log}")  # the log-softmax Jacobian d log s_i / dz_j
J_LOG = sympy.MatrixSymbol(r"J_{\log}", gk.K, gk.K)
# sum_k y_k: the targets do not depend on the logits, so inside the Hessian's chains it is
# written as this one constant (sum_y_constant), which keeps a sum out of every summand
SUM_Y = sympy.Sum(gk.y[gk.k], (gk.k, 1, gk.K))
Y = sympy.Symbol("Y", real=True)
# the cross-entropy's options (issue 17): class weights w_i, the weighted smoothed targets
# a_i = w_i ((1 - eps) y_i + eps / K), the smoothing eps and the z-loss coefficient lam
w = sympy.IndexedBase("w", positive=True)
a = sympy.IndexedBase("a", real=True)
EPS = sympy.Symbol("epsilon", positive=True)
LAM = sympy.Symbol("lambda", positive=True)

# The index of a class not named in a summand, and that class's logit, target, exponential,
# vector entries, teacher's exponential (e^{t_*/T}), class weight and weighted target.
OTHER = sympy.Symbol("n_*", integer=True, positive=True)
OTHER_CLASS = (
    sympy.Symbol("z_*", real=True),
    sympy.Symbol("y_*", real=True),
    sympy.Symbol("e_*", positive=True),
    sympy.Symbol("v_*", real=True),
    sympy.Symbol("g_*", real=True),
    sympy.Symbol("E_*", positive=True),
    sympy.Symbol("w_*", positive=True),
    sympy.Symbol("a_*", real=True),
)

Assignment = dict[sympy.Symbol, int]


@dataclass(frozen=True)
class Check:
    """A displayed chain ``steps[0] = steps[1] = ...``, every equality proved."""

    name: str
    steps: tuple[sympy.Basic, ...]
    checked: int  # entries (index assignments) at which the chain was proved
    total: int  # entries the chain speaks about


def loss_definition(k: int | sympy.Symbol) -> sympy.Expr:
    return -sympy.Sum(gk.y[gk.i] * sympy.log(gk.s[gk.i]), (gk.i, 1, k))


def normaliser(k: int, shift: sympy.Expr = sympy.S.Zero) -> sympy.Expr:
    return sympy.Sum(sympy.exp(gk.z[gk.k] - shift), (gk.k, 1, k))


# what no logit changes: the temperature, sum(y) (as Y), the smoothing and the z-loss's factor
CONSTANTS = frozenset({T, Y, EPS, LAM})


def sum_y_constant(expr: sympy.Basic) -> sympy.Basic:
    """sum_k y_k as the constant Y (an ``assume`` for the Hessian's chains)."""
    return expr.xreplace({SUM_Y: Y})


class FixedKChecker:
    """Instantiates displayed formulas for one K and proves the displayed chains."""

    def __init__(self, k: int, *, tempered: bool = False) -> None:
        """tempered: the exponentials are e^{z_m / T} (distillation's student row), so that
        d/dz_j is 1/T times the chain rule in them, and p and q are the two rows' softmax."""
        self.k = k
        self.tempered = tempered
        self.sym = sym = fixed_k.fixed_k(k)
        teacher = fixed_k.fixed_k(k, logit="t", target="u", normaliser="S_t")
        self.S_t = teacher.S
        self.on_sum = (sym.S, sympy.Add(*sym.e))
        self.on_teacher_sum = (teacher.S, sympy.Add(*teacher.e))
        self.on_simplex = (sym.y[-1], 1 - sympy.Add(*sym.y[:-1]))
        z_other, _, e_other, *_ = OTHER_CLASS
        vectors = [
            tuple(sympy.Symbol(f"{stem}_{{{n}}}", real=True) for n in range(1, k + 1))
            for stem in ("v", "g", "w", "a")
        ]
        v, g_, w_, a_ = vectors
        self._classes = tuple(zip(sym.z, sym.y, sym.e, v, g_, teacher.e, w_, a_, strict=True))
        self._exponential = {zm: em for zm, em in zip(sym.z, sym.e, strict=True)}
        self._exponential[z_other] = e_other
        scale = T if tempered else sympy.Integer(1)
        self._scale = scale  # z_m = scale * log(e_m)
        self._logs = {em: zm / scale for zm, em in self._exponential.items()}  # log e_m
        self._derivatives: dict[sympy.Basic, sympy.Expr] = {}  # shared by the chains
        self._sums: dict[sympy.Basic, sympy.Expr] = {}
        self._proved: dict[tuple[object, ...], Check] = {}  # chains already proved

    # --- instantiation -------------------------------------------------------------------

    def prepare(self, expr: sympy.Basic) -> sympy.Basic:
        """K replaced by its value, matrix entries as 1-based indexed symbols, and every sum
        over a fresh variable from 1, before any index gets a value (a bound variable may
        share the name of a free index)."""
        expr = expr.subs(gk.K, self.k)
        if expr.has(MatrixElement):
            expr = expr.replace(lambda e: isinstance(e, MatrixElement), _indexed)
        if expr.has(sympy.Sum):
            expr = expr.replace(lambda e: isinstance(e, sympy.Sum), _from_one)
        return expr

    def instantiate(self, prepared: sympy.Basic, values: Assignment) -> sympy.Basic:
        """A prepared formula at the given (1-based) index values, in fixed_k.py's symbols."""
        return self._fixed(prepared.xreplace({v: sympy.Integer(n) for v, n in values.items()}))

    def log_rules(self) -> dict[sympy.Basic, sympy.Expr]:
        """log e^{z_m} = z_m, for the chains that expand logarithms."""
        return self._logs

    def _fixed(self, e: sympy.Basic) -> sympy.Basic:
        sym = self.sym
        if isinstance(e, sympy.Sum):
            if e not in self._sums:
                self._sums[e] = self._sum(e)
            return self._sums[e]
        if e == S:
            return sym.S
        if isinstance(e, sympy.Indexed) and e.base == Jij:
            row, col = e.indices
            return self._fixed(sympy.Derivative(gk.s[row], gk.z[col]))
        if isinstance(e, sympy.Indexed) and e.base == JLij:
            row, col = e.indices
            return self._fixed(sympy.Derivative(sympy.log(gk.s[row]), gk.z[col]))
        if isinstance(e, sympy.Indexed) and e.base == Hij:
            # d/dz_i of the proved gradient dL/dz_j = s_j sum(y) - y_j (sum(y) constant in z)
            row, col = e.indices
            return self._fixed(sympy.Derivative(gk.s[col] * Y - gk.y[col], gk.z[row]))
        # a tempered checker's probabilities are p (and the teacher's q), another's s
        probabilities = (p, q) if self.tempered else (gk.s,)
        if isinstance(e, sympy.Indexed) and e.base in (gk.z, gk.y, gk.v, g, w, a, *probabilities):
            (index,) = e.indices
            z, y, exponential, v, upstream, teacher, weight, target = self._class(index)
            values = {
                gk.z: z,
                gk.y: y,
                gk.v: v,
                g: upstream,
                q: teacher / self.S_t,
                w: weight,
                a: target,
            }
            return values.get(e.base, exponential / sym.S)
        if isinstance(e, sympy.Indexed | MatrixElement):
            raise ProofError(f"document check: cannot instantiate {e}")
        if isinstance(e, sympy.KroneckerDelta) and OTHER in e.args:
            # n_* stands for the classes not named in the summand: never a named one
            if not all(a == OTHER or a.is_Integer for a in e.args):
                raise ProofError(f"document check: cannot instantiate {e}")
            return sympy.Integer(int(e.args[0] == e.args[1]))
        if isinstance(e, sympy.Derivative):
            if e not in self._derivatives:
                self._derivatives[e] = self._derivative(e)
            return self._derivatives[e]
        if isinstance(e, sympy.exp):
            return self._exp(self._fixed(e.args[0]))
        if e.args:
            return e.func(*(self._fixed(a) for a in e.args))
        return e

    def _class(self, index: sympy.Basic) -> tuple[sympy.Symbol, ...]:
        """(z, y, e^z, v, g, teacher's e^{t/T}, w, a) of the class with this 1-based index,
        or of n_*."""
        if index == OTHER:
            return OTHER_CLASS
        if not index.is_Integer or not 1 <= int(index) <= self.k:
            raise ProofError(f"document check: cannot instantiate index {index}")
        return self._classes[int(index) - 1]

    def _sum(self, e: sympy.Sum) -> sympy.Expr:
        """The classes named in the summand term by term, all others as one ClassSum."""
        ((v, lo, hi),) = e.limits
        named: set[int] = set()
        if e.function.has(sympy.Sum) or not _bare_index(e.function, v, named):
            return self._fixed(_expand_sum(e))
        if (lo, hi) != (1, self.k):
            raise ProofError(f"document check: {e} is not a sum over the {self.k} classes")
        named &= set(range(1, self.k + 1))
        terms = [self._fixed(e.function.xreplace({v: sympy.Integer(n)})) for n in sorted(named)]
        others = [self._classes[n - 1] for n in range(1, self.k + 1) if n not in named]
        if others:
            term = self._fixed(e.function.xreplace({v: OTHER}))
            # only the placeholders the term uses (and z_* with e_*, which log e_* = z_* may
            # bring in): each row of a ClassSum costs its width
            free = term.free_symbols
            used = [n for n, symbol in enumerate(OTHER_CLASS) if symbol in free or n == 0]
            if OTHER_CLASS[2] not in free and OTHER_CLASS[0] not in free:
                used.remove(0)
            if not used:  # the same term for every other class
                terms.append(term * len(others))
            elif term != 0:
                rows = [tuple(row[n] for n in used) for row in others]
                terms.append(proof.ClassSum(term, tuple(OTHER_CLASS[n] for n in used), rows))
        return sympy.Add(*terms)

    def _derivative(self, e: sympy.Derivative) -> sympy.Expr:
        ((variable, count),) = e.variable_count
        if count != 1 or not isinstance(variable, sympy.Indexed) or variable.base != gk.z:
            raise ProofError(f"document check: cannot instantiate {e}")
        if e.expr.has(sympy.Sum):
            return self._fixed(_term_by_term(e.expr, variable))
        (index,) = variable.indices
        # fixed_k.d_dz differentiates through e_m and S: write z_m as log(e_m) first
        inner = self._fixed(e.expr)
        logits = inner.free_symbols & self._exponential.keys()
        if logits:
            inner = inner.xreplace(
                {zm: self._scale * sympy.log(self._exponential[zm]) for zm in logits}
            )
        self._class(index)  # checks the index
        j = OTHER_CLASS[2] if index == OTHER else int(index) - 1
        # tempered: e_m = e^{z_m / T}, so de_m/dz_j = delta_mj e_m / T
        return fixed_k.d_dz(inner, j, self.sym) / self._scale

    def _exp(self, arg: sympy.Expr) -> sympy.Expr:
        """exp(n z_m + rest) = e_m^n exp(rest), so that e_m stays the symbol fixed_k.py uses
        (tempered: exp(n z_m / T + rest))."""
        factors, rest = [], []
        for term in sympy.Add.make_args(arg):
            coefficient, base = (term * self._scale).as_coeff_Mul()
            if base in self._exponential:
                factors.append(self._exponential[base] ** coefficient)
            elif self.tempered:
                raise ProofError(f"document check: e^{{{term}}} in a tempered check")
            else:
                rest.append(term)
        return sympy.Mul(*factors) * sympy.exp(sympy.Add(*rest))

    # --- checks --------------------------------------------------------------------------

    def index_values(self) -> Sequence[int]:
        """The 1-based index values checked: all, or representatives for large K."""
        if self.k > ENTRYWISE_K_MAX:
            return sorted({1, 2, self.k // 2 + 1, self.k})
        return range(1, self.k + 1)

    def assignments(self, free: Sequence[sympy.Symbol]) -> list[Assignment]:
        values = itertools.product(self.index_values(), repeat=len(free))
        return [dict(zip(free, v, strict=True)) for v in values]

    def chain(
        self,
        name: str,
        steps: Sequence[sympy.Basic],
        free: Sequence[sympy.Symbol] = (),
        *,
        assume: Callable[[sympy.Basic], sympy.Basic] = lambda x: x,
        simplex: bool = False,
        logs: bool = False,
        cells: Iterable[tuple[int, int]] | None = None,
        distinct: bool = False,
    ) -> Check:
        """Prove ``steps[n] == steps[n + 1]`` for every n, at every assignment of ``free``.

        ``distinct`` keeps only assignments whose indices differ (a formula for i != j);
        ``assume`` rewrites the formulas before instantiation (e.g. one-hot targets);
        ``simplex`` adds the relation y_K = 1 - (y_1 + ... + y_{K-1}); ``logs`` expands
        logarithms; matrices are compared at ``cells`` (1-based; default all checked cells).
        """
        cells = None if cells is None else list(cells)
        key = (name, tuple(steps), tuple(free), assume, simplex, logs, tuple(cells or ()), distinct)
        if key not in self._proved:
            self._proved[key] = self._chain(
                name, steps, free, assume, simplex, logs, cells, distinct
            )
        return self._proved[key]

    def _chain(
        self,
        name: str,
        steps: Sequence[sympy.Basic],
        free: Sequence[sympy.Symbol],
        assume: Callable[[sympy.Basic], sympy.Basic],
        simplex: bool,
        logs: bool,
        cells: Iterable[tuple[int, int]] | None,
        distinct: bool = False,
    ) -> Check:
        assignments = self.assignments(free)
        if distinct:
            assignments = [a for a in assignments if len(set(a.values())) == len(a)]
        matrix = any(isinstance(step, MatrixExpr | sympy.MatrixBase) for step in steps)
        if cells is None:
            cells = itertools.product(self.index_values(), repeat=2)
        cells = [(p - 1, q - 1) for p, q in cells]
        relations = [self.on_simplex, self.on_sum] if simplex else [self.on_sum]
        if self.tempered:
            relations.append(self.on_teacher_sum)
        log_rules = self.log_rules() if logs else None
        prepared = [self._prepare_step(assume(_with_loss(step)), cells) for step in steps]
        for values in assignments:
            where = "".join(f", {v} = {n}" for v, n in values.items())
            forms = [self._instance(step, values) for step in prepared]
            for n, (left, right) in enumerate(itertools.pairwise(forms)):
                proof.prove_entries(
                    f"{name} (equality {n + 1}{where})",
                    left,
                    right,
                    "document check",
                    relations=relations,
                    logs=log_rules,
                )
        if matrix:
            shape = next(
                step.shape if isinstance(step, sympy.MatrixBase) else step.subs(gk.K, self.k).shape
                for step in steps
                if isinstance(step, MatrixExpr | sympy.MatrixBase)
            )
            return Check(name, tuple(steps), len(cells), shape[0] * shape[1])
        total = self.k ** len(free)
        if distinct:
            total = self.k * (self.k - 1) if len(free) == 2 else total
        return Check(name, tuple(steps), len(assignments), total)

    def _prepare_step(
        self, step: sympy.Basic, cells: list[tuple[int, int]]
    ) -> sympy.Basic | list[sympy.Basic]:
        if not isinstance(step, MatrixExpr | sympy.MatrixBase):
            return self.prepare(step)
        # entries of a matrix expression are read at symbolic K: a product's entry is then a
        # Sum, not K explicit terms
        return [self.prepare(step[p, q]) for p, q in cells]

    def _instance(self, step: sympy.Basic | list[sympy.Basic], values: Assignment) -> sympy.Basic:
        if not isinstance(step, list):
            return self.instantiate(step, values)
        entries = [self.instantiate(entry, values) for entry in step]
        return sympy.ImmutableMatrix(len(entries), 1, entries)


def _with_loss(step: sympy.Basic) -> sympy.Basic:
    """L by its definition, so that assumptions about y reach the targets inside it."""
    return step.xreplace({L: loss_definition(gk.K)}) if step.has(L) else step


def _expand_sum(e: sympy.Sum) -> sympy.Basic:
    (v, lo, hi), *more = e.limits
    if more or not (lo.is_Integer and hi.is_Integer):
        raise ProofError(f"document check: cannot expand {e}")
    return sympy.Add(*(e.function.xreplace({v: n}) for n in range(int(lo), int(hi) + 1)))


def _indexed(e: MatrixElement) -> sympy.Basic:
    """J[p, q] and s[p, 0] (0-based) as the 1-based J_{p+1,q+1} and s_{p+1}."""
    if e.parent.name == gk.J.name:
        return Jij[e.i + 1, e.j + 1]
    if e.parent.name == H.name:
        return Hij[e.i + 1, e.j + 1]
    if e.parent.name == J_LOG.name:
        return JLij[e.i + 1, e.j + 1]
    if e.parent.name == gk.S_VEC.name:
        return gk.s[e.i + 1]
    raise ProofError(f"document check: cannot instantiate {e}")


def _from_one(e: sympy.Sum) -> sympy.Sum:
    """The same sum over a fresh variable running from 1."""
    (v, lo, hi), *more = e.limits
    if more:
        raise ProofError(f"document check: cannot instantiate {e}")
    fresh = sympy.Dummy("n", integer=True, positive=True)
    return sympy.Sum(e.function.xreplace({v: fresh + lo - 1}), (fresh, 1, hi - lo + 1))


def _bare_index(e: sympy.Basic, v: sympy.Symbol, named: set[int]) -> bool:
    """Whether v occurs in e only as an index (z_v, delta_{v j}); collects the 1-based
    numbers that occur as indices into named."""
    if isinstance(e, sympy.Indexed | sympy.KroneckerDelta):
        for index in e.indices if isinstance(e, sympy.Indexed) else e.args:
            if index.is_Integer:
                named.add(int(index))
            elif index != v:
                return False
        return True
    if e == v:
        return False
    return all(_bare_index(a, v, named) for a in e.args)


def _term_by_term(expr: sympy.Basic, variable: sympy.Indexed) -> sympy.Basic:
    """d/dz of a sum as the sum of the derivatives (linearity; constant factors stay out)."""
    if isinstance(expr, sympy.Sum):
        return sympy.Sum(sympy.Derivative(expr.function, variable), *expr.limits)
    if expr.is_Add:
        return sympy.Add(*(_term_by_term(a, variable) for a in expr.args))
    if isinstance(expr, sympy.log):  # d log X = dX / X
        (inner,) = expr.args
        return _term_by_term(inner, variable) / inner
    if expr.is_Pow and expr.exp.is_Integer and expr.base.has(sympy.Sum):  # d X^n = n X^{n-1} dX
        base, n = expr.args
        return n * base ** (n - 1) * _term_by_term(base, variable)
    factors = sympy.Mul.make_args(expr)
    constant = [f for f in factors if f.free_symbols <= CONSTANTS]
    if constant:
        rest = sympy.Mul(*(f for f in factors if f not in constant))
        return sympy.Mul(*constant) * _term_by_term(rest, variable)
    if expr.has(sympy.Sum):  # a product with a sum: no product rule here, write the sums out
        expr = expr.replace(lambda e: isinstance(e, sympy.Sum), _expand_sum)
    return sympy.Derivative(expr, variable)
