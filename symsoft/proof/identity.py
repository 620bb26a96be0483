"""Identity (an equality that was proved) and prove_entries, which proves one or raises."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import sympy

from symsoft.errors import ProofError
from symsoft.proof.normal_form import Relation, is_zero, is_zero_difference


@dataclass(frozen=True)
class Identity:
    """An equality ``lhs == rhs`` that SymPy checked during generation.

    ``name`` is a stable identifier (also used as a LaTeX label); ``method`` says in a
    few words how the equality was checked; ``assumption`` is empty when none is needed.
    """

    name: str
    lhs: sympy.Basic
    rhs: sympy.Basic
    method: str
    assumption: str = ""


def prove_entries(
    name: str,
    lhs: sympy.Basic,
    rhs: sympy.Basic,
    method: str,
    *,
    assumption: str = "",
    entries: Iterable[tuple[int, ...]] | None = None,
    normal_form: Callable[[sympy.Expr], sympy.Expr] | None = None,
    relations: Iterable[Relation] = (),
    logs: Mapping[sympy.Basic, sympy.Expr] | None = None,
) -> Identity:
    """Check lhs == rhs (entry by entry for matrices) and return the Identity, or raise.

    normal_form, if given, rewrites lhs - rhs before the check; logs maps log(atom) to its
    value (log e_i = z_i) for the built-in expansion of logarithms (see _Normaliser).
    """
    lhs_m = sympy.ImmutableMatrix(lhs) if isinstance(lhs, sympy.MatrixBase) else None
    rhs_m = sympy.ImmutableMatrix(rhs) if isinstance(rhs, sympy.MatrixBase) else None
    if lhs_m is not None and rhs_m is not None:
        if lhs_m.shape != rhs_m.shape:
            raise ProofError(f"{name}: shapes differ, {lhs_m.shape} vs {rhs_m.shape}")
        cells = entries if entries is not None else _all_cells(lhs_m.shape)
        pairs = [(lhs_m[cell], rhs_m[cell], cell) for cell in cells]
    else:
        pairs = [(lhs, rhs, ())]
    relations = tuple(relations)
    for left, right, cell in pairs:
        if normal_form is not None:
            proved = is_zero(normal_form(left - right), relations, logs)
        else:
            proved = is_zero_difference(left, right, relations, logs)
        if not proved:
            where = f" at entry {tuple(c + 1 for c in cell)}" if cell else ""
            raise ProofError(f"could not prove {name}{where}: {_short(left)} != {_short(right)}")
    return Identity(name=name, lhs=lhs, rhs=rhs, method=method, assumption=assumption)


def _short(expr: sympy.Basic, limit: int = 500) -> str:
    """expr for an error message: a K-term sum at large K would fill the screen."""
    text = str(expr)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _all_cells(shape: tuple[int, int]) -> list[tuple[int, int]]:
    return [(i, j) for i in range(shape[0]) for j in range(shape[1])]
