"""What the document's section builders share: how a displayed equation records its proofs
(the fixed-K chains of checks.py, the symbolic-K steps of the derivation, the Bundle's own
identities), and the tables and matrices of numbers that shorten at large K."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sympy

from symsoft.derivation import general_k as gk
from symsoft.derivation.bundle import Bundle, Identity
from symsoft.document.checks import Check
from symsoft.document.view import Builder, Math, Proof, Text, chain, number, side_by_side
from symsoft.errors import ProofError

# Up to this K a matrix is written out in full; above it, its corners and ellipses.
EXPLICIT_MATRIX_K_MAX = 6
# Up to this K a table lists every class; above it the first rows, an ellipsis and the last.
TABLE_ROWS_K_MAX = 8
HEAD_ROWS = 3


def scope(b: Builder, check: Check) -> Text:
    if check.total == 1:
        return ()  # a single equation, nothing to count
    if check.checked == check.total:
        return b.text("all_entries", count=Math(str(check.total)))
    return b.text("some_entries", count=Math(str(check.checked)), total=Math(str(check.total)))


def general(bundle: Bundle, name: str) -> Identity:
    identities = (
        *bundle.general_identities,
        *gk.lesson_identities(),
        *bundle.family_identities,
        *bundle.option_identities,
    )
    for identity in identities:
        if identity.name == name:
            return identity
    raise ProofError(f"the document presents {name!r}, which the derivation does not contain")


def symbolic(b: Builder, bundle: Bundle, *names: str) -> list[Proof]:
    """Proofs for symbolic K: the general_k steps, looked up so that a missing one fails."""
    return [Proof(general(bundle, name).name, b.text("symbolic")) for name in names]


def fixed(b: Builder, bundle: Bundle, *names: str) -> list[Proof]:
    """Proofs at the given K from the Bundle's own identities (the members' closed forms
    differentiated from their definitions), looked up so that a missing one fails."""
    found = {identity.name: identity for identity in bundle.identities}
    missing = [name for name in names if name not in found]
    if missing:
        raise ProofError(f"the document presents {missing[0]!r}, which the Bundle did not prove")
    return [Proof(name, scope(b, identity_scope(found[name], bundle.k))) for name in names]


def proved(
    b: Builder, key: str, *checks: Check, symbolic: Sequence[Proof] = (), body: str = ""
) -> None:
    body = body or side_by_side(*(chain(check.steps) for check in checks))
    proofs = [Proof(check.name, scope(b, check)) for check in checks]
    b.equation(key, body, proofs=[*proofs, *symbolic])


def shown_rows(k: int) -> list[int | None]:
    """The 0-based classes a table lists (None: an ellipsis row)."""
    if k <= TABLE_ROWS_K_MAX:
        return list(range(k))
    return [*range(HEAD_ROWS), None, k - 1]


def table_rows(
    k: int, row: Callable[[int], tuple[Text, ...]], columns: int
) -> tuple[tuple[Text, ...], ...]:
    """The table's rows for the classes shown, with a row of dots for those left out."""
    dots = (Math(r"\vdots"),)
    return tuple(tuple((dots,) * columns) if n is None else row(n) for n in shown_rows(k))


def matrix_tex(rows: Sequence[Sequence[str]]) -> str:
    body = r"\\".join(" & ".join(row) for row in rows)
    return rf"\left(\begin{{matrix}}{body}\end{{matrix}}\right)"


def numeric_matrix(k: int, value: Callable[[int, int], float]) -> str:
    """The K x K matrix of numbers value(p, q) (0-based), in full up to
    EXPLICIT_MATRIX_K_MAX, else rows and columns 1, 2 and K with dots between."""
    if k <= EXPLICIT_MATRIX_K_MAX:
        return matrix_tex([[number(value(p, q)) for q in range(k)] for p in range(k)])
    layout = [0, 1, None, k - 1]
    rows = []
    for p in layout:
        row = []
        for q in layout:
            if p is None and q is None:
                row.append(r"\ddots")
            elif p is None:
                row.append(r"\vdots")
            elif q is None:
                row.append(r"\cdots")
            else:
                row.append(number(value(p, q)))
        rows.append(row)
    return matrix_tex(rows)


def identity_scope(identity: Identity, k: int) -> Check:
    """Entries a Bundle identity was proved at: its matrices hold the entries checked."""
    if not isinstance(identity.lhs, sympy.MatrixBase):
        return Check(identity.name, (), 1, 1)
    rows, cols = identity.lhs.shape
    if cols == 1:
        return Check(identity.name, (), rows, k)
    return Check(identity.name, (), rows * cols, k * k)
