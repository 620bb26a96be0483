"""Bundle -> Document: the derivation document as flat data, one view for every output format.

The LaTeX and Markdown emitters only lay this out. Maths is printed here by
symsoft.document.printer from SymPy expressions; every displayed equality is a chain proved here
by symsoft.document.checks at the given K, a step of the symbolic-K derivation
(symsoft.derivation.general_k, checked when it is built), or both, so a wrong formula raises
ProofError before any text exists. Prose comes from symsoft.document.text, numbers from
evaluation (mpmath, NumPy), figures from symsoft.document.figures, never from typing them in.

The lesson derives everything once, for a symbolic K, in the order a reader needs it; the given
K supplies the explicit matrix, the numbers and the figures. The implementation notes (what
the kernels compute, the emitted functions, how each equation was checked) follow in a
separate part.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import replace
from decimal import Decimal

import numpy
import sympy
from sympy import Derivative, KroneckerDelta, Sum, exp, log

from symsoft.derivation import general_k as gk
from symsoft.derivation import reference
from symsoft.derivation.bundle import Bundle, CompensatedSum, Identity, WorkedExample
from symsoft.document import family_sections, figures, options_section
from symsoft.document.checks import (
    ENTRYWISE_K_MAX,
    J_LOG,
    Check,
    FixedKChecker,
    H,
    Hij,
    Jij,
    L,
    S,
    m,
)
from symsoft.document.printer import tex
from symsoft.document.shared import (
    EXPLICIT_MATRIX_K_MAX,
    HEAD_ROWS,
    TABLE_ROWS_K_MAX,
)
from symsoft.document.shared import general as _general
from symsoft.document.shared import identity_scope as _identity_scope
from symsoft.document.shared import numeric_matrix as _numeric_matrix
from symsoft.document.shared import proved as _proved
from symsoft.document.shared import scope as _scope
from symsoft.document.shared import symbolic as _symbolic
from symsoft.document.shared import table_rows as _table_rows
from symsoft.document.text import LABELS, TEXT
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
    logit,
    num,
    number,
    parenthesised,
    percent,
    printed,
    side_by_side,
)
from symsoft.family.members import MEMBERS, c_name

# Up to this K the worked example's logits and class names are listed in the prose too.
INLINE_EXAMPLE_K_MAX = 6
SENSITIVITY_BUMP = 5.0  # added to the largest logit in the sensitivity illustration
TEMPERATURES = (0.5, 5.0)  # quoted in the text beside the temperature figure
FD_STEP = 1e-5  # the step of the finite-difference check
LARGE_K_EXAMPLE = 1000  # the K of the "many equal logits" overflow illustration

i, j, c, a, k_ = gk.i, gk.j, gk.c, gk.a, gk.k  # k_ is the summation index; k the class count
z, y, s, v = gk.z, gk.y, gk.s, gk.v
K = gk.K
TEMPERATURE = sympy.Symbol("T", positive=True)


# --- the document --------------------------------------------------------------------------


def build_documents(bundle: Bundle, langs: Iterable[str]) -> dict[str, Document]:
    """The derivation document for bundle in each language, its maths checked once for all."""
    checker = FixedKChecker(bundle.k)
    return {lang: _build_document(bundle, lang, checker) for lang in langs}


def build_document(bundle: Bundle, lang: str | None = None) -> Document:
    """The derivation document for bundle, in bundle.lang unless lang is given."""
    lang = lang or bundle.lang
    return build_documents(bundle, [lang])[lang]


def example_labels(worked: WorkedExample, lang: str) -> tuple[str, ...]:
    """The class names as the reader's language writes them: the default ones translated."""
    table = LABELS.get(lang, {})
    if all(label in table for label in worked.labels):
        return tuple(table[label] for label in worked.labels)
    return worked.labels


def _build_document(bundle: Bundle, lang: str, checker: FixedKChecker) -> Document:
    k = bundle.k
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
        "z": printed(z),
        "y": printed(y),
        "S": printed(S),
        "L": printed(L),
        "J": printed(gk.J),
        "s_i": printed(s[i]),
        "z_seq": Math(rf"{tex(z[1])}, \ldots, {tex(z[K])}"),
        "S_pos": gt(S, sympy.Integer(0)),
        "sum_y_is_1": eq(Sum(y[i], (i, 1, K)), sympy.Integer(1)),
        "y_one_hot": eq(y[i], KroneckerDelta(i, c)),
        "ones": printed(sympy.OneMatrix(K, 1)),
        "v": printed(v),
        "K_full": Math(rf"{tex(K)} \leq {ENTRYWISE_K_MAX}"),
        "T": printed(TEMPERATURE),
        "T_one": eq(TEMPERATURE, sympy.Integer(1)),
        "log_K": printed(log(K)),
        "K_two": eq(K, sympy.Integer(2)),
        "W": printed(gk.W),
        "b": printed(gk.b),
        "J_matrix": printed(
            sympy.MatAdd(gk.Diag(gk.S_VEC), -gk.S_VEC * gk.S_VEC.T, evaluate=False)
        ),
    }
    b = Builder(lang, fields)
    worked = bundle.worked
    labels = example_labels(worked, lang)
    lessons = gk.lesson_identities()
    b.para("intro")
    b.para("intro_checked")
    b.para("intro_here_all" if k <= ENTRYWISE_K_MAX else "intro_here_some")
    b.para("intro_family")
    if k == 1:
        b.para("intro_k1")
    _softmax_section(b, bundle, checker, labels)
    _example_section(b, bundle, labels)
    _jacobian_section(b, bundle, checker, labels, lessons)
    _cross_entropy_section(b, bundle, checker, labels, lessons)
    _two_classes_section(b)
    _stability_section(b, bundle, checker, labels)
    family_sections.sections(b, bundle, checker, labels)
    options_section.section(b, bundle, labels)
    b.part("part_implementation")
    _code_section(b, bundle)
    _checks_section(b, bundle)
    footnote = b.text("footnote")
    return b.finish(b.text("title"), b.text("author"), footnote, k)


# --- helpers -------------------------------------------------------------------------------


def _displayed(expr: sympy.Basic) -> sympy.Basic:
    """A general_k formula in the document's notation: the loss as L."""
    return expr.xreplace({-Sum(y[i] * log(s[i]), (i, 1, K)): L})


def _joined_labels(b: Builder, labels: Sequence[str]) -> Text:
    if len(labels) == 1:
        return (labels[0],)
    words = TEXT[b.lang]
    return (words["list_sep"].join(labels[:-1]), words["and"], labels[-1])


def _rounded_sum(values: Sequence[float], places: int = 3) -> Decimal | None:
    """The sum of the values as printed (what a reader adding the column gets), or None when
    a value is printed in scientific notation."""
    printed_values = [number(x, places) for x in values]
    if any("times" in text for text in printed_values):
        return None
    return sum((Decimal(text) for text in printed_values), Decimal(0))


def _figure(b: Builder, data: figures.FigureData, **extra: Run | Text) -> None:
    rendered = figures.render(data)
    b.figure(data.key, b.text(f"fig_{data.key}", **extra), rendered.svg, rendered.pdf)


# --- 1. softmax ----------------------------------------------------------------------------


def _softmax_section(
    b: Builder, bundle: Bundle, checker: FixedKChecker, labels: Sequence[str]
) -> None:
    k, w = bundle.k, bundle.worked
    b.section("softmax", "sec_softmax")
    b.para("softmax_def")
    normaliser = Sum(exp(z[k_]), (k_, 1, K))
    b.equation(
        "softmax-definition",
        side_by_side(chain([s[i], exp(z[i]) / S]), chain([S, normaliser])),
        kind="definition",
    )
    b.para("softmax_def_after", i_range=Math(rf"{tex(i)} = 1, \ldots, {tex(K)}"))
    sums = checker.chain(
        "softmax-sums-to-one",
        [Sum(s[i], (i, 1, K)), sympy.Mul(1 / S, Sum(exp(z[i]), (i, 1, K))), sympy.Integer(1)],
    )
    b.para("prob", lead="prob_lead", exp_pos=gt(exp(z[i]), sympy.Integer(0)))
    _proved(b, "sums-to-one", sums, symbolic=_symbolic(b, bundle, "general-k-softmax-sums-to-one"))
    if k == 1:
        b.para("prob_after_k1", s_1_value=eq(s[1], sympy.Integer(1)))
    else:
        b.para("prob_after")
    b.para("diff", lead="diff_lead")
    odds = checker.chain("softmax-odds", [s[i] / s[j], exp(z[i] - z[j])], [i, j])
    b.para("sens", lead="sens_lead")
    _proved(b, "odds", odds)
    bumped = list(w.logits)
    bumped[w.winner] += SENSITIVITY_BUMP
    b.para(
        "sens_after",
        e_value=Math(rf"e \approx {number(math.e)}"),
        winner=labels[w.winner],
        bump=Math(logit(SENSITIVITY_BUMP)),
        z_w=Math(logit(w.logits[w.winner])),
        z_w_bumped=Math(logit(bumped[w.winner])),
        p_w=num(w.probabilities[w.winner]),
        p_w_bumped=num(float(reference.softmax(bumped)[w.winner])),
    )
    normaliser_a = Sum(exp(z[k_] - a), (k_, 1, K))
    shift = checker.chain("shift-invariance", [exp(z[i] - a) / normaliser_a, s[i]], [i])
    b.para("shift", lead="shift_lead", exp_minus_a=printed(exp(-a)))
    _proved(
        b, "shift-invariance", shift, symbolic=_symbolic(b, bundle, "general-k-shift-invariance")
    )
    b.para("shift_after")
    # soft argmax: the winner's probability at a low and a high temperature, evaluated
    low, high = TEMPERATURES
    at = {t: float(reference.softmax([x / t for x in w.logits])[w.winner]) for t in TEMPERATURES}
    T = TEMPERATURE
    b.para(
        "argmax",
        lead="argmax_lead",
        s_z_T=Math(rf"s\left({tex(z)} / {tex(T)}\right)"),
        T_pos=gt(T, sympy.Integer(0)),
        uniform=Math(rf"1 / {tex(K)}"),
        winner=labels[w.winner],
        T_low=eq(T, sympy.Float(low)),
        T_high=eq(T, sympy.Float(high)),
        p_low=num(at[low]),
        p_high=num(at[high]),
        p_one=num(w.probabilities[w.winner]),
    )
    data = figures.temperature_data(_relabelled(w, labels))
    _figure(b, data)


def _relabelled(w: WorkedExample, labels: Sequence[str]) -> WorkedExample:
    return replace(w, labels=tuple(labels))


# --- 2. the worked example -----------------------------------------------------------------


def _example_section(b: Builder, bundle: Bundle, labels: Sequence[str]) -> None:
    k, w = bundle.k, bundle.worked
    b.section("example", "sec_example")
    if k <= INLINE_EXAMPLE_K_MAX:
        z_value = Math(f"{tex(z)} = {parenthesised([logit(x) for x in w.logits])}")
        b.para("example_small", labels=_joined_labels(b, labels), z_value=z_value)
    else:
        b.para("example_large", shown=Math(str(HEAD_ROWS)))
    b.para("example_steps")

    def row(n: int) -> tuple[Text, ...]:
        p = w.probabilities[n]
        return (
            (labels[n],),
            (Math(logit(w.logits[n])),),
            (num(w.exponentials[n]),),
            (num(p),),
            (Math(fixed(100 * p, 1)),),
        )

    shown_all = k <= TABLE_ROWS_K_MAX
    e_sum = _rounded_sum(w.exponentials) if shown_all else None
    p_sum = _rounded_sum(w.probabilities) if shown_all else None
    pct_sum = (
        sum((Decimal(fixed(100 * p, 1)) for p in w.probabilities), Decimal(0))
        if shown_all
        else None
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
            _table_rows(k, row, 5),
            total=(
                b.text("row_sum" if shown_all else "row_sum_all"),
                (),
                (Math(str(e_sum)) if e_sum is not None else num(w.total),),
                (Math(str(p_sum)) if p_sum is not None else Math(fixed(1.0)),),
                (Math(str(pct_sum)) if pct_sum is not None else Math(fixed(100.0, 1)),),
            ),
        )
    )
    exact = Math(rf"{tex(S)} = {number(w.total, 6)}\ldots")
    exact_rounded = number(w.total)
    if e_sum is not None and str(e_sum) != exact_rounded:
        b.para(
            "example_sum_differs",
            rounded_sum=Math(str(e_sum)),
            exact=exact,
            exact_rounded=Math(exact_rounded),
        )
    else:
        b.para("example_sum_exact", exact=exact)
    p_w = w.probabilities[w.winner]
    b.para("example_winner", winner=labels[w.winner], p_w=num(p_w), pct_w=percent(p_w))
    _figure(b, figures.probability_data(_relabelled(w, labels)))


# --- 3. the Jacobian -----------------------------------------------------------------------


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


def _jacobian_section(
    b: Builder,
    bundle: Bundle,
    checker: FixedKChecker,
    labels: Sequence[str],
    lessons: Sequence[Identity],
) -> None:
    k, w = bundle.k, bundle.worked
    b.section("jacobian", "sec_jacobian")
    b.para("jac_def")
    b.equation("jacobian-definition", chain([Jij[i, j], Derivative(s[i], z[j])]), kind="definition")
    normaliser = Sum(exp(z[k_]), (k_, 1, K))
    d_numerator = checker.chain(
        "numerator-derivative",
        [Derivative(exp(z[i]), z[j]), KroneckerDelta(i, j) * exp(z[i])],
        [i, j],
    )
    d_normaliser = checker.chain(
        "normaliser-derivative", [Derivative(S, z[j]), Derivative(normaliser, z[j]), exp(z[j])], [j]
    )
    b.para("jac_parts", delta_ij=printed(KroneckerDelta(i, j)), i_eq_j=eq(i, j))
    _proved(
        b,
        "parts",
        d_numerator,
        d_normaliser,
        symbolic=_symbolic(b, bundle, "general-k-sum-exp-derivative"),
        body=side_by_side(chain(d_numerator.steps), chain(d_normaliser.steps[::2])),
    )
    # the two cases, each by the quotient rule
    diagonal = checker.chain(
        "jacobian-diagonal",
        [
            Derivative(s[i], z[i]),
            (sympy.Mul(exp(z[i]), S, evaluate=False) - exp(z[i]) * exp(z[i])) / S**2,
            s[i] * (1 - s[i]),
        ],
        [i],
    )
    b.para("jac_case_diag", lead="jac_case_diag_lead", i_eq_j=eq(i, j))
    _proved(b, "jacobian-diagonal", diagonal)
    if k > 1:
        off = checker.chain(
            "jacobian-off-diagonal",
            [Derivative(s[i], z[j]), -exp(z[i]) * exp(z[j]) / S**2, -s[i] * s[j]],
            [i, j],
            distinct=True,
        )
        b.para(
            "jac_case_off",
            lead="jac_case_off_lead",
            i_ne_j=printed(sympy.Ne(i, j, evaluate=False)),
        )
        _proved(b, "jacobian-off-diagonal", off)
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
    _proved(
        b,
        "jacobian-closed-form",
        closed,
        symbolic=_symbolic(
            b, bundle, "general-k-softmax-quotient-rule", "general-k-softmax-jacobian"
        ),
    )
    matrix, shown = _jacobian_matrix(checker)
    diag_s = Math(tex(gk.Diag(gk.S_VEC)))
    b.para("jac_matrix" if k <= EXPLICIT_MATRIX_K_MAX else "jac_matrix_large", diag_s=diag_s)
    b.equation(
        "jacobian-matrix",
        chain(shown),
        proofs=[
            Proof(matrix.name, _scope(b, matrix)),
            *_symbolic(b, bundle, "general-k-jacobian-matrix"),
        ],
    )
    if k > 1:
        b.para("jac_signs")
    # the example's Jacobian as numbers, and as a heat map
    p = w.probabilities
    numbers = _numeric_matrix(k, lambda r, q: p[r] * (float(r == q) - p[q]))
    b.para("jac_example")
    b.equation("jacobian-example", rf"{tex(gk.J)} \approx {numbers}", kind="evaluation")
    data = figures.jacobian_data(_relabelled(w, labels))
    if len(data.classes) == k:
        _figure(b, data)
    else:
        rendered = figures.render(data)
        caption = b.text("fig_jacobian_part", shown=Math(str(len(data.classes))))
        b.figure(data.key, caption, rendered.svg, rendered.pdf)
    # properties
    rows = checker.chain(
        "jacobian-rows-sum-to-zero",
        [
            Sum(Derivative(s[i], z[j]), (j, 1, K)),
            Sum(s[i] * (KroneckerDelta(i, j) - s[j]), (j, 1, K)),
            s[i] - s[i] * Sum(s[j], (j, 1, K)),
            sympy.Integer(0),
        ],
        [i],
    )
    t = sympy.Symbol("t", real=True)
    ones = sympy.OneMatrix(K, 1)
    b.para(
        "jac_rows",
        lead="jac_rows_lead",
        shifted=Math(rf"s\left({tex(z)} + {tex(t)} {tex(ones)}\right) = s\left({tex(z)}\right)"),
        t=printed(t),
        J1=Math(rf"{tex(gk.J)} {tex(ones)} = {tex(sympy.ZeroMatrix(K, 1))}"),
    )
    _proved(
        b,
        "rows-sum-to-zero",
        rows,
        symbolic=_symbolic(
            b, bundle, "general-k-jacobian-row-sum-expanded", "general-k-jacobian-row-sum-zero"
        ),
    )
    null = checker.chain(
        "jacobian-null-vector",
        [sympy.MatMul(gk.J, ones), sympy.ZeroMatrix(K, 1)],
        cells=[(q, 1) for q in checker.index_values()],
    )
    symmetric = checker.chain("jacobian-symmetric", [gk.J.T, gk.J])
    b.para("jac_symmetric", lead="jac_symmetric_lead")
    _proved(b, "null-and-symmetric", null, symmetric)
    # kernel and rank, from the Jacobian-vector product
    jvp_steps = [
        _general(bundle, "general-k-softmax-jvp-sum").lhs,
        _general(bundle, "general-k-softmax-jvp-sum").rhs,
        _general(bundle, "general-k-softmax-jvp").rhs,
    ]
    b.para("jac_kernel", lead="jac_kernel_lead", v=printed(v))
    b.equation(
        "general-jvp",
        chain(jvp_steps),
        proofs=_symbolic(b, bundle, "general-k-softmax-jvp-sum", "general-k-softmax-jvp"),
    )
    b.para(
        "jac_rank",
        s_pos=gt(s[i], sympy.Integer(0)),
        v_i_eq=Math(rf"{tex(v[i])} = \sum_{{{tex(j)}=1}}^{{{tex(K)}}} {tex(s[j])} {tex(v[j])}"),
        rank=Math(rf"{tex(K)} - 1"),
        recover=Math(rf"{tex(z[i])} = {tex(log(s[i]))} + {tex(log(S))}"),
    )
    # positive semidefinite
    quadratic = [
        identity for identity in lessons if identity.name.startswith("general-k-jacobian-quadratic")
    ]
    psd_steps = [quadratic[0].lhs, quadratic[0].rhs, quadratic[1].rhs, quadratic[2].rhs]
    b.para("jac_psd", lead="jac_psd_lead")
    b.equation("psd", chain(psd_steps), proofs=_symbolic(b, bundle, *(q.name for q in quadratic)))
    b.para("jac_psd_after")
    # the covariance of the one-hot class vector
    covariance = checker.chain(
        "one-hot-covariance",
        [
            Sum(
                s[k_] * (KroneckerDelta(i, k_) - s[i]) * (KroneckerDelta(j, k_) - s[j]), (k_, 1, K)
            ),
            Sum(s[k_] * KroneckerDelta(i, k_) * KroneckerDelta(j, k_), (k_, 1, K)) - s[i] * s[j],
            s[i] * (KroneckerDelta(i, j) - s[j]),
        ],
        [i, j],
    )
    b.para("jac_cov", lead="jac_cov_lead", e_Y=Math(r"e_{Y}"), Y=Math("Y"))
    _proved(
        b, "covariance", covariance, symbolic=_symbolic(b, bundle, "general-k-one-hot-covariance")
    )
    b.para("jac_cov_after")


# --- 4. cross-entropy ----------------------------------------------------------------------


def _one_hot(expr: sympy.Basic) -> sympy.Basic:
    return expr.replace(
        lambda e: isinstance(e, sympy.Indexed) and e.base == y,
        lambda e: KroneckerDelta(e.indices[0], c),
    )


def _finite_differences(w: WorkedExample) -> list[tuple[float, float]]:
    """(central difference of L, s_j - y_j) per class, in float64 from the definition."""
    z0 = numpy.asarray(w.logits, dtype=numpy.float64)
    target = numpy.zeros_like(z0)
    target[w.true_class] = 1.0

    def loss(values: numpy.ndarray) -> float:
        top = values.max()
        log_total = top + math.log(float(numpy.exp(values - top).sum()))
        return float(-(target * (values - log_total)).sum())

    rows = []
    for n in range(len(z0)):
        step = numpy.zeros_like(z0)
        step[n] = FD_STEP
        central = (loss(z0 + step) - loss(z0 - step)) / (2 * FD_STEP)
        rows.append((central, w.probabilities[n] - target[n]))
    return rows


def _cross_entropy_section(
    b: Builder,
    bundle: Bundle,
    checker: FixedKChecker,
    labels: Sequence[str],
    lessons: Sequence[Identity],
) -> None:
    k, w = bundle.k, bundle.worked
    b.section("cross-entropy", "sec_cross_entropy")
    b.para("ce_def")
    b.equation("loss-definition", chain([L, -Sum(y[i] * log(s[i]), (i, 1, K))]), kind="definition")
    b.para("ce_def_after")
    log_s = checker.chain("log-softmax", [log(s[i]), z[i] - log(S)], [i], logs=True)
    b.para("ce_log")
    _proved(b, "log-softmax", log_s, symbolic=_symbolic(b, bundle, "general-k-log-softmax"))
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
    _proved(
        b,
        "log-softmax-gradient",
        log_grad,
        symbolic=_symbolic(b, bundle, "general-k-log-softmax-gradient"),
    )
    grad = checker.chain(
        "cross-entropy-gradient",
        [
            Derivative(L, z[j]),
            -Sum(y[i] * Derivative(log(s[i]), z[j]), (i, 1, K)),
            -Sum(y[i] * (KroneckerDelta(i, j) - s[j]), (i, 1, K)),
            s[j] * Sum(y[i], (i, 1, K)) - y[j],
        ],
        [j],
    )
    b.para("ce_grad")
    _proved(
        b,
        "cross-entropy-gradient",
        grad,
        symbolic=_symbolic(
            b, bundle, "general-k-cross-entropy-gradient-sum", "general-k-cross-entropy-gradient"
        ),
    )
    simplex = checker.chain(
        "cross-entropy-gradient-simplex", [Derivative(L, z[j]), s[j] - y[j]], [j], simplex=True
    )
    b.para("ce_grad_after")
    _proved(
        b,
        "cross-entropy-gradient-simplex",
        simplex,
        symbolic=_symbolic(b, bundle, "general-k-cross-entropy-gradient-normalized"),
    )
    b.para("ce_simplex_after", s_minus_y=printed(gk.S_VEC - sympy.MatrixSymbol("y", K, 1)))
    one_hot_loss = checker.chain("one-hot-loss", [L, -log(s[c])], [c], assume=_one_hot, logs=True)
    one_hot_grad = checker.chain(
        "one-hot-gradient",
        [Derivative(L, z[j]), s[j] - KroneckerDelta(j, c)],
        [c, j],
        assume=_one_hot,
    )
    b.para("ce_one_hot")
    _proved(
        b,
        "one-hot",
        one_hot_loss,
        one_hot_grad,
        symbolic=_symbolic(b, bundle, "general-k-cross-entropy-gradient-one-hot"),
    )
    b.para(
        "ce_one_hot_after_k1" if k == 1 else "ce_one_hot_after",
        grad_c=printed(s[c] - 1),
        s_c_lt_1=printed(sympy.StrictLessThan(s[c], 1, evaluate=False)),
    )
    # second derivatives: the Hessian is the Jacobian
    hessian = _general(bundle, "general-k-cross-entropy-hessian")
    symmetric_form = checker.chain(
        "cross-entropy-hessian",
        [Derivative(s[j] - y[j], z[i]), hessian.rhs, s[i] * (KroneckerDelta(i, j) - s[j])],
        [i, j],
    )
    b.para("ce_hessian", lead="ce_hessian_lead")
    steps = [Derivative(L, z[j], z[i]), *symmetric_form.steps, Jij[i, j]]
    b.equation(
        "hessian",
        chain(steps),
        proofs=[
            Proof(symmetric_form.name, _scope(b, symmetric_form)),
            *_symbolic(b, bundle, "general-k-cross-entropy-hessian"),
        ],
    )
    b.para("ce_convex")
    # the worked example
    true = w.true_class
    b.para(
        "ce_example",
        lead="ce_example_lead",
        true_label=labels[true],
        c_value=eq(c, sympy.Integer(true + 1)),
        loss_value=Math(rf"{tex(L)} \approx {number(w.loss)}"),
    )

    def gradient_row(n: int) -> tuple[Text, ...]:
        return (
            (labels[n],),
            (Math(str(int(n == true))),),
            (num(w.probabilities[n]),),
            (num(w.gradient[n]),),
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
            _table_rows(k, gradient_row, 4),
        )
    )
    b.para("ce_example_after")
    # a finite-difference check of that gradient
    differences = _finite_differences(w)
    h = sympy.Symbol("h", positive=True)
    e_j = sympy.Symbol("e_j")

    def fd_row(n: int) -> tuple[Text, ...]:
        central, exact = differences[n]
        return (
            (labels[n],),
            (num(central, 6),),
            (num(exact, 6),),
            (num(abs(central - exact), 3),),
        )

    b.para(
        "ce_fd",
        lead="ce_fd_lead",
        h_value=Math(rf"{tex(h)} = 10^{{{round(math.log10(FD_STEP))}}}"),
        quotient=Math(
            rf"\frac{{L\left({tex(z)} + {tex(h)} {tex(e_j)}\right) - "
            rf"L\left({tex(z)} - {tex(h)} {tex(e_j)}\right)}}{{2 {tex(h)}}}"
        ),
        e_j=printed(e_j),
    )
    b.add(
        Table(
            "lrrr",
            (
                b.text("col_class"),
                b.text("col_central"),
                (printed(s[j] - y[j]),),
                b.text("col_difference"),
            ),
            _table_rows(k, fd_row, 4),
        )
    )
    largest = max(abs(central - exact) for central, exact in differences)
    b.para("ce_fd_after", largest=num(largest), h_squared=Math(rf"{tex(h)}^{{2}}"))
    # the loss at initialisation
    equal_softmax = _general(bundle, "general-k-equal-logits-softmax")
    equal_loss = _general(bundle, "general-k-equal-logits-loss")
    b.para(
        "ce_init",
        lead="ce_init_lead",
        equal=Math(rf"{tex(z[1])} = \cdots = {tex(z[K])}"),
    )
    b.equation(
        "equal-logits",
        side_by_side(
            chain([equal_softmax.lhs, equal_softmax.rhs]),
            chain([_displayed(equal_loss.lhs), equal_loss.rhs]),
        ),
        proofs=_symbolic(b, bundle, equal_softmax.name, equal_loss.name),
    )
    b.para(
        "ce_init_after",
        log_k=Math(rf"\log {k} \approx {number(math.log(k))}"),
        loss_value=num(w.loss),
        less=Math(r"<" if w.loss < math.log(k) else r"\geq"),
    )
    # a linear layer in front of the softmax
    weights = _general(bundle, "general-k-linear-layer-weights")
    biases = _general(bundle, "general-k-linear-layer-bias")
    b.para(
        "ce_linear",
        lead="ce_linear_lead",
        z_layer=Math(r"z = W x + b"),
        W_shape=Math(rf"{tex(K)} \times {tex(gk.D)}"),
        x=printed(gk.x),
        D=printed(gk.D),
    )
    b.equation(
        "linear-layer",
        _linear_body(weights, biases),
        proofs=_symbolic(b, bundle, weights.name, biases.name),
    )
    b.para(
        "ce_linear_after",
        matrix_form=Math(
            r"\frac{\partial L}{\partial W} = \left(s - y\right) x^{T}, \quad "
            r"\frac{\partial L}{\partial b} = s - y"
        ),
    )


def _linear_body(weights: Identity, biases: Identity) -> str:
    """The chain rule through z_k for W_ij and for b_i, one aligned line each."""
    lines = [
        rf"{tex(_displayed(identity.lhs))} &= {tex(identity.rhs)}" for identity in (weights, biases)
    ]
    return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"


# --- 5. two classes ------------------------------------------------------------------------


def _two_classes_section(b: Builder) -> None:
    """K = 2 is logistic regression: checked with a checker for two classes, at any K."""
    two = FixedKChecker(2)
    b.section("two-classes", "sec_two_classes")
    sigmoid = two.chain("softmax-sigmoid", [s[1], 1 / (1 + exp(-(z[1] - z[2])))])
    complement = two.chain("softmax-complement", [s[2], 1 - s[1]])
    b.para("two_sigmoid", t=Math(rf"t = {tex(z[1] - z[2])}"))
    _proved(b, "sigmoid", sigmoid, complement)
    terms = (sympy.Mul(y[1], log(s[1]), evaluate=False), sympy.Mul(1 - y[1], log(s[2])))
    loss = two.chain(
        "two-class-loss",
        [L, sympy.Mul(-1, sympy.Add(*terms, evaluate=False), evaluate=False)],
        simplex=True,
        logs=True,
    )
    b.para("two_loss", y_2=eq(y[2], 1 - y[1]))
    _proved(b, "two-class-loss", loss)
    b.para(
        "two_loss_after",
        logistic=Math(r"- y \log p - \left(1 - y\right) \log \left(1 - p\right)"),
        p_value=Math(rf"p = {tex(s[1])}"),
        gradient=Math(rf"{tex(Derivative(L, z[1]))} = {tex(s[1] - y[1])}"),
    )


# --- 6. numerical stability ----------------------------------------------------------------


def _limits() -> list[tuple[str, float, float, float, float]]:
    """(type, largest finite value, log of it, log of the smallest normal number, log of half
    the smallest subnormal)."""
    rows = []
    for name, dtype in (("float32", numpy.float32), ("float64", numpy.float64)):
        info = numpy.finfo(dtype)
        largest = float(info.max)
        # exp(x) is subnormal below the smallest normal number and rounds to 0 below half the
        # smallest subnormal number
        below = math.log(float(info.smallest_subnormal)) - math.log(2)
        rows.append((name, largest, math.log(largest), math.log(float(info.tiny)), below))
    return rows


def _naive_and_stable(logits: Sequence[float], winner: int) -> tuple[float, float]:
    """The winner's probability computed as written and in the stable form (float64)."""
    values = numpy.asarray(logits, dtype=numpy.float64)
    with numpy.errstate(all="ignore"):
        naive = numpy.exp(values) / numpy.exp(values).sum()
    shifted = numpy.exp(values - values.max())
    return float(naive[winner]), float(shifted[winner] / shifted.sum())


def _stability_section(
    b: Builder, bundle: Bundle, checker: FixedKChecker, labels: Sequence[str]
) -> None:
    k, w = bundle.k, bundle.worked
    b.section("stability", "sec_stability")
    x = sympy.Symbol("x", real=True)
    b.para("stab_overflow", x=printed(x))
    limits = _limits()
    b.add(
        Table(
            "lrrrr",
            (
                b.text("col_type"),
                b.text("col_largest"),
                b.text("col_overflow", exp_x=printed(exp(x)), x=printed(x)),
                b.text("col_subnormal", exp_x=printed(exp(x)), x=printed(x)),
                b.text("col_underflow", exp_x=printed(exp(x)), x=printed(x)),
            ),
            tuple(
                ((Code(name),), (num(largest),), (num(over, 2),), (num(tiny, 2),), (num(zero, 2),))
                for name, largest, over, tiny, zero in limits
            ),
        )
    )
    float64_over = limits[1][2]
    b.para(
        "stab_naive",
        sum_limit=Math(rf"\log\left(\max\right) - \log {tex(K)}"),
        many=Math(str(LARGE_K_EXAMPLE)),
        many_limit=num(float64_over - math.log(LARGE_K_EXAMPLE), 2),
        this_k=Math(str(k)),
        this_limit=num(float64_over - math.log(k), 2),
        inf_over_inf=printed(
            sympy.Mul(sympy.oo, sympy.Pow(sympy.oo, -1, evaluate=False), evaluate=False)
        ),
        subnormal=num(limits[1][3], 2),
        zero=num(limits[1][4], 2),
    )
    normaliser_m = Sum(exp(z[k_] - m), (k_, 1, K))
    stable = checker.chain("stable-softmax", [s[i], exp(z[i] - m) / normaliser_m], [i])
    _proved(b, "stable-softmax", stable)
    log_sum_exp = checker.chain(
        "log-sum-exp",
        [log(S), log(Sum(exp(z[k_]), (k_, 1, K))), m + log(normaliser_m)],
        logs=True,
    )
    b.para("stab_why", d_nonpositive=printed(sympy.LessThan(z[i] - m, 0, evaluate=False)))
    _proved(b, "log-sum-exp", log_sum_exp)
    stable_log = checker.chain(
        "stable-log-softmax", [log(s[i]), z[i] - m - log(normaliser_m)], [i], logs=True
    )
    b.para("stab_log")
    _proved(b, "stable-log-softmax", stable_log)
    # the worked example moved far up: shift invariance says nothing changes
    amount = 1000.0 if max(w.logits) + 1000.0 > float64_over else 2000.0
    moved = [x_ + amount for x_ in w.logits]
    naive, stable_p = _naive_and_stable(moved, w.winner)
    b.para(
        "stab_example",
        shift=Math(logit(amount)),
        exp_big=Math(f"e^{{{logit(moved[w.winner])}}}"),
        winner=labels[w.winner],
        naive=Code("NaN") if math.isnan(naive) else num(naive),
        stable=num(stable_p),
    )


# --- part II: implementation notes ---------------------------------------------------------

_V = sympy.MatrixSymbol("v", K, 1)  # the vector of J v and J^T v
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
    "logsumexp": family_sections.LSE,
    "log_softmax_jvp": J_LOG * _V,
    "log_softmax_vjp": J_LOG.T * family_sections.G,
    "distillation_kl": family_sections.L_KD,
    "distillation_kl_grad": Derivative(family_sections.L_KD, z[j]),
    "cross_entropy_hessian": Hij[i, j],
    "cross_entropy_hvp": H * _V,
}


def _kernel_steps(b: Builder, bundle: Bundle) -> None:
    """The per-element forms the emitted kernels compute, printed from the Bundle."""
    f = bundle.kernel
    u_i, U = sympy.symbols("u_i U", positive=True)
    names = {
        f.e_i: u_i,
        f.S: U,
        f.log_S: log(U),
        f.delta_ij: KroneckerDelta(i, j),
        f.sum_y: Sum(y[j], (j, 1, K)),
    }

    def p(expr: sympy.Basic) -> str:
        return tex(expr.xreplace(names))

    def aligned(lines: list[tuple[str, str]]) -> str:
        body = " \\\\\n".join(rf"{lhs} &\leftarrow {rhs}" for lhs, rhs in lines)
        return "\\begin{aligned}\n" + body + "\n\\end{aligned}"

    loss_term = f.loss_term.args[-1][0]  # the formula; its y_i = 0 guard only avoids 0 * inf
    u = sympy.IndexedBase("u")
    general = [
        (tex(m), r"\max_{k} z_{k}"),
        (p(f.d_i), p(f.shifted)),
        (p(f.e_i), p(f.exponential)),
        (p(f.S), tex(Sum(u[k_], (k_, 1, K)))),
        (p(f.s_i), p(f.probability)),
        (tex(log(f.s_i)), p(f.log_probability)),
        (tex(Jij[i, j]), p(f.jacobian)),
        (tex(L), tex(Sum(loss_term.xreplace(names), (sympy.Symbol("i"), 1, K)))),
        (tex(Derivative(L, z[i])), p(f.gradient)),
    ]
    proofs = {
        label: [
            Proof(identity.name, _scope(b, _identity_scope(identity, bundle.k)))
            for identity in bundle.identities
            if identity.name.startswith(("stable-", "kernel-"))
            and ("-index" in identity.name) == label
        ]
        for label in (False, True)
    }
    b.para("code_steps", u_i=printed(u_i), U=printed(U))
    b.equation("kernel", aligned(general), kind="computation", proofs=proofs[False])
    # for an integer label c: named results, r_c defined where it is used
    r_c, ell_c, g_c = sympy.symbols("r_c ell_c g_c")
    label = {f.z_i: z[c], f.rest: r_c}
    loss_index = f.loss_index.replace(CompensatedSum, lambda *terms: sympy.Add(*terms))
    one_hot = [
        (tex(r_c), rf"\sum_{{{tex(k_)} \neq {tex(c)}}} {tex(u[k_])}"),
        (tex(ell_c), p(loss_index.xreplace(label))),
        (tex(g_c), p(f.gradient_true_class.xreplace(label))),
    ]
    b.para(
        "code_label",
        ell_c=printed(ell_c),
        loss_c=printed(-log(s[c])),
        g_c=printed(g_c),
        grad_c=printed(Derivative(L, z[c])),
        r_c=printed(r_c),
        log_U=printed(log(U)),
        cancel=printed(s[c] - 1),
    )
    b.equation("kernel-label", aligned(one_hot), kind="computation", proofs=proofs[True])


def _code_section(b: Builder, bundle: Bundle) -> None:
    k = bundle.k
    b.section("code", "sec_code", appendix=True)
    stem = f"softmax_k{k}"
    b.para(
        "code_intro",
        py_file=Code(f"{stem}.py", file=True),
        h_file=Code(f"{stem}.h", file=True),
        c_file=Code(f"{stem}.c", file=True),
    )
    _kernel_steps(b, bundle)
    vjp = _general(bundle, "general-k-softmax-vjp-sum")
    b.para("code_vjp", jvp=Code("softmax_jvp"), vjp=Code("softmax_vjp"))
    b.equation(
        "general-vjp",
        chain([vjp.lhs, vjp.rhs, _general(bundle, "general-k-softmax-vjp").rhs]),
        proofs=_symbolic(b, bundle, "general-k-softmax-vjp-sum", "general-k-softmax-vjp"),
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
    b.para("code_table")
    b.add(
        Table(
            "llll",
            (b.text("col_formula"), b.text("col_equation"), b.text("col_numpy"), b.text("col_c")),
            tuple(rows),
            small=True,  # the C names of the fused kernels are long
        )
    )
    b.para("code_after", f32=Code("_f32"), f64=Code("_f64"))


def _checks_section(b: Builder, bundle: Bundle) -> None:
    k = bundle.k
    b.section("checks", "sec_checks", appendix=True)
    equations = [
        block for section in b.sections for block in section.blocks if isinstance(block, Equation)
    ]
    b.para("checks_intro", exp_z_k=printed(exp(z[k_])))
    b.para("checks_sympy", k_eq_j=eq(k_, j), sum_k=printed(Sum(exp(z[k_]), (k_, 1, K))))
    quantities = {
        "softmax-jacobian": ("jacobian_name", "general-k-softmax-jacobian", k * k),
        "log-softmax-gradient": ("log_grad_name", "general-k-log-softmax-gradient", k * k),
        "cross-entropy-gradient": ("ce_grad_name", "general-k-cross-entropy-gradient", k),
    }
    rows = []
    for identity in gk.check_fixed_k_agrees(k):
        label, general, total = quantities[identity.name.removeprefix(f"fixed-k-{k}-")]
        scope = Check(identity.name, (), len(identity.lhs), total)
        rows.append((b.text(label), (printed(_general(bundle, general).rhs),), _scope(b, scope)))
    b.para("checks_agree")
    b.add(
        Table(
            "llr",
            (b.text("col_quantity"), b.text("col_closed_form"), b.text("col_compared")),
            tuple(rows),
        )
    )
    b.para("checks_table")
    rows = []
    for equation in equations:
        label: Text = (Ref("eq", equation.key),)
        if not equation.proofs:
            rows.append((label, b.text(equation.kind), ()))
            continue
        for n, proof in enumerate(equation.proofs):
            rows.append((label if n == 0 else (), (Code(proof.name),), proof.scope))
    b.add(
        Table(
            "llr",
            (b.text("col_equation"), b.text("col_check"), b.text("col_compared")),
            tuple(rows),
        )
    )
