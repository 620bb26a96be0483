"""The lesson's sections on the members built on the softmax (issue 18): log-sum-exp, the
log-softmax products, knowledge distillation with a temperature, and the cross-entropy's
Hessian and Hessian-vector product.

As in the sections before them, every displayed equality is a chain proved by
symsoft.document.checks at the given K, with the symbolic-K step of
symsoft.derivation.general_k_family and the Bundle's own fixed-K identity (the member's form
differentiated from its definition) beside it where they exist, so a wrong step stops
generation. The worked example's numbers are evaluated with the 50-digit reference
(symsoft.derivation.reference) from the logits the user chose, never typed in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import mpmath
import numpy
import sympy
from sympy import Derivative, Identity, KroneckerDelta, OneMatrix, Sum, exp, log

from symsoft.derivation import general_k as gk
from symsoft.derivation import reference
from symsoft.derivation.bundle import Bundle
from symsoft.document.checks import (
    ENTRYWISE_K_MAX,
    J_LOG,
    SUM_Y,
    Check,
    FixedKChecker,
    H,
    Hij,
    JLij,
    L,
    S,
    T,
    g,
    m,
    p,
    q,
    sum_y_constant,
)
from symsoft.document.printer import tex
from symsoft.document.shared import (
    fixed,
    general,
    proved,
    scope,
    symbolic,
    table_rows,
)
from symsoft.document.view import (
    Builder,
    Code,
    Math,
    Proof,
    Table,
    Text,
    chain,
    eq,
    gt,
    logit,
    num,
    number,
)
from symsoft.errors import ProofError

# The temperature of the worked distillation example (Hinton et al. use values from 1 to 20).
DISTILLATION_TEMPERATURE = 2.0

i, j, k_ = gk.i, gk.j, gk.k
z, y, s, v = gk.z, gk.y, gk.s, gk.v
K = gk.K
t = sympy.IndexedBase("t", real=True)  # the teacher's logits (display only: q stands for them)
LSE = sympy.Symbol(r"\operatorname{lse}")
L_KD = sympy.Symbol(r"L_{\mathrm{KD}}")
N = sympy.Symbol("N", integer=True, positive=True)  # rows in a batch
V = sympy.MatrixSymbol("v", K, 1)
G = sympy.MatrixSymbol("g", K, 1)
ONES = OneMatrix(K, 1)
NORMALISER = Sum(exp(z[k_]), (k_, 1, K))
TEMPERED_NORMALISER = Sum(exp(z[k_] / T), (k_, 1, K))
KD_LOSS = T**2 * Sum(q[i] * (log(q[i]) - log(p[i])), (i, 1, K))


def _lse_definition(expr: sympy.Basic) -> sympy.Basic:
    return expr.xreplace({LSE: log(NORMALISER)})


def _kd_definition(expr: sympy.Basic) -> sympy.Basic:
    return expr.xreplace({L_KD: KD_LOSS})


def _floats(values: Sequence[mpmath.mpf]) -> list[float]:
    return [float(x) for x in values]


def sections(b: Builder, bundle: Bundle, checker: FixedKChecker, labels: Sequence[str]) -> None:
    _logsumexp_section(b, bundle, checker)
    _log_softmax_section(b, bundle, checker, labels)
    _distillation_section(b, bundle, labels)
    _second_order_section(b, bundle, checker, labels)


# --- log-sum-exp ---------------------------------------------------------------------------


def _logsumexp_section(b: Builder, bundle: Bundle, checker: FixedKChecker) -> None:
    k, w = bundle.k, bundle.worked
    b.section("logsumexp", "sec_logsumexp")
    b.para("lse_def", lse=Math(rf"{tex(LSE)}\left({tex(z)}\right)"))
    b.equation("logsumexp-definition", chain([LSE, log(NORMALISER), log(S)]), kind="definition")
    b.para("lse_def_after")
    shifted = Sum(exp(z[k_] - m), (k_, 1, K))
    stable = checker.chain("lse-stable", [LSE, m + log(shifted)], assume=_lse_definition, logs=True)
    b.para("lse_stable")
    proved(b, "logsumexp-stable", stable, symbolic=fixed(b, bundle, "stable-logsumexp"))
    b.para(
        "lse_stable_after",
        bounds=Math(rf"{tex(m)} \leq {tex(LSE)} \leq {tex(m)} + {tex(log(K))}"),
        log_K=Math(tex(log(K))),
        minus_inf=Math(r"-\infty"),
    )
    gradient = checker.chain(
        "lse-gradient",
        [
            Derivative(LSE, z[j]),
            sympy.Mul(sympy.Pow(NORMALISER, -1), Sum(Derivative(exp(z[k_]), z[j]), (k_, 1, K))),
            exp(z[j]) / NORMALISER,
            s[j],
        ],
        [j],
        assume=_lse_definition,
    )
    b.para("lse_grad", lead="lse_grad_lead")
    proved(
        b,
        "logsumexp-gradient",
        gradient,
        symbolic=[
            *symbolic(b, bundle, "general-k-logsumexp-gradient"),
            *fixed(b, bundle, "logsumexp-gradient"),
        ],
    )
    log_prob = checker.chain(
        "lse-log-softmax", [log(s[i]), z[i] - LSE], [i], assume=_lse_definition, logs=True
    )
    b.para("lse_grad_after")
    proved(b, "logsumexp-log-softmax", log_prob)
    b.para("lse_grad_after2")
    top = max(w.logits)
    shifted_sum = mpmath.fsum(mpmath.exp(mpmath.mpf(x) - top) for x in w.logits)
    value = float(reference.log_sum_exp(w.logits))
    b.para(
        "lse_example",
        m_value=Math(f"{tex(m)} = {logit(top)}"),
        shifted_sum=Math(
            rf"\sum_{{{tex(k_)}=1}}^{{{k}}} e^{{{tex(z[k_])} - {tex(m)}}} \approx "
            rf"{number(float(shifted_sum))}"
        ),
        lse_value=Math(
            rf"{tex(LSE)} = {logit(top)} + \log {number(float(shifted_sum))} \approx "
            rf"{number(value)}"
        ),
        S_value=num(w.total),
        upper=Math(rf"{logit(top)} + \log {k} \approx {number(top + math.log(k))}"),
    )


# --- the log-softmax products --------------------------------------------------------------


def _log_softmax_section(
    b: Builder, bundle: Bundle, checker: FixedKChecker, labels: Sequence[str]
) -> None:
    k, w = bundle.k, bundle.worked
    b.section("log-softmax-products", "sec_log_softmax_products")
    b.para(
        "lsp_intro",
        J_log_entry=Math(
            rf"{tex(JLij[i, j])} = {tex(Derivative(log(s[i]), z[j]))} = "
            rf"{tex(KroneckerDelta(i, j) - s[j])}"
        ),
    )
    matrix = checker.chain("log-softmax-jacobian-matrix", [J_LOG, Identity(K) - ONES * gk.S_VEC.T])
    proved(
        b,
        "log-softmax-jacobian",
        matrix,
        symbolic=[
            *symbolic(b, bundle, "general-k-log-softmax-gradient"),
            *fixed(b, bundle, "log-softmax-jacobian-closed-form"),
        ],
    )
    b.para("lsp_matrix_after", I=Math("I"))
    log_jacobian = KroneckerDelta(i, j) - s[j]
    jvp = checker.chain(
        "log-softmax-jvp",
        [
            Sum(Derivative(log(s[i]), z[j]) * v[j], (j, 1, K)),
            Sum(log_jacobian * v[j], (j, 1, K)),
            v[i] - Sum(s[j] * v[j], (j, 1, K)),
        ],
        [i],
    )
    b.para("lsp_jvp", lead="lsp_jvp_lead")
    proved(
        b,
        "log-softmax-jvp",
        jvp,
        symbolic=[
            *symbolic(b, bundle, "general-k-log-softmax-jvp"),
            *fixed(b, bundle, "kernel-log-softmax-jvp"),
        ],
    )
    inner = r"\left\langle s, v \right\rangle"
    b.para(
        "lsp_jvp_after",
        jvp_vector=Math(rf"{tex(J_LOG * V)} = {tex(V)} - {inner} {tex(ONES)}"),
    )
    vjp = checker.chain(
        "log-softmax-vjp",
        [
            Sum(Derivative(log(s[i]), z[j]) * g[i], (i, 1, K)),
            Sum(log_jacobian * g[i], (i, 1, K)),
            g[j] - s[j] * Sum(g[i], (i, 1, K)),
        ],
        [j],
    )
    b.para("lsp_vjp", lead="lsp_vjp_lead", g=Math("g"), J_log_T_g=Math(tex(J_LOG.T * G)))
    proved(
        b,
        "log-softmax-vjp",
        vjp,
        symbolic=[
            *symbolic(b, bundle, "general-k-log-softmax-vjp"),
            *fixed(b, bundle, "kernel-log-softmax-vjp"),
        ],
    )
    b.para(
        "lsp_vjp_after",
        vjp_vector=Math(
            rf"{tex(J_LOG.T * G)} = g - s \sum_{{{tex(i)}=1}}^{{{tex(K)}}} {tex(g[i])}"
        ),
        O_K=Math(r"O\left(K\right)"),
        O_K2=Math(r"O\left(K^{2}\right)"),
        J_log=Math(tex(J_LOG)),
        jvp_name=Code("log_softmax_jvp"),
        vjp_name=Code("log_softmax_vjp"),
    )
    cross_entropy = checker.chain(
        "log-softmax-vjp-cross-entropy",
        [
            -Sum(y[i] * Derivative(log(s[i]), z[j]), (i, 1, K)),
            s[j] * Sum(y[i], (i, 1, K)) - y[j],
            Derivative(L, z[j]),
        ],
        [j],
    )
    b.para("lsp_ce", minus_y=Math(r"-y"))
    proved(b, "log-softmax-vjp-cross-entropy", cross_entropy)
    # the worked example: v the winner's unit vector, g = -y for the one-hot target
    winner, true = w.winner, w.true_class
    unit = [float(n == winner) for n in range(k)]
    minus_y = [-float(n == true) for n in range(k)]
    jvp_values = _floats(reference.log_softmax_jvp(w.logits, unit))
    vjp_values = _floats(reference.log_softmax_vjp(w.logits, minus_y))
    b.para(
        "lsp_example",
        winner=labels[winner],
        g_value=Math("g = -y"),
        true_label=labels[true],
    )

    def row(n: int) -> tuple[Text, ...]:
        return (
            (labels[n],),
            (num(w.probabilities[n]),),
            (num(jvp_values[n]),),
            (num(vjp_values[n]),),
        )

    b.add(
        Table(
            "lrrr",
            (
                b.text("col_class"),
                (Math(tex(s[i])),),
                (Math(rf"\left({tex(J_LOG * V)}\right)_{{{tex(i)}}}"),),
                (Math(rf"\left({tex(J_LOG.T * G)}\right)_{{{tex(i)}}}"),),
            ),
            table_rows(k, row, 4),
        )
    )
    if k == 1:
        b.para("lsp_example_after_k1")
    else:
        other = next(n for n in range(k) if n != winner)
        b.para(
            "lsp_example_after",
            winner=labels[winner],
            own=num(jvp_values[winner]),
            other=num(-jvp_values[other]),
        )


# --- distillation --------------------------------------------------------------------------


def _distillation_section(b: Builder, bundle: Bundle, labels: Sequence[str]) -> None:
    k, w = bundle.k, bundle.worked
    tempered = FixedKChecker(k, tempered=True)
    b.section("distillation", "sec_distillation")
    z_over_T = Math(rf"{tex(z)} / {tex(T)}")
    t_over_T = Math(rf"{tex(t)} / {tex(T)}")
    T_squared = Math(tex(T**2))
    b.para(
        "kd_intro",
        t=Math("t"),
        T_pos=gt(T, sympy.Integer(0)),
        T_squared=T_squared,
        p=Math("p"),
        kl=Math(r"\mathrm{KL}\left(q \parallel p\right)"),
        q=Math("q"),
    )
    lines = [
        (tex(p[i]), tex(exp(z[i] / T) / TEMPERED_NORMALISER)),
        (tex(q[i]), tex(exp(t[i] / T) / Sum(exp(t[k_] / T), (k_, 1, K)))),
        (tex(L_KD), tex(KD_LOSS)),
    ]
    body = " \\\\\n".join(rf"{left} &= {right}" for left, right in lines)
    b.equation("kd-definition", "\\begin{aligned}\n" + body + "\n\\end{aligned}", kind="definition")
    b.para(
        "kd_def_after",
        kl_div=Code("kl_div"),
        log_target=Code("log_target=True"),
        z_over_T=z_over_T,
        t_over_T=t_over_T,
        T_squared=T_squared,
    )
    log_p = tempered.chain(
        "distillation-log-softmax",
        [
            Derivative(log(p[i]), z[j]),
            Derivative(z[i] / T - log(TEMPERED_NORMALISER), z[j]),
            (KroneckerDelta(i, j) - p[j]) / T,
        ],
        [i, j],
        logs=True,
    )
    b.para("kd_log", lead="kd_log_lead", z_over_T=z_over_T, one_over_T=Math(tex(1 / T)))
    proved(b, "kd-log", log_p)
    gradient = tempered.chain(
        "distillation-gradient",
        [
            Derivative(L_KD, z[j]),
            -(T**2) * Sum(q[i] * Derivative(log(p[i]), z[j]), (i, 1, K)),
            -T * Sum(q[i] * (KroneckerDelta(i, j) - p[j]), (i, 1, K)),
            T * (p[j] * Sum(q[i], (i, 1, K)) - q[j]),
            T * (p[j] - q[j]),
        ],
        [j],
        assume=_kd_definition,
    )
    b.para(
        "kd_grad",
        lead="kd_grad_lead",
        q_sum=eq(Sum(q[i], (i, 1, K)), sympy.Integer(1)),
        q=Math("q"),
    )
    proved(
        b,
        "kd-gradient",
        gradient,
        symbolic=[
            *symbolic(b, bundle, "general-k-distillation-gradient"),
            *fixed(b, bundle, "distillation-kl-gradient", "kernel-distillation-kl-grad"),
        ],
    )
    z_bar, t_bar = sympy.Symbol(r"\bar{z}"), sympy.Symbol(r"\bar{t}")
    b.para(
        "kd_grad_after",
        T_squared=T_squared,
        one_over_T=Math(tex(1 / T)),
        large_T=Math(
            rf"{tex(p[j] - q[j])} \approx "
            rf"\frac{{{tex(z[j] - z_bar)} - \left({tex(t[j] - t_bar)}\right)}}{{{tex(K * T)}}}"
        ),
        z_bar=Math(tex(z_bar)),
        t_bar=Math(tex(t_bar)),
        inverse_T_squared=Math(tex(1 / T**2)),
    )
    b.para(
        "kd_batch",
        N=Math("N"),
        batchmean=Code('"batchmean"'),
        per_row=Math(rf"{tex(T * (p[j] - q[j]) / N)}"),
        sum_name=Code('"sum"'),
        none_name=Code('"none"'),
        masked=Math(rf"{tex(z[i])} = {tex(t[i])} = -\infty"),
        p_q_zero=Math(rf"{tex(p[i])} = {tex(q[i])} = 0"),
        zero_log_zero=Math(r"0 \cdot \left(\log 0 - \log 0\right)"),
        q_zero=Math(rf"{tex(q[i])} = 0"),
    )
    # the worked example: the teacher has the student's logits in reverse order
    temperature = DISTILLATION_TEMPERATURE
    teacher = tuple(reversed(w.logits))
    student_p = _floats(reference.softmax([x / temperature for x in w.logits]))
    teacher_q = _floats(reference.softmax([x / temperature for x in teacher]))
    grad = _floats(reference.distillation_kl_grad(w.logits, teacher, temperature))
    loss = float(reference.distillation_kl(w.logits, teacher, temperature))
    b.para("kd_example", T_value=Math(rf"{tex(T)} = {logit(temperature)}"))

    def row(n: int) -> tuple[Text, ...]:
        return (
            (labels[n],),
            (Math(logit(w.logits[n])),),
            (Math(logit(teacher[n])),),
            (num(student_p[n]),),
            (num(teacher_q[n]),),
            (num(grad[n]),),
        )

    b.add(
        Table(
            "lrrrrr",
            (
                b.text("col_class"),
                (Math(tex(z[i])),),
                (Math(tex(t[i])),),
                (Math(tex(p[i])),),
                (Math(tex(q[i])),),
                (Math(tex(Derivative(L_KD, z[i]))),),
            ),
            table_rows(k, row, 6),
        )
    )
    if k == 1:
        b.para("kd_example_k1")
    else:
        b.para("kd_example_after", loss_value=Math(rf"{tex(L_KD)} \approx {number(loss)}"))


# --- second order --------------------------------------------------------------------------


def _second_order_section(
    b: Builder, bundle: Bundle, checker: FixedKChecker, labels: Sequence[str]
) -> None:
    k, w = bundle.k, bundle.worked
    b.section("second-order", "sec_second_order")
    b.para("so_intro")
    entry = checker.chain(
        "cross-entropy-hessian-entry",
        [
            Derivative(s[j] * SUM_Y - y[j], z[i]),
            _times_sum_y(Derivative(s[j], z[i])),
            _times_sum_y(s[i], KroneckerDelta(i, j) - s[j]),
        ],
        [i, j],
        assume=sum_y_constant,
    )
    steps = [Derivative(L, z[j], z[i]), *entry.steps]
    b.equation(
        "hessian-entry",
        chain(steps),
        proofs=[
            *fixed(b, bundle, "cross-entropy-hessian-closed-form"),
            *_proofs(b, entry),
            *symbolic(b, bundle, "general-k-cross-entropy-hessian"),
        ],
    )
    b.para("so_intro_after")
    difference = sympy.MatAdd(gk.Diag(gk.S_VEC), -gk.S_VEC * gk.S_VEC.T, evaluate=False)
    matrix = checker.chain(
        "cross-entropy-hessian-matrix",
        [H, sympy.MatMul(SUM_Y, difference), sympy.MatMul(SUM_Y, gk.J)],
        assume=sum_y_constant,
    )
    proved(b, "hessian-matrix", matrix, symbolic=fixed(b, bundle, "kernel-cross-entropy-hessian"))
    b.para("so_matrix_after", H=Math("H"), sum_y=Math(tex(SUM_Y)))
    symmetric = checker.chain("cross-entropy-hessian-symmetric", [H.T, H], assume=sum_y_constant)
    kernel = checker.chain(
        "cross-entropy-hessian-null-vector",
        [sympy.MatMul(H, ONES), sympy.ZeroMatrix(K, 1)],
        assume=sum_y_constant,
        cells=[(r, 1) for r in checker.index_values()],
    )
    b.para("so_sym", lead="so_sym_lead", H=Math("H"))
    proved(
        b,
        "hessian-symmetric-kernel",
        symmetric,
        kernel,
        symbolic=[
            *fixed(b, bundle, "cross-entropy-hessian-symmetric"),
            *symbolic(b, bundle, "general-k-cross-entropy-hessian-kernel"),
        ],
    )
    quadratic = general(bundle, "general-k-cross-entropy-hessian-quadratic-form")
    if quadratic.rhs != SUM_Y * Sum(s[i] * (v[i] - Sum(s[j] * v[j], (j, 1, K))) ** 2, (i, 1, K)):
        raise ProofError("the document's quadratic form is not the one the derivation proved")
    quadratic_steps = [
        Sum(v[i] * Sum(Hij[i, j] * v[j], (j, 1, K)), (i, 1, K)),
        _times_sum_y(Sum(s[i] * (v[i] - Sum(s[j] * v[j], (j, 1, K))) ** 2, (i, 1, K))),
    ]
    checks = []
    if k <= ENTRYWISE_K_MAX:  # the nested sums written out: cheap only for a small K
        checks.append(
            checker.chain(
                "cross-entropy-hessian-quadratic-form",
                quadratic_steps,
                assume=sum_y_constant,
            )
        )
    b.para("so_psd", lead="so_psd_lead")
    body = rf"{tex(V.T * H * V)} = " + chain(quadratic_steps)
    b.equation(
        "hessian-quadratic-form",
        body,
        proofs=[
            *_proofs(b, *checks),
            *symbolic(b, bundle, "general-k-cross-entropy-hessian-quadratic-form"),
        ],
    )
    b.para(
        "so_psd_after",
        H=Math("H"),
        y_nonneg=Math(rf"{tex(y[i])} \geq 0"),
        sum_y_pos=gt(SUM_Y, sympy.Integer(0)),
        s_pos=gt(s[i], sympy.Integer(0)),
        v_i_eq=Math(rf"{tex(v[i])} = \left\langle s, v \right\rangle"),
        rank=Math(rf"{tex(K)} - 1"),
    )
    hvp = checker.chain(
        "cross-entropy-hvp",
        [
            Sum(Hij[i, j] * v[j], (j, 1, K)),
            _times_sum_y(Sum(s[i] * (KroneckerDelta(i, j) - s[j]) * v[j], (j, 1, K))),
            _times_sum_y(s[i], v[i] - Sum(s[j] * v[j], (j, 1, K))),
        ],
        [i],
        assume=sum_y_constant,
    )
    b.para("so_hvp", lead="so_hvp_lead", Hv=Math("H v"))
    proved(
        b,
        "hvp",
        hvp,
        symbolic=[
            *symbolic(b, bundle, "general-k-cross-entropy-hvp"),
            *fixed(b, bundle, "kernel-cross-entropy-hvp"),
        ],
    )
    b.para(
        "so_hvp_after",
        hvp_vector=Math(
            rf"H v = \left({tex(SUM_Y)}\right) "
            r"\left(s \odot v - s \left\langle s, v \right\rangle\right)"
        ),
        odot=Math(r"\odot"),
        O_K=Math(r"O\left(K\right)"),
        H=Math("H"),
        K_squared=Math(tex(K**2)),
        hessian_name=Code("cross_entropy_hessian"),
        hvp_name=Code("cross_entropy_hvp"),
        Hv=Math("H v"),
    )
    # the worked example: a one-hot target, so sum(y) = 1 and H = J
    target = [float(n == w.true_class) for n in range(k)]
    probabilities = numpy.array(w.probabilities)
    if k <= ENTRYWISE_K_MAX:
        # the proved closed form (10.2) with sum(y) = 1, in float64
        hessian = numpy.diag(probabilities) - numpy.outer(probabilities, probabilities)
        eigenvalues = sorted(numpy.linalg.eigvalsh(hessian))
    else:
        eigenvalues = _rank_one_eigenvalues(probabilities)
    sum_y_value = Math(rf"{tex(SUM_Y)} = 1")
    rank = Math(str(k - 1))
    if k <= ENTRYWISE_K_MAX:
        b.para(
            "so_example",
            sum_y_value=sum_y_value,
            H=Math("H"),
            eigenvalues=Math(", ".join(_fixed3(x) for x in eigenvalues)),
            rank=rank,
        )
    else:
        b.para(
            "so_example_large",
            sum_y_value=sum_y_value,
            H=Math("H"),
            smallest=Math(_fixed3(eigenvalues[0])),
            second=Math(_fixed3(eigenvalues[1])),
            largest=Math(_fixed3(eigenvalues[-1])),
            rank=rank,
        )
    if k == 1:
        return
    gradient = list(w.gradient)
    product = _floats(reference.cross_entropy_hvp(w.logits, target, gradient))
    b.para("so_example_hvp", g_is_grad=Math(rf"g = {tex(gk.S_VEC)} - y"))

    def row(n: int) -> tuple[Text, ...]:
        return ((labels[n],), (num(gradient[n]),), (num(product[n]),))

    b.add(
        Table(
            "lrr",
            (b.text("col_class"), (Math(tex(g[i])),), (Math(r"\left(H g\right)_{i}"),)),
            table_rows(k, row, 3),
        )
    )
    curvature = math.fsum(a * c for a, c in zip(gradient, product, strict=True))
    length = math.fsum(a * a for a in gradient)
    b.para(
        "so_example_hvp_after",
        curvature=Math(rf"g^{{T}} H g \approx {number(curvature)}"),
        minus_g=Math("-g"),
        alpha=Math(
            rf"\alpha = \frac{{g^{{T}} g}}{{g^{{T}} H g}} \approx {number(length / curvature)}"
        ),
    )


def _rank_one_eigenvalues(probabilities: numpy.ndarray) -> list[float]:
    """The smallest, second smallest and largest eigenvalues of diag(s) - s s^T, without the
    O(K^3) of a dense solver (seconds at K = 1024 on a loaded machine).

    The kernel gives 0. The others solve the secular equation 1 = sum_i s_i^2 / (s_i - x) of
    the rank-one update, one in each gap between neighbouring sorted s_i, where the left side
    minus the right falls from +inf to -inf: found by bisection. A repeated s_i is itself an
    eigenvalue (e_a - e_b is an eigenvector for s_a = s_b).
    """
    ordered = numpy.sort(probabilities)

    def root(low: float, high: float) -> float:
        if not low < high:
            return low
        for _ in range(200):
            middle = (low + high) / 2
            if middle in (low, high):
                break
            if 1 - numpy.sum(ordered**2 / (ordered - middle)) > 0:
                low = middle
            else:
                high = middle
        return (low + high) / 2

    return [0.0, float(root(ordered[0], ordered[1])), float(root(ordered[-2], ordered[-1]))]


def _times_sum_y(*factors: sympy.Basic) -> sympy.Expr:
    """sum_k y_k times the factors, printed in front: (sum_k y_k) s_i (delta_ij - s_j)."""
    return sympy.Mul(SUM_Y, *factors, evaluate=False)


def _fixed3(x: float) -> str:
    text = f"{x:.3f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _proofs(b: Builder, *checks: Check) -> list[Proof]:
    return [Proof(check.name, scope(b, check)) for check in checks]
