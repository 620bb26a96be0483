"""Bundle -> Document: the derivation document as flat data, one view for every output format.

The LaTeX and Markdown emitters only lay this out. Maths is printed here by
symsoft.document.printer from SymPy expressions; every displayed equality is either a checked
Bundle identity (symbolic K) or a chain proved here by symsoft.document.checks (fixed K), so a
wrong formula raises ProofError before any text exists. Prose comes from symsoft.document.text,
numbers from evaluation (mpmath, NumPy), never from typing them in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy
import sympy
from sympy import Derivative, KroneckerDelta, Sum, exp, log

from symsoft.derivation import general_k as gk
from symsoft.derivation import reference
from symsoft.derivation.bundle import Bundle, CompensatedSum, Identity
from symsoft.document.checks import (
    ENTRYWISE_K_MAX,
    Check,
    FixedKChecker,
    Jij,
    L,
    S,
    m,
    normaliser,
)
from symsoft.document.printer import tex
from symsoft.document.text import TEXT
from symsoft.document.view import (
    Builder,
    Code,
    Document,
    Equation,
    Math,
    Proof,
    Ref,
    Run,
    Table,
    Text,
    chain,
    eq,
    fixed,
    gt,
    index_range,
    logit,
    num,
    number,
    parenthesised,
    percent,
    printed,
    side_by_side,
)
from symsoft.errors import ProofError
from symsoft.family.members import MEMBERS, c_name

# Up to this K the Jacobian is written out in full; above it, its corners and ellipses.
EXPLICIT_MATRIX_K_MAX = 6
# Up to this K the worked example's logits and class names are listed in the prose too.
INLINE_EXAMPLE_K_MAX = 6
SENSITIVITY_BUMP = 5.0  # added to the largest logit in the sensitivity illustration

i, j, c, a = gk.i, gk.j, gk.c, gk.a
k_ = gk.k  # the summation index k; plain k is the number of classes
z, y, s = gk.z, gk.y, gk.s


# --- the document --------------------------------------------------------------------------


def build_documents(bundle: Bundle, langs: Iterable[str]) -> dict[str, Document]:
    """The derivation document for bundle in each language, its maths checked once for all."""
    checker = FixedKChecker(bundle.k)
    return {lang: _build_document(bundle, lang, checker) for lang in langs}


def build_document(bundle: Bundle, lang: str | None = None) -> Document:
    """The derivation document for bundle, in bundle.lang unless lang is given."""
    lang = lang or bundle.lang
    return build_documents(bundle, [lang])[lang]


def _build_document(bundle: Bundle, lang: str, checker: FixedKChecker) -> Document:
    k = bundle.k
    K = gk.K
    fields: dict[str, Run | Text] = {
        "K": printed(K),
        "k": Math(str(k)),
        "K_value": eq(K, sympy.Integer(k)),
        "version": bundle.version,
        "i": printed(i),
        "j": printed(j),
        "c": printed(c),
        "a": printed(a),
        "m": printed(m),
        "s": printed(gk.S_VEC),
        "z": printed(gk.z),
        "y": printed(gk.y),
        "S": printed(S),
        "J": printed(gk.J),
        "s_i": printed(s[i]),
        "z_seq": Math(rf"{tex(z[1])}, \ldots, {tex(z[K])}"),
        "S_pos": gt(S, sympy.Integer(0)),
        "sum_y_is_1": eq(Sum(y[i], (i, 1, K)), sympy.Integer(1)),
        "y_one_hot": eq(y[i], KroneckerDelta(i, c)),
    }
    b = Builder(lang, fields)
    b.para("intro")
    if k == 1:
        b.para("intro_k1")
    _softmax_section(b, bundle, checker)
    _example_section(b, bundle)
    _jacobian_section(b, checker)
    _cross_entropy_section(b, bundle, checker)
    _general_section(b, bundle)
    _stability_section(b, bundle, checker)
    _code_section(b, bundle)
    _checks_section(b)
    return b.finish(b.text("title"), b.text("author"), k)


def _scope(b: Builder, check: Check) -> Text:
    if check.total == 1:
        return ()  # a single equation, nothing to count
    if check.checked == check.total:
        return b.text("all_entries", count=Math(str(check.total)))
    return b.text("some_entries", count=Math(str(check.checked)), total=Math(str(check.total)))


def _proved(b: Builder, key: str, *checks: Check) -> None:
    body = side_by_side(*(chain(check.steps) for check in checks))
    b.equation(key, body, proofs=[Proof(check.name, _scope(b, check)) for check in checks])


def _softmax_section(b: Builder, bundle: Bundle, checker: FixedKChecker) -> None:
    k, w = bundle.k, bundle.worked
    b.section("softmax", "sec_softmax")
    b.para("softmax_def")
    b.equation(
        "softmax-definition",
        side_by_side(chain([s[i], exp(z[i]) / S]), chain([S, normaliser(k)])),
        kind="definition",
    )
    b.para("softmax_def_after", i_range=Math(index_range(i, k)))
    sums = checker.chain("softmax-sums-to-one", [Sum(s[i], (i, 1, k)), sympy.Integer(1)])
    b.para("prob", lead="prob_lead", exp_pos=gt(exp(z[i]), sympy.Integer(0)))
    _proved(b, "sums-to-one", sums)
    if k == 1:
        b.para("prob_after_k1", s_1_value=eq(s[1], sympy.Integer(1)))
    else:
        b.para("prob_after")
    b.para("diff", lead="diff_lead")
    if k == 1:
        return
    odds = checker.chain("softmax-odds", [s[i] / s[j], exp(z[i] - z[j])], [i, j])
    b.para("sens", lead="sens_lead")
    _proved(b, "odds", odds)
    if k == 2:  # two classes: the softmax is the logistic sigmoid of the difference
        sigmoid = checker.chain("softmax-sigmoid", [s[1], 1 / (1 + exp(-(z[1] - z[2])))])
        b.para("sens_sigmoid")
        _proved(b, "sigmoid", sigmoid)
    bumped = list(w.logits)
    bumped[w.winner] += SENSITIVITY_BUMP
    b.para(
        "sens_after",
        e_value=Math(rf"e \approx {number(math.e)}"),
        winner=w.labels[w.winner],
        bump=Math(logit(SENSITIVITY_BUMP)),
        z_w=Math(logit(w.logits[w.winner])),
        z_w_bumped=Math(logit(bumped[w.winner])),
        p_w=num(w.probabilities[w.winner]),
        p_w_bumped=num(float(reference.softmax(bumped)[w.winner])),
    )


def _joined_labels(b: Builder, labels: Sequence[str]) -> Text:
    if len(labels) == 1:
        return (labels[0],)
    words = TEXT[b.lang]
    return (words["list_sep"].join(labels[:-1]), words["and"], labels[-1])


def _example_section(b: Builder, bundle: Bundle) -> None:
    k, w = bundle.k, bundle.worked
    b.section("example", "sec_example")
    if k <= INLINE_EXAMPLE_K_MAX:
        z_value = Math(f"{tex(gk.z)} = {parenthesised([logit(v) for v in w.logits])}")
        b.para("example_small", labels=_joined_labels(b, w.labels), z_value=z_value)
    else:
        b.para("example_large")
    b.para("example_steps", S_approx=Math(rf"{tex(S)} \approx {number(w.total)}"))
    rows = tuple(
        (
            (label,),
            (Math(logit(zv)),),
            (num(ev),),
            (num(p),),
            (Math(fixed(100 * p, 1)),),
        )
        for label, zv, ev, p in zip(
            w.labels, w.logits, w.exponentials, w.probabilities, strict=True
        )
    )
    b.add(
        Table(
            "lrrrr",
            (
                b.text("col_class"),
                (printed(z[i]),),
                (printed(exp(z[i])),),
                (printed(s[i]),),
                b.text("col_percent"),
            ),
            rows,
            total=(
                b.text("row_sum"),
                (),
                (num(w.total),),
                (Math(fixed(math.fsum(w.probabilities))),),
                (Math(fixed(100 * math.fsum(w.probabilities), 1)),),
            ),
        )
    )
    p_w = w.probabilities[w.winner]
    b.para(
        "example_winner",
        winner=w.labels[w.winner],
        p_w=num(p_w),
        pct_w=percent(p_w),
    )


def _jacobian_matrix(checker: FixedKChecker) -> tuple[Check, list[sympy.Basic]]:
    """J = diag(s) - s s^T = the explicit matrix, proved at the entries that are shown."""
    k = checker.k
    entry = s[i] * (KroneckerDelta(i, j) - s[j])
    difference = sympy.MatAdd(gk.Diag(gk.S_VEC), -gk.S_VEC * gk.S_VEC.T, evaluate=False)

    def at(p: int, q: int) -> sympy.Expr:
        return entry.xreplace({i: p, j: q})

    if k <= EXPLICIT_MATRIX_K_MAX:
        explicit = sympy.ImmutableMatrix(k, k, lambda p, q: at(p + 1, q + 1))
        check = checker.chain("jacobian-matrix", [gk.J, difference, explicit])
        return check, list(check.steps)
    # rows and columns 1, 2, ..., K with dots between; checked at the entries written out
    shown = [1, 2, k]
    cells = [(p, q) for p in shown for q in shown]
    sparse = sympy.ImmutableSparseMatrix(k, k, {(p - 1, q - 1): at(p, q) for p, q in cells})
    check = checker.chain("jacobian-matrix", [gk.J, difference, sparse], cells=cells)
    dots = {"row": sympy.Symbol(r"\vdots"), "col": sympy.Symbol(r"\cdots")}

    def cell(p: int | None, q: int | None) -> sympy.Basic:
        if p is None and q is None:
            return sympy.Symbol(r"\ddots")
        if p is None:
            return dots["row"]
        if q is None:
            return dots["col"]
        return at(p, q)

    layout = [1, 2, None, k]
    compact = sympy.ImmutableMatrix([[cell(p, q) for q in layout] for p in layout])
    return check, [gk.J, difference, compact]


def _jacobian_section(b: Builder, checker: FixedKChecker) -> None:
    k = checker.k
    b.section("jacobian", "sec_jacobian")
    b.para("jac_def")
    b.equation("jacobian-definition", chain([Jij[i, j], Derivative(s[i], z[j])]), kind="definition")
    d_numerator = checker.chain(
        "numerator-derivative",
        [Derivative(exp(z[i]), z[j]), KroneckerDelta(i, j) * exp(z[i])],
        [i, j],
    )
    d_normaliser = checker.chain(
        "normaliser-derivative",
        [Derivative(S, z[j]), Derivative(normaliser(k), z[j]), exp(z[j])],
        [j],
    )
    b.para("jac_parts", delta_ij=printed(KroneckerDelta(i, j)), i_eq_j=eq(i, j))
    b.equation(
        "parts",
        side_by_side(chain(d_numerator.steps), chain(d_normaliser.steps[::2])),
        proofs=[Proof(d.name, _scope(b, d)) for d in (d_numerator, d_normaliser)],
    )
    quotient_rule = (
        sympy.Mul(Derivative(exp(z[i]), z[j]), S, evaluate=False)
        - sympy.Mul(exp(z[i]), Derivative(S, z[j]), evaluate=False)
    ) / S**2
    substituted = (
        sympy.Mul(KroneckerDelta(i, j), exp(z[i]), S, evaluate=False)
        - sympy.Mul(exp(z[i]), exp(z[j]), evaluate=False)
    ) / S**2
    closed = checker.chain(
        "jacobian-closed-form",
        [Derivative(s[i], z[j]), quotient_rule, substituted, s[i] * (KroneckerDelta(i, j) - s[j])],
        [i, j],
    )
    b.para("jac_quotient")
    _proved(b, "jacobian-closed-form", closed)
    matrix, shown = _jacobian_matrix(checker)
    diag_s = Math(tex(gk.Diag(gk.S_VEC)))
    b.para("jac_matrix" if k <= EXPLICIT_MATRIX_K_MAX else "jac_matrix_large", diag_s=diag_s)
    b.equation("jacobian-matrix", chain(shown), proofs=[Proof(matrix.name, _scope(b, matrix))])
    if k > 1:
        b.para("jac_signs")
    rows = checker.chain(
        "jacobian-rows-sum-to-zero",
        [
            Sum(Derivative(s[i], z[j]), (j, 1, k)),
            Sum(s[i] * (KroneckerDelta(i, j) - s[j]), (j, 1, k)),
            s[i] - s[i] * Sum(s[j], (j, 1, k)),
            sympy.Integer(0),
        ],
        [i],
    )
    b.para("jac_rows")
    _proved(b, "rows-sum-to-zero", rows)
    ones = sympy.OneMatrix(gk.K, 1)
    null = checker.chain(
        "jacobian-null-vector",
        [sympy.MatMul(gk.J, ones), sympy.ZeroMatrix(gk.K, 1)],
        cells=[(p, 1) for p in checker.index_values()],
    )
    symmetric = checker.chain("jacobian-symmetric", [gk.J.T, gk.J])
    b.para("jac_props")
    _proved(b, "null-and-symmetric", null, symmetric)
    b.para("jac_singular", ones=printed(ones))


def _one_hot(expr: sympy.Basic) -> sympy.Basic:
    return expr.replace(
        lambda e: isinstance(e, sympy.Indexed) and e.base == y,
        lambda e: KroneckerDelta(e.indices[0], c),
    )


def _cross_entropy_section(b: Builder, bundle: Bundle, checker: FixedKChecker) -> None:
    k, w = bundle.k, bundle.worked
    b.section("cross-entropy", "sec_cross_entropy")
    b.para("ce_def")
    b.equation(
        "loss-definition",
        chain([L, -Sum(y[i] * log(s[i]), (i, 1, k))]),
        kind="definition",
    )
    log_s = checker.chain("log-softmax", [log(s[i]), z[i] - log(S)], [i], logs=True)
    b.para("ce_log")
    _proved(b, "log-softmax", log_s)
    log_grad = checker.chain(
        "log-softmax-gradient",
        [
            Derivative(log(s[i]), z[j]),
            Derivative(z[i], z[j]) - Derivative(log(S), z[j]),
            KroneckerDelta(i, j) - exp(z[j]) / S,
            KroneckerDelta(i, j) - s[j],
        ],
        [i, j],
        logs=True,
    )
    b.para("ce_log_grad")
    _proved(b, "log-softmax-gradient", log_grad)
    grad = checker.chain(
        "cross-entropy-gradient",
        [
            Derivative(L, z[j]),
            -Sum(y[i] * Derivative(log(s[i]), z[j]), (i, 1, k)),
            -Sum(y[i] * (KroneckerDelta(i, j) - s[j]), (i, 1, k)),
            s[j] * Sum(y[i], (i, 1, k)) - y[j],
        ],
        [j],
    )
    b.para("ce_grad")
    _proved(b, "cross-entropy-gradient", grad)
    simplex = checker.chain(
        "cross-entropy-gradient-simplex", [Derivative(L, z[j]), s[j] - y[j]], [j], simplex=True
    )
    b.para("ce_grad_after", sum_y_is_1=eq(Sum(y[i], (i, 1, k)), sympy.Integer(1)))
    _proved(b, "cross-entropy-gradient-simplex", simplex)
    b.para("ce_simplex_after", s_minus_y=printed(gk.S_VEC - sympy.MatrixSymbol("y", gk.K, 1)))
    one_hot_loss = checker.chain("one-hot-loss", [L, -log(s[c])], [c], assume=_one_hot, logs=True)
    one_hot_grad = checker.chain(
        "one-hot-gradient",
        [Derivative(L, z[j]), s[j] - KroneckerDelta(j, c)],
        [c, j],
        assume=_one_hot,
    )
    b.para("ce_one_hot")
    _proved(b, "one-hot", one_hot_loss, one_hot_grad)
    b.para("ce_one_hot_after", grad_c=printed(s[c] - 1))
    true = w.true_class
    b.para(
        "ce_example",
        true_label=w.labels[true],
        c_value=eq(c, sympy.Integer(true + 1)),
        loss_value=Math(rf"{tex(L)} \approx {number(w.loss)}"),
    )
    rows = tuple(
        (
            (label,),
            (Math(str(int(n == true))),),
            (num(p),),
            (num(g),),
        )
        for n, (label, p, g) in enumerate(zip(w.labels, w.probabilities, w.gradient, strict=True))
    )
    b.add(
        Table(
            "lrrr",
            (
                b.text("col_class"),
                (printed(y[i]),),
                (printed(s[i]),),
                (printed(Derivative(L, z[i])),),
            ),
            rows,
        )
    )
    b.para("ce_example_after", grad_sum=Math(fixed(math.fsum(w.gradient))))


# --- section 5: symbolic K, straight from the Bundle's general identities --------------------


def _general(bundle: Bundle, name: str) -> Identity:
    for identity in bundle.general_identities:
        if identity.name == name:
            return identity
    raise ProofError(f"the document presents {name!r}, which the Bundle does not contain")


def _general_chain(bundle: Bundle, *names: str) -> tuple[list[sympy.Basic], list[str]]:
    """lhs = rhs_1 = rhs_2 ...: identities with one left-hand side, checked in general_k."""
    identities = [_general(bundle, name) for name in names]
    lhs = identities[0].lhs
    if any(identity.lhs != lhs for identity in identities):
        raise ProofError(f"general-K steps {names} do not share their left-hand side")
    return [lhs, *(identity.rhs for identity in identities)], list(names)


def _general_section(b: Builder, bundle: Bundle) -> None:
    k = bundle.k
    K = gk.K
    b.section("general", "sec_general")
    normaliser_K = Sum(exp(z[k_]), (k_, 1, K))
    b.para("gen_intro", sum_k=printed(normaliser_K))

    def show(key: str, steps: list[sympy.Basic], names: list[str]) -> None:
        symbolic = b.text("symbolic")
        b.equation(key, chain(steps), proofs=[Proof(name, symbolic) for name in names])

    steps, names = _general_chain(bundle, "general-k-sum-exp-derivative")
    # SymPy's term-wise derivative, before sifting: checked by general_k's own rules
    sifted = Sum(KroneckerDelta(j, k_) * exp(z[k_]), (k_, 1, K))
    gk.check_equal("general-k-sum-exp-derivative-delta", steps[0], sifted)
    b.para("gen_sum", k_eq_j=eq(k_, j))
    show("general-sum-derivative", [steps[0], sifted, steps[1]], names)
    b.para("gen_quotient")
    show(
        "general-jacobian",
        *_general_chain(bundle, "general-k-softmax-quotient-rule", "general-k-softmax-jacobian"),
    )
    b.para("gen_matrix")
    show("general-jacobian-matrix", *_general_chain(bundle, "general-k-jacobian-matrix"))
    b.para("gen_rows")
    show("general-sums-to-one", *_general_chain(bundle, "general-k-softmax-sums-to-one"))
    show(
        "general-rows",
        *_general_chain(
            bundle, "general-k-jacobian-row-sum-expanded", "general-k-jacobian-row-sum-zero"
        ),
    )
    b.para(
        "gen_products",
        v=printed(gk.v),
        K_by_K=Math(rf"{tex(K)} \times {tex(K)}"),
        jvp=Code("softmax_jvp"),
        vjp=Code("softmax_vjp"),
    )
    show(
        "general-jvp",
        *_general_chain(bundle, "general-k-softmax-jvp-sum", "general-k-softmax-jvp"),
    )
    show(
        "general-vjp",
        *_general_chain(bundle, "general-k-softmax-vjp-sum", "general-k-softmax-vjp"),
    )
    b.para("gen_log")
    show("general-log-softmax", *_general_chain(bundle, "general-k-log-softmax"))
    show("general-log-softmax-gradient", *_general_chain(bundle, "general-k-log-softmax-gradient"))
    b.para("gen_ce")
    show(
        "general-cross-entropy-gradient",
        *_general_chain(
            bundle, "general-k-cross-entropy-gradient-sum", "general-k-cross-entropy-gradient"
        ),
    )
    b.para("gen_normalized")
    show(
        "general-normalized",
        *_general_chain(bundle, "general-k-cross-entropy-gradient-normalized"),
    )
    b.para("gen_one_hot")
    show("general-one-hot", *_general_chain(bundle, "general-k-cross-entropy-gradient-one-hot"))
    b.para("gen_shift")
    show("general-shift", *_general_chain(bundle, "general-k-shift-invariance"))

    b.para("gen_agree")
    quantities = {
        "softmax-jacobian": ("jacobian_name", "general-k-softmax-jacobian", k * k),
        "log-softmax-gradient": ("log_grad_name", "general-k-log-softmax-gradient", k * k),
        "cross-entropy-gradient": ("ce_grad_name", "general-k-cross-entropy-gradient", k),
    }
    rows = []
    for identity in gk.check_fixed_k_agrees(k):
        label, general, total = quantities[identity.name.removeprefix(f"fixed-k-{k}-")]
        compared = len(identity.lhs)
        scope = Check(identity.name, (), compared, total)
        rows.append((b.text(label), (printed(_general(bundle, general).rhs),), _scope(b, scope)))
    b.add(
        Table(
            "llr",
            (b.text("col_quantity"), b.text("col_closed_form"), b.text("col_compared")),
            tuple(rows),
        )
    )


# --- section 6 -----------------------------------------------------------------------------


def _limits() -> list[tuple[str, float, float, float]]:
    """(type, largest finite value, log of it, log of half the smallest subnormal)."""
    rows = []
    for name, dtype in (("float32", numpy.float32), ("float64", numpy.float64)):
        info = numpy.finfo(dtype)
        largest = float(info.max)
        # exp(x) rounds to 0 below half the smallest subnormal number
        below = math.log(float(info.smallest_subnormal)) - math.log(2)
        rows.append((name, largest, math.log(largest), below))
    return rows


def _naive_and_stable(logits: Sequence[float], winner: int) -> tuple[float, float]:
    """The winner's probability computed as written and in the stable form (float64)."""
    values = numpy.asarray(logits, dtype=numpy.float64)
    with numpy.errstate(all="ignore"):
        naive = numpy.exp(values) / numpy.exp(values).sum()
    shifted = numpy.exp(values - values.max())
    return float(naive[winner]), float(shifted[winner] / shifted.sum())


def _stability_section(b: Builder, bundle: Bundle, checker: FixedKChecker) -> None:
    k, w = bundle.k, bundle.worked
    b.section("stability", "sec_stability")
    shift = checker.chain("shift-invariance", [exp(z[i] - a) / normaliser(k, a), s[i]], [i])
    b.para("stab_shift", exp_minus_a=printed(exp(-a)))
    _proved(b, "shift-invariance", shift)
    b.para("stab_overflow")
    x = sympy.Symbol("x", real=True)
    b.add(
        Table(
            "lrrr",
            (
                b.text("col_type"),
                b.text("col_largest"),
                b.text("col_overflow", exp_x=printed(exp(x)), x=printed(x)),
                b.text("col_underflow", exp_x=printed(exp(x)), x=printed(x)),
            ),
            tuple(
                ((Code(name),), (num(largest),), (num(over, 2),), (num(under, 2),))
                for name, largest, over, under in _limits()
            ),
        )
    )
    stable = checker.chain("stable-softmax", [s[i], exp(z[i] - m) / normaliser(k, m)], [i])
    infinity = sympy.Mul(sympy.oo, sympy.Pow(sympy.oo, -1, evaluate=False), evaluate=False)
    b.para("stab_naive", inf_over_inf=printed(infinity))
    _proved(b, "stable-softmax", stable)
    log_sum_exp = checker.chain(
        "log-sum-exp", [log(S), log(normaliser(k)), m + log(normaliser(k, m))], logs=True
    )
    b.para(
        "stab_why",
        d_nonpositive=printed(sympy.LessThan(z[i] - m, 0, evaluate=False)),
    )
    _proved(b, "log-sum-exp", log_sum_exp)
    stable_log = checker.chain(
        "stable-log-softmax", [log(s[i]), z[i] - m - log(normaliser(k, m))], [i], logs=True
    )
    b.para("stab_log")
    _proved(b, "stable-log-softmax", stable_log)

    # the worked example moved far up: shift invariance says nothing changes
    amount = 1000.0 if max(w.logits) + 1000.0 > _limits()[1][2] else 2000.0
    moved = [v + amount for v in w.logits]
    naive, stable_p = _naive_and_stable(moved, w.winner)
    b.para(
        "stab_example",
        shift=Math(logit(amount)),
        exp_big=Math(f"e^{{{logit(moved[w.winner])}}}"),
        winner=w.labels[w.winner],
        naive=Code("NaN") if math.isnan(naive) else num(naive),
        stable=num(stable_p),
    )
    _kernel_steps(b, bundle)


def _kernel_steps(b: Builder, bundle: Bundle) -> None:
    """The per-element forms the emitted kernels compute, printed from the Bundle."""
    f = bundle.kernel
    u_i, U = sympy.symbols("u_i U", positive=True)
    names = {
        f.e_i: u_i,
        f.S: U,
        f.log_S: log(U),
        f.delta_ij: KroneckerDelta(i, j),
        f.sum_y: Sum(y[j], (j, 1, gk.K)),
    }

    def p(expr: sympy.Basic) -> str:
        return tex(expr.xreplace(names))

    loss_term = f.loss_term.args[-1][0]  # the formula; its y_i = 0 guard only avoids 0 * inf
    u = sympy.IndexedBase("u")
    steps = [
        (p(f.d_i), p(f.shifted)),
        (p(f.e_i), p(f.exponential)),
        (p(f.S), tex(Sum(u[k_], (k_, 1, gk.K)))),
        (p(f.s_i), p(f.probability)),
        (tex(log(f.s_i)), p(f.log_probability)),
        (tex(Jij[i, j]), p(f.jacobian)),
        (tex(L), tex(Sum(loss_term.xreplace(names), (sympy.Symbol("i"), 1, gk.K)))),
        (tex(Derivative(L, z[i])), p(f.gradient)),
    ]
    # for an integer label c: the loss rounded once, and the label's gradient entry
    label = {f.z_i: z[c], f.rest: sympy.Symbol("r_c", positive=True)}
    loss_index = f.loss_index.replace(CompensatedSum, lambda *terms: sympy.Add(*terms))
    steps += [
        (tex(-log(s[c])), p(loss_index.xreplace(label))),
        (tex(Derivative(L, z[c])), p(f.gradient_true_class.xreplace(label))),
    ]
    body = (
        "\\begin{aligned}\n"
        + " \\\\\n".join(rf"{lhs} &\leftarrow {rhs}" for lhs, rhs in steps)
        + "\n\\end{aligned}"
    )
    b.para(
        "stab_code",
        r_c=printed(sympy.Symbol("r_c")),
        u_k=printed(u[k_]),
        grad_c=printed(s[c] - 1),
    )
    proofs = [
        Proof(identity.name, _scope(b, _identity_scope(identity, bundle.k)))
        for identity in bundle.identities
        if identity.name.startswith(("stable-", "kernel-"))
    ]
    b.equation("kernel", body, kind="computation", proofs=proofs)


def _identity_scope(identity: Identity, k: int) -> Check:
    """Entries a Bundle identity was proved at: its matrices hold the entries checked."""
    if not isinstance(identity.lhs, sympy.MatrixBase):
        return Check(identity.name, (), 1, 1)
    rows, cols = identity.lhs.shape
    if cols == 1:
        return Check(identity.name, (), rows, k)
    return Check(identity.name, (), rows * cols, k * k)


# --- section 7 and the appendix --------------------------------------------------------------

_V = sympy.MatrixSymbol("v", gk.K, 1)  # the vector of J v and J^T v
# each member's formula in the document's notation (its equations: family.members)
_FORMULAS: dict[str, sympy.Basic] = {
    "softmax": s[i],
    "log_softmax": log(s[i]),
    "softmax_jacobian": Jij[i, j],
    "cross_entropy": L,
    "cross_entropy_grad": Derivative(L, z[j]),
    "cross_entropy_index": -log(s[c]),
    "cross_entropy_grad_index": s[j] - KroneckerDelta(j, c),
    "softmax_jvp": gk.J * _V,
    "softmax_vjp": gk.J.T * _V,
}


def _code_section(b: Builder, bundle: Bundle) -> None:
    k = bundle.k
    b.section("code", "sec_code")
    stem = f"softmax_k{k}"
    b.para(
        "code_intro",
        py_file=Code(f"{stem}.py"),
        h_file=Code(f"{stem}.h"),
        c_file=Code(f"{stem}.c"),
    )
    rows = []
    for member in MEMBERS:
        formula = _FORMULAS.get(member.name)
        refs: list[Run] = []
        for n, key in enumerate(member.equations):
            refs.extend(([", "] if n else []) + [Ref("eq", key)])
        rows.append(
            (
                (printed(formula),) if formula is not None else (),
                tuple(refs),
                (Code(member.name),),
                (Code(c_name(member.name, k, "f64")),),
            )
        )
    b.add(
        Table(
            "llll",
            (
                b.text("col_formula"),
                b.text("col_equation"),
                b.text("col_numpy"),
                b.text("col_c"),
            ),
            tuple(rows),
            small=True,  # the C names of the fused kernels are long
        )
    )
    b.para("code_after", f32=Code("_f32"), f64=Code("_f64"))


def _checks_section(b: Builder) -> None:
    b.section("checks", "sec_checks", appendix=True)  # closes the sections before it
    equations = [
        block for section in b.sections for block in section.blocks if isinstance(block, Equation)
    ]
    b.para(
        "checks_intro",
        exp_z_k=printed(exp(z[k_])),
        K_full=Math(rf"{tex(gk.K)} \leq {ENTRYWISE_K_MAX}"),
    )
    rows = []
    for equation in equations:
        number: Text = (Ref("eq", equation.key),)
        if not equation.proofs:
            rows.append((number, b.text(equation.kind), ()))
            continue
        for n, proof in enumerate(equation.proofs):
            rows.append((number if n == 0 else (), (Code(proof.name),), proof.scope))
    b.add(
        Table(
            "llr",
            (b.text("col_equation"), b.text("col_check"), b.text("col_compared")),
            tuple(rows),
        )
    )
