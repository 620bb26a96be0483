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

from collections.abc import Sequence
from dataclasses import dataclass

import sympy


@dataclass(frozen=True)
class FixedK:
    """The symbols of a K-class problem."""

    k: int
    z: tuple[sympy.Symbol, ...]  # logits
    y: tuple[sympy.Symbol, ...]  # targets (soft labels)
    e: tuple[sympy.Symbol, ...]  # e_i stands for exp(z_i)
    S: sympy.Symbol  # stands for sum_j e_j

    def to_logits(self, expr: sympy.Basic) -> sympy.Basic:
        """Replace e_i and S by what they stand for, giving an expression in z only."""
        total = sympy.Add(*(sympy.exp(zi) for zi in self.z))
        return expr.xreplace(
            {self.S: total, **{ei: sympy.exp(zi) for ei, zi in zip(self.e, self.z, strict=True)}}
        )


def fixed_k(k: int) -> FixedK:
    def numbered(stem: str, **assumptions: bool) -> tuple[sympy.Symbol, ...]:
        return tuple(sympy.Symbol(f"{stem}_{{{i}}}", **assumptions) for i in range(1, k + 1))

    return FixedK(
        k=k,
        z=numbered("z", real=True),
        y=numbered("y", real=True),
        e=tuple(sympy.Symbol(f"e^{{z_{{{i}}}}}", positive=True) for i in range(1, k + 1)),
        S=sympy.Symbol("S", positive=True),
    )


def d_dz(f: sympy.Expr, j: int, sym: FixedK) -> sympy.Expr:
    """Total derivative of f(e, S) with respect to z_j (0-based j), by the chain rule."""
    ej = sym.e[j]
    return ej * (sympy.diff(f, ej) + sympy.diff(f, sym.S))


def softmax(sym: FixedK) -> sympy.ImmutableMatrix:
    return sympy.ImmutableMatrix([ei / sym.S for ei in sym.e])


def log_softmax(sym: FixedK) -> sympy.ImmutableMatrix:
    return sympy.ImmutableMatrix([sympy.log(ei / sym.S) for ei in sym.e])


def cross_entropy(sym: FixedK) -> sympy.Expr:
    """L(z, y) = -sum_i y_i log s_i."""
    return -sympy.Add(*(yi * sympy.log(si) for yi, si in zip(sym.y, softmax(sym), strict=True)))


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
