"""The general-K derivation: softmax, its Jacobian and the cross-entropy gradient for a
symbolic number of classes ``K``, as a sequence of checked steps.

With ``K`` a SymPy symbol the sums cannot be expanded, and ``simplify`` does not finish on
sums of Kronecker deltas, so each step is carried out by a few explicit rewriting rules and
then checked by reducing ``lhs - rhs`` to zero with ``cancel``. The rules, and why they are
sound:

* **Sifting** (the defining property of the Kronecker delta):
  ``Sum(g(v) * KroneckerDelta(v, m), (v, 1, K)) -> g(m)``. Exactly one term of the sum has
  ``v == m`` when ``1 <= m <= K``, and every other term is zero. It is applied only when
  ``m`` is one of the free indices ``i, j, c``, which the derivation assumes to lie in
  ``1..K`` (stated as the assumption of each step that relies on it). For step 1 this
  agrees with the ``Piecewise`` that ``Sum.doit()`` returns, which is cross-checked.
* **Linearity**: a sum of an ``Add`` is split into sums, and factors that do not contain the
  summation variable are moved outside (``exp(u + v)`` is split as ``exp(u) * exp(v)`` first,
  so that a constant part of an exponent can move out). A summand free of the variable
  summed over ``1..K`` gives ``K`` times the summand. Finite sums are linear, so this is
  always sound.
* **Renaming bound variables**: every innermost sum gets the same summation variable, so
  that ``Sum(exp(z_i), (i, 1, K))`` and ``Sum(exp(z_k), (k, 1, K))`` become the same object
  and ``cancel`` can treat it as one generator.
* **Logarithms**: ``log(a / b) = log(a) - log(b)`` and ``log(exp(x)) = x`` (``expand_log``
  with ``force=True``). Logs here only ever apply to softmax values, i.e. to
  ``exp(z_i) / Sum(exp(z_k))`` with real ``z``: both parts are positive, so the rule holds.

Notation: ``K`` positive integer; indices ``i, j, k`` (``k`` only as the bound variable of
the normaliser ``Sum(exp(z_k), (k, 1, K))``); ``z``, ``y`` real ``IndexedBase``; ``s`` an
opaque ``IndexedBase`` so that steps stated in terms of ``s`` print as ``s_i``; ``c`` the class
of a one-hot target ``y = e_c``; ``a`` the shift constant in ``s(z - a 1) = s(z)`` (named
``a`` so it cannot be confused with the class ``c``).

The definitions substituted before checking are ``s_x = exp(z_x) / Sum(exp(z_k), (k, 1, K))``
for every component of ``s`` (``IndexedBase`` or entry of the vector ``s``) and
``J[p, q] = Derivative(s_p, z_q)`` for the Jacobian. Matrix-valued steps are checked
entry-wise at a symbolic entry ``(i, j)``; SymPy numbers matrix entries from 0 but the entry
formulas of ``diag(s) - s s^T`` do not depend on where numbering starts, so we read them
1-based like the rest of the document.

Each step is checked twice: the right-hand side is compared with what SymPy computed from the
previous step (or the definition), and ``lhs - rhs`` is reduced to zero after substituting
the definitions. A failed check raises :class:`symsoft.errors.ProofError` naming the step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache

import sympy
from sympy import (
    Add,
    Derivative,
    Dummy,
    Function,
    ImmutableMatrix,
    IndexedBase,
    KroneckerDelta,
    MatAdd,
    MatrixSymbol,
    Mul,
    Piecewise,
    Sum,
    Symbol,
    cancel,
    exp,
    expand,
    expand_log,
    log,
    symbols,
    together,
)
from sympy.core.traversal import bottom_up
from sympy.matrices.expressions.diagonal import DiagMatrix
from sympy.matrices.expressions.matexpr import MatrixElement, MatrixExpr

from symsoft.derivation.bundle import Identity
from symsoft.errors import ProofError, SpecError

__all__ = [
    "S_VEC",
    "J",
    "K",
    "Rule",
    "a",
    "c",
    "check_equal",
    "check_fixed_k_agrees",
    "expand_definitions",
    "general_k_identities",
    "i",
    "j",
    "k",
    "linearity",
    "normalized_targets",
    "one_hot_targets",
    "reduce_expr",
    "s",
    "sift",
    "softmax_definition",
    "v",
    "y",
    "z",
]

# --- notation ------------------------------------------------------------------------------

K = Symbol("K", integer=True, positive=True)
i, j, k = symbols("i j k", integer=True)
c = Symbol("c", integer=True)  # class of a one-hot target y = e_c
a = Symbol("a", real=True)  # shift constant in s(z - a*1) = s(z)
z = IndexedBase("z", real=True)
y = IndexedBase("y", real=True)
v = IndexedBase("v", real=True)  # the vector of a Jacobian-vector product
s = IndexedBase("s")  # opaque s_i, so steps stated in terms of s display as s_i
S_VEC = MatrixSymbol("s", K, 1)  # the vector s, for the matrix form of the Jacobian
J = MatrixSymbol("J", K, K)  # the Jacobian, J_ij = ds_i/dz_j

# Free indices that the derivation assumes to lie in 1..K: sifting may collapse onto them.
_IN_RANGE = frozenset({i, j, c})
# Common bound variable for innermost sums, so equal sums become equal objects.
_U = Dummy("u", integer=True)

Rule = Callable[[sympy.Basic], sympy.Basic]


class Diag(DiagMatrix):
    """``DiagMatrix`` printed as ``diag(s)`` rather than ``DiagMatrix(s)``.

    (The printer orders matrix sums partly by class name: ``Diag`` sorts before ``MatMul``,
    so ``diag(s) - s s^T`` prints in the usual order.)
    """

    def _latex(self, printer: sympy.printing.latex.LatexPrinter) -> str:
        return rf"\operatorname{{diag}}\left({printer._print(self.args[0])}\right)"


def _normalizer() -> sympy.Expr:
    return Sum(exp(z[k]), (k, 1, K))


def softmax_definition(index: sympy.Expr) -> sympy.Expr:
    """``s_index = exp(z_index) / Sum(exp(z_k), (k, 1, K))``."""
    return exp(z[index]) / _normalizer()


# --- rewriting rules -----------------------------------------------------------------------


def _single_limit(e: sympy.Basic) -> tuple[sympy.Symbol, sympy.Expr, sympy.Expr] | None:
    if isinstance(e, Sum) and len(e.limits) == 1:
        v, lo, hi = e.limits[0]
        return v, lo, hi
    return None


def _linearity_node(e: sympy.Basic) -> sympy.Basic:
    lim = _single_limit(e)
    if lim is None:
        return e
    v, lo, hi = lim
    out = []
    for term in Add.make_args(expand(e.function)):
        inside: list[sympy.Expr] = []
        outside: list[sympy.Expr] = []
        for f in Mul.make_args(term):
            if isinstance(f, exp) and isinstance(f.args[0], Add):
                # exp(u + v) = exp(u) exp(v): lets the part without v leave the sum
                parts = Add.make_args(f.args[0])
                inside.append(exp(Add(*[p for p in parts if p.has(v)])))
                outside.append(exp(Add(*[p for p in parts if not p.has(v)])))
            elif f.has(v):
                inside.append(f)
            else:
                outside.append(f)
        body = Mul(*inside)
        out.append(
            Mul(*outside) * (Sum(body, (v, lo, hi)) if body.has(v) else body * (hi - lo + 1))
        )
    return Add(*out)


def _sift_node(
    e: sympy.Basic, upper: sympy.Expr = K, in_range: frozenset[sympy.Symbol] = _IN_RANGE
) -> sympy.Basic:
    lim = _single_limit(e)
    if lim is None:
        return e
    v, lo, hi = lim
    if lo != 1 or hi != upper:
        return e
    factors = Mul.make_args(e.function)
    for n, f in enumerate(factors):
        if isinstance(f, KroneckerDelta) and v in f.args:
            other = f.args[1] if f.args[0] == v else f.args[0]
            if other in in_range:
                rest = Mul(*factors[:n], *factors[n + 1 :])
                return rest.subs(v, other)
    return e


def _rename_node(e: sympy.Basic) -> sympy.Basic:
    lim = _single_limit(e)
    if lim is None:
        return e
    v, lo, hi = lim
    if v == _U or e.function.has(_U):
        return e  # not innermost: renaming could capture the inner variable
    return Sum(e.function.xreplace({v: _U}), (_U, lo, hi))


def linearity(expr: sympy.Basic) -> sympy.Basic:
    """Split sums over ``Add`` and move factors free of the summation variable out."""
    return bottom_up(expr, _linearity_node)


def sift(expr: sympy.Basic) -> sympy.Basic:
    """``Sum(g(v) * KroneckerDelta(v, m), (v, 1, K)) -> g(m)`` for ``m`` in ``i, j, c``."""
    return bottom_up(expr, _sift_node)


def _rename_bound(expr: sympy.Basic) -> sympy.Basic:
    return bottom_up(expr, _rename_node)


def expand_definitions(expr: sympy.Basic) -> sympy.Basic:
    """Replace ``J`` entries, vector-``s`` entries and ``s_x`` by their definitions."""
    expr = expr.replace(
        lambda e: isinstance(e, MatrixElement) and e.parent == J,
        lambda e: Derivative(s[e.i], z[e.j]),
    )
    expr = expr.replace(
        lambda e: isinstance(e, MatrixElement) and e.parent == S_VEC,
        lambda e: s[e.i],
    )
    return expr.replace(
        lambda e: isinstance(e, sympy.Indexed) and e.base == s,
        lambda e: softmax_definition(e.indices[0]),
    )


def _evaluate_derivatives(expr: sympy.Basic) -> sympy.Basic:
    # differentiate the expression itself; Derivative.doit would also doit() the sums
    return expr.replace(
        lambda e: isinstance(e, Derivative), lambda e: e.expr.diff(*e.variable_count)
    )


def normalized_targets(expr: sympy.Basic) -> sympy.Basic:
    """Assumption ``Sum(y_i, (i, 1, K)) = 1``: replace every such sum by 1."""
    return expr.replace(
        lambda e: (
            (lim := _single_limit(e)) is not None and lim[1:] == (1, K) and e.function == y[lim[0]]
        ),
        lambda e: sympy.S.One,
    )


def one_hot_targets(expr: sympy.Basic) -> sympy.Basic:
    """Assumption ``y = e_c``: ``y_x -> KroneckerDelta(x, c)`` with ``1 <= c <= K``."""
    return expr.replace(
        lambda e: isinstance(e, sympy.Indexed) and e.base == y,
        lambda e: KroneckerDelta(e.indices[0], c),
    )


def reduce_expr(expr: sympy.Basic, given: Iterable[Rule] = ()) -> sympy.Expr:
    """Substitute the definitions and apply the rules above until nothing changes."""
    given = tuple(given)
    if isinstance(expr, MatrixExpr):
        expr = expr[i, j]  # entry-wise at a symbolic entry
    expr = expand_log(expand_definitions(expr), force=True)  # logs of softmax values only
    expr = _evaluate_derivatives(expr)
    for _ in range(20):
        new = expr
        for rule in given:
            new = rule(new)
        new = _rename_bound(sift(linearity(new)))
        if new == expr:
            break
        expr = new
    return cancel(together(expand(expr)))


def check_equal(name: str, lhs: sympy.Basic, rhs: sympy.Basic, given: Iterable[Rule] = ()) -> None:
    """Raise ProofError unless ``lhs - rhs`` reduces to 0 (definitions substituted).

    ``given`` are rewriting rules that encode the step's assumption, e.g.
    :func:`normalized_targets` or :func:`one_hot_targets`.
    """
    if isinstance(lhs, MatrixExpr) != isinstance(rhs, MatrixExpr):
        raise ProofError(f"general-K step {name!r}: cannot compare a matrix with a scalar")
    try:
        residual = reduce_expr(lhs - rhs, given)
    except Exception as exc:  # a failed rewrite is a failed proof, not a crash
        raise ProofError(f"general-K step {name!r}: check failed with {exc!r}") from exc
    if residual != 0:
        raise ProofError(f"general-K step {name!r}: lhs - rhs reduces to {residual}, not 0")


def _step(
    name: str,
    lhs: sympy.Basic,
    rhs: sympy.Basic,
    derived: sympy.Basic,
    method: str,
    assumption: str = "",
    given: Iterable[Rule] = (),
    chain_rhs: sympy.Basic | None = None,
) -> Identity:
    """Check ``derived == rhs`` (the derivation) and ``lhs == rhs`` (the definitions).

    ``chain_rhs`` replaces ``rhs`` in the first check when the two are stated differently
    (the matrix form is derived entry-wise).
    """
    given = tuple(given)
    check_equal(name, derived, rhs if chain_rhs is None else chain_rhs, given)
    check_equal(name, lhs, rhs, given)
    return Identity(name, lhs, rhs, method, assumption)


def _use(name: str, expr: sympy.Basic, old: sympy.Basic, new: sympy.Basic) -> sympy.Basic:
    """Replace ``old`` (a result of an earlier step) by ``new``; it must occur."""
    if not expr.has(old):
        raise ProofError(f"general-K step {name!r}: expected {old} in {expr}")
    return expr.xreplace({old: new})


# --- the derivation ------------------------------------------------------------------------


@cache
def general_k_identities() -> tuple[Identity, ...]:
    """All steps of the general-K derivation, in document order, each checked."""
    sigma = _normalizer()
    s_i, s_j = s[i], s[j]
    delta = KroneckerDelta(i, j)
    steps: list[Identity] = []

    # 1. derivative of the normaliser: SymPy gives a sum over a Kronecker delta
    raw = sigma.diff(z[j])
    d_sigma = exp(z[j])
    sifted = sift(raw)
    # cross-check against Sum.doit(): its Piecewise branch for 1 <= j <= K
    # (the condition is a conjunction of linear inequalities, so holding at j = 1 and
    # j = K means it holds on the whole range)
    evaluated = raw.doit()
    branches = evaluated.args if isinstance(evaluated, Piecewise) else ((evaluated, True),)
    branch = next(
        (
            e
            for e, cond in branches
            if cond.subs(j, 1) == sympy.true and cond.subs(j, K) == sympy.true
        ),
        None,
    )
    if branch is None or cancel(branch - d_sigma) != 0:
        raise ProofError("general-K step 'general-k-sum-exp-derivative': Sum.doit() disagrees")
    steps.append(
        _step(
            "general-k-sum-exp-derivative",
            Derivative(sigma, z[j]),
            d_sigma,
            sifted,
            "SymPy differentiates the sum term-wise to a sum over a Kronecker delta; "
            "sifting collapses it (agrees with Sum.doit()'s Piecewise for 1 <= j <= K)",
            r"$1 \le j \le K$",
        )
    )

    # 2. quotient rule, with the derivative of the normaliser from step 1
    quotient = (delta * exp(z[i]) * sigma - Mul(exp(z[i]), exp(z[j]), evaluate=False)) / sigma**2
    derived = _use(
        "general-k-softmax-quotient-rule", softmax_definition(i).diff(z[j]), raw, d_sigma
    )
    steps.append(
        _step(
            "general-k-softmax-quotient-rule",
            Derivative(s_i, z[j]),
            quotient,
            derived,
            "SymPy differentiates the definition of s_i; the sum from step 1 is replaced "
            "by e^{z_j}; difference cancelled to 0",
            r"$1 \le j \le K$",
        )
    )

    # 3. closed form: compared with the quotient of step 2
    closed = s_i * (delta - s_j)
    steps.append(
        _step(
            "general-k-softmax-jacobian",
            Derivative(s_i, z[j]),
            closed,
            quotient,
            "definition of s substituted into the closed form; difference from the "
            "quotient of the previous step cancelled to 0",
            r"$1 \le j \le K$",
        )
    )

    # 4. matrix form: SymPy's (i, j) entry of diag(s) - s s^T against the closed form
    # unevaluated so that it prints in the usual order, diag(s) - s s^T
    matrix_form = MatAdd(Diag(S_VEC), -S_VEC * S_VEC.T, evaluate=False)
    entry = matrix_form[i, j].replace(
        lambda e: isinstance(e, MatrixElement) and e.parent == S_VEC, lambda e: s[e.i]
    )
    steps.append(
        _step(
            "general-k-jacobian-matrix",
            J,
            matrix_form,
            entry,
            "J_ij = ds_i/dz_j; SymPy's (i, j) entry of diag(s) - s s^T equals the closed form "
            "of the previous step",
            r"$1 \le i, j \le K$",
            chain_rhs=closed,
        )
    )

    # 5. softmax sums to one, then the rows of J sum to zero
    total = Sum(s[i], (i, 1, K))
    derived = linearity(expand_definitions(total))  # 1/Sigma moves out of the sum
    steps.append(
        _step(
            "general-k-softmax-sums-to-one",
            total,
            sympy.S.One,
            derived,
            "definition substituted; the constant 1/sum moves out of the sum by linearity; "
            "the sums agree after renaming the bound variable",
        )
    )
    row_sum = Sum(closed, (j, 1, K))
    sum_s = Sum(s_j, (j, 1, K))
    row_expanded = s_i - s_i * sum_s
    derived = sift(linearity(row_sum))  # stays in terms of s: no definition needed
    if derived != row_expanded:  # the rules give exactly the stated form
        raise ProofError(f"general-K step 'general-k-jacobian-row-sum-expanded': got {derived}")
    steps.append(
        _step(
            "general-k-jacobian-row-sum-expanded",
            row_sum,
            row_expanded,
            derived,
            "linearity, then sifting collapses sum_j s_i delta_ij to s_i",
            r"$1 \le i \le K$",
        )
    )
    sums_to_one = steps[-2]
    # sum_j s_j is sum_i s_i with the bound variable renamed
    derived = _use(
        "general-k-jacobian-row-sum-zero",
        row_expanded,
        sums_to_one.lhs.xreplace({i: j}),
        sums_to_one.rhs,
    )
    steps.append(
        _step(
            "general-k-jacobian-row-sum-zero",
            row_sum,
            sympy.S.Zero,
            derived,
            "previous step with sum_j s_j = 1 (softmax sums to one)",
            r"$1 \le i \le K$",
        )
    )

    # 5b. Jacobian-vector products J v and J^T v without the K x K matrix (softmax_jvp/vjp):
    # J v sums over j and keeps i, J^T v sums over i and keeps j
    for name, summed, kept in (("jvp", j, i), ("vjp", i, j)):
        product = Sum(Derivative(s_i, z[j]) * v[summed], (summed, 1, K))
        substituted = Sum(closed * v[summed], (summed, 1, K))
        derived = _use(f"general-k-softmax-{name}-sum", product, Derivative(s_i, z[j]), closed)
        scope = rf"$1 \le {kept} \le K$"
        steps.append(
            _step(
                f"general-k-softmax-{name}-sum",
                product,
                substituted,
                derived,
                "the closed form of step 3 substituted for ds_i/dz_j under the sum",
                scope,
            )
        )
        closed_product = s[kept] * (v[kept] - Sum(s[summed] * v[summed], (summed, 1, K)))
        steps.append(
            _step(
                f"general-k-softmax-{name}",
                product,
                closed_product,
                sift(linearity(substituted)),
                f"linearity, then sifting collapses sum_{summed} s_i delta_ij v_{summed} "
                f"to s_{kept} v_{kept}",
                scope,
            )
        )

    # 6. log-softmax and its gradient
    log_s = z[i] - log(sigma)
    derived = expand_log(log(softmax_definition(i)), force=True)
    steps.append(
        _step(
            "general-k-log-softmax",
            log(s_i),
            log_s,
            derived,
            "definition substituted; log(a/b) = log a - log b and log e^x = x, valid as "
            "e^{z_i} > 0 and the sum of exponentials > 0",
            r"$z$ real",
        )
    )
    log_grad = delta - s_j
    derived = _use("general-k-log-softmax-gradient", log_s.diff(z[j]), raw, d_sigma)
    steps.append(
        _step(
            "general-k-log-softmax-gradient",
            Derivative(log(s_i), z[j]),
            log_grad,
            derived,
            "SymPy differentiates the previous step; the sum from step 1 is replaced by "
            "e^{z_j}; also equals (1/s_i) ds_i/dz_j",
            r"$1 \le j \le K$",
        )
    )
    check_equal("general-k-log-softmax-gradient", closed / s_i, log_grad)  # chain rule

    # 7. cross-entropy gradient
    loss = -Sum(y[i] * log(s_i), (i, 1, K))
    ce_sum = -Sum(y[i] * (delta - s_j), (i, 1, K))
    derived = _use("general-k-cross-entropy-gradient-sum", loss, log(s_i), log_s)
    derived = _use("general-k-cross-entropy-gradient-sum", derived.diff(z[j]), raw, d_sigma)
    steps.append(
        _step(
            "general-k-cross-entropy-gradient-sum",
            Derivative(loss, z[j]),
            ce_sum,
            derived,
            "log s_i replaced by the log-softmax step, SymPy differentiates under the sum; "
            "the sum from step 1 is replaced by e^{z_j}",
            r"$1 \le j \le K$",
        )
    )
    ce = s_j * Sum(y[i], (i, 1, K)) - y[j]
    derived = sift(linearity(ce_sum))
    steps.append(
        _step(
            "general-k-cross-entropy-gradient",
            Derivative(loss, z[j]),
            ce,
            derived,
            "linearity, then sifting collapses sum_i y_i delta_ij to y_j",
            r"$1 \le j \le K$",
        )
    )
    ce_normalized = s_j - y[j]
    steps.append(
        _step(
            "general-k-cross-entropy-gradient-normalized",
            Derivative(loss, z[j]),
            ce_normalized,
            normalized_targets(ce),
            "previous step with sum_i y_i = 1 substituted",
            r"$\sum_{i=1}^{K} y_i = 1$, $1 \le j \le K$",
            (normalized_targets,),
        )
    )
    ce_one_hot = s_j - KroneckerDelta(j, c)
    steps.append(
        _step(
            "general-k-cross-entropy-gradient-one-hot",
            Derivative(loss, z[j]),
            ce_one_hot,
            sift(linearity(one_hot_targets(ce))),
            "y_i = delta_ic substituted in the un-normalised gradient; sifting gives "
            "sum_i delta_ic = 1",
            r"$y = e_c$ (one-hot, $y_i = \delta_{ic}$), $1 \le c, j \le K$",
            (one_hot_targets,),
        )
    )

    # 8. shift invariance
    shifted = exp(z[i] - a) / Sum(exp(z[k] - a), (k, 1, K))
    steps.append(
        _step(
            "general-k-shift-invariance",
            shifted,
            s_i,
            linearity(shifted),
            "e^{z_k - a} = e^{-a} e^{z_k}; the constant e^{-a} moves out of the sum by "
            "linearity and cancels",
        )
    )
    return tuple(steps)


def _expand_finite_sum(e: sympy.Basic) -> sympy.Basic:
    """``Sum(f, (v, lo, hi))`` with integer bounds as an explicit ``Add`` (like ``doit()``,
    which is much slower for 50 terms)."""
    lim = _single_limit(e)
    if lim is None or not (lim[1].is_Integer and lim[2].is_Integer):
        return e
    v, lo, hi = lim
    return Add(*[e.function.xreplace({v: m}) for m in range(int(lo), int(hi) + 1)])


def _step_by_name(name: str) -> Identity:
    return next(step for step in general_k_identities() if step.name == name)


# --- fixed-K instances ---------------------------------------------------------------------

_ALL_ENTRIES_UP_TO = 6  # larger K: check representative entries only, to stay fast


def _entries(n: int) -> list[tuple[int, int]]:
    if n <= _ALL_ENTRIES_UP_TO:
        return [(p, q) for p in range(1, n + 1) for q in range(1, n + 1)]
    m = n // 2
    # diagonal and off-diagonal, at both ends and in the middle
    return sorted({(1, 1), (1, 2), (m, m), (m, m + 1), (n, 1), (n, n)})


def _columns(n: int) -> set[int]:
    """The columns q of the entries compared (and of the gradient entries)."""
    if n <= _ALL_ENTRIES_UP_TO:
        return set(range(1, n + 1))
    return {q for _, q in _entries(n)} | {1, n}


def check_fixed_k_agrees(k: int) -> tuple[Identity, ...]:  # k shadows the symbol here
    """Check that the general closed forms at ``K = k`` equal derivatives computed from
    scratch for the explicit softmax of ``k`` plain symbols ``z_1..z_k`` (and ``y_1..y_k``).

    Returns three identities, ``fixed-k-<k>-softmax-jacobian`` (closed form of
    ``general-k-softmax-jacobian``), ``fixed-k-<k>-log-softmax-gradient`` and
    ``fixed-k-<k>-cross-entropy-gradient`` (the assumption-free form ``s_j sum(y) - y_j``).
    ``lhs`` is the general closed form with ``K = k`` and the sums expanded, ``rhs`` SymPy's
    derivative of the explicit fixed-``k`` function. For ``k <= 6`` all entries are checked
    and ``lhs``/``rhs`` are full matrices (Jacobians ``k x k``, gradient ``k x 1``); above
    that only representative entries are checked, listed in a column in the order given in
    ``method``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise SpecError(f"K must be a positive integer, got {k!r}")
    return _check_fixed_k_agrees(k)


@cache
def _check_fixed_k_agrees(n: int) -> tuple[Identity, ...]:
    zs = symbols(f"z_1:{n + 1}", real=True)
    ys = symbols(f"y_1:{n + 1}", real=True)
    plain = {z[m]: zs[m - 1] for m in range(1, n + 1)} | {y[m]: ys[m - 1] for m in range(1, n + 1)}
    total = Add(*[exp(v) for v in zs])
    # The normaliser as one opaque positive symbol on both sides: fewer generators for cancel,
    # equality for a generic sigma implies equality for sigma = the sum of exponentials, and
    # the general normaliser is expanded at K = n once (checked) instead of in every entry.
    sigma = Dummy("sigma", positive=True)
    if _expand_finite_sum(_normalizer().subs(K, n)).xreplace(plain) != total:
        raise ProofError(f"fixed-K {n}: the normaliser does not expand to the sum of exponentials")
    opaque = {_normalizer(): sigma}
    # SymPy differentiates the explicit softmax exp(z_p) / T(z_1, ..., z_n), then T and its
    # derivative become the sum of exponentials and SymPy's derivative of that sum. (With the
    # sum itself inside, SymPy's assumption queries on it take seconds per entry at K = 1000.)
    normaliser_fn = Function("T", positive=True)(*zs)
    d_total = {q: total.diff(zs[q - 1]) for q in range(1, n + 1) if q in _columns(n)}

    def instance(expr: sympy.Expr, p: int, q: int) -> sympy.Expr:
        # general closed form at K = n, entry (p, q): expand the sums, use plain symbols
        expr = expand_definitions(expr).xreplace(opaque).subs({K: n, i: p, j: q})
        return bottom_up(expr, _expand_finite_sum).xreplace(plain)

    def explicit(derivative: sympy.Expr, q: int) -> sympy.Expr:
        derivative = derivative.xreplace({Derivative(normaliser_fn, zs[q - 1]): d_total[q]})
        if derivative.has(Derivative):
            raise ProofError(f"fixed-K {n}: SymPy left a derivative in {derivative}")
        return derivative.xreplace({normaliser_fn: sigma})

    def softmax_n(p: int) -> sympy.Expr:
        return exp(zs[p - 1]) / normaliser_fn

    def log_softmax_derivative(p: int, q: int) -> sympy.Expr:
        return explicit(log(softmax_n(p)).diff(zs[q - 1]), q)

    full = n <= _ALL_ENTRIES_UP_TO

    def loss_derivative(q: int) -> sympy.Expr:
        # -sum_m y_m d log s_m / dz_q, term by term (differentiation is linear)
        if full:
            terms = [log_softmax_derivative(m, q) for m in range(1, n + 1)]
            return Add(*[-ys[m] * term for m, term in enumerate(terms)])
        # The terms m != q are one SymPy derivative relabelled: swapping z_m and z_o leaves
        # the normaliser unchanged, so it maps d log s_o/dz_q to d log s_m/dz_q. When that
        # derivative has no logit but z_q, every relabelled copy is the derivative itself.
        o = 1 if q != 1 else 2
        other = log_softmax_derivative(o, q)
        own = -ys[q - 1] * log_softmax_derivative(q, q)
        rest = [m for m in range(1, n + 1) if m != q]
        if not other.free_symbols & (set(zs) - {zs[q - 1]}):
            return own - other * Add(*[ys[m - 1] for m in rest])
        swapped = [other.xreplace({zs[o - 1]: zs[m - 1], zs[m - 1]: zs[o - 1]}) for m in rest]
        return own + Add(*[-ys[m - 1] * term for m, term in zip(rest, swapped, strict=True)])

    quantities = (
        (
            "softmax-jacobian",
            "general-k-softmax-jacobian",
            lambda p, q: explicit(softmax_n(p).diff(zs[q - 1]), q),
        ),
        ("log-softmax-gradient", "general-k-log-softmax-gradient", log_softmax_derivative),
        (
            "cross-entropy-gradient",
            "general-k-cross-entropy-gradient",
            lambda p, q: loss_derivative(q),
        ),
    )
    result = []
    for label, general_name, fixed in quantities:
        name = f"fixed-k-{n}-{label}"
        general = _step_by_name(general_name).rhs
        if label == "cross-entropy-gradient":
            pairs = [(1, q) for q in range(1, n + 1)] if full else [(1, 1), (1, n)]
        else:
            pairs = _entries(n)
        lhs, rhs = [], []
        for p, q in pairs:
            left, right = instance(general, p, q), fixed(p, q)
            # every denominator is a power of sigma or an exponential: expanding decides most
            # entries in O(K), where cancel's gcds took seconds at K = 1000
            difference = left - right
            if expand(difference) != 0 and cancel(difference) != 0:
                raise ProofError(f"step {name!r}: entry ({p}, {q}) disagrees with K = {n}")
            lhs.append(left.xreplace({sigma: total}))
            rhs.append(right.xreplace({sigma: total}))
        if label == "cross-entropy-gradient":
            shape = (len(pairs), 1)
            where = ", ".join(f"j={q}" for _, q in pairs)
        else:
            shape = (n, n) if full else (len(pairs), 1)
            where = ", ".join(f"({p},{q})" for p, q in pairs)
        scope = "all entries" if full else f"representative entries only, in order: {where}"
        relabelled = (
            "; the loss's terms for classes other than j are SymPy's derivative for one class "
            "relabelled (the normaliser is symmetric in the logits)"
            if label == "cross-entropy-gradient" and not full
            else ""
        )
        method = (
            f"general closed form ({general_name}) at K = {n} with sums expanded, against "
            f"SymPy's derivative of the explicit {n}-class softmax (of exp(z_p) / T(z), T then "
            f"the sum of exponentials); {scope}{relabelled}; differences expanded (or cancelled) "
            "to 0"
        )
        result.append(
            Identity(name, ImmutableMatrix(*shape, lhs), ImmutableMatrix(*shape, rhs), method)
        )
    return tuple(result)


# --- what the lesson adds: second-order facts, initialisation, a linear layer ---------------

W = IndexedBase("W", real=True)  # the weights of a linear layer z = W x + b (K x D)
x = IndexedBase("x", real=True)  # its D inputs
b = IndexedBase("b", real=True)  # its K biases
D = Symbol("D", integer=True, positive=True)  # the number of inputs
_n = Symbol("n", integer=True)  # summation index over the inputs


def sift_inputs(expr: sympy.Basic) -> sympy.Basic:
    """Sifting over the inputs of a linear layer, ``n = 1..D``, onto ``j`` (an input here)."""
    return bottom_up(expr, lambda e: _sift_node(e, D, frozenset({j})))


def equal_logits(expr: sympy.Basic) -> sympy.Basic:
    """Assumption ``z_1 = ... = z_K = a`` (a network at initialisation)."""
    return expr.replace(lambda e: isinstance(e, sympy.Indexed) and e.base == z, lambda e: a)


def _substituted(
    name: str,
    lhs: sympy.Basic,
    rhs: sympy.Basic,
    derived: sympy.Basic,
    method: str,
    assumption: str = "",
    given: Iterable[Rule] = (),
) -> Identity:
    """A step whose left side becomes ``derived`` by substituting earlier proved steps
    (``_use``); only ``derived == rhs`` is reduced, as the rules cannot unfold ``lhs``."""
    check_equal(name, derived, rhs, given)
    return Identity(name, lhs, rhs, method, assumption)


@cache
def lesson_identities() -> tuple[Identity, ...]:
    """Further steps the document teaches, each checked for symbolic K."""
    by_name = {step.name: step for step in general_k_identities()}
    s_i, s_j = s[i], s[j]
    delta = KroneckerDelta(i, j)
    closed = s_i * (delta - s_j)
    steps: list[Identity] = []

    # v^T J v: J v from the Jacobian-vector product step, then a weighted variance
    jvp = by_name["general-k-softmax-jvp"]
    mean = Sum(s_j * v[j], (j, 1, K))
    quadratic = Sum(v[i] * jvp.lhs, (i, 1, K))
    weighted = Sum(s_i * v[i] * (v[i] - mean), (i, 1, K))
    steps.append(
        _substituted(
            "general-k-jacobian-quadratic-form",
            quadratic,
            weighted,
            _use("general-k-jacobian-quadratic-form", quadratic, jvp.lhs, jvp.rhs),
            "the Jacobian-vector product step substituted under the sum over i",
        )
    )
    expanded = Sum(s_i * v[i] ** 2, (i, 1, K)) - mean**2
    variance = Sum(s_i * (v[i] - mean) ** 2, (i, 1, K))
    for name, rhs in (("expanded", expanded), ("variance", variance)):
        steps.append(
            _step(
                f"general-k-jacobian-quadratic-{name}",
                weighted,
                rhs,
                linearity(rhs),
                "definitions substituted; linearity; sum_i s_i = 1 after renaming the bound "
                "variable",
            )
        )

    # the covariance of the one-hot class vector
    covariance = Sum(s[k] * (KroneckerDelta(i, k) - s_i) * (KroneckerDelta(j, k) - s_j), (k, 1, K))
    steps.append(
        _step(
            "general-k-one-hot-covariance",
            covariance,
            closed,
            sift(linearity(expand(covariance))),
            "expanded; linearity; sifting collapses sum_k s_k delta_ik delta_jk to s_i delta_ij; "
            "sum_k s_k = 1",
            r"$1 \le i, j \le K$",
        )
    )

    # the Hessian of the loss: the derivative of the proved gradient s_j - y_j
    loss = -Sum(y[i] * log(s_i), (i, 1, K))
    gradient = by_name["general-k-cross-entropy-gradient-normalized"]
    hessian = Derivative(loss, z[j], z[i])  # SymPy merges d/dz_i (dL/dz_j) into one
    steps.append(
        _substituted(
            "general-k-cross-entropy-hessian",
            hessian,
            s_j * (delta - s_i),
            Derivative(gradient.rhs, z[i]),
            "d/dz_i of the gradient step (targets summing to one), differentiated by SymPy",
            r"$\sum_{i=1}^{K} y_i = 1$, $1 \le i, j \le K$",
            (normalized_targets,),
        )
    )

    # equal logits: the uniform distribution and the loss log K
    steps.append(
        _step(
            "general-k-equal-logits-softmax",
            s_i,
            1 / K,
            equal_logits(softmax_definition(i)),
            "z_k = a for every k: the summand of the normaliser is free of k, giving K e^a",
            r"$z_1 = \dots = z_K$",
            (equal_logits,),
        )
    )
    steps.append(
        _step(
            "general-k-equal-logits-loss",
            loss,
            log(K),
            loss.xreplace({s_i: 1 / K}),
            "previous step substituted; sum_i y_i = 1",
            r"$z_1 = \dots = z_K$, $\sum_{i=1}^{K} y_i = 1$",
            (equal_logits, normalized_targets),
        )
    )

    # a linear layer z = W x + b: the chain rule through z_k, with dL/dz_k = s_k - y_k
    def logit(q: sympy.Basic) -> sympy.Expr:
        return Sum(W[q, _n] * x[_n], (_n, 1, D)) + b[q]

    dL = gradient.rhs.xreplace({j: k})
    for name, parameter, rhs in (
        ("weights", W[i, j], (s_i - y[i]) * x[j]),
        ("bias", b[i], s_i - y[i]),
    ):
        chain_rule = Sum(Derivative(loss, z[k]) * Derivative(logit(k), parameter), (k, 1, K))
        derived = sift(linearity(sift_inputs(Sum(dL * logit(k).diff(parameter), (k, 1, K)))))
        steps.append(
            _substituted(
                f"general-k-linear-layer-{name}",
                chain_rule,
                rhs,
                derived,
                "the gradient step substituted for dL/dz_k; SymPy differentiates z_k = "
                "sum_n W_kn x_n + b_k; sifting collapses the deltas",
                r"$\sum_{i=1}^{K} y_i = 1$, $1 \le i \le K$, $1 \le j \le D$",
                (sift_inputs,),
            )
        )
    return tuple(steps)
