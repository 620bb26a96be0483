"""The general-K steps of the later members (log-sum-exp, the log-softmax products, the
cross-entropy's Hessian and H v, distillation), checked numerically and independently of the
module's rules: K = 4, random values, the test's own softmax, sums expanded with doit(), every
derivative (second ones too) taken numerically by mpmath."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy
from sympy import Derivative, Float, Indexed, KroneckerDelta, Sum, exp, lambdify

import symsoft.derivation.general_k as gk
from symsoft.derivation import general_k_family as family
from symsoft.errors import ProofError
from symsoft.pipeline import build_bundle
from symsoft.spec import make_spec

K_NUM = 4
DIGITS = 30
_Q = sympy.Symbol("q", integer=True)  # the test's own summation variable


def _numbers(rng: np.random.Generator) -> dict[sympy.Basic, sympy.Basic]:
    values: dict[sympy.Basic, sympy.Basic] = {}
    for base, scale in ((gk.z, 2.0), (gk.y, 1.0), (gk.v, 1.0), (family.t, 2.0)):
        for m in range(1, K_NUM + 1):
            values[base[m]] = Float(float(rng.normal() * scale), DIGITS)
    return values


def _derivative(d: Derivative, values: dict, indices: dict) -> sympy.Float:
    # subs leaves a free index as it is in a derivative's variable inside a sum: set it here
    counts: dict[sympy.Basic, int] = {}
    for var, count in d.variable_count:  # z_i and z_1 are one variable once i = 1
        counts[var.xreplace(indices)] = counts.get(var.xreplace(indices), 0) + count
    variables, orders = list(counts), list(counts.values())
    rest = {key: value for key, value in values.items() if key not in variables}
    fn = lambdify(variables, d.expr.xreplace(indices).doit().xreplace(rest), "mpmath")
    at = [mpmath.mpf(str(values[var])) for var in variables]
    with mpmath.workdps(DIGITS):
        return Float(mpmath.diff(fn, at, orders), DIGITS)


def _evaluate(expr: sympy.Basic, i: int, j: int, temperature: float, values: dict) -> complex:
    expr = expr.subs({gk.K: K_NUM, gk.i: i, gk.j: j, family.T: temperature})
    expr = expr.replace(
        lambda e: isinstance(e, Indexed) and e.base == gk.s,
        lambda e: exp(gk.z[e.indices[0]]) / Sum(exp(gk.z[_Q]), (_Q, 1, K_NUM)),
    )
    expr = expr.replace(  # a sum of derivatives term by term: each gets a concrete variable
        lambda e: isinstance(e, Sum) and e.has(Derivative),
        lambda e: sympy.Add(
            *(e.function.xreplace({e.limits[0][0]: n}) for n in range(1, K_NUM + 1))
        ),
    )
    indices = {gk.i: i, gk.j: j}
    expr = expr.replace(
        lambda e: isinstance(e, Derivative), lambda e: _derivative(e, values, indices)
    )
    return complex(expr.doit().xreplace(values).evalf(DIGITS))


@pytest.mark.parametrize("identity", family.family_identities(), ids=lambda d: d.name)
def test_identity_holds_numerically(identity):
    rng = np.random.default_rng(sum(map(ord, identity.name)))
    for i, j in [(1, 1), (2, 2), (1, 2), (3, 1), (4, 2)]:
        values = _numbers(rng)
        temperature = float(rng.uniform(0.5, 4))
        lhs = _evaluate(identity.lhs, i, j, temperature, values)
        rhs = _evaluate(identity.rhs, i, j, temperature, values)
        assert abs(lhs - rhs) < 1e-12 * max(1.0, abs(lhs)), (identity.name, i, j, lhs, rhs)


def test_the_bundle_carries_them():
    assert build_bundle(make_spec(2)).family_identities == family.family_identities()
    names = [identity.name for identity in family.family_identities()]
    assert names == [
        "general-k-logsumexp-gradient",
        "general-k-log-softmax-jvp",
        "general-k-log-softmax-vjp",
        "general-k-cross-entropy-hessian",
        "general-k-cross-entropy-hvp",
        "general-k-cross-entropy-hessian-kernel",
        "general-k-cross-entropy-hessian-quadratic-form",
        "general-k-distillation-gradient",
    ]


i, j, K = gk.i, gk.j, gk.K
s_i, s_j, v = gk.s[i], gk.s[j], gk.v
by_name = {identity.name: identity for identity in family.family_identities()}
distillation = by_name["general-k-distillation-gradient"]


@pytest.mark.parametrize(
    ("name", "wrong"),
    [
        ("general-k-logsumexp-gradient", s_i),
        ("general-k-log-softmax-jvp", s_i * (v[i] - Sum(s_j * v[j], (j, 1, K)))),  # softmax's
        ("general-k-log-softmax-vjp", v[j] - Sum(s_i * v[i], (i, 1, K))),
        ("general-k-cross-entropy-hessian", s_i * (KroneckerDelta(i, j) - s_j)),  # no sum(y)
        ("general-k-cross-entropy-hvp", s_i * (v[i] - Sum(s_j * v[j], (j, 1, K)))),
        ("general-k-cross-entropy-hessian-kernel", s_i),  # H 1 = 0 fails without -s s^T
        (
            "general-k-cross-entropy-hessian-quadratic-form",
            Sum(s_i * (v[i] - Sum(s_j * v[j], (j, 1, K))) ** 2, (i, 1, K)),  # no sum(y)
        ),
        (
            "general-k-cross-entropy-hessian-quadratic-form",
            Sum(gk.y[gk.k], (gk.k, 1, K)) * Sum(s_i * v[i] ** 2, (i, 1, K)),  # no <s, v>
        ),
        ("general-k-distillation-gradient", distillation.rhs * family.T),  # T^2 kept
        ("general-k-distillation-gradient", distillation.rhs / family.T),  # 1/T forgotten
        ("general-k-distillation-gradient", -distillation.rhs),  # KL arguments swapped
    ],
)
def test_wrong_step_rejected(name, wrong):
    with pytest.raises(ProofError, match=name):
        gk.check_equal(name, by_name[name].lhs, wrong)
