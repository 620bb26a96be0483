"""Tests for the general-K derivation.

The identities are checked here numerically, independently of the module's own rewriting
rules: K = 4, random z and y, the test's own definition of the softmax, sums expanded with
doit(), and every derivative taken by mpmath's numerical differentiation (not SymPy's diff).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import mpmath
import numpy as np
import pytest
import sympy
from sympy import Derivative, Float, Indexed, KroneckerDelta, Sum, exp, lambdify

import symsoft.derivation.general_k as gk
from symsoft.derivation.bundle import Identity
from symsoft.errors import ProofError, SpecError

K_NUM = 4
DIGITS = 30
TOL = 1e-12
_Q = sympy.Symbol("q", integer=True)  # the test's own summation variable


@dataclass(frozen=True)
class Point:
    i: int
    j: int
    c: int
    shift: float
    z: np.ndarray
    y: np.ndarray
    v: np.ndarray  # the vector of a Jacobian-vector product


def _point(rng: np.random.Generator, i: int, j: int, name: str) -> Point:
    c = int(rng.integers(1, K_NUM + 1))
    if "one-hot" in name:
        targets = np.eye(K_NUM)[c - 1]
    elif "normalized" in name:
        targets = rng.dirichlet(np.ones(K_NUM))
    else:
        targets = rng.normal(size=K_NUM)  # the assumption-free steps hold for any y
    vector = rng.normal(size=K_NUM)
    return Point(i, j, c, float(rng.normal()), rng.normal(size=K_NUM) * 2, targets, vector)


def _numbers(p: Point) -> dict[sympy.Basic, sympy.Basic]:
    values = {gk.z[m]: Float(p.z[m - 1], DIGITS) for m in range(1, K_NUM + 1)}
    values |= {gk.y[m]: Float(p.y[m - 1], DIGITS) for m in range(1, K_NUM + 1)}
    values |= {gk.v[m]: Float(p.v[m - 1], DIGITS) for m in range(1, K_NUM + 1)}
    return values


def _softmax_np(zv: np.ndarray) -> np.ndarray:
    e = np.exp(zv - zv.max())
    return e / e.sum()


def _numeric_derivative(d: Derivative, p: Point) -> sympy.Float:
    """Differentiate numerically with mpmath at the point (one variable, first order)."""
    ((var, order),) = d.variable_count
    assert order == 1
    # SymPy's subs leaves a free index in the variable as it is inside a sum (sum_i ds_i/dz_j)
    var = var.xreplace({gk.i: p.i, gk.j: p.j, gk.c: p.c})
    values = _numbers(p)
    at = values.pop(var)
    f = d.expr.doit().xreplace(values)
    fn = lambdify(var, f, "mpmath")
    with mpmath.workdps(DIGITS):
        return Float(mpmath.diff(fn, mpmath.mpf(str(at))), DIGITS)


def _evaluate(expr: sympy.Basic, p: Point) -> complex:
    expr = expr.subs({gk.K: K_NUM, gk.i: p.i, gk.j: p.j, gk.c: p.c, gk.a: p.shift})
    # the test's own definition of s_x
    expr = expr.replace(
        lambda e: isinstance(e, Indexed) and e.base == gk.s,
        lambda e: exp(gk.z[e.indices[0]]) / Sum(exp(gk.z[_Q]), (_Q, 1, K_NUM)),
    )
    # a sum of derivatives (J v) term by term, so that each derivative has a concrete variable
    expr = expr.replace(
        lambda e: isinstance(e, Sum) and e.has(Derivative),
        lambda e: sympy.Add(
            *(e.function.xreplace({e.limits[0][0]: n}) for n in range(1, K_NUM + 1))
        ),
    )
    expr = expr.replace(lambda e: isinstance(e, Derivative), lambda e: _numeric_derivative(e, p))
    return complex(expr.doit().xreplace(_numbers(p)).evalf(DIGITS))


def _numeric_jacobian(zv: np.ndarray) -> np.ndarray:
    def component(p: int, q: int):
        def f(t):
            shifted = [mpmath.mpf(float(v)) for v in zv]
            shifted[q] += t
            e = [mpmath.exp(v) for v in shifted]
            return e[p] / mpmath.fsum(e)

        return f

    with mpmath.workdps(DIGITS):
        return np.array(
            [
                [float(mpmath.diff(component(p, q), 0)) for q in range(len(zv))]
                for p in range(len(zv))
            ]
        )


# pairs of free indices: diagonal and off-diagonal, at the ends and in between
INDEX_PAIRS = [(1, 1), (2, 2), (4, 4), (1, 2), (3, 1), (2, 4)]


@pytest.mark.parametrize("identity", gk.general_k_identities(), ids=lambda d: d.name)
def test_identity_holds_numerically(identity: Identity) -> None:
    rng = np.random.default_rng(sum(map(ord, identity.name)))
    for i_val, j_val in INDEX_PAIRS:
        p = _point(rng, i_val, j_val, identity.name)
        if isinstance(identity.lhs, sympy.MatrixBase | sympy.MatrixExpr):
            _check_matrix_identity(identity, p)
            continue
        lhs, rhs = _evaluate(identity.lhs, p), _evaluate(identity.rhs, p)
        assert abs(lhs - rhs) < TOL * max(1.0, abs(lhs)), (identity.name, p, lhs, rhs)


def _check_matrix_identity(identity: Identity, p: Point) -> None:
    assert identity.lhs == gk.J  # J_ij = ds_i/dz_j, evaluated numerically
    s4 = sympy.MatrixSymbol("s", K_NUM, 1)
    probs = _softmax_np(p.z)
    explicit = sympy.Matrix(identity.rhs.subs(gk.K, K_NUM).as_explicit())
    rhs = np.array(
        explicit.xreplace({s4[m, 0]: Float(probs[m], DIGITS) for m in range(K_NUM)}),
        dtype=float,
    )
    np.testing.assert_allclose(rhs, np.diag(probs) - np.outer(probs, probs), atol=TOL)
    np.testing.assert_allclose(_numeric_jacobian(p.z), rhs, atol=TOL)


def test_names_unique_and_kebab_case() -> None:
    names = [d.name for d in gk.general_k_identities()]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", n) for n in names)
    assert names[0] == "general-k-sum-exp-derivative"
    assert names[-1] == "general-k-shift-invariance"


def test_identities_are_well_formed_and_cached() -> None:
    ids = gk.general_k_identities()
    assert ids is gk.general_k_identities()
    for d in ids:
        assert isinstance(d.lhs, sympy.Basic) and isinstance(d.rhs, sympy.Basic)
        assert d.method
        sympy.latex(d.lhs), sympy.latex(d.rhs)  # must print
    by_name = {d.name: d for d in ids}
    assert r"\operatorname{diag}" in sympy.latex(by_name["general-k-jacobian-matrix"].rhs)
    assert r"\sum_{k=1}^{K}" in sympy.latex(by_name["general-k-sum-exp-derivative"].lhs)
    assert by_name["general-k-cross-entropy-gradient-normalized"].assumption


s_i, s_j = gk.s[gk.i], gk.s[gk.j]
delta = KroneckerDelta(gk.i, gk.j)
loss = -Sum(gk.y[gk.i] * sympy.log(s_i), (gk.i, 1, gk.K))
jvp_lhs = Sum(Derivative(s_i, gk.z[gk.j]) * gk.v[gk.j], (gk.j, 1, gk.K))
vjp_lhs = Sum(Derivative(s_i, gk.z[gk.j]) * gk.v[gk.i], (gk.i, 1, gk.K))


@pytest.mark.parametrize(
    ("lhs", "rhs"),
    [
        (Derivative(s_i, gk.z[gk.j]), s_i * delta),  # closed form without the -s_j term
        (Derivative(s_i, gk.z[gk.j]), s_i * (delta + s_j)),
        (Derivative(s_i, gk.z[gk.j]), s_i * (1 - s_j)),  # diagonal formula everywhere
        (Sum(s_i * (delta - s_j), (gk.j, 1, gk.K)), s_i),
        (Derivative(sympy.log(s_i), gk.z[gk.j]), delta - s_i),
        (Derivative(loss, gk.z[gk.j]), gk.y[gk.j] - s_j),
        (Derivative(loss, gk.z[gk.j]), s_j - gk.y[gk.j]),  # needs sum(y) = 1
        (Sum(s_i, (gk.i, 1, gk.K)), gk.K),
        # J v with the sign of <s, v> flipped; J^T v written as J v (transposed indices)
        (jvp_lhs, s_i * (gk.v[gk.i] + Sum(s_j * gk.v[gk.j], (gk.j, 1, gk.K)))),
        (vjp_lhs, s_i * (gk.v[gk.i] - Sum(s_j * gk.v[gk.j], (gk.j, 1, gk.K)))),
        (jvp_lhs, s_i * gk.v[gk.i]),
    ],
)
def test_wrong_step_rejected(lhs: sympy.Basic, rhs: sympy.Basic) -> None:
    with pytest.raises(ProofError, match="wrong-step"):
        gk.check_equal("wrong-step", lhs, rhs)


def test_wrong_matrix_form_rejected() -> None:
    with pytest.raises(ProofError):
        gk.check_equal("wrong-matrix", gk.J, gk.Diag(gk.S_VEC))


def test_checker_accepts_right_steps() -> None:
    gk.check_equal("ok", Derivative(s_i, gk.z[gk.j]), s_i * (delta - s_j))
    gk.check_equal(
        "ok", Derivative(loss, gk.z[gk.j]), s_j - gk.y[gk.j], given=(gk.normalized_targets,)
    )


@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_fixed_k_agrees(k: int) -> None:
    ids = gk.check_fixed_k_agrees(k)
    assert [d.name for d in ids] == [
        f"fixed-k-{k}-softmax-jacobian",
        f"fixed-k-{k}-log-softmax-gradient",
        f"fixed-k-{k}-cross-entropy-gradient",
    ]
    rng = np.random.default_rng(k)
    zs = sympy.symbols(f"z_1:{k + 1}", real=True)
    ys = sympy.symbols(f"y_1:{k + 1}", real=True)
    zv, yv = rng.normal(size=k), rng.normal(size=k)
    for d in ids:
        fl = lambdify([zs, ys], d.lhs, "numpy")
        fr = lambdify([zs, ys], d.rhs, "numpy")
        np.testing.assert_allclose(fl(zv, yv), fr(zv, yv), atol=TOL)
    if k <= 6:  # full matrices: compare with the textbook closed forms in numpy
        probs = _softmax_np(zv)
        jac = lambdify([zs, ys], ids[0].lhs, "numpy")(zv, yv)
        np.testing.assert_allclose(jac, np.diag(probs) - np.outer(probs, probs), atol=TOL)
        log_grad = lambdify([zs, ys], ids[1].rhs, "numpy")(zv, yv)
        np.testing.assert_allclose(log_grad, np.eye(k) - probs[None, :], atol=TOL)
        ce = lambdify([zs, ys], ids[2].rhs, "numpy")(zv, yv).ravel()
        np.testing.assert_allclose(ce, probs * yv.sum() - yv, atol=TOL)
    else:
        assert "representative entries" in ids[0].method


def test_fixed_k_large_checks_representative_entries() -> None:
    ids = gk.check_fixed_k_agrees(50)
    assert all("representative entries" in d.method for d in ids)


@pytest.mark.parametrize("bad", [0, -3, True, 2.0])
def test_fixed_k_rejects_bad_k(bad: object) -> None:
    with pytest.raises(SpecError):
        gk.check_fixed_k_agrees(bad)  # type: ignore[arg-type]
