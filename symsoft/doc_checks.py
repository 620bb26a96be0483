"""Checks of the fixed-K equalities that the document displays.

The document writes its formulas with symbolic indices (``s_i``, ``delta_ij``, sums up to
the given K), the way a reader expects them. Such a formula is a statement about every entry,
so it is checked by instantiating it at concrete entries: indices become numbers, sums are
expanded, ``e^{z_m}`` and ``S`` become the symbols of :mod:`symsoft.derive`, and a derivative
``d/dz_m`` is taken with the same chain rule that derived the Bundle. Each equality of a
displayed chain is then proved with :func:`symsoft.simplify.prove_entries`; a failure raises
ProofError and stops generation.

Entries: every one up to ``ENTRYWISE_K_MAX``, above it representatives at both ends and in the
middle (the rest follow by relabelling the classes). The Bundle's own proofs of the closed
forms cover every entry up to ``simplify.ENTRYWISE_PROOF_K_MAX``, and general_k.py proves them
for symbolic K, so these checks only need to show that the displayed formula is the one proved.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import sympy
from sympy.matrices.expressions.matexpr import MatrixElement, MatrixExpr

from symsoft import derive, simplify
from symsoft import general_k as gk
from symsoft.errors import ProofError

# Above this K the displayed formulas are checked at representative entries: all entries of
# all chains at K = 32 would take over a minute, for no more assurance than relabelling gives.
ENTRYWISE_K_MAX = 6

# Notation of the displayed formulas: general_k's indexed symbols, plus these.
S = sympy.Symbol("S", positive=True)  # the normaliser, sum_k e^{z_k}
L = sympy.Symbol("L", real=True)  # the cross-entropy loss
m = sympy.Symbol("m", real=True)  # a shift; in the stable form the largest logit
Jij = sympy.IndexedBase("J")  # J_ij, printed with both indices as a subscript

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


class FixedKChecker:
    """Instantiates displayed formulas for one K and proves the displayed chains."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.sym = derive.fixed_k(k)
        self.on_sum = (self.sym.S, sympy.Add(*self.sym.e))
        self._derivatives: dict[sympy.Basic, sympy.Expr] = {}  # shared by the chains
        self._proved: dict[tuple[object, ...], Check] = {}  # chains already proved

    # --- instantiation -------------------------------------------------------------------

    def prepare(self, expr: sympy.Basic) -> sympy.Basic:
        """K replaced by its value and sums expanded, before any index gets a value (a bound
        variable may share the name of a free index)."""
        expr = expr.subs(gk.K, self.k)
        if expr.has(sympy.Sum):
            expr = expr.replace(lambda e: isinstance(e, sympy.Sum), _expand_sum)
        return expr

    def instantiate(self, prepared: sympy.Basic, values: Assignment) -> sympy.Basic:
        """A prepared formula at the given (1-based) index values, in derive.py's symbols."""
        return self._fixed(prepared.xreplace({v: sympy.Integer(n) for v, n in values.items()}))

    def _fixed(self, e: sympy.Basic) -> sympy.Basic:
        sym = self.sym
        if isinstance(e, sympy.Sum):
            return self._fixed(_expand_sum(e))
        if e == S:
            return sym.S
        if isinstance(e, MatrixElement):
            p, q = int(e.i) + 1, int(e.j) + 1
            if e.parent.name == gk.J.name:
                return self._fixed(sympy.Derivative(gk.s[p], gk.z[q]))
            if e.parent.name == gk.S_VEC.name:
                return self._fixed(gk.s[p])
        if isinstance(e, sympy.Indexed) and e.base == Jij:
            p, q = (int(n) for n in e.indices)
            return self._fixed(sympy.Derivative(gk.s[p], gk.z[q]))
        if isinstance(e, sympy.Indexed):
            (index,) = e.indices
            p = int(index)
            if e.base == gk.z:
                return sym.z[p - 1]
            if e.base == gk.y:
                return sym.y[p - 1]
            if e.base == gk.s:
                return sym.e[p - 1] / sym.S
        if isinstance(e, sympy.Derivative):
            if e not in self._derivatives:
                self._derivatives[e] = self._derivative(e)
            return self._derivatives[e]
        if isinstance(e, sympy.exp):
            return self._exp(self._fixed(e.args[0]))
        if e.args:
            return e.func(*(self._fixed(a) for a in e.args))
        return e

    def _derivative(self, e: sympy.Derivative) -> sympy.Expr:
        sym = self.sym
        ((variable, count),) = e.variable_count
        if count != 1 or not isinstance(variable, sympy.Indexed) or variable.base != gk.z:
            raise ProofError(f"document check: cannot instantiate {e}")
        # derive.d_dz differentiates through e_m and S: write z_m as log(e_m) first
        inner = self._fixed(e.expr)
        if inner.has(*sym.z):
            inner = inner.xreplace({zm: sympy.log(em) for zm, em in zip(sym.z, sym.e, strict=True)})
        return derive.d_dz(inner, int(variable.indices[0]) - 1, sym)

    def _exp(self, arg: sympy.Expr) -> sympy.Expr:
        """exp(n z_m + rest) = e_m^n exp(rest), so that e_m stays the symbol derive.py uses."""
        position = {zm: n for n, zm in enumerate(self.sym.z)}
        factors, rest = [], []
        for term in sympy.Add.make_args(arg):
            coefficient, base = term.as_coeff_Mul()
            if base in position:
                factors.append(self.sym.e[position[base]] ** coefficient)
            else:
                rest.append(term)
        return sympy.Mul(*factors) * sympy.exp(sympy.Add(*rest))

    def log_normal_form(self, expr: sympy.Expr) -> sympy.Expr:
        """Logarithms expanded: log(e_m) = z_m, log(C x) = log C + log x, log(e^{-m}) = -m."""
        sym = self.sym
        expr = expr.xreplace({sym.S: self.on_sum[1]})
        expr = expr.replace(
            lambda e: isinstance(e, sympy.log), lambda e: sympy.log(sympy.factor_terms(e.args[0]))
        )
        expr = sympy.expand_log(expr, force=True)
        return expr.xreplace({sympy.log(em): zm for em, zm in zip(sym.e, sym.z, strict=True)})

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
    ) -> Check:
        """Prove ``steps[n] == steps[n + 1]`` for every n, at every assignment of ``free``.

        ``assume`` rewrites the formulas before instantiation (e.g. one-hot targets);
        ``simplex`` adds the relation y_K = 1 - (y_1 + ... + y_{K-1}); ``logs`` expands
        logarithms; matrices are compared at ``cells`` (1-based; default all checked cells).
        """
        cells = None if cells is None else list(cells)
        key = (name, tuple(steps), tuple(free), assume, simplex, logs, tuple(cells or ()))
        if key not in self._proved:
            self._proved[key] = self._chain(name, steps, free, assume, simplex, logs, cells)
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
    ) -> Check:
        assignments = self.assignments(free)
        matrix = any(isinstance(step, MatrixExpr | sympy.MatrixBase) for step in steps)
        if cells is None:
            cells = itertools.product(self.index_values(), repeat=2)
        cells = [(p - 1, q - 1) for p, q in cells]
        relations = [self.on_sum]
        if simplex:
            relations.insert(0, (self.sym.y[-1], 1 - sympy.Add(*self.sym.y[:-1])))
        normal_form = self.log_normal_form if logs else (lambda x: x)
        prepared = [self._prepare_step(assume(_with_loss(step)), cells) for step in steps]
        for values in assignments:
            where = "".join(f", {v} = {n}" for v, n in values.items())
            forms = [self._instance(step, values) for step in prepared]
            for n, (left, right) in enumerate(itertools.pairwise(forms)):
                simplify.prove_entries(
                    f"{name} (equality {n + 1}{where})",
                    left,
                    right,
                    "document check",
                    normal_form=normal_form,
                    relations=relations,
                )
        if matrix:
            shape = next(
                step.subs(gk.K, self.k).shape
                for step in steps
                if isinstance(step, MatrixExpr | sympy.MatrixBase)
            )
            return Check(name, tuple(steps), len(cells), shape[0] * shape[1])
        return Check(name, tuple(steps), len(assignments), self.k ** len(free))

    def _prepare_step(
        self, step: sympy.Basic, cells: list[tuple[int, int]]
    ) -> sympy.Basic | list[sympy.Basic]:
        if not isinstance(step, MatrixExpr | sympy.MatrixBase):
            return self.prepare(step)
        matrix = step.subs(gk.K, self.k)
        return [self.prepare(matrix[p, q]) for p, q in cells]

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
