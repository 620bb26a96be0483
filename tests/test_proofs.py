"""The derivation and its proofs: correct results pass, wrong closed forms are refused."""

from __future__ import annotations

import dataclasses

import pytest
import sympy

from symsoft import derive, simplify
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
]


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_all_identities_prove(k):
    identities = simplify.prove_all(derive.fixed_k(k), simplify.kernel_forms())
    assert [i.name for i in identities] == EXPECTED
    simplex = next(i for i in identities if i.name == "cross-entropy-gradient-simplex")
    assert simplex.assumption == "sum_j y_j = 1"


@pytest.mark.parametrize("k", [2, 3])
def test_chain_rule_derivative_equals_sympy_diff_of_raw_definition(k):
    """derive.py differentiates through e_i and S; check it against SymPy's own diff."""
    sym = derive.fixed_k(k)
    total = sympy.Add(*(sympy.exp(z) for z in sym.z))
    raw_s = [sympy.exp(z) / total for z in sym.z]
    raw_loss = -sympy.Add(*(y * sympy.log(s) for y, s in zip(sym.y, raw_s, strict=True)))
    jac = derive.jacobian(derive.softmax(sym), sym)
    grad = derive.gradient(derive.cross_entropy(sym), sym)
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
    ],
)
def test_wrong_kernel_form_is_refused(field, wrong):
    forms = simplify.kernel_forms()
    broken = dataclasses.replace(forms, **{field: wrong(forms)})
    with pytest.raises(ProofError):
        simplify.prove_all(derive.fixed_k(3), broken)


def test_wrong_guard_on_loss_is_refused():
    forms = simplify.kernel_forms()
    broken = dataclasses.replace(
        forms,
        loss_term=sympy.Piecewise((1, sympy.Eq(forms.y_i, 0)), (forms.y_i * forms.log_S, True)),
    )
    with pytest.raises(ProofError):
        simplify.prove_all(derive.fixed_k(2), broken)


def test_large_k_proves_representative_entries_quickly():
    identities = simplify.prove_all(derive.fixed_k(100), simplify.kernel_forms())
    jac = next(i for i in identities if i.name == "jacobian-closed-form")
    assert jac.lhs.shape == (4, 4)
    assert "permutation symmetry" in jac.method
