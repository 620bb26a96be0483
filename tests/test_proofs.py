"""The derivation and its proofs: correct results pass, wrong closed forms are refused."""

from __future__ import annotations

import dataclasses

import pytest
import sympy

from symsoft import proof
from symsoft.derivation import closed_forms, fixed_k
from symsoft.errors import ProofError

EXPECTED = [
    "softmax-sums-to-one",
    "jacobian-closed-form",
    "jacobian-rows-sum-to-zero",
    "log-softmax-jacobian-closed-form",
    "cross-entropy-gradient-closed-form",
    "cross-entropy-gradient-simplex",
    "shift-invariance",
    "stable-softmax",
    "stable-log-softmax",
    "stable-cross-entropy",
    "kernel-jacobian",
    "kernel-cross-entropy-gradient",
    "kernel-cross-entropy-index",
    "kernel-cross-entropy-grad-index",
    "jacobian-equals-transpose",
    "kernel-softmax-jvp",
    "kernel-softmax-vjp",
    "stable-logsumexp",
    "logsumexp-gradient",
    "kernel-log-softmax-jvp",
    "kernel-log-softmax-vjp",
    "cross-entropy-hessian-closed-form",
    "cross-entropy-hessian-symmetric",
    "kernel-cross-entropy-hessian",
    "kernel-cross-entropy-hvp",
    "tempered-logits",
    "distillation-kl-gradient",
    "stable-distillation-kl",
    "kernel-distillation-kl-grad",
]


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_all_identities_prove(k):
    identities = closed_forms.prove_all(fixed_k.fixed_k(k), closed_forms.kernel_forms())
    assert [i.name for i in identities] == EXPECTED
    simplex = next(i for i in identities if i.name == "cross-entropy-gradient-simplex")
    assert simplex.assumption == "sum_j y_j = 1"


@pytest.mark.parametrize("k", [2, 3])
def test_chain_rule_derivative_equals_sympy_diff_of_raw_definition(k):
    """fixed_k.py differentiates through e_i and S; check it against SymPy's own diff."""
    sym = fixed_k.fixed_k(k)
    total = sympy.Add(*(sympy.exp(z) for z in sym.z))
    raw_s = [sympy.exp(z) / total for z in sym.z]
    raw_loss = -sympy.Add(*(y * sympy.log(s) for y, s in zip(sym.y, raw_s, strict=True)))
    jac = fixed_k.jacobian(fixed_k.softmax(sym), sym)
    grad = fixed_k.gradient(fixed_k.cross_entropy(sym), sym)
    for i in range(k):
        assert sympy.simplify(sympy.diff(raw_loss, sym.z[i]) - sym.to_logits(grad[i])) == 0
        for j in range(k):
            assert sympy.simplify(sympy.diff(raw_s[i], sym.z[j]) - sym.to_logits(jac[i, j])) == 0


@pytest.mark.parametrize(
    ("field", "wrong"),
    [
        ("jacobian", lambda f: f.s_i * f.delta_ij),  # diag(s) without -s s^T
        ("jacobian", lambda f: f.s_j * (f.delta_ij - f.s_i) + f.s_i - f.s_j + f.s_i * f.s_j),
        ("gradient", lambda f: f.s_i - f.y_i),  # assumes sum(y) = 1 without saying so
        ("gradient", lambda f: f.y_i - f.s_i * f.sum_y),  # sign flipped
        ("probability", lambda f: f.e_i / (f.S + 1)),
        ("log_probability", lambda f: f.d_i + f.log_S),
        ("shifted", lambda f: f.z_i + f.m),
        ("exponential", lambda f: sympy.exp(f.d_i + 1)),
        ("exponential", lambda f: sympy.exp(2 * f.d_i)),
        ("gradient_true_class", lambda f: f.rest / f.S),
        ("gradient_true_class", lambda f: -f.rest / (f.S + f.e_i)),
        ("loss_index", lambda f: f.log_S + f.d_i),
        ("jvp", lambda f: f.s_i * f.v_i),  # forgets the <s, v> term
        ("jvp", lambda f: f.s_i * (f.v_i + f.sv)),
        ("vjp", lambda f: f.v_i - f.sv),  # J^T v without the factor s_i
        ("jvp_term", lambda f: f.v_i),  # <s, v> summed without the probabilities
        ("log_sum_exp", lambda f: f.log_S),  # the maximum's shift not added back
        ("log_softmax_jvp", lambda f: f.s_i * (f.v_i - f.sv)),  # softmax's J v instead
        ("log_softmax_vjp", lambda f: f.v_i - f.s_i * f.sv),  # <s, g> where sum(g) belongs
        ("log_softmax_vjp", lambda f: f.v_i - f.sum_v),  # the factor s_i forgotten
        ("hessian", lambda f: f.s_i * (f.delta_ij - f.s_j)),  # without the sum(y) factor
        ("hvp", lambda f: f.s_i * (f.v_i - f.sv)),  # without the sum(y) factor
        ("tempered", lambda f: f.z_i - f.m),  # the temperature forgotten
        ("tempered", lambda f: f.z_i / f.temperature - f.m),  # m not divided
        ("distillation_kl", lambda f: f.kl),  # T^2 forgotten
        ("distillation_kl", lambda f: f.temperature * f.kl),
        ("distillation_grad", lambda f: f.s_i - f.q_i),  # the factor T forgotten
        ("distillation_grad", lambda f: f.temperature * (f.q_i - f.s_i)),  # sign flipped
        (  # KL arguments swapped: KL(s || q)
            "kl_term",
            lambda f: sympy.Piecewise(
                (0, sympy.Eq(f.q_i, 0)), (f.q_i * (f.log_s_i - f.log_q_i), True)
            ),
        ),
    ],
)
def test_wrong_kernel_form_is_refused(field, wrong):
    forms = closed_forms.kernel_forms()
    broken = dataclasses.replace(forms, **{field: wrong(forms)})
    with pytest.raises(ProofError):
        closed_forms.prove_all(fixed_k.fixed_k(3), broken)


def test_wrong_guard_on_loss_is_refused():
    forms = closed_forms.kernel_forms()
    broken = dataclasses.replace(
        forms,
        loss_term=sympy.Piecewise((1, sympy.Eq(forms.y_i, 0)), (forms.y_i * forms.log_S, True)),
    )
    with pytest.raises(ProofError):
        closed_forms.prove_all(fixed_k.fixed_k(2), broken)


def test_large_k_proves_representative_entries_quickly():
    identities = closed_forms.prove_all(fixed_k.fixed_k(100), closed_forms.kernel_forms())
    jac = next(i for i in identities if i.name == "jacobian-closed-form")
    assert jac.lhs.shape == (4, 4)
    assert "permutation symmetry" in jac.method


def test_laurent_normal_form_is_exact():
    """The fast path agrees with cancel() and refuses near misses; sums in a denominator take
    the general path."""
    a, b, S = sympy.symbols("a b S", positive=True)
    assert proof.is_zero(a / S + b / S - (a + b) / S)
    assert not proof.is_zero(a / S + b / S - (a + b) / S**2)
    assert proof.is_zero(a / (a + b) - 1 + b / (a + b))
    assert proof.is_zero(S - a - b, [(S, a + b)])
    assert proof.is_zero(sympy.log(a / S) - sympy.log(a) + sympy.log(S))
    assert proof.is_zero(sympy.log(a * b**2), logs={a: b, b: a}) is False
    assert proof.is_zero(sympy.log(a * b**2) - b - 2 * a, logs={a: b, b: a})


def test_sums_in_denominators_and_logarithms_by_their_relation():
    """A sum that is a relation's value (times c g) becomes the relation's symbol; others don't."""
    a, b, c, C, S = sympy.symbols("a b c C S", positive=True)
    on_sum = [(S, a + b + c)]
    assert proof.is_zero(1 / (C * a + C * b + C * c) - 1 / (C * S), on_sum)
    assert proof.is_zero(
        sympy.log(2 * C * a + 2 * C * b + 2 * C * c) - sympy.log(2 * C * S), on_sum
    )
    assert not proof.is_zero(sympy.log(C * a + C * b) - sympy.log(C * S), on_sum)
    assert not proof.is_zero(1 / (a + b) - 1 / S, on_sum)
    assert proof.is_zero(sympy.log(2 * a + 2 * b) - sympy.log(a + b) - sympy.log(2))
    assert not proof.is_zero(sympy.log(a + 2 * b) - sympy.log(a + b))


def test_class_sum_is_its_explicit_sum():
    a, b, c, S = sympy.symbols("a b c S", positive=True)
    o = sympy.Symbol("o", positive=True)
    rows = [(a,), (b,), (c,)]
    share = proof.ClassSum(o / S, (o,), rows)
    assert share.expanded() == a / S + b / S + c / S
    assert str(share) == "ClassSum(o/S, 3 classes)"
    assert proof.is_zero(share - 1, [(S, a + b + c)])
    assert not proof.is_zero(share - 1, [(S, a + b)])
    assert not proof.is_zero(proof.ClassSum(o**2 / S, (o,), rows) - 1, [(S, a + b + c)])
    # a term whose atoms cannot be renamed one by one takes the explicit sum
    logs = proof.ClassSum(sympy.log(o + 1), (o,), rows)
    assert proof.is_zero(logs - sum(sympy.log(x + 1) for x in (a, b, c)))
    assert not proof.is_zero(logs - sum(sympy.log(x + 2) for x in (a, b, c)))


@pytest.mark.parametrize("k", [1, 3])
def test_definitions_are_the_objects_evaluation_gives(k):
    """fixed_k.py builds the definitions unevaluated for speed: they must be the same objects."""
    sym = fixed_k.fixed_k(k)
    evaluated_s = [e / sym.S for e in sym.e]
    assert list(fixed_k.softmax(sym)) == evaluated_s
    loss = -sympy.Add(*(y * sympy.log(s) for y, s in zip(sym.y, evaluated_s, strict=True)))
    assert fixed_k.cross_entropy(sym) == loss
    assert list(fixed_k.log_softmax(sym)) == [sympy.log(s) for s in evaluated_s]
