"""The lesson's section on the cross-entropy as people train with it (issue 17): class
weights, ignore_index, the reductions, label smoothing, a temperature and the z-loss.

Each displayed equality is a chain proved by symsoft.document.checks at the given K (with the
tempered checker: the logits are divided by T first), beside the symbolic-K step of
symsoft.derivation.options; the Bundle's own identities prove every combination of the
options the API allows, and the equation that states the reduced gradient lists them. The
worked example's numbers are evaluated with the 50-digit reference from the logits the user
chose; the options of the example are the constants below.
"""

from __future__ import annotations

from collections.abc import Sequence

import mpmath
import sympy
from sympy import Derivative, KroneckerDelta, Sum, exp, log

from symsoft.derivation import general_k as gk
from symsoft.derivation import reference
from symsoft.derivation.bundle import Bundle
from symsoft.document.checks import EPS, LAM, FixedKChecker, T, a, p, w
from symsoft.document.printer import tex
from symsoft.document.shared import proved, symbolic, table_rows
from symsoft.document.text import TEXT
from symsoft.document.view import (
    Builder,
    Code,
    Math,
    Proof,
    Table,
    Text,
    chain,
    eq,
    logit,
    num,
    number,
)
from symsoft.errors import ProofError

# The worked combination: a batch of two rows, the first the worked example with its true
# class as label, the second the same logits reversed with its label ignored; the true
# class weighted twice the others, smoothing, a z-loss, reduction "mean", T = 1.
WORKED_SMOOTHING = 0.1
WORKED_Z_LOSS = 0.01
WORKED_TRUE_WEIGHT = 2.0

i, j, k_, c = gk.i, gk.j, gk.k, gk.c
z, y = gk.z, gk.y
K = gk.K
LSE = sympy.Symbol(r"\operatorname{lse}")
ELL = sympy.Symbol(r"\ell")
TEMPERED_NORMALISER = Sum(exp(z[k_] / T), (k_, 1, K))
TARGET = w[i] * ((1 - EPS) * y[i] + EPS / K)


def _lse(expr: sympy.Basic) -> sympy.Basic:
    """lse as the log-sum-exp of the tempered logits."""
    return expr.xreplace({LSE: log(TEMPERED_NORMALISER)})


def _label_targets(expr: sympy.Basic) -> sympy.Basic:
    """a_i as the weighted smoothed one-hot target of the label c."""
    return expr.replace(
        lambda e: isinstance(e, sympy.Indexed) and e.base == a,
        lambda e: TARGET.xreplace({i: e.indices[0]}).xreplace(
            {y[e.indices[0]]: KroneckerDelta(e.indices[0], c)}
        ),
    )


def section(b: Builder, bundle: Bundle, labels: Sequence[str]) -> None:
    tempered = FixedKChecker(bundle.k, tempered=True)
    b.section("options", "sec_options")
    b.para("opt_intro", ce_name=Code("cross_entropy"), p=Math("p"))
    lines = [
        (tex(p[i]), tex(exp(z[i] / T) / TEMPERED_NORMALISER)),
        (
            tex(a[i]),
            rf"{tex(w[i])} \left(\left(1 - {tex(EPS)}\right) {tex(y[i])} + "
            rf"{tex(EPS / K)}\right)",
        ),
        (tex(ELL), rf"{tex(-Sum(a[i] * log(p[i]), (i, 1, K)))} + {tex(LAM * LSE**2)}"),
        (tex(LSE), tex(log(TEMPERED_NORMALISER))),
    ]
    body = " \\\\\n".join(rf"{left} &= {right}" for left, right in lines)
    b.equation(
        "options-definition", "\\begin{aligned}\n" + body + "\n\\end{aligned}", kind="definition"
    )
    b.para(
        "opt_def_after",
        T_pos=Math(rf"{tex(T)} > 0"),
        eps_range=Math(rf"0 \leq {tex(EPS)} \leq 1"),
        lam_pos=Math(rf"{tex(LAM)} \geq 0"),
        w_i=Math(tex(w[i])),
        y_one_hot=eq(y[i], KroneckerDelta(i, c)),
        ignored=eq(ELL, sympy.Integer(0)),
        off=Math(rf"{tex(w[i])} = 1, {tex(EPS)} = 0, {tex(T)} = 1, {tex(LAM)} = 0"),
        ell=Math(tex(ELL)),
    )
    a_i = Math(tex(a[i]))
    # label smoothing for an integer label: PyTorch's two terms are one sum over a_i
    smoothing = tempered.chain(
        "options-smoothed-label",
        [
            -Sum(a[i] * log(p[i]), (i, 1, K)),
            sympy.Add(
                sympy.Mul(-1, 1 - EPS, w[c], log(p[c]), evaluate=False),
                sympy.Mul(-1, EPS / K, Sum(w[j] * log(p[j]), (j, 1, K)), evaluate=False),
                evaluate=False,
            ),
        ],
        [c],
        assume=_label_targets,
        logs=True,
    )
    b.para("opt_smoothing", lead="opt_smoothing_lead", a_i=a_i)
    proved(
        b,
        "options-smoothed-label",
        smoothing,
        symbolic=symbolic(b, bundle, "general-k-smoothed-label-loss"),
    )
    b.para("opt_smoothing_after", a_i=a_i)
    loss = -Sum(a[i] * log(p[i]), (i, 1, K)) + LAM * LSE**2

    def z_loss(*factors: sympy.Basic) -> sympy.Expr:  # printed 2 lambda lse ..., in order
        return sympy.Mul(2, LAM, LSE, *factors, evaluate=False)

    gradient = tempered.chain(
        "options-gradient",
        [
            Derivative(loss, z[j]),
            -Sum(a[i] * Derivative(log(p[i]), z[j]), (i, 1, K)) + z_loss(Derivative(LSE, z[j])),
            -Sum(a[i] * (KroneckerDelta(i, j) - p[j]), (i, 1, K)) / T + z_loss(p[j]) / T,
            (p[j] * Sum(a[i], (i, 1, K)) - a[j] + z_loss(p[j])) / T,
        ],
        [j],
        assume=_lse,
    )
    b.para(
        "opt_grad",
        lead="opt_grad_lead",
        a_i=a_i,
        one_over_T=Math(tex(1 / T)),
        lam=Math(tex(LAM)),
        lse=Math(tex(LSE)),
        lse_grad=Math(rf"{tex(Derivative(LSE, z[j]))} = {tex(p[j] / T)}"),
        z_over_T=Math(rf"{tex(z)} / {tex(T)}"),
    )
    proved(
        b,
        "options-gradient",
        gradient,
        symbolic=symbolic(
            b, bundle, "general-k-tempered-sum-derivative", "general-k-options-gradient"
        ),
    )
    b.para(
        "opt_grad_after",
        plain=Math(tex(gk.s[j] * Sum(y[i], (i, 1, K)) - y[j])),
        p=Math("p"),
        label_form=Math(
            rf"{tex(p[c])} \sum_{{{tex(i)} \neq {tex(c)}}} {tex(a[i])} - {tex(a[c])} \rho_{{c}}"
        ),
        rho=Math(
            rf"\rho_{{c}} = \sum_{{{tex(k_)} \neq {tex(c)}}} e^{{{tex(z[k_])} / {tex(T)}}} "
            rf"/ \sum_{{{tex(k_)}=1}}^{{{tex(K)}}} e^{{{tex(z[k_])} / {tex(T)}}}"
        ),
        label_plain=Math(
            rf"{tex(p[c])} \sum_{{{tex(i)}=1}}^{{{tex(K)}}} {tex(a[i])} - {tex(a[c])}"
        ),
        cancel=Math(rf"1 - {tex(p[c])}"),
    )
    _reductions(b, bundle)
    _worked(b, bundle, labels)


def _reductions(b: Builder, bundle: Bundle) -> None:
    """The reduced loss over a batch and its gradient; every combination a Bundle identity."""
    n_ = sympy.Symbol("n", integer=True, positive=True)
    N = sympy.Symbol("N", integer=True, positive=True)
    ell = sympy.IndexedBase(r"\ell")
    D = sympy.Symbol("D", positive=True)
    kept = r"\sum_{n \notin I}"
    words = TEXT[b.lang]  # the conditions, in the reader's language
    body = (
        "\\begin{aligned}\n"
        + " \\\\\n".join(
            [
                rf"L_{{\mathrm{{sum}}}} &= {kept} {tex(ell[n_])}, \qquad "
                rf"L_{{\mathrm{{mean}}}} = \frac{{1}}{{{tex(D)}}} {kept} {tex(ell[n_])}",
                rf"{tex(D)} &= {kept} w_{{c_{{n}}}} \ \text{{({words['opt_labels']})}}, \qquad "
                rf"{tex(D)} = {tex(N)} \ \text{{({words['opt_probability_targets']})}}",
            ]
        )
        + "\n\\end{aligned}"
    )
    b.para(
        "opt_reduce",
        lead="opt_reduce_lead",
        N=Math(tex(N)),
        I=Math("I"),
        c_n=Math("c_{n}"),
        n=Math("n"),
        none=Code('"none"'),
        sum_name=Code('"sum"'),
        mean=Code('"mean"'),
    )
    b.equation("options-reductions", body, kind="definition")
    identities = [x for x in bundle.option_identities if x.name.startswith("options-")]
    combinations = [x for x in identities if not x.name.startswith("options-tempered")]
    combinations = [x for x in combinations if not x.name.endswith("-ignored-row")]
    if not combinations:
        raise ProofError("the document presents the options' reductions, which were not proved")
    scale = sympy.Symbol(r"\sigma")
    gradient_body = chain(
        [
            Derivative(sympy.Symbol("L"), sympy.Indexed(z, n_, j)),
            scale * Derivative(sympy.Indexed(ell, n_), sympy.Indexed(z, n_, j)),
        ]
    )
    b.para(
        "opt_reduce_grad",
        D=Math("D"),
        n=Math("n"),
        scale=Math(tex(scale)),
        one_over_D=Math(rf"1 / {tex(D)}"),
    )
    b.equation(
        "options-reduced-gradient",
        gradient_body,
        proofs=[
            Proof(
                "options-*",
                b.text("combinations", count=Math(str(len(combinations)))),
            )
        ],
    )
    b.para(
        "opt_reduce_after",
        all_ignored=Math(r"0 / 0"),
        D_zero=Math("D = 0"),
        mean=Code('"mean"'),
        sum_name=Code('"sum"'),
    )


def _worked(b: Builder, bundle: Bundle, labels: Sequence[str]) -> None:
    k, worked = bundle.k, bundle.worked
    c_true = worked.true_class
    weight = [WORKED_TRUE_WEIGHT if n == c_true else 1.0 for n in range(k)]
    options = {"weight": weight, "label_smoothing": WORKED_SMOOTHING, "z_loss": WORKED_Z_LOSS}
    row_loss, row_grad = reference.cross_entropy_options(worked.logits, label=c_true, **options)
    D = weight[c_true]  # the ignored second row adds nothing
    loss = float(row_loss) / D
    grad = [float(x) / D for x in row_grad]
    targets = [
        weight[n] * ((1 - WORKED_SMOOTHING) * (n == c_true) + WORKED_SMOOTHING / k)
        for n in range(k)
    ]
    b.para(
        "opt_example",
        lead="opt_example_lead",
        true_label=labels[c_true],
        weight_true=Math(logit(WORKED_TRUE_WEIGHT)),
        eps_value=eq(EPS, sympy.Float(WORKED_SMOOTHING)),
        lam_value=eq(LAM, sympy.Float(WORKED_Z_LOSS)),
        D_value=Math(rf"D = {logit(D)}"),
    )

    def row(n: int) -> tuple[Text, ...]:
        return (
            (labels[n],),
            (Math(logit(weight[n])),),
            (num(targets[n]),),
            (num(worked.probabilities[n]),),
            (num(grad[n]),),
        )

    b.add(
        Table(
            "lrrrr",
            (
                b.text("col_class"),
                (Math(tex(w[i])),),
                (Math(tex(a[i])),),
                (Math(tex(p[i])),),
                (Math(r"\frac{\partial L}{\partial z_{1 i}}"),),
            ),
            table_rows(k, row, 5),
        )
    )
    # what the libraries' bugs would have given, from the same definitions
    ignored = tuple(reversed(worked.logits))
    log_probabilities = reference.log_softmax(ignored)
    smoothing_term = mpmath.fsum(
        weight[n] * WORKED_SMOOTHING / k * -log_probabilities[n] for n in range(k)
    )
    b.para(
        "opt_example_after",
        loss_value=Math(rf"L \approx {number(loss)}"),
        lse_value=Math(
            rf"{tex(LSE)} \approx {number(float(reference.log_sum_exp(worked.logits)))}"
        ),
    )
    b.para(
        "opt_wrong",
        lead="opt_wrong_lead",
        smoothing_bug=Code("pytorch#73205"),
        crash_bug=Code("pytorch#69339"),
        none_bug=Code("Liger-Kernel#968"),
        wrong_loss=Math(number(loss + float(smoothing_term) / D)),
        right_loss=Math(number(loss)),
        D=Math("D"),
        D_value=Math(rf"D = {logit(D)}"),
        none_grad=Math(number(float(row_grad[c_true]))),
        mean_grad=Math(number(grad[c_true])),
    )
