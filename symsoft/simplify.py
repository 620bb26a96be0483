"""Closed forms and the stable kernel forms, each proved equal to what derive.py computed.

A proof here is exact: the difference of the two sides is brought to a normal form
(a Laurent polynomial in e_i = exp(z_i), S, y and the other atoms, or failing that one
fraction with an expanded numerator; logarithms are expanded with log(e_i) = z_i,
log(exp(-m)) = -m) and must be the number 0. Anything else raises ProofError.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterable, Mapping
from fractions import Fraction

import sympy

from symsoft import derive
from symsoft.bundle import CompensatedSum, Identity, KernelForms
from symsoft.derive import FixedK
from symsoft.errors import ProofError

# Up to this K every entry is proved. Beyond it the entries are permutations of each other
# (relabelling classes maps entry (i, j) to (p(i), p(j))), so a diagonal and an off-diagonal
# representative are proved, and general_k.py proves the forms for symbolic K.
ENTRYWISE_PROOF_K_MAX = 32


def proof_indices(k: int) -> tuple[int, ...]:
    if k <= ENTRYWISE_PROOF_K_MAX:
        return tuple(range(k))
    return tuple(sorted({0, 1, k // 2, k - 1}))


def _entries_method(k: int, what: str) -> str:
    if k <= ENTRYWISE_PROOF_K_MAX:
        return f"{what}, every entry"
    return f"{what}, entries {list(proof_indices(k))} (the rest by permutation symmetry)"


Relation = tuple[sympy.Symbol, sympy.Expr]
Monomial = tuple[tuple[int, int], ...]  # (atom number, exponent), sorted by atom number
Coefficient = int | Fraction
Laurent = dict[Monomial, Coefficient]


class _NotLaurent(Exception):
    """The expression has a denominator that is not a monomial (a sum, say)."""


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


def _expand_class_sums(expr: sympy.Basic) -> sympy.Basic:
    if not expr.has(ClassSum):
        return expr
    return expr.replace(lambda e: isinstance(e, ClassSum), lambda e: e.expanded())


class _Normaliser:
    """Exact normal form: Laurent polynomials with rational coefficients in atoms.

    Atoms are symbols and any other non-arithmetic subexpression (log S, z_i, ...), taken as
    independent variables: if the polynomial is 0 the expression is 0 for every value of them.
    Negative exponents are allowed only on single monomials (e_i, S, C: positive quantities
    here), so no gcd is ever computed; sums are merged term by term, which keeps a K-term sum
    at O(K) work where together() and expand() needed O(K^2) or worse. Logarithms of products
    of positive factors are expanded (log ab = log a + log b, log a^n = n log a), and `logs`
    replaces the logarithm of an atom (log e_i = z_i).

    A sum in a denominator or under a logarithm is written c g p, with c > 0 rational, g a
    monomial and p the primitive rest. If p is the value of a relation (S = sum_j e_j) it is
    replaced by its symbol (1/(C e_1 + ... + C e_K) = 1/(C S), log(...) = log C + log S); a
    p under a logarithm is otherwise an atom of its own, equal sums giving equal atoms. Any
    other sum in a denominator raises _NotLaurent (the caller falls back to together()).
    """

    def __init__(
        self,
        logs: Mapping[sympy.Basic, sympy.Expr] | None = None,
        relations: Iterable[Relation] = (),
    ) -> None:
        self.numbers: dict[Hashable, int] = {}
        self.exprs: list[Hashable] = []  # atom number -> the atom
        self.depends: dict[int, frozenset[int]] = {}  # atoms made from other atoms' sums
        self.logs = dict(logs or {})
        self.memo: dict[sympy.Basic, Laurent] = {}
        self.relations = tuple(relations)
        self._named: dict[frozenset[tuple[Monomial, Coefficient]], sympy.Symbol] | None = None

    def number(self, expr: Hashable) -> int:
        number = self.numbers.get(expr)
        if number is None:
            number = self.numbers[expr] = len(self.exprs)
            self.exprs.append(expr)
        return number

    def atom(self, expr: Hashable) -> Laurent:
        return {((self.number(expr), 1),): 1}

    def convert(self, expr: sympy.Basic) -> Laurent:
        found = self.memo.get(expr)
        if found is None:
            found = self.memo[expr] = self._convert(expr)
        return found

    def _convert(self, expr: sympy.Basic) -> Laurent:
        if expr.is_Rational:
            return {(): _number(int(expr.p), int(expr.q))} if expr != 0 else {}
        if expr.is_Add:
            total: Laurent = {}
            for term in expr.args:
                _accumulate(total, self.convert(term))
            return total
        if expr.is_Mul:
            product: Laurent = {(): 1}
            for factor in expr.args:
                product = _multiply(product, self.convert(factor))
            return product
        if expr.is_Pow and expr.exp.is_Integer:
            base = self.convert(expr.base)
            if expr.exp < 0 and len(base) > 1:
                base = self._named_sum(base)
            return _power(base, int(expr.exp))
        if isinstance(expr, sympy.log):
            return self.log(expr.args[0])
        if isinstance(expr, ClassSum):
            return self.class_sum(expr)
        return self.atom(expr)

    def log(self, arg: sympy.Basic) -> Laurent:
        if arg in self.logs:
            return self.convert(self.logs[arg])
        if arg.is_Mul and all(factor.is_positive for factor in arg.args):
            total: Laurent = {}
            for factor in arg.args:
                _accumulate(total, self.log(factor))
            return total
        if arg.is_Pow and arg.base.is_positive and arg.exp.is_Rational:
            scale = _number(int(arg.exp.p), int(arg.exp.q))
            return {m: c * scale for m, c in self.log(arg.base).items()}
        value = self._monomial_value(arg)
        if value is not None:  # S = e_1 at K = 1
            return self.log(value)
        if arg.is_Add or arg.is_Mul or isinstance(arg, ClassSum):
            found = self._log_of_sum(arg)
            if found is not None:
                return found
        value = sympy.log(arg)
        if not isinstance(value, sympy.log):  # SymPy evaluated it: log(exp(x)) = x for real x
            return self.convert(value)
        return self.atom(value)

    def _log_of_sum(self, arg: sympy.Basic) -> Laurent | None:
        """log(c g p) = log c + log g + log p, valid for c > 0 and g > 0 (any p); None if
        arg is not of that form."""
        try:
            poly = self.convert(arg)
        except _NotLaurent:
            return None
        if not poly:
            return None
        coefficient, content, rest = _split(poly)
        if coefficient < 0:
            return None
        if not all(_is_positive(self.exprs[a]) for a, _ in content):
            return None
        c = Fraction(coefficient)
        total: Laurent = dict(self.convert(sympy.log(sympy.Rational(c.numerator, c.denominator))))
        for a, e in content:
            _accumulate(total, self.log(self.exprs[a]), e)
        if rest == {(): 1}:
            return total
        symbol = self.named().get(_key(rest))
        if symbol is not None:
            _accumulate(total, self.log(symbol))
        else:
            _accumulate(total, self._sum_atom("log", rest))
        return total

    def _monomial_value(self, symbol: sympy.Basic) -> sympy.Expr | None:
        """The value of a relation for symbol, if that value is a single monomial."""
        for name, value in self.relations:
            if name == symbol and len(self.convert(value)) == 1:
                return value
        return None

    def _named_sum(self, poly: Laurent) -> Laurent:
        """A sum that is a relation's value times c g, as c g times the relation's symbol."""
        coefficient, content, rest = _split(poly)
        symbol = self.named().get(_key(rest))
        if symbol is None:
            raise _NotLaurent
        return _multiply({content: coefficient}, self.convert(symbol))

    def _sum_atom(self, kind: str, rest: Laurent) -> Laurent:
        key = (kind, _key(rest))
        number = self.number(key)
        self.depends[number] = frozenset(a for m in rest for a, _ in m)
        return {((number, 1),): 1}

    def named(self) -> dict[frozenset[tuple[Monomial, Coefficient]], sympy.Symbol]:
        """The primitive part of each relation's value (a sum) -> the relation's symbol."""
        if self._named is None:
            self._named = {}
            for symbol, value in self.relations:
                poly = self.convert(value)
                if len(poly) > 1:
                    self._named.setdefault(_key(_split(poly)[2]), symbol)
        return self._named

    def class_sum(self, expr: ClassSum) -> Laurent:
        """The term converted once, its placeholder atoms renamed for each class."""
        term = self.convert(expr.term)
        places = {self.number(p): n for n, p in enumerate(expr.placeholders)}
        used = {a for m in term for a, _ in m}
        for a in used:
            if a in self.depends and self.depends[a] & places.keys():
                raise _NotLaurent  # an atom made from a sum over the placeholders
            if a not in places and _mentions(self.exprs[a], expr.placeholders):
                raise _NotLaurent  # log(e_* + 1), say: cannot be renamed atom by atom
        renamed_places = [(a, n) for a, n in places.items() if a in used]
        total: Laurent = {}
        for row in expr.classes:
            rename = {a: self.number(row[n]) for a, n in renamed_places}
            for monomial, coefficient in term.items():
                renamed = tuple(sorted((rename.get(a, a), e) for a, e in monomial))
                value = total.get(renamed, 0) + coefficient
                if value:
                    total[renamed] = value
                else:
                    total.pop(renamed, None)
        return total

    def substitute(self, poly: Laurent, symbol: sympy.Basic, value: sympy.Expr) -> Laurent:
        """poly * symbol^n with symbol = value, n >= 0 the least power that clears symbol from
        the denominators (a nonzero factor, so zero-ness is unchanged)."""
        if symbol not in self.numbers:
            return poly
        number = self.numbers[symbol]
        lowest = min((e for m in poly for a, e in m if a == number), default=0)
        lift = max(0, -lowest)
        replacement = self.convert(value)
        powers: dict[int, Laurent] = {}
        result: Laurent = {}
        for monomial, coefficient in poly.items():
            exponent = lift + next((e for a, e in monomial if a == number), 0)
            rest = tuple((a, e) for a, e in monomial if a != number)
            if exponent not in powers:
                powers[exponent] = _power(replacement, exponent)
            _accumulate(result, _multiply({rest: coefficient}, powers[exponent]))
        return result


def _split(poly: Laurent) -> tuple[Coefficient, Monomial, Laurent]:
    """poly = c g p: g the monomial of the least exponents, p with leading coefficient 1."""
    lowest: dict[int, int] = {}
    present: dict[int, int] = {}
    for monomial in poly:
        for a, e in monomial:
            lowest[a] = min(lowest.get(a, e), e)
            present[a] = present.get(a, 0) + 1
    for a, count in present.items():
        if count < len(poly):  # exponent 0 where the atom is absent
            lowest[a] = min(lowest[a], 0)
    content = tuple(sorted((a, e) for a, e in lowest.items() if e))
    inverse = tuple((a, -e) for a, e in content)
    coefficient = poly[min(poly)]
    if coefficient == 1:
        rest = {_times(m, inverse): c for m, c in poly.items()} if inverse else dict(poly)
    else:
        scale = Fraction(1) / coefficient
        rest = {_times(m, inverse): _normal(c * scale) for m, c in poly.items()}
    return coefficient, content, rest


def _normal(value: Coefficient) -> Coefficient:
    if isinstance(value, Fraction) and value.denominator == 1:
        return int(value)
    return value


def _key(poly: Laurent) -> frozenset[tuple[Monomial, Coefficient]]:
    return frozenset(poly.items())


def _is_positive(atom: Hashable) -> bool:
    return isinstance(atom, sympy.Basic) and atom.is_positive is True


def _mentions(atom: Hashable, symbols: Iterable[sympy.Symbol]) -> bool:
    return isinstance(atom, sympy.Basic) and bool(atom.free_symbols & set(symbols))


def _number(p: int, q: int) -> Coefficient:
    """Integers stay ints: Fraction arithmetic is several times slower."""
    return p if q == 1 else Fraction(p, q)


def _accumulate(total: Laurent, terms: Laurent, scale: Coefficient = 1) -> None:
    for monomial, coefficient in terms.items():
        value = total.get(monomial, 0) + (coefficient if scale == 1 else coefficient * scale)
        if value:
            total[monomial] = value
        else:
            total.pop(monomial, None)


def _times(a: Monomial, b: Monomial) -> Monomial:
    if not a:
        return b
    if not b:
        return a
    merged = dict(a)
    for atom, exponent in b:
        merged[atom] = merged.get(atom, 0) + exponent
    return tuple(sorted((atom, e) for atom, e in merged.items() if e))


def _multiply(a: Laurent, b: Laurent) -> Laurent:
    result: Laurent = {}
    for ma, ca in a.items():
        for mb, cb in b.items():
            monomial = _times(ma, mb)
            value = result.get(monomial, 0) + ca * cb
            if value:
                result[monomial] = value
            else:
                result.pop(monomial, None)
    return result


def _power(base: Laurent, exponent: int) -> Laurent:
    if exponent < 0:
        if len(base) != 1:
            raise _NotLaurent  # 1/(a sum): leave it to together()
        ((monomial, coefficient),) = base.items()
        inverse = _normal(Fraction(coefficient) ** exponent)  # ints stay ints: faster
        return {tuple((a, e * exponent) for a, e in monomial): inverse}
    result: Laurent = {(): 1}
    for _ in range(exponent):
        result = _multiply(result, base)
    return result


def is_zero(
    expr: sympy.Expr,
    relations: Iterable[Relation] = (),
    logs: Mapping[sympy.Basic, sympy.Expr] | None = None,
) -> bool:
    """Whether expr is identically 0, given symbol = value relations (applied in order).

    Every denominator here is a product of positive quantities (e_i, S, C), so expr is zero
    exactly when its Laurent-polynomial normal form is (see _Normaliser); each relation is
    substituted only if still needed, which keeps products of K-term sums out of the work.
    An expression with a sum in a denominator falls back to a common-denominator numerator.
    """
    return is_zero_difference(expr, sympy.Integer(0), relations, logs)


def is_zero_difference(
    lhs: sympy.Basic,
    rhs: sympy.Basic,
    relations: Iterable[Relation] = (),
    logs: Mapping[sympy.Basic, sympy.Expr] | None = None,
) -> bool:
    """Whether lhs - rhs is identically 0 (see is_zero); the sides are normalised apart."""
    relations = tuple(relations)
    normaliser = _Normaliser(logs, relations)
    try:
        poly = dict(normaliser.convert(lhs))
        _accumulate(poly, normaliser.convert(rhs), -1)
        for symbol, value in relations:
            if not poly:
                return True
            poly = normaliser.substitute(poly, symbol, value)
        return not poly
    except _NotLaurent:
        return _is_zero_together(lhs - rhs, relations)


def _is_zero_together(expr: sympy.Expr, relations: Iterable[Relation]) -> bool:
    """The general path: the numerator of the common-denominator form must expand to 0."""
    numerator = sympy.expand(sympy.fraction(sympy.together(_expand_class_sums(expr)))[0])
    for symbol, value in relations:
        if numerator == 0:
            return True
        numerator = sympy.expand(numerator.xreplace({symbol: value}))
    return numerator == 0


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


def kernel_forms() -> KernelForms:
    """The stable per-element forms; see docs/architecture.md for how they are printed."""
    z_i, y_i, m, d_i, e_i, S, log_S, s_i, s_j, sum_y, rest, v_i, sv = sympy.symbols(
        "z_i y_i m d_i e_i S log_S s_i s_j sum_y rest v_i sv", real=True
    )
    delta_ij = sympy.Symbol("delta_ij", real=True)
    return KernelForms(
        z_i=z_i,
        y_i=y_i,
        m=m,
        d_i=d_i,
        e_i=e_i,
        S=S,
        log_S=log_S,
        s_i=s_i,
        s_j=s_j,
        delta_ij=delta_ij,
        sum_y=sum_y,
        rest=rest,
        shifted=z_i - m,
        exponential=sympy.exp(d_i),
        probability=e_i / S,
        log_normaliser=sympy.log(S),
        log_probability=d_i - log_S,
        jacobian=s_i * (delta_ij - s_j),
        # a masked class (z_i = -inf) with y_i = 0 must add 0, not 0 * inf = NaN
        loss_term=sympy.Piecewise((0, sympy.Eq(y_i, 0)), (y_i * (log_S - d_i), True)),
        gradient=s_i * sum_y - y_i,
        # log S + m - z_c rounded once: d_c = z_c - m would round first and double the error
        loss_index=CompensatedSum(log_S, m, -z_i),
        # s_c - 1 loses every digit as s_c -> 1; minus the other classes' share does not
        gradient_true_class=-rest / S,
        v_i=v_i,
        sv=sv,
        jvp_term=s_i * v_i,
        # J v = s * (v - <s, v>): O(K) per row instead of the K x K matrix
        jvp=s_i * (v_i - sv),
        vjp=s_i * (v_i - sv),
    )


# One class standing for any class: (z_o, y_o, e_o, v_o), renamed per class in a ClassSum.
_CLASS_O = (
    sympy.Symbol("z_o", real=True),
    sympy.Symbol("y_o", real=True),
    sympy.Symbol("e_o", positive=True),
    sympy.Symbol("v_o", real=True),
)


class _Instantiation:
    """The kernel forms for every component of a K-class problem, with row maximum M.

    exp(z_i - M) is written e_i * C with C = exp(-M) > 0 (the functional equation of exp),
    and the shifted normaliser is the symbol S_M with the relation S_M = C * S.
    """

    def __init__(self, forms: KernelForms, sym: FixedK) -> None:
        self.forms = forms
        self.sym = sym
        self.M = sympy.Symbol("M", real=True)
        self.C = sympy.Symbol("C", positive=True)
        self.S_M = sympy.Symbol("S_M", positive=True)
        self.relations: tuple[Relation, ...] = ((self.S_M, self.C * sym.S), _sum_relation(sym))
        self.v = tuple(sympy.Symbol(f"v_{{{i}}}", real=True) for i in range(1, sym.k + 1))
        # log e_i = z_i (also for the generic class o), log S_M = log(C S) = -M + log S
        self.logs: dict[sympy.Basic, sympy.Expr] = {
            **dict(zip(sym.e, sym.z, strict=True)),
            _CLASS_O[2]: _CLASS_O[0],
            self.S_M: -self.M + sympy.log(sym.S),
        }
        self._memo: dict[tuple[sympy.Basic, int], sympy.Expr] = {}
        self._class_o = _CLASS_O

    def at(self, expr: sympy.Expr, i: int) -> sympy.Expr:
        """expr for component i, with the kernel's own shifted, exponential and probability
        forms (s_i is what the kernel computed for component i)."""
        key = (expr, i)
        if key not in self._memo:
            self._memo[key] = self._at(expr, i)
        return self._memo[key]

    def _at(self, expr: sympy.Expr, i: int) -> sympy.Expr:
        # instantiated once for a generic class o, then relabelled to class i (renaming
        # symbols commutes with everything done here)
        generic = self._generic(expr)
        sym = self.sym
        own = (sym.z[i], sym.y[i], sym.e[i], self.v[i])
        return generic.xreplace(dict(zip(self._class_o, own, strict=True)))

    def _generic(self, expr: sympy.Expr) -> sympy.Expr:
        key = (expr, -1)
        if key in self._memo:
            return self._memo[key]
        f = self.forms
        z_o, y_o, e_o, v_o = self._class_o
        d = f.shifted.xreplace({f.z_i: z_o, f.m: self.M})
        e = self._exp_to_symbols(f.exponential.xreplace({f.d_i: d}), {z_o: e_o})
        plain = expr.replace(CompensatedSum, lambda *terms: sympy.Add(*terms))
        plain = plain.xreplace({f.s_i: f.probability})
        result = plain.xreplace(
            {
                f.e_i: e,
                f.d_i: d,
                f.z_i: z_o,
                f.y_i: y_o,
                f.v_i: v_o,
                f.m: self.M,
                f.S: self.S_M,
                f.log_S: sympy.log(self.S_M),
            }
        )
        self._memo[key] = result
        return result

    def classes(self, skip: Iterable[int] = ()) -> list[tuple[sympy.Symbol, ...]]:
        """Each class's (z, y, e, v), in the order of the placeholders z_o, y_o, e_o, v_o."""
        sym, skipped = self.sym, set(skip)
        return [(sym.z[i], sym.y[i], sym.e[i], self.v[i]) for i in range(sym.k) if i not in skipped]

    def over_classes(self, expr: sympy.Expr, skip: Iterable[int] = ()) -> ClassSum:
        """The sum over the classes (but skip) of expr instantiated for each: instantiated
        once for the generic class o, renamed per class by the normal form."""
        return ClassSum(self._generic(expr), self._class_o, self.classes(skip))

    def inner(self) -> sympy.Expr:
        """<s, v> as the kernel reduces it: the sum over classes of its summand form."""
        return self.over_classes(self.forms.jvp_term)

    def index_gradient(self, c: int, i: int) -> sympy.Expr:
        """Entry i of the integer-label gradient for label c, as the kernel computes it."""
        f, sym = self.forms, self.sym
        if i != c:
            return self.at(f.probability, i)
        others = self.over_classes(f.e_i, skip=(c,))
        # The other classes' share is C (S - e_c) by the definition of S; checking that
        # linear identity here keeps the products of K-term sums out of the proof below.
        collapsed = self.C * (sym.S - sym.e[c])
        if not is_zero_difference(others, collapsed, (_sum_relation(sym),)):
            raise ProofError(f"the kernel's sum over the classes other than {c + 1} is wrong")
        return self.at(f.gradient_true_class, c).xreplace({f.rest: collapsed})

    def _exp_to_symbols(
        self, expr: sympy.Expr, logits: Mapping[sympy.Symbol, sympy.Symbol]
    ) -> sympy.Expr:
        """exp(sum_k c_k z_k - c M) -> prod_k e_k^c_k * C^c (the functional equation of exp)."""
        base = {**logits, self.M: 1 / self.C}

        def power_product(arg: sympy.Expr) -> sympy.Expr:
            terms = arg.as_coefficients_dict()
            if not set(terms) <= set(base):
                raise ProofError(f"exponential of {arg} is not a shifted logit")
            return sympy.Mul(*(base[v] ** c for v, c in terms.items()))

        return expr.replace(sympy.exp, power_product)


def _sum_relation(sym: FixedK) -> Relation:
    """S is not just a positive number: it is the sum of the e_j."""
    return (sym.S, sympy.Add(*sym.e))


def _guard_is_harmless(forms: KernelForms) -> None:
    """The loss term's guard only avoids 0 * inf: both branches agree where y_i = 0."""
    guarded = forms.loss_term
    plain = forms.y_i * (forms.log_S - forms.d_i)
    if not isinstance(guarded, sympy.Piecewise):
        raise ProofError("loss term: expected a guarded (Piecewise) form")
    (zero_branch, condition), (value, _) = guarded.args
    if condition != sympy.Eq(forms.y_i, 0) or value != plain:
        raise ProofError("loss term: unexpected guard")
    if plain.subs(forms.y_i, 0) != zero_branch:
        raise ProofError("loss term: the guarded branch differs from the formula at y_i = 0")


def prove_all(sym: FixedK, forms: KernelForms) -> tuple[Identity, ...]:
    """The fixed-K identities, in the order the document presents them.

    Vectors and matrices are restricted to proof_indices(K): all of them up to
    ENTRYWISE_PROOF_K_MAX. Every proof is a Laurent-polynomial identity (see _Normaliser), so
    a representative entry costs O(K) at any K: the sum S stays a symbol, and S = sum_j e_j is
    substituted only into numerators where S appears linearly.
    """
    k = sym.k
    idx = proof_indices(k)
    s = derive.softmax(sym)
    s_idx = [s[i] for i in idx]
    y_idx = [sym.y[i] for i in idx]
    on_sum = (_sum_relation(sym),)

    def square(entry: Callable[[int, int], sympy.Expr]) -> sympy.ImmutableMatrix:
        return sympy.ImmutableMatrix([[entry(i, j) for j in idx] for i in idx])

    identities: list[Identity] = [
        prove_entries(
            "softmax-sums-to-one",
            sympy.Add(*s),
            sympy.Integer(1),
            "the sum of e_i / S over i, with S = sum_j e_j, cancels to 1",
            relations=on_sum,
        )
    ]
    jac = derive.jacobian(s, sym, idx)
    closed_jac = square(lambda i, j: s[i] * (int(i == j) - s[j]))
    identities.append(
        prove_entries(
            "jacobian-closed-form",
            jac,
            closed_jac,
            _entries_method(k, "the differentiated definition minus s_i(delta_ij - s_j) is 0"),
        )
    )
    # the terms j != i of a row as one term for a generic class o, renamed per class
    e_o = _CLASS_O[2]

    def row_sum(i: int) -> sympy.Expr:
        others = [(e,) for j, e in enumerate(sym.e) if j != i]
        return s[i] * (1 - s[i]) + ClassSum(s[i] * (0 - e_o / sym.S), (e_o,), others)

    row_sums = [row_sum(i) for i in idx]
    identities.append(
        prove_entries(
            "jacobian-rows-sum-to-zero",
            sympy.ImmutableMatrix(row_sums),
            sympy.zeros(len(idx), 1),
            _entries_method(k, "each row sum of s_i(delta_ij - s_j), with S = sum_j e_j, is 0"),
            relations=on_sum,
        )
    )
    identities.append(
        prove_entries(
            "log-softmax-jacobian-closed-form",
            derive.jacobian(derive.log_softmax(sym), sym, idx),
            square(lambda i, j: int(i == j) - s[j]),
            _entries_method(k, "the differentiated definition minus (delta_ij - s_j) is 0"),
        )
    )

    grad = derive.gradient(derive.cross_entropy(sym), sym, idx)
    sum_y = sympy.Add(*sym.y)
    closed_grad = sympy.ImmutableMatrix(
        [si * sum_y - yi for si, yi in zip(s_idx, y_idx, strict=True)]
    )
    identities.append(
        prove_entries(
            "cross-entropy-gradient-closed-form",
            grad,
            closed_grad,
            _entries_method(k, "the differentiated definition minus (s_i sum_j y_j - y_i) is 0"),
        )
    )
    # On the simplex the last label is 1 minus the others.
    simplex = (sym.y[-1], 1 - sympy.Add(*sym.y[:-1]))
    identities.append(
        prove_entries(
            "cross-entropy-gradient-simplex",
            grad,
            sympy.ImmutableMatrix([si - yi for si, yi in zip(s_idx, y_idx, strict=True)]),
            _entries_method(k, "with y_K = 1 - (y_1 + ... + y_{K-1}) the difference is 0"),
            assumption="sum_j y_j = 1",
            relations=(simplex, *on_sum),
        )
    )
    identities.append(_prove_shift_invariance(sym, idx))
    identities.extend(_prove_kernel_forms(sym, forms, closed_jac, closed_grad))
    identities.extend(_prove_products(sym, forms))
    return tuple(identities)


def _prove_shift_invariance(sym: FixedK, idx: tuple[int, ...]) -> Identity:
    """e^{z_i - c} / sum_j e^{z_j - c} = s_i. The shifted sum is C S by linearity, checked
    on its own; with it collapsed every entry is a monomial identity."""
    shift = sympy.Symbol("C", positive=True)  # C = exp(-c) for a shift z -> z - c
    shifted_sum = sympy.Add(*(ej * shift for ej in sym.e))
    if not is_zero_difference(shifted_sum, shift * sym.S, (_sum_relation(sym),)):
        raise ProofError("shift-invariance: the shifted sum is not C S")
    s = derive.softmax(sym)
    lhs = sympy.ImmutableMatrix([sym.e[i] * shift / shifted_sum for i in idx])
    identity = prove_entries(
        "shift-invariance",
        lhs.xreplace({shifted_sum: shift * sym.S}),
        sympy.ImmutableMatrix([s[i] for i in idx]),
        _entries_method(sym.k, "exp(z_i - c) = e^{-c} exp(z_i); the common factor cancels"),
        relations=(_sum_relation(sym),),  # at K = 1 the quotient is already 1 = e_1 / S
    )
    return dataclasses.replace(identity, lhs=lhs)


def _prove_kernel_forms(
    sym: FixedK,
    forms: KernelForms,
    closed_jac: sympy.ImmutableMatrix,
    closed_grad: sympy.ImmutableMatrix,
) -> list[Identity]:
    """The stable forms the kernels compute equal the definitions, for any row maximum M.

    The Jacobian and gradient kernels evaluate the closed forms on the computed
    probabilities, so with stable-softmax they are proved once their forms, given the
    probabilities, equal the closed forms proved above.
    """
    k = sym.k
    idx = proof_indices(k)
    inst = _Instantiation(forms, sym)
    _guard_is_harmless(forms)
    plain_term = forms.y_i * (forms.log_S - forms.d_i)
    plain_loss = inst.over_classes(plain_term)
    s = derive.softmax(sym)
    sum_y = sympy.Add(*sym.y)

    def on_probabilities(expr: sympy.Expr, i: int, j: int) -> sympy.Expr:
        return expr.xreplace(
            {
                forms.s_i: s[i],
                forms.s_j: s[j],
                forms.delta_ij: int(i == j),
                forms.y_i: sym.y[i],
                forms.sum_y: sum_y,
            }
        )

    shifted = "with e^{z_i - m} = e^{-m} e^{z_i}"
    given_s = "the kernel's form evaluated on the probabilities equals the closed form"
    one_hot = [{y: int(j == c) for j, y in enumerate(sym.y)} for c in idx]
    return [
        prove_entries(
            "stable-softmax",
            sympy.ImmutableMatrix([inst.at(forms.probability, i) for i in idx]),
            sympy.ImmutableMatrix([s[i] for i in idx]),
            _entries_method(k, f"{shifted} the factor e^{{-m}} cancels"),
            relations=inst.relations,
        ),
        prove_entries(
            "stable-log-softmax",
            sympy.ImmutableMatrix([inst.at(forms.log_probability, i) for i in idx]),
            sympy.ImmutableMatrix([derive.log_softmax(sym)[i] for i in idx]),
            _entries_method(k, "logarithms expanded, log e^{-m} = -m; the terms in m cancel"),
            logs=inst.logs,
            relations=inst.relations,
        ),
        prove_entries(
            "stable-cross-entropy",
            plain_loss,
            derive.cross_entropy(sym),
            "logarithms expanded; the terms in m cancel (the y_i = 0 guard changes nothing)",
            logs=inst.logs,
            relations=inst.relations,
        ),
        prove_entries(
            "kernel-jacobian",
            sympy.ImmutableMatrix(
                [[on_probabilities(forms.jacobian, i, j) for j in idx] for i in idx]
            ),
            closed_jac,
            _entries_method(k, given_s),
        ),
        prove_entries(
            "kernel-cross-entropy-gradient",
            sympy.ImmutableMatrix([on_probabilities(forms.gradient, i, i) for i in idx]),
            closed_grad,
            _entries_method(k, given_s),
        ),
        prove_entries(
            "kernel-cross-entropy-index",
            sympy.ImmutableMatrix([inst.at(forms.loss_index, c) for c in idx]),
            sympy.ImmutableMatrix([derive.cross_entropy(sym).xreplace(y) for y in one_hot]),
            _entries_method(k, "for y = e_c, log S - d_c equals the loss (logarithms expanded)"),
            logs=inst.logs,
            relations=inst.relations,
        ),
        prove_entries(
            "kernel-cross-entropy-grad-index",
            sympy.ImmutableMatrix([[inst.index_gradient(c, i) for i in idx] for c in idx]),
            sympy.ImmutableMatrix(
                [[closed_grad[n].xreplace(y) for n in range(len(idx))] for y in one_hot]
            ),
            _entries_method(
                k, "for y = e_c, entry c is minus the other classes' share; the rest s_i"
            ),
            relations=inst.relations,
        ),
    ]


def _prove_products(sym: FixedK, forms: KernelForms) -> list[Identity]:
    """J is symmetric, and the Jacobian-vector products the kernels compute are J v and J^T v.

    Each side is a row of K terms: the kernel's s_i (v_i - <s, v>) with <s, v> reduced over
    the kernel's own probabilities, against sum_j J_ij v_j (sum_i J_ij v_i) with J the
    differentiated definition, so a representative entry costs O(K), not the K^2 entries of J.
    The terms of a row other than its diagonal one are one derivative for a generic class
    (d s_i / d z_o, d s_o / d z_j) renamed per class (see ClassSum).
    """
    k = sym.k
    idx = proof_indices(k)
    inst = _Instantiation(forms, sym)
    s = derive.softmax(sym)
    v = inst.v
    _, _, e_o, v_o = inst._class_o
    inner = inst.inner()

    def row(i: int) -> sympy.Expr:  # sum_j J_ij v_j
        other = derive.d_dz(s[i], e_o, sym) * v_o
        return derive.d_dz(s[i], i, sym) * v[i] + ClassSum(other, inst._class_o, inst.classes((i,)))

    def column(j: int) -> sympy.Expr:  # sum_i J_ij v_i
        other = derive.d_dz(e_o / sym.S, j, sym) * v_o
        return derive.d_dz(s[j], j, sym) * v[j] + ClassSum(other, inst._class_o, inst.classes((j,)))

    def kernel(form: sympy.Expr, i: int) -> sympy.Expr:
        return inst.at(form, i).xreplace({forms.sv: inner})

    return [
        prove_entries(
            "jacobian-equals-transpose",
            sympy.ImmutableMatrix([[derive.d_dz(s[i], j, sym) for j in idx] for i in idx]),
            sympy.ImmutableMatrix([[derive.d_dz(s[j], i, sym) for j in idx] for i in idx]),
            _entries_method(k, "d s_i / d z_j minus d s_j / d z_i, both differentiated, is 0"),
        ),
        prove_entries(
            "kernel-softmax-jvp",
            sympy.ImmutableMatrix([kernel(forms.jvp, i) for i in idx]),
            sympy.ImmutableMatrix([row(i) for i in idx]),
            _entries_method(
                k, "s_i (v_i - sum_j s_j v_j) on the stable probabilities minus sum_j J_ij v_j"
            ),
            relations=inst.relations,
        ),
        prove_entries(
            "kernel-softmax-vjp",
            sympy.ImmutableMatrix([kernel(forms.vjp, j) for j in idx]),
            sympy.ImmutableMatrix([column(j) for j in idx]),
            _entries_method(
                k, "s_j (v_j - sum_i s_i v_i) on the stable probabilities minus sum_i J_ij v_i"
            ),
            relations=inst.relations,
        ),
    ]
