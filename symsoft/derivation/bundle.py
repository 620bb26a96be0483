"""Plain, frozen data handed from the derivation stages to the emitters."""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from symsoft.proof import Identity


class CompensatedSum(sympy.Function):
    """a + b + c, evaluated by the kernels with a single rounding (Knuth's TwoSum).

    Mathematically it is the plain sum, which is what the proofs substitute.
    """

    nargs = 3

    def doit(self, **hints: object) -> sympy.Expr:
        return sympy.Add(*(a.doit(**hints) if hints.get("deep", True) else a for a in self.args))


@dataclass(frozen=True)
class KernelForms:
    """The per-element formulas the emitted kernels compute (the numerically stable forms).

    Each is written in terms of the element symbols below; the templates supply the loops
    and reductions (m = max_j z_j, S = sum_j e_j, sum_y = sum_j y_j) and the printers map
    the symbols to target names. closed_forms.py proves that, instantiated for every component,
    they equal the definitions.
    """

    z_i: sympy.Symbol
    y_i: sympy.Symbol
    m: sympy.Symbol  # row maximum
    d_i: sympy.Symbol  # shifted logit z_i - m
    e_i: sympy.Symbol  # exp(d_i)
    S: sympy.Symbol  # sum of e
    log_S: sympy.Symbol
    s_i: sympy.Symbol
    s_j: sympy.Symbol
    delta_ij: sympy.Symbol  # Kronecker delta, 1 on the diagonal
    sum_y: sympy.Symbol
    rest: sympy.Symbol  # sum of e_j over the classes other than the label
    shifted: sympy.Expr
    exponential: sympy.Expr
    probability: sympy.Expr
    log_normaliser: sympy.Expr
    log_probability: sympy.Expr
    jacobian: sympy.Expr
    loss_term: sympy.Expr
    gradient: sympy.Expr
    loss_index: sympy.Expr  # the loss for an integer label c, with z_i taken at the label
    gradient_true_class: sympy.Expr  # the label's gradient entry, free of cancellation
    v_i: sympy.Symbol  # the vector a Jacobian-vector product multiplies
    sv: sympy.Symbol  # <s, v> = sum_j s_j v_j, a reduction the templates compute
    jvp_term: sympy.Expr  # the summand of sv
    jvp: sympy.Expr  # (J v)_i
    vjp: sympy.Expr  # (J^T v)_i, the same form since J is symmetric
    # log-sum-exp, the log-softmax products, distillation and the second order
    sum_v: sympy.Symbol  # sum_j v_j, a reduction the templates compute
    log_sum_exp: sympy.Expr  # log sum_j exp(z_j), from the row's maximum and log S
    log_softmax_jvp: sympy.Expr  # (J v)_i with J = d log s / d z
    log_softmax_vjp: sympy.Expr  # (J^T v)_i: what log-softmax's backward pass computes
    hessian: sympy.Expr  # d^2 L / dz_i dz_j of the cross-entropy
    hvp: sympy.Expr  # (H v)_i, O(K) per row
    temperature: sympy.Symbol  # T > 0 of distillation
    tempered: sympy.Expr  # (z_i - m) / T: a row's logits over T, shifted by its maximum
    q_i: sympy.Symbol  # the teacher's probability, the probability form on its tempered row
    log_q_i: sympy.Symbol  # the teacher's log-probability, likewise
    log_s_i: sympy.Symbol  # the student's log-probability
    kl: sympy.Symbol  # sum_i kl_term over the row, a reduction the templates compute
    kl_term: sympy.Expr  # q_i (log q_i - log s_i), 0 where q_i = 0
    distillation_kl: sympy.Expr  # T^2 KL(q || s) of one row
    distillation_grad: sympy.Expr  # its gradient with respect to the student's logits


# the OptionForms fields the emitters print, as option_NAME in the templates
PRINTED_OPTION_FORMS = (
    "tempered",
    "target",
    "log_sum_exp",
    "loss_term",
    "row_loss",
    "row_factor",
    "gradient",
    "gradient_label",
)


@dataclass(frozen=True)
class OptionForms:
    """The per-element forms the options path of the cross-entropy kernels computes.

    Written in KernelForms' element symbols (d_i, log_S, s_i, m, y_i, rest, S) where d_i is
    the tempered logit shifted by the tempered row's maximum m, and the symbols below.
    """

    z_i: sympy.Symbol  # a raw logit
    T: sympy.Symbol  # temperature > 0
    eps: sympy.Symbol  # label smoothing in [0, 1]
    lam: sympy.Symbol  # z-loss coefficient >= 0
    w_i: sympy.Symbol  # the weight of class i
    a_i: sympy.Symbol  # the weighted smoothed target of class i (the form `target`)
    sum_a: sympy.Symbol  # sum_j a_j, a reduction the templates compute
    rest_a: sympy.Symbol  # sum of a_j over the classes other than the label
    ce: sympy.Symbol  # the sum of the row's loss terms, a reduction
    lse: sympy.Symbol  # log sum_j e^{q_j} (the form `log_sum_exp`)
    scale: sympy.Symbol  # the reduction's factor: 1, or 1 / D under mean
    g: sympy.Symbol  # the row's gradient factor (the form `row_factor`)
    tempered: sympy.Expr  # q_i = z_i / T
    target: sympy.Expr  # w_i ((1 - eps) y_i + eps / K)
    log_sum_exp: sympy.Expr  # log S + m
    loss_term: sympy.Expr  # a_i (log S - d_i), 0 where a_i = 0 (a masked class)
    row_loss: sympy.Expr  # ce + lam lse^2
    row_factor: sympy.Expr  # scale / T
    gradient: sympy.Expr  # (s_i sum_a - a_i + 2 lam lse s_i) g
    gradient_label: sympy.Expr  # the label's entry, with 1 - s_c as the others' share


@dataclass(frozen=True)
class WorkedExample:
    """Numbers for the document, evaluated (never typed in) from the logits the user chose."""

    logits: tuple[float, ...]
    labels: tuple[str, ...]
    exponentials: tuple[float, ...]
    total: float
    probabilities: tuple[float, ...]
    winner: int
    true_class: int
    loss: float
    gradient: tuple[float, ...]


@dataclass(frozen=True)
class Bundle:
    """Everything the emitters need, and nothing that would let them re-derive anything."""

    k: int
    version: str
    masked_rows: str
    numpy_only: bool
    lang: str
    z: tuple[sympy.Symbol, ...]
    y: tuple[sympy.Symbol, ...]
    identities: tuple[Identity, ...]  # checked fixed-K equalities, in document order
    general_identities: tuple[Identity, ...]  # checked symbolic-K steps
    kernel: KernelForms
    worked: WorkedExample
    prefix: str = ""  # of the kernels' C symbols, file names and module name
    # checked symbolic-K steps of the later members (log-sum-exp, the log-softmax products,
    # the Hessian and H v, distillation): general_k_family.py
    family_identities: tuple[Identity, ...] = ()
    # the cross-entropy's options (issue 17): their forms and one identity per combination
    options: OptionForms | None = None
    option_identities: tuple[Identity, ...] = ()
