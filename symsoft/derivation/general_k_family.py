"""The general-K steps for the members that came after softmax's own (issue 18): the gradient
of log-sum-exp, the log-softmax products, the cross-entropy's Hessian and H v, and the
distillation gradient, each checked with general_k's rules (see its docstring)."""

from __future__ import annotations

from functools import cache

import sympy
from sympy import Derivative, IndexedBase, KroneckerDelta, Sum, exp, log

from symsoft.derivation import general_k as gk
from symsoft.derivation.bundle import Identity

T = sympy.Symbol("T", positive=True)  # the temperature of distillation
t = IndexedBase("t", real=True)  # the teacher's logits


def _tempered_softmax(logits: IndexedBase, index: sympy.Expr) -> sympy.Expr:
    """softmax(logits / T) at index, written out (z / T is not the z of gk's definitions)."""
    return exp(logits[index] / T) / Sum(exp(logits[gk.k] / T), (gk.k, 1, gk.K))


@cache
def family_identities() -> tuple[Identity, ...]:
    i, j, K = gk.i, gk.j, gk.K
    s_i, s_j = gk.s[i], gk.s[j]
    v, y, z = gk.v, gk.y, gk.z
    delta = KroneckerDelta(i, j)
    sigma = Sum(exp(z[gk.k]), (gk.k, 1, K))
    in_range = r"$1 \le i, j \le K$"
    steps: list[Identity] = []

    # log-sum-exp: its gradient is softmax
    raw = sigma.diff(z[j])
    derived = log(sigma).diff(z[j]).xreplace({raw: exp(z[j])})
    steps.append(
        gk._step(
            "general-k-logsumexp-gradient",
            Derivative(log(sigma), z[j]),
            s_j,
            derived,
            "SymPy differentiates log of the sum; the sum's derivative is e^{z_j} (step 1)",
            r"$1 \le j \le K$",
        )
    )

    # the log-softmax products: J v sums over j and keeps i, J^T g sums over i and keeps j
    log_jacobian = delta - s_j
    for name, summed, product in (
        ("jvp", j, v[i] - Sum(s_j * v[j], (j, 1, K))),
        ("vjp", i, v[j] - s_j * Sum(v[i], (i, 1, K))),
    ):
        steps.append(
            gk._step(
                f"general-k-log-softmax-{name}",
                Sum(Derivative(log(s_i), z[j]) * v[summed], (summed, 1, K)),
                product,
                gk.sift(gk.linearity(Sum(log_jacobian * v[summed], (summed, 1, K)))),
                "the log-softmax Jacobian delta_ij - s_j under the sum; linearity, then sifting",
                in_range,
            )
        )

    # the cross-entropy's second derivative: y does not depend on z
    loss = -Sum(y[gk.k] * log(gk.s[gk.k]), (gk.k, 1, K))
    total_y = Sum(y[gk.k], (gk.k, 1, K))
    hessian = total_y * s_i * (delta - s_j)
    # the proved gradient (entry i), through s_i: d/ds_i times ds_i/dz_j (both earlier steps)
    gradient = gk._step_by_name("general-k-cross-entropy-gradient").rhs.xreplace({j: i})
    jacobian = gk._step_by_name("general-k-softmax-jacobian").rhs
    steps.append(
        gk._step(
            "general-k-cross-entropy-hessian",
            Derivative(loss, z[i], z[j]),
            hessian,
            gradient.diff(s_i) * jacobian,
            "the gradient s_i sum(y) - y_i differentiated by z_j: y is constant, and ds_i/dz_j "
            "is the softmax Jacobian (step 3)",
            in_range,
        )
    )
    steps.append(
        gk._step(
            "general-k-cross-entropy-hvp",
            Sum(Derivative(loss, z[i], z[j]) * v[j], (j, 1, K)),
            total_y * s_i * (v[i] - Sum(s_j * v[j], (j, 1, K))),
            gk.sift(gk.linearity(Sum(hessian * v[j], (j, 1, K)))),
            "the Hessian under the sum; linearity, then sifting",
            r"$1 \le i \le K$",
        )
    )

    # H 1 = 0 and v^T H v = sum(y) sum_i s_i (v_i - <s, v>)^2: with y >= 0 the Hessian is
    # positive semidefinite (the loss is convex in z); where sum(y) > 0 and every s_i > 0 the
    # form vanishes only for v = <s, v> 1, so the kernel is spanned by 1 and the rank is K - 1
    steps.append(
        gk._step(
            "general-k-cross-entropy-hessian-kernel",
            Sum(hessian, (j, 1, K)),
            sympy.S.Zero,
            gk.sift(gk.linearity(Sum(hessian, (j, 1, K)))),
            "linearity, sifting, and sum_j s_j = 1: H 1 = 0",
            r"$1 \le i \le K$",
        )
    )
    quadratic = Sum(v[i] * Sum(hessian * v[j], (j, 1, K)), (i, 1, K))
    steps.append(
        gk._step(
            "general-k-cross-entropy-hessian-quadratic-form",
            quadratic,
            total_y * Sum(s_i * (v[i] - Sum(s_j * v[j], (j, 1, K))) ** 2, (i, 1, K)),
            gk.sift(gk.linearity(quadratic)),
            "linearity and sifting; both sides expanded with sum_i s_i = 1: v^T H v is sum(y) "
            "times a sum of s_i-weighted squares, >= 0 for y >= 0, and 0 only for v "
            "proportional to 1 when sum(y) > 0 and every s_i > 0 (kernel span(1), rank K - 1)",
        )
    )

    # distillation: T^2 KL(q || p), p = softmax(z / T), q = softmax(t / T)
    n = sympy.Symbol("n", integer=True)  # summed over: i stays free for the document's use
    p = [_tempered_softmax(z, index) for index in (n, j)]
    q = [_tempered_softmax(t, index) for index in (n, j)]
    kl = T**2 * Sum(q[0] * (log(q[0]) - log(p[0])), (n, 1, K))
    steps.append(
        gk._step(
            "general-k-distillation-gradient",
            Derivative(kl, z[j]),
            T * (p[1] - q[1]),
            kl.diff(z[j]),
            "SymPy differentiates T^2 sum_i q_i (log q_i - log p_i); the factor 1/T of the "
            "chain rule, sifting, and sum_i q_i = 1",
            r"$1 \le j \le K$, $T > 0$",
        )
    )
    return tuple(steps)
