"""Softmax, log-softmax and cross-entropy for a fixed K, and their derivatives, straight
from the definitions.

Differentiating the raw definition ``exp(z_i) / sum_j exp(z_j)`` makes SymPy expressions
grow with K (every entry carries the whole sum). Instead each ``exp(z_i)`` is the positive
symbol ``e_i`` and the normaliser is the symbol ``S``, and derivatives follow the chain rule
through them exactly:

    d/dz_j f(e, S) = (df/de_j) * de_j/dz_j + (df/dS) * dS/dz_j = e_j * (df/de_j + df/dS),

since ``de_k/dz_j = delta_kj e_j`` and ``dS/dz_j = e_j``. Substituting ``e_i -> exp(z_i)``
and ``S -> sum_j exp(z_j)`` gives back SymPy's derivative of the raw definition (the tests
check this for small K).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import sympy


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: results are cached per K
class FixedK:
    """The symbols of a K-class problem."""

    k: int
    z: tuple[sympy.Symbol, ...]  # logits
    y: tuple[sympy.Symbol, ...]  # targets (soft labels)
    e: tuple[sympy.Symbol, ...]  # e_i stands for exp(z_i)
    S: sympy.Symbol  # stands for sum_j e_j
    # symbol -> its class (0-based), for differentiating a sum term by term
    classes: Mapping[sympy.Symbol, int] = field(default_factory=dict, repr=False)

    def to_logits(self, expr: sympy.Basic) -> sympy.Basic:
        """Replace e_i and S by what they stand for, giving an expression in z only."""
        total = sympy.Add(*(sympy.exp(zi) for zi in self.z))
        return expr.xreplace(
            {self.S: total, **{ei: sympy.exp(zi) for ei, zi in zip(self.e, self.z, strict=True)}}
        )


def fixed_k(k: int, logit: str = "z", target: str = "y", normaliser: str = "S") -> FixedK:
    """The symbols of K classes; other names give a second, independent row (a teacher's)."""

    def numbered(stem: str, **assumptions: bool) -> tuple[sympy.Symbol, ...]:
        return tuple(sympy.Symbol(f"{stem}_{{{i}}}", **assumptions) for i in range(1, k + 1))

    z, y = numbered(logit, real=True), numbered(target, real=True)
    e = tuple(sympy.Symbol(f"e^{{{logit}_{{{i}}}}}", positive=True) for i in range(1, k + 1))
    classes = {symbol: i for group in (z, y, e) for i, symbol in enumerate(group)}
    S = sympy.Symbol(normaliser, positive=True)
    return FixedK(k=k, z=z, y=y, e=e, S=S, classes=classes)


# One class's symbols, standing for any class: a term of a sum over classes is differentiated
# once in these and relabelled (renaming symbols commutes with differentiation). Named apart
# from the generic classes of closed_forms.py and document/checks.py, which may occur in such
# a term.
_GENERIC = (
    sympy.Symbol("z_#", real=True),
    sympy.Symbol("y_#", real=True),
    sympy.Symbol("e_#", positive=True),
)


def d_dz(f: sympy.Expr, j: int | sympy.Symbol, sym: FixedK) -> sympy.Expr:
    """Total derivative of f(e, S) with respect to z_j (0-based j), by the chain rule.

    j may also be the exponential symbol e_* of a class that stands for any class other than
    those f is written in (the same rule: de_*/dz_* = e_*, dS/dz_* = e_*).

    A sum is differentiated term by term (linearity): only the terms that contain e_j have a
    partial derivative in e_j, and each term's partial derivative in S is computed once per
    term and reused for every j, which keeps a K-term loss at O(K) work per entry.
    """
    ej = sym.e[j] if isinstance(j, int) else j
    terms = sympy.Add.make_args(f)
    in_ej = [sympy.diff(t, ej) for t in terms if ej in t.free_symbols]
    return ej * (sympy.Add(*in_ej) + _partial_in_s(f, sym))


@lru_cache(maxsize=8)  # per (sum, K): reused for every entry j
def _partial_in_s(f: sympy.Expr, sym: FixedK) -> sympy.Expr:
    return sympy.Add(*(_term_partial_in_s(t, sym) for t in sympy.Add.make_args(f)))


def _term_partial_in_s(term: sympy.Expr, sym: FixedK) -> sympy.Expr:
    if sym.S not in term.free_symbols:
        return sympy.Integer(0)
    owners = {sym.classes[x] for x in term.free_symbols if x in sym.classes}
    if len(owners) != 1:
        return sympy.diff(term, sym.S)
    (i,) = owners
    own = (sym.z[i], sym.y[i], sym.e[i])
    generic = term.xreplace(dict(zip(own, _GENERIC, strict=True)))
    return _generic_partial_in_s(generic, sym.S).xreplace(dict(zip(_GENERIC, own, strict=True)))


@lru_cache(maxsize=256)
def _generic_partial_in_s(term: sympy.Expr, S: sympy.Symbol) -> sympy.Expr:
    return sympy.diff(term, S)


@lru_cache(maxsize=8)  # the definitions are built once per K (FixedK hashes by identity)
def softmax(sym: FixedK) -> sympy.ImmutableMatrix:
    # built unevaluated (the same objects evaluation gives, checked by the tests): at K = 4096
    # evaluating K products and logarithms took seconds
    inverse = sympy.Pow(sym.S, -1)
    return sympy.ImmutableMatrix([sympy.Mul(ei, inverse, evaluate=False) for ei in sym.e])


@lru_cache(maxsize=8)
def log_softmax(sym: FixedK) -> sympy.ImmutableMatrix:
    # unevaluated like softmax (the same objects, tested): evaluating K logarithms is slow
    return sympy.ImmutableMatrix([sympy.log(si, evaluate=False) for si in softmax(sym)])


@lru_cache(maxsize=8)
def cross_entropy(sym: FixedK) -> sympy.Expr:
    """L(z, y) = -sum_i y_i log s_i."""
    minus = sympy.S.NegativeOne
    return sympy.Add(
        *(
            sympy.Mul(minus, yi, sympy.log(si, evaluate=False), evaluate=False)
            for yi, si in zip(sym.y, softmax(sym), strict=True)
        ),
        evaluate=False,
    )


def jacobian(
    column: sympy.ImmutableMatrix, sym: FixedK, indices: Sequence[int] | None = None
) -> sympy.ImmutableMatrix:
    """d column_i / d z_j for i, j in indices (all of 0..K-1 by default)."""
    idx = range(sym.k) if indices is None else indices
    return sympy.ImmutableMatrix([[d_dz(column[i], j, sym) for j in idx] for i in idx])


def gradient(
    scalar: sympy.Expr, sym: FixedK, indices: Sequence[int] | None = None
) -> sympy.ImmutableMatrix:
    idx = range(sym.k) if indices is None else indices
    return sympy.ImmutableMatrix([d_dz(scalar, j, sym) for j in idx])
