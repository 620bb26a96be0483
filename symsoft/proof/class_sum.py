"""ClassSum: a sum over the classes of one term, kept as one term until the normal form."""

from __future__ import annotations

from collections.abc import Iterable

import sympy


class ClassSum(sympy.Expr):
    """The sum over classes of one term: ``term`` with ``placeholders`` renamed to each
    tuple of ``classes`` in turn (e.g. (z_*, y_*, e_*) -> (z_n, y_n, e_n)).

    It stands for the explicit sum (``expanded()``), which at large K would cost one SymPy
    term per class; the normal form converts ``term`` once and renames its atoms per class
    instead, so every class still contributes its own exact term.
    """

    is_commutative = True

    def __new__(
        cls,
        term: sympy.Expr,
        placeholders: Iterable[sympy.Symbol],
        classes: Iterable[Iterable[sympy.Symbol]],
    ) -> ClassSum:
        # the rows as one flat Tuple: K Tuples of their own cost more than the rest together
        flat = sympy.Tuple(*(symbol for row in classes for symbol in row))
        return sympy.Expr.__new__(cls, term, sympy.Tuple(*placeholders), flat)

    @property
    def term(self) -> sympy.Expr:
        return self.args[0]

    @property
    def placeholders(self) -> tuple[sympy.Symbol, ...]:
        return tuple(self.args[1])

    @property
    def classes(self) -> tuple[tuple[sympy.Symbol, ...], ...]:
        width, flat = len(self.args[1]), self.args[2].args
        return tuple(flat[n : n + width] for n in range(0, len(flat), width))

    def expanded(self) -> sympy.Expr:
        return sympy.Add(
            *(
                self.term.xreplace(dict(zip(self.placeholders, row, strict=True)))
                for row in self.classes
            )
        )

    def _sympystr(self, printer: sympy.printing.str.StrPrinter) -> str:  # error messages
        return f"ClassSum({printer._print(self.term)}, {len(self.classes)} classes)"


def expand_class_sums(expr: sympy.Basic) -> sympy.Basic:
    if not expr.has(ClassSum):
        return expr
    return expr.replace(lambda e: isinstance(e, ClassSum), lambda e: e.expanded())
