"""Closed forms and the stable kernel forms, each proved equal to what derive.py computed.

A proof here is exact: the difference of the two sides is brought to a normal form
(rational functions in e_i = exp(z_i), S and y are cancelled; logarithms are expanded with
log(e_i) = z_i, log(exp(-m)) = -m) and must be the number 0. Anything else raises ProofError.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import sympy

from symsoft import derive
from symsoft.bundle import CompensatedSum, Identity, KernelForms
from symsoft.derive import FixedK
from symsoft.errors import ProofError

# Up to this K every entry is proved. Beyond it the entries are permutations of each other
# (relabelling classes maps entry (i, j) to (p(i), p(j))), so a diagonal and an off-diagonal
# representative are proved, and general_k.py proves the forms for symbolic K.
ENTRYWISE_PROOF_K_MAX = 32


def proof_indices(k: int) -> tuple[int, ...]:
    if k <= ENTRYWISE_PROOF_K_MAX:
        return tuple(range(k))
    return tuple(sorted({0, 1, k // 2, k - 1}))


def _entries_method(k: int, what: str) -> str:
    if k <= ENTRYWISE_PROOF_K_MAX:
        return f"{what}, every entry"
    return f"{what}, entries {list(proof_indices(k))} (the rest by permutation symmetry)"


Relation = tuple[sympy.Symbol, sympy.Expr]


def is_zero(expr: sympy.Expr, relations: Iterable[Relation] = ()) -> bool:
    """Whether expr is identically 0, given symbol = value relations (applied in order).

    Every denominator here is a product of positive quantities (e_i, S, C), so expr is zero
    exactly when the numerator of its common-denominator form is. The numerator is expanded
    as a polynomial, and each relation substituted only if it is still needed: this avoids
    the gcd computations of cancel(), which dominate the cost at larger K.
    """
    numerator = sympy.expand(sympy.fraction(sympy.together(expr))[0])
    for symbol, value in relations:
        if numerator == 0:
            return True
        numerator = sympy.expand(numerator.xreplace({symbol: value}))
    return numerator == 0


def prove_entries(
    name: str,
    lhs: sympy.Basic,
    rhs: sympy.Basic,
    method: str,
    *,
    assumption: str = "",
    entries: Iterable[tuple[int, ...]] | None = None,
    normal_form: Callable[[sympy.Expr], sympy.Expr] = lambda x: x,
    relations: Iterable[Relation] = (),
) -> Identity:
    """Check lhs == rhs (entry by entry for matrices) and return the Identity, or raise."""
    lhs_m = sympy.ImmutableMatrix(lhs) if isinstance(lhs, sympy.MatrixBase) else None
    rhs_m = sympy.ImmutableMatrix(rhs) if isinstance(rhs, sympy.MatrixBase) else None
    if lhs_m is not None and rhs_m is not None:
        if lhs_m.shape != rhs_m.shape:
            raise ProofError(f"{name}: shapes differ, {lhs_m.shape} vs {rhs_m.shape}")
        cells = entries if entries is not None else _all_cells(lhs_m.shape)
        pairs = [(lhs_m[cell], rhs_m[cell], cell) for cell in cells]
    else:
        pairs = [(lhs, rhs, ())]
    relations = tuple(relations)
    for left, right, cell in pairs:
        if not is_zero(normal_form(left - right), relations):
            where = f" at entry {tuple(c + 1 for c in cell)}" if cell else ""
            raise ProofError(f"could not prove {name}{where}: {left} != {right}")
    return Identity(name=name, lhs=lhs, rhs=rhs, method=method, assumption=assumption)


def _all_cells(shape: tuple[int, int]) -> list[tuple[int, int]]:
    return [(i, j) for i in range(shape[0]) for j in range(shape[1])]


def kernel_forms() -> KernelForms:
    """The stable per-element forms; see docs/architecture.md for how they are printed."""
    z_i, y_i, m, d_i, e_i, S, log_S, s_i, s_j, sum_y, rest = sympy.symbols(
        "z_i y_i m d_i e_i S log_S s_i s_j sum_y rest", real=True
    )
    delta_ij = sympy.Symbol("delta_ij", real=True)
    return KernelForms(
        z_i=z_i,
        y_i=y_i,
        m=m,
        d_i=d_i,
        e_i=e_i,
        S=S,
        log_S=log_S,
        s_i=s_i,
        s_j=s_j,
        delta_ij=delta_ij,
        sum_y=sum_y,
        rest=rest,
        shifted=z_i - m,
        exponential=sympy.exp(d_i),
        probability=e_i / S,
        log_normaliser=sympy.log(S),
        log_probability=d_i - log_S,
        jacobian=s_i * (delta_ij - s_j),
        # a masked class (z_i = -inf) with y_i = 0 must add 0, not 0 * inf = NaN
        loss_term=sympy.Piecewise((0, sympy.Eq(y_i, 0)), (y_i * (log_S - d_i), True)),
        gradient=s_i * sum_y - y_i,
        # log S + m - z_c rounded once: d_c = z_c - m would round first and double the error
        loss_index=CompensatedSum(log_S, m, -z_i),
        # s_c - 1 loses every digit as s_c -> 1; minus the other classes' share does not
        gradient_true_class=-rest / S,
    )


class _Instantiation:
    """The kernel forms for every component of a K-class problem, with row maximum M.

    exp(z_i - M) is written e_i * C with C = exp(-M) > 0 (the functional equation of exp),
    and the shifted normaliser is the symbol S_M with the relation S_M = C * S.
    """

    def __init__(self, forms: KernelForms, sym: FixedK) -> None:
        self.forms = forms
        self.sym = sym
        self.M = sympy.Symbol("M", real=True)
        self.C = sympy.Symbol("C", positive=True)
        self.S_M = sympy.Symbol("S_M", positive=True)
        self.relations: tuple[Relation, ...] = ((self.S_M, self.C * sym.S), _sum_relation(sym))

    def at(self, expr: sympy.Expr, i: int) -> sympy.Expr:
        """expr for component i, with the kernel's own shifted and exponential forms."""
        f, sym = self.forms, self.sym
        d = f.shifted.xreplace({f.z_i: sym.z[i], f.m: self.M})
        e = self._exp_to_symbols(f.exponential.xreplace({f.d_i: d}))
        expr = expr.replace(CompensatedSum, lambda *terms: sympy.Add(*terms))
        return expr.xreplace(
            {
                f.e_i: e,
                f.d_i: d,
                f.z_i: sym.z[i],
                f.y_i: sym.y[i],
                f.m: self.M,
                f.S: self.S_M,
                f.log_S: sympy.log(self.S_M),
            }
        )

    def index_gradient(self, c: int, i: int) -> sympy.Expr:
        """Entry i of the integer-label gradient for label c, as the kernel computes it."""
        f, sym = self.forms, self.sym
        if i != c:
            return self.at(f.probability, i)
        others = sympy.Add(*(self.at(f.e_i, j) for j in range(sym.k) if j != c))
        # The other classes' share is C (S - e_c) by the definition of S; checking that
        # linear identity here keeps the products of K-term sums out of the proof below.
        collapsed = self.C * (sym.S - sym.e[c])
        if sympy.expand(others - collapsed.xreplace({sym.S: sympy.Add(*sym.e)})) != 0:
            raise ProofError(f"the kernel's sum over the classes other than {c + 1} is wrong")
        return self.at(f.gradient_true_class, c).xreplace({f.rest: collapsed})

    def _exp_to_symbols(self, expr: sympy.Expr) -> sympy.Expr:
        """exp(sum_k c_k z_k - c M) -> prod_k e_k^c_k * C^c (the functional equation of exp)."""
        base = {**dict(zip(self.sym.z, self.sym.e, strict=True)), self.M: 1 / self.C}

        def power_product(arg: sympy.Expr) -> sympy.Expr:
            terms = arg.as_coefficients_dict()
            if not set(terms) <= set(base):
                raise ProofError(f"exponential of {arg} is not a shifted logit")
            return sympy.Mul(*(base[v] ** c for v, c in terms.items()))

        return expr.replace(sympy.exp, power_product)

    def log_normal_form(self, expr: sympy.Expr) -> sympy.Expr:
        """Expand logarithms: log(e_i) = z_i, log(S_M) = log(C S) = -M + log(S)."""
        sym = self.sym
        expanded = sympy.expand_log(expr, force=True)
        logs = {sympy.log(ei): zi for ei, zi in zip(sym.e, sym.z, strict=True)}
        return expanded.xreplace({sympy.log(self.S_M): -self.M + sympy.log(sym.S), **logs})


def _sum_relation(sym: FixedK) -> Relation:
    """S is not just a positive number: it is the sum of the e_j."""
    return (sym.S, sympy.Add(*sym.e))


def _guard_is_harmless(forms: KernelForms) -> None:
    """The loss term's guard only avoids 0 * inf: both branches agree where y_i = 0."""
    guarded = forms.loss_term
    plain = forms.y_i * (forms.log_S - forms.d_i)
    if not isinstance(guarded, sympy.Piecewise):
        raise ProofError("loss term: expected a guarded (Piecewise) form")
    (zero_branch, condition), (value, _) = guarded.args
    if condition != sympy.Eq(forms.y_i, 0) or value != plain:
        raise ProofError("loss term: unexpected guard")
    if plain.subs(forms.y_i, 0) != zero_branch:
        raise ProofError("loss term: the guarded branch differs from the formula at y_i = 0")


def prove_all(sym: FixedK, forms: KernelForms) -> tuple[Identity, ...]:
    """The fixed-K identities, in the order the document presents them.

    Vectors and matrices are restricted to proof_indices(K): all of them up to
    ENTRYWISE_PROOF_K_MAX.
    """
    k = sym.k
    idx = proof_indices(k)
    s = derive.softmax(sym)
    s_idx = [s[i] for i in idx]
    y_idx = [sym.y[i] for i in idx]
    on_sum = (_sum_relation(sym),)

    def square(entry: Callable[[int, int], sympy.Expr]) -> sympy.ImmutableMatrix:
        return sympy.ImmutableMatrix([[entry(i, j) for j in idx] for i in idx])

    identities: list[Identity] = [
        prove_entries(
            "softmax-sums-to-one",
            sympy.Add(*s),
            sympy.Integer(1),
            "the sum of e_i / S over i, with S = sum_j e_j, cancels to 1",
            relations=on_sum,
        )
    ]
    jac = derive.jacobian(s, sym, idx)
    closed_jac = square(lambda i, j: s[i] * (int(i == j) - s[j]))
    identities.append(
        prove_entries(
            "jacobian-closed-form",
            jac,
            closed_jac,
            _entries_method(k, "the differentiated definition minus s_i(delta_ij - s_j) is 0"),
        )
    )
    row_sums = [sympy.Add(*(s[i] * (int(i == j) - s[j]) for j in range(k))) for i in idx]
    identities.append(
        prove_entries(
            "jacobian-rows-sum-to-zero",
            sympy.ImmutableMatrix(row_sums),
            sympy.zeros(len(idx), 1),
            _entries_method(k, "each row sum of s_i(delta_ij - s_j), with S = sum_j e_j, is 0"),
            relations=on_sum,
        )
    )
    identities.append(
        prove_entries(
            "log-softmax-jacobian-closed-form",
            derive.jacobian(derive.log_softmax(sym), sym, idx),
            square(lambda i, j: int(i == j) - s[j]),
            _entries_method(k, "the differentiated definition minus (delta_ij - s_j) is 0"),
        )
    )

    grad = derive.gradient(derive.cross_entropy(sym), sym, idx)
    sum_y = sympy.Add(*sym.y)
    closed_grad = sympy.ImmutableMatrix(
        [si * sum_y - yi for si, yi in zip(s_idx, y_idx, strict=True)]
    )
    identities.append(
        prove_entries(
            "cross-entropy-gradient-closed-form",
            grad,
            closed_grad,
            _entries_method(k, "the differentiated definition minus (s_i sum_j y_j - y_i) is 0"),
        )
    )
    # On the simplex the last label is 1 minus the others.
    simplex = (sym.y[-1], 1 - sympy.Add(*sym.y[:-1]))
    identities.append(
        prove_entries(
            "cross-entropy-gradient-simplex",
            grad,
            sympy.ImmutableMatrix([si - yi for si, yi in zip(s_idx, y_idx, strict=True)]),
            _entries_method(k, "with y_K = 1 - (y_1 + ... + y_{K-1}) the difference is 0"),
            assumption="sum_j y_j = 1",
            relations=(simplex, *on_sum),
        )
    )

    shift = sympy.Symbol("C", positive=True)  # C = exp(-c) for a shift z -> z - c
    shifted_sum = sympy.Add(*(ej * shift for ej in sym.e))
    identities.append(
        prove_entries(
            "shift-invariance",
            sympy.ImmutableMatrix([sym.e[i] * shift / shifted_sum for i in idx]),
            sympy.ImmutableMatrix(s_idx),
            _entries_method(k, "exp(z_i - c) = e^{-c} exp(z_i); the common factor cancels"),
            relations=on_sum,
        )
    )
    identities.extend(_prove_kernel_forms(sym, forms, closed_jac, closed_grad))
    return tuple(identities)


def _prove_kernel_forms(
    sym: FixedK,
    forms: KernelForms,
    closed_jac: sympy.ImmutableMatrix,
    closed_grad: sympy.ImmutableMatrix,
) -> list[Identity]:
    """The stable forms the kernels compute equal the definitions, for any row maximum M.

    The Jacobian and gradient kernels evaluate the closed forms on the computed
    probabilities, so with stable-softmax they are proved once their forms, given the
    probabilities, equal the closed forms proved above.
    """
    k = sym.k
    idx = proof_indices(k)
    inst = _Instantiation(forms, sym)
    _guard_is_harmless(forms)
    plain_term = forms.y_i * (forms.log_S - forms.d_i)
    plain_loss = sympy.Add(*(inst.at(plain_term, i) for i in range(k)))
    s = derive.softmax(sym)
    sum_y = sympy.Add(*sym.y)

    def on_probabilities(expr: sympy.Expr, i: int, j: int) -> sympy.Expr:
        return expr.xreplace(
            {
                forms.s_i: s[i],
                forms.s_j: s[j],
                forms.delta_ij: int(i == j),
                forms.y_i: sym.y[i],
                forms.sum_y: sum_y,
            }
        )

    shifted = "with e^{z_i - m} = e^{-m} e^{z_i}"
    given_s = "the kernel's form evaluated on the probabilities equals the closed form"
    one_hot = [{y: int(j == c) for j, y in enumerate(sym.y)} for c in idx]
    return [
        prove_entries(
            "stable-softmax",
            sympy.ImmutableMatrix([inst.at(forms.probability, i) for i in idx]),
            sympy.ImmutableMatrix([s[i] for i in idx]),
            _entries_method(k, f"{shifted} the factor e^{{-m}} cancels"),
            relations=inst.relations,
        ),
        prove_entries(
            "stable-log-softmax",
            sympy.ImmutableMatrix([inst.at(forms.log_probability, i) for i in idx]),
            sympy.ImmutableMatrix([derive.log_softmax(sym)[i] for i in idx]),
            _entries_method(k, "logarithms expanded, log e^{-m} = -m; the terms in m cancel"),
            normal_form=inst.log_normal_form,
            relations=inst.relations,
        ),
        prove_entries(
            "stable-cross-entropy",
            plain_loss,
            derive.cross_entropy(sym),
            "logarithms expanded; the terms in m cancel (the y_i = 0 guard changes nothing)",
            normal_form=inst.log_normal_form,
            relations=inst.relations,
        ),
        prove_entries(
            "kernel-jacobian",
            sympy.ImmutableMatrix(
                [[on_probabilities(forms.jacobian, i, j) for j in idx] for i in idx]
            ),
            closed_jac,
            _entries_method(k, given_s),
        ),
        prove_entries(
            "kernel-cross-entropy-gradient",
            sympy.ImmutableMatrix([on_probabilities(forms.gradient, i, i) for i in idx]),
            closed_grad,
            _entries_method(k, given_s),
        ),
        prove_entries(
            "kernel-cross-entropy-index",
            sympy.ImmutableMatrix([inst.at(forms.loss_index, c) for c in idx]),
            sympy.ImmutableMatrix([derive.cross_entropy(sym).xreplace(y) for y in one_hot]),
            _entries_method(k, "for y = e_c, log S - d_c equals the loss (logarithms expanded)"),
            normal_form=inst.log_normal_form,
            relations=inst.relations,
        ),
        prove_entries(
            "kernel-cross-entropy-grad-index",
            sympy.ImmutableMatrix([[inst.index_gradient(c, i) for i in idx] for c in idx]),
            sympy.ImmutableMatrix(
                [[closed_grad[n].xreplace(y) for n in range(len(idx))] for y in one_hot]
            ),
            _entries_method(
                k, "for y = e_c, entry c is minus the other classes' share; the rest s_i"
            ),
            relations=inst.relations,
        ),
    ]
