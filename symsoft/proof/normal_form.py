"""Exact zero tests: Laurent-polynomial normal forms over Q, with no gcd computed.

A difference of two expressions is brought to a Laurent polynomial in its atoms (symbols,
logarithms, other non-arithmetic subexpressions taken as independent variables), with
negative exponents only on monomials of positive quantities, or failing that to one fraction
with an expanded numerator; it is zero when that normal form is the number 0. Nothing here
knows what the atoms mean: the caller says which symbols are positive, which logarithms have
known values and which symbols stand for which sums (relations).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from fractions import Fraction

import sympy

from symsoft.proof.class_sum import ClassSum, expand_class_sums

Relation = tuple[sympy.Symbol, sympy.Expr]
Monomial = tuple[tuple[int, int], ...]  # (atom number, exponent), sorted by atom number
Coefficient = int | Fraction
Laurent = dict[Monomial, Coefficient]


class _NotLaurent(Exception):
    """The expression has a denominator that is not a monomial (a sum, say)."""


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
    numerator = sympy.expand(sympy.fraction(sympy.together(expand_class_sums(expr)))[0])
    for symbol, value in relations:
        if numerator == 0:
            return True
        numerator = sympy.expand(numerator.xreplace({symbol: value}))
    return numerator == 0
