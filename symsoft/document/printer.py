"""The LaTeX printer for the derivation document: SymPy's printer, with textbook term order.

SymPy stores sums and products in a canonical order, so ``s_i (delta_ij - s_j)`` comes back
as ``(-s_j + delta_ij) s_i``. Printing in the order a textbook uses is a printing concern
only, so it lives here: positive terms before negative ones, and in products the numbers,
then plain factors, then sums, then parenthesised sums of terms.
"""

from __future__ import annotations

import sympy
from sympy.matrices.expressions.special import OneMatrix, ZeroMatrix
from sympy.printing.latex import LatexPrinter
from sympy.simplify.radsimp import fraction


def _factor_rank(factor: sympy.Basic) -> int:
    if factor.is_Number:
        return 0
    if isinstance(factor, sympy.log):
        return 5  # (1 - y) log s, as a textbook writes it; y_i log s_i keeps its order
    if isinstance(factor, sympy.Add):
        return 4
    if factor.has(sympy.Sum):
        return 3  # last (or before a bracket) so that it needs no brackets of its own
    if isinstance(factor, sympy.Derivative):
        return 2  # y_i d(log s_i)/dz_j, not d(log s_i)/dz_j y_i
    return 1


class TextbookLatexPrinter(LatexPrinter):
    """LaTeX as a textbook writes it: ``s_{i} \\left(\\delta_{ij} - s_{j}\\right)``."""

    def __init__(self) -> None:
        super().__init__({"order": "none", "mul_symbol": None, "mat_delim": "("})

    def _print_Add(self, expr: sympy.Add, order: str | None = None) -> str:
        terms = list(expr.args)
        ordered = [t for t in terms if not t.could_extract_minus_sign()]
        ordered += [t for t in terms if t.could_extract_minus_sign()]
        tex = ""
        for n, term in enumerate(ordered):
            if n and term.could_extract_minus_sign():
                tex += " - "
                term = -term
            elif n:
                tex += " + "
            term_tex = self._print(term)
            tex += rf"\left({term_tex}\right)" if self._needs_add_brackets(term) else term_tex
        return tex

    def _product(self, factors: list[sympy.Basic], keep_order: bool = False) -> str:
        if len(factors) == 1:
            return self._print(factors[0])
        if not keep_order:
            factors = sorted(factors, key=_factor_rank)  # stable: keeps the order within a rank
        parts = []
        for n, factor in enumerate(factors):
            tex = self._print(factor)
            if self._needs_mul_brackets(factor, first=n == 0, last=n == len(factors) - 1):
                tex = rf"\left({tex}\right)"
            parts.append(tex)
        return " ".join(parts)

    def _print_Mul(self, expr: sympy.Expr) -> str:
        # a product built unevaluated keeps the order it was written in
        keep = isinstance(expr, sympy.Mul) and expr.args != sympy.Mul(*expr.args).args
        if keep and expr.args[0] is sympy.S.NegativeOne:
            rest = list(expr.args[1:])
            if len(rest) == 1 and isinstance(rest[0], sympy.Add):  # -(a + b), not -a + b
                return rf"- \left({self._print(rest[0])}\right)"
            return "- " + self._product(rest, keep_order=True)
        if expr.could_extract_minus_sign():
            return "- " + self._print(-expr)
        numerator, denominator = fraction(expr, exact=True)
        if denominator == 1:
            return self._product(list(sympy.Mul.make_args(expr)), keep_order=keep)
        top = self._product(list(sympy.Mul.make_args(numerator)))
        bottom = self._product(list(sympy.Mul.make_args(denominator)))
        return rf"\frac{{{top}}}{{{bottom}}}"

    def _print_Indexed(self, expr: sympy.Indexed) -> str:
        indices = "".join(self._print(index) for index in expr.indices)
        base = self._print(expr.base)
        if "_" in base:  # a subscripted name, J_{log}: its entries as (J_{log})_{ij}
            base = rf"\left({base}\right)"
        return f"{base}_{{{indices}}}"

    def _print_ExpBase(self, expr: sympy.Expr, exp: str | None = None) -> str:
        # e^{z_i / T}: a fraction in an exponent is written inline, as textbooks do
        numerator, denominator = fraction(expr.args[0], exact=True)
        if denominator == 1:
            return super()._print_ExpBase(expr, exp)
        tex = rf"e^{{{self._print(numerator)} / {self._print(denominator)}}}"
        return tex if exp is None else rf"\left({tex}\right)^{{{exp}}}"

    def _print_KroneckerDelta(self, expr: sympy.KroneckerDelta, exp: str | None = None) -> str:
        indices = "".join(self._print(a) for a in expr.args)
        tex = rf"\delta_{{{indices}}}"
        return tex if exp is None else rf"\left({tex}\right)^{{{exp}}}"

    def _print_log(self, expr: sympy.log, exp: str | None = None) -> str:
        (arg,) = expr.args
        inner = self._print(arg)
        if not isinstance(arg, sympy.Symbol | sympy.Indexed):
            inner = rf"\left({inner}\right)"
        tex = rf"\log {inner}"
        return tex if exp is None else rf"\left({tex}\right)^{{{exp}}}"

    def _print_Derivative(self, expr: sympy.Derivative) -> str:
        if len(expr.variable_count) > 1:  # d^2 L / dz_i dz_j: the last variable first
            order = sum(count for _, count in expr.variable_count)
            below = " ".join(
                rf"\partial {self._print(v)}" + ("" if n == 1 else f"^{{{n}}}")
                for v, n in reversed(expr.variable_count)
            )
            return rf"\frac{{\partial^{{{order}}} {self._print(expr.expr)}}}{{{below}}}"
        ((variable, count),) = expr.variable_count
        inner = expr.expr
        simple = isinstance(inner, sympy.Symbol | sympy.Indexed) or (
            isinstance(inner, sympy.log | sympy.exp)
            and isinstance(inner.args[0], sympy.Symbol | sympy.Indexed)
        )
        order = "" if count == 1 else f"^{{{count}}}"
        below = rf"\partial {self._print(variable)}{order}"
        if simple:
            return rf"\frac{{\partial{order} {self._print(inner)}}}{{{below}}}"
        if isinstance(inner, sympy.Sum):
            return rf"\frac{{\partial{order}}}{{{below}}} {self._print(inner)}"
        return rf"\frac{{\partial{order}}}{{{below}}} \left({self._print(inner)}\right)"

    def _print_OneMatrix(self, expr: OneMatrix) -> str:
        return r"\mathbf{1}"

    def _print_ZeroMatrix(self, expr: ZeroMatrix) -> str:
        return r"\mathbf{0}"

    def _print_Identity(self, expr: sympy.Identity) -> str:
        return "I"  # the identity matrix as a textbook writes it, not SymPy's blackboard I


def tex(expr: sympy.Basic) -> str:
    """The document's LaTeX for expr."""
    return TextbookLatexPrinter().doprint(expr)
