"""Closed forms and the stable kernel forms, each proved equal to what fixed_k.py computed.

A proof is exact (symsoft.proof): the difference of the two sides is brought to a normal
form (a Laurent polynomial in e_i = exp(z_i), S, y and the other atoms, or failing that one
fraction with an expanded numerator; logarithms are expanded with log(e_i) = z_i,
log(exp(-m)) = -m) and must be the number 0. Anything else raises ProofError.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping

import sympy

from symsoft.derivation import fixed_k
from symsoft.derivation.bundle import CompensatedSum, KernelForms
from symsoft.derivation.fixed_k import FixedK
from symsoft.errors import ProofError
from symsoft.family.members import MEMBERS, Member
from symsoft.proof import ClassSum, Identity, Relation, is_zero_difference, prove_entries

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


def kernel_forms() -> KernelForms:
    """The stable per-element forms; see docs/architecture.md for how they are printed."""
    z_i, y_i, m, d_i, e_i, S, log_S, s_i, s_j, sum_y, rest, v_i, sv = sympy.symbols(
        "z_i y_i m d_i e_i S log_S s_i s_j sum_y rest v_i sv", real=True
    )
    delta_ij = sympy.Symbol("delta_ij", real=True)
    sum_v, q_i, log_q_i, log_s_i, kl = sympy.symbols("sum_v q_i log_q_i log_s_i kl", real=True)
    temperature = sympy.Symbol("temperature", positive=True)
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
        v_i=v_i,
        sv=sv,
        jvp_term=s_i * v_i,
        # J v = s * (v - <s, v>): O(K) per row instead of the K x K matrix
        jvp=s_i * (v_i - sv),
        vjp=s_i * (v_i - sv),
        sum_v=sum_v,
        # log S is at most log K: the sum rounds once, at the scale of the result
        log_sum_exp=m + log_S,
        log_softmax_jvp=v_i - sv,
        log_softmax_vjp=v_i - s_i * sum_v,
        # s_i s_j is one rounded product either way round: the Hessian is symmetric bit for bit
        hessian=sum_y * (s_i * delta_ij - s_i * s_j),
        hvp=sum_y * s_i * (v_i - sv),
        temperature=temperature,
        # shifted before the division: its rounding error scales with z_i - m, not with z_i
        tempered=(z_i - m) / temperature,
        q_i=q_i,
        log_q_i=log_q_i,
        log_s_i=log_s_i,
        kl=kl,
        # a class masked in both rows (q_i = 0, log q_i = log s_i = -inf) must add 0, not NaN
        kl_term=sympy.Piecewise((0, sympy.Eq(q_i, 0)), (q_i * (log_q_i - log_s_i), True)),
        distillation_kl=temperature**2 * kl,
        distillation_grad=temperature * (s_i - q_i),
    )


# One class standing for any class: (z_o, y_o, e_o, v_o), renamed per class in a ClassSum.
_CLASS_O = (
    sympy.Symbol("z_o", real=True),
    sympy.Symbol("y_o", real=True),
    sympy.Symbol("e_o", positive=True),
    sympy.Symbol("v_o", real=True),
)


class _Instantiation:
    """The kernel forms for every component of a K-class problem, with row maximum M.

    exp(z_i - M) is written e_i * C with C = exp(-M) > 0 (the functional equation of exp),
    and the shifted normaliser is the symbol S_M with the relation S_M = C * S.
    """

    def __init__(self, forms: KernelForms, sym: FixedK, tag: str = "") -> None:
        # tag names a second row's symbols apart (a teacher's, beside a student's)
        self.forms = forms
        self.sym = sym
        self.M = sympy.Symbol(f"M{tag}", real=True)
        self.C = sympy.Symbol(f"C{tag}", positive=True)
        self.S_M = sympy.Symbol(f"S_M{tag}", positive=True)
        self.relations: tuple[Relation, ...] = ((self.S_M, self.C * sym.S), _sum_relation(sym))
        self.v = tuple(sympy.Symbol(f"v{tag}_{{{i}}}", real=True) for i in range(1, sym.k + 1))
        self._class_o = (
            _CLASS_O
            if not tag
            else tuple(sympy.Symbol(f"{p.name}{tag}", **p.assumptions0) for p in _CLASS_O)
        )
        # log e_i = z_i (also for the generic class o), log S_M = log(C S) = -M + log S
        self.logs: dict[sympy.Basic, sympy.Expr] = {
            **dict(zip(sym.e, sym.z, strict=True)),
            self._class_o[2]: self._class_o[0],
            self.S_M: -self.M + sympy.log(sym.S),
        }
        self._memo: dict[tuple[sympy.Basic, int], sympy.Expr] = {}

    def at(self, expr: sympy.Expr, i: int) -> sympy.Expr:
        """expr for component i, with the kernel's own shifted, exponential and probability
        forms (s_i is what the kernel computed for component i)."""
        key = (expr, i)
        if key not in self._memo:
            self._memo[key] = self._at(expr, i)
        return self._memo[key]

    def _at(self, expr: sympy.Expr, i: int) -> sympy.Expr:
        # instantiated once for a generic class o, then relabelled to class i (renaming
        # symbols commutes with everything done here)
        generic = self._generic(expr)
        sym = self.sym
        own = (sym.z[i], sym.y[i], sym.e[i], self.v[i])
        return generic.xreplace(dict(zip(self._class_o, own, strict=True)))

    def _generic(self, expr: sympy.Expr) -> sympy.Expr:
        key = (expr, -1)
        if key in self._memo:
            return self._memo[key]
        f = self.forms
        z_o, y_o, e_o, v_o = self._class_o
        d = f.shifted.xreplace({f.z_i: z_o, f.m: self.M})
        e = self._exp_to_symbols(f.exponential.xreplace({f.d_i: d}), {z_o: e_o})
        plain = expr.replace(CompensatedSum, lambda *terms: sympy.Add(*terms))
        plain = plain.xreplace({f.s_i: f.probability})
        result = plain.xreplace(
            {
                f.e_i: e,
                f.d_i: d,
                f.z_i: z_o,
                f.y_i: y_o,
                f.v_i: v_o,
                f.m: self.M,
                f.S: self.S_M,
                f.log_S: sympy.log(self.S_M),
            }
        )
        self._memo[key] = result
        return result

    def classes(self, skip: Iterable[int] = ()) -> list[tuple[sympy.Symbol, ...]]:
        """Each class's (z, y, e, v), in the order of the placeholders z_o, y_o, e_o, v_o."""
        sym, skipped = self.sym, set(skip)
        return [(sym.z[i], sym.y[i], sym.e[i], self.v[i]) for i in range(sym.k) if i not in skipped]

    def over_classes(self, expr: sympy.Expr, skip: Iterable[int] = ()) -> ClassSum:
        """The sum over the classes (but skip) of expr instantiated for each: instantiated
        once for the generic class o, renamed per class by the normal form."""
        return ClassSum(self._generic(expr), self._class_o, self.classes(skip))

    def inner(self) -> sympy.Expr:
        """<s, v> as the kernel reduces it: the sum over classes of its summand form."""
        return self.over_classes(self.forms.jvp_term)

    def index_gradient(self, c: int, i: int) -> sympy.Expr:
        """Entry i of the integer-label gradient for label c, as the kernel computes it."""
        f, sym = self.forms, self.sym
        if i != c:
            return self.at(f.probability, i)
        others = self.over_classes(f.e_i, skip=(c,))
        # The other classes' share is C (S - e_c) by the definition of S; checking that
        # linear identity here keeps the products of K-term sums out of the proof below.
        collapsed = self.C * (sym.S - sym.e[c])
        if not is_zero_difference(others, collapsed, (_sum_relation(sym),)):
            raise ProofError(f"the kernel's sum over the classes other than {c + 1} is wrong")
        return self.at(f.gradient_true_class, c).xreplace({f.rest: collapsed})

    def _exp_to_symbols(
        self, expr: sympy.Expr, logits: Mapping[sympy.Symbol, sympy.Symbol]
    ) -> sympy.Expr:
        """exp(sum_k c_k z_k - c M) -> prod_k e_k^c_k * C^c (the functional equation of exp)."""
        base = {**logits, self.M: 1 / self.C}

        def power_product(arg: sympy.Expr) -> sympy.Expr:
            terms = arg.as_coefficients_dict()
            if not set(terms) <= set(base):
                raise ProofError(f"exponential of {arg} is not a shifted logit")
            return sympy.Mul(*(base[v] ** c for v, c in terms.items()))

        return expr.replace(sympy.exp, power_product)


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
    ENTRYWISE_PROOF_K_MAX. Every proof is a Laurent-polynomial identity (see _Normaliser), so
    a representative entry costs O(K) at any K: the sum S stays a symbol, and S = sum_j e_j is
    substituted only into numerators where S appears linearly.
    """
    k = sym.k
    idx = proof_indices(k)
    s = fixed_k.softmax(sym)
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
    jac = fixed_k.jacobian(s, sym, idx)
    closed_jac = square(lambda i, j: s[i] * (int(i == j) - s[j]))
    identities.append(
        prove_entries(
            "jacobian-closed-form",
            jac,
            closed_jac,
            _entries_method(k, "the differentiated definition minus s_i(delta_ij - s_j) is 0"),
        )
    )
    # the terms j != i of a row as one term for a generic class o, renamed per class
    e_o = _CLASS_O[2]

    def row_sum(i: int) -> sympy.Expr:
        others = [(e,) for j, e in enumerate(sym.e) if j != i]
        return s[i] * (1 - s[i]) + ClassSum(s[i] * (0 - e_o / sym.S), (e_o,), others)

    row_sums = [row_sum(i) for i in idx]
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
            fixed_k.jacobian(fixed_k.log_softmax(sym), sym, idx),
            square(lambda i, j: int(i == j) - s[j]),
            _entries_method(k, "the differentiated definition minus (delta_ij - s_j) is 0"),
        )
    )

    grad = fixed_k.gradient(fixed_k.cross_entropy(sym), sym, idx)
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
    identities.append(_prove_shift_invariance(sym, idx))
    identities.extend(_prove_kernel_forms(sym, forms, closed_jac, closed_grad))
    identities.extend(_prove_products(sym, forms))
    identities.extend(_prove_log_sum_exp_and_log_softmax_products(sym, forms))
    identities.extend(_prove_second_order(sym, forms))
    identities.extend(_prove_distillation(sym, forms))
    check_every_member_proved(identities)
    return tuple(identities)


def check_every_member_proved(
    identities: Iterable[Identity], members: Iterable[Member] = MEMBERS
) -> None:
    """Raise ProofError unless every identity a family member declares was proved and every
    form it declares is a kernel form: no kernel is emitted with an unproved form."""
    proved = {identity.name for identity in identities}
    fields = {field.name for field in dataclasses.fields(KernelForms)}
    for member in members:
        missing = [name for name in member.proofs if name not in proved]
        if missing:
            raise ProofError(f"{member.name}: its forms' proof {', '.join(missing)} was not made")
        unknown = sorted(set(member.forms) - fields)
        if unknown:
            raise ProofError(f"{member.name}: no kernel form {', '.join(unknown)}")


def _prove_shift_invariance(sym: FixedK, idx: tuple[int, ...]) -> Identity:
    """e^{z_i - c} / sum_j e^{z_j - c} = s_i. The shifted sum is C S by linearity, checked
    on its own; with it collapsed every entry is a monomial identity."""
    shift = sympy.Symbol("C", positive=True)  # C = exp(-c) for a shift z -> z - c
    shifted_sum = sympy.Add(*(ej * shift for ej in sym.e))
    if not is_zero_difference(shifted_sum, shift * sym.S, (_sum_relation(sym),)):
        raise ProofError("shift-invariance: the shifted sum is not C S")
    s = fixed_k.softmax(sym)
    lhs = sympy.ImmutableMatrix([sym.e[i] * shift / shifted_sum for i in idx])
    identity = prove_entries(
        "shift-invariance",
        lhs.xreplace({shifted_sum: shift * sym.S}),
        sympy.ImmutableMatrix([s[i] for i in idx]),
        _entries_method(sym.k, "exp(z_i - c) = e^{-c} exp(z_i); the common factor cancels"),
        relations=(_sum_relation(sym),),  # at K = 1 the quotient is already 1 = e_1 / S
    )
    return dataclasses.replace(identity, lhs=lhs)


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
    plain_loss = inst.over_classes(plain_term)
    s = fixed_k.softmax(sym)
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
            sympy.ImmutableMatrix([fixed_k.log_softmax(sym)[i] for i in idx]),
            _entries_method(k, "logarithms expanded, log e^{-m} = -m; the terms in m cancel"),
            logs=inst.logs,
            relations=inst.relations,
        ),
        prove_entries(
            "stable-cross-entropy",
            plain_loss,
            fixed_k.cross_entropy(sym),
            "logarithms expanded; the terms in m cancel (the y_i = 0 guard changes nothing)",
            logs=inst.logs,
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
            sympy.ImmutableMatrix([fixed_k.cross_entropy(sym).xreplace(y) for y in one_hot]),
            _entries_method(k, "for y = e_c, log S - d_c equals the loss (logarithms expanded)"),
            logs=inst.logs,
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


def _prove_products(sym: FixedK, forms: KernelForms) -> list[Identity]:
    """J is symmetric, and the Jacobian-vector products the kernels compute are J v and J^T v.

    Each side is a row of K terms: the kernel's s_i (v_i - <s, v>) with <s, v> reduced over
    the kernel's own probabilities, against sum_j J_ij v_j (sum_i J_ij v_i) with J the
    differentiated definition, so a representative entry costs O(K), not the K^2 entries of J.
    The terms of a row other than its diagonal one are one derivative for a generic class
    (d s_i / d z_o, d s_o / d z_j) renamed per class (see ClassSum).
    """
    k = sym.k
    idx = proof_indices(k)
    inst = _Instantiation(forms, sym)
    s = fixed_k.softmax(sym)
    v = inst.v
    _, _, e_o, v_o = inst._class_o
    inner = inst.inner()

    def row(i: int) -> sympy.Expr:  # sum_j J_ij v_j
        other = fixed_k.d_dz(s[i], e_o, sym) * v_o
        return fixed_k.d_dz(s[i], i, sym) * v[i] + ClassSum(
            other, inst._class_o, inst.classes((i,))
        )

    def column(j: int) -> sympy.Expr:  # sum_i J_ij v_i
        other = fixed_k.d_dz(e_o / sym.S, j, sym) * v_o
        return fixed_k.d_dz(s[j], j, sym) * v[j] + ClassSum(
            other, inst._class_o, inst.classes((j,))
        )

    def kernel(form: sympy.Expr, i: int) -> sympy.Expr:
        return inst.at(form, i).xreplace({forms.sv: inner})

    return [
        prove_entries(
            "jacobian-equals-transpose",
            sympy.ImmutableMatrix([[fixed_k.d_dz(s[i], j, sym) for j in idx] for i in idx]),
            sympy.ImmutableMatrix([[fixed_k.d_dz(s[j], i, sym) for j in idx] for i in idx]),
            _entries_method(k, "d s_i / d z_j minus d s_j / d z_i, both differentiated, is 0"),
        ),
        prove_entries(
            "kernel-softmax-jvp",
            sympy.ImmutableMatrix([kernel(forms.jvp, i) for i in idx]),
            sympy.ImmutableMatrix([row(i) for i in idx]),
            _entries_method(
                k, "s_i (v_i - sum_j s_j v_j) on the stable probabilities minus sum_j J_ij v_j"
            ),
            relations=inst.relations,
        ),
        prove_entries(
            "kernel-softmax-vjp",
            sympy.ImmutableMatrix([kernel(forms.vjp, j) for j in idx]),
            sympy.ImmutableMatrix([column(j) for j in idx]),
            _entries_method(
                k, "s_j (v_j - sum_i s_i v_i) on the stable probabilities minus sum_i J_ij v_i"
            ),
            relations=inst.relations,
        ),
    ]


def _prove_log_sum_exp_and_log_softmax_products(sym: FixedK, forms: KernelForms) -> list[Identity]:
    """m + log S is log sum_j e^{z_j}, whose gradient is softmax; the log-softmax products
    v - <s, v> and g - s sum(g) are sum_j (d log s_i / dz_j) v_j and sum_i (d log s_i / dz_j) g_i
    with the derivative differentiated from the definition (the other classes' terms one
    ClassSum, as in _prove_products)."""
    k = sym.k
    idx = proof_indices(k)
    inst = _Instantiation(forms, sym)
    s = fixed_k.softmax(sym)
    log_s = fixed_k.log_softmax(sym)
    v = inst.v
    _, _, e_o, v_o = inst._class_o
    reductions = {forms.sv: inst.inner(), forms.sum_v: inst.over_classes(forms.v_i)}

    def kernel(form: sympy.Expr, i: int) -> sympy.Expr:
        return inst.at(form, i).xreplace(reductions)

    def row(i: int) -> sympy.Expr:  # sum_j (d log s_i / dz_j) v_j
        other = fixed_k.d_dz(log_s[i], e_o, sym) * v_o
        return fixed_k.d_dz(log_s[i], i, sym) * v[i] + ClassSum(
            other, inst._class_o, inst.classes((i,))
        )

    def column(j: int) -> sympy.Expr:  # sum_i (d log s_i / dz_j) v_i
        other = fixed_k.d_dz(sympy.log(e_o / sym.S, evaluate=False), j, sym) * v_o
        return fixed_k.d_dz(log_s[j], j, sym) * v[j] + ClassSum(
            other, inst._class_o, inst.classes((j,))
        )

    return [
        prove_entries(
            "stable-logsumexp",
            inst.at(forms.log_sum_exp, 0),
            sympy.log(sym.S),
            "m + log sum_j e^{z_j - m}: logarithms expanded, log e^{-m} = -m; the terms in m "
            "cancel",
            logs=inst.logs,
            relations=inst.relations,
        ),
        prove_entries(
            "logsumexp-gradient",
            sympy.ImmutableMatrix([fixed_k.d_dz(sympy.log(sym.S), j, sym) for j in idx]),
            sympy.ImmutableMatrix([s[j] for j in idx]),
            _entries_method(k, "d log S / dz_j, differentiated, minus s_j is 0"),
        ),
        prove_entries(
            "kernel-log-softmax-jvp",
            sympy.ImmutableMatrix([kernel(forms.log_softmax_jvp, i) for i in idx]),
            sympy.ImmutableMatrix([row(i) for i in idx]),
            _entries_method(
                k,
                "v_i - sum_j s_j v_j on the stable probabilities minus sum_j (d log s_i/dz_j) v_j",
            ),
            relations=inst.relations,
        ),
        prove_entries(
            "kernel-log-softmax-vjp",
            sympy.ImmutableMatrix([kernel(forms.log_softmax_vjp, j) for j in idx]),
            sympy.ImmutableMatrix([column(j) for j in idx]),
            _entries_method(
                k,
                "g_j - s_j sum_i g_i on the stable probabilities minus sum_i (d log s_i/dz_j) g_i",
            ),
            relations=inst.relations,
        ),
    ]


def _prove_second_order(sym: FixedK, forms: KernelForms) -> list[Identity]:
    """The cross-entropy's Hessian, differentiated twice from the definition, is sum(y) times
    the softmax Jacobian and symmetric; the kernels' Hessian and H v equal it."""
    k = sym.k
    idx = proof_indices(k)
    inst = _Instantiation(forms, sym)
    s = fixed_k.softmax(sym)
    v = inst.v
    _, _, e_o, v_o = inst._class_o
    sum_y = sympy.Add(*sym.y)
    loss = fixed_k.cross_entropy(sym)
    # The first derivative, differentiated, carries sum_k y_k / S as K terms; checked equal
    # (O(K)) to the same with Y standing for sum_k y_k (a constant in z), it is differentiated
    # again in O(1) per entry: a K-term sum in every term of a row's ClassSum would cost K^2.
    Y = sympy.Symbol("Y", real=True)
    on_targets = ((Y, sum_y),)
    grad = {}
    for i in idx:
        collapsed = sym.e[i] * Y / sym.S - sym.y[i]
        if not is_zero_difference(fixed_k.d_dz(loss, i, sym), collapsed, on_targets):
            raise ProofError(f"the cross-entropy's derivative in z_{i + 1} is not e_i Y / S - y_i")
        grad[i] = collapsed
    hessian = sympy.ImmutableMatrix([[fixed_k.d_dz(grad[i], j, sym) for j in idx] for i in idx])
    closed = sympy.ImmutableMatrix(
        [[sum_y * s[i] * (int(i == j) - s[j]) for j in idx] for i in idx]
    )
    on_probabilities = [
        [
            forms.hessian.xreplace(
                {forms.s_i: s[i], forms.s_j: s[j], forms.delta_ij: int(i == j), forms.sum_y: sum_y}
            )
            for j in idx
        ]
        for i in idx
    ]
    reductions = {forms.sv: inst.inner(), forms.sum_y: Y}

    def row(i: int) -> sympy.Expr:  # sum_j H_ij v_j, H differentiated from the definition
        other = fixed_k.d_dz(grad[i], e_o, sym) * v_o
        return fixed_k.d_dz(grad[i], i, sym) * v[i] + ClassSum(
            other, inst._class_o, inst.classes((i,))
        )

    return [
        prove_entries(
            "cross-entropy-hessian-closed-form",
            hessian,
            closed,
            _entries_method(
                k,
                "dL/dz_i differentiated again by z_j minus sum_k y_k s_i (delta_ij - s_j), the "
                "softmax Jacobian times sum(y), is 0",
            ),
            relations=on_targets,
        ),
        prove_entries(
            "cross-entropy-hessian-symmetric",
            hessian,
            hessian.T,
            _entries_method(k, "d^2 L / dz_i dz_j minus d^2 L / dz_j dz_i, both differentiated"),
        ),
        prove_entries(
            "kernel-cross-entropy-hessian",
            sympy.ImmutableMatrix(on_probabilities),
            closed,
            _entries_method(k, "the kernel's form evaluated on the probabilities"),
        ),
        prove_entries(
            "kernel-cross-entropy-hvp",
            sympy.ImmutableMatrix([inst.at(forms.hvp, i).xreplace(reductions) for i in idx]),
            sympy.ImmutableMatrix([row(i) for i in idx]),
            _entries_method(
                k,
                "sum(y) s_i (v_i - sum_j s_j v_j) on the stable probabilities minus "
                "sum_j H_ij v_j, H differentiated twice",
            ),
            relations=(*inst.relations, *on_targets),
        ),
    ]


def _prove_distillation(sym: FixedK, forms: KernelForms) -> list[Identity]:
    """T^2 KL(softmax(t/T) || softmax(z/T)) and its gradient in the student's logits z.

    The definition is written in the tempered logits w = z/T (sym's logits) and the teacher's
    tempered logits (a second, independent row); d/dz_j = (dw_j/dz_j) d/dw_j, with dw_j/dz_j
    differentiated by SymPy. The kernels divide z_i - max z by T (proved to be w_i minus the
    maximum of w), then apply the proved softmax forms to that row, whose own maximum shift
    is arbitrary: so each row is instantiated with an arbitrary shift M, as elsewhere.
    """
    k = sym.k
    idx = proof_indices(k)
    T = forms.temperature
    teacher = fixed_k.fixed_k(k, logit="t", target="u", normaliser="S_t")
    student_row = _Instantiation(forms, sym)
    teacher_row = _Instantiation(forms, teacher, tag="_t")
    s, log_s = fixed_k.softmax(sym), fixed_k.log_softmax(sym)
    q, log_q = fixed_k.softmax(teacher), fixed_k.log_softmax(teacher)
    relations = (*teacher_row.relations, *student_row.relations)
    logs = {**student_row.logs, **teacher_row.logs}

    # the kernel's first step: (z_i - m) / T at z = T w, m = T max(w) is w_i - max(w)
    M1 = sympy.Symbol("M_w", real=True)
    tempered = sympy.ImmutableMatrix(
        [forms.tempered.xreplace({forms.z_i: T * sym.z[i], forms.m: T * M1}) for i in idx]
    )
    identities = [
        prove_entries(
            "tempered-logits",
            tempered,
            sympy.ImmutableMatrix([sym.z[i] - M1 for i in idx]),
            _entries_method(k, "at z = T w and m = T max(w) the factor T cancels"),
        )
    ]

    definition = sympy.Add(*(T**2 * q[i] * (log_q[i] - log_s[i]) for i in range(k)), evaluate=False)
    x = sympy.Symbol("x", real=True)
    dw_dz = sympy.diff(x / T, x)  # the chain rule's factor: w = z / T
    # d/dw_j term by term: class j's own term, and the others' as one generic class o's term
    # differentiated once (only through S) and renamed per class (a ClassSum), O(K) per entry
    e_o, a_o = student_row._class_o[2], teacher_row._class_o[2]
    q_o = a_o / teacher.S
    term_o = T**2 * q_o * (sympy.log(q_o, evaluate=False) - sympy.log(e_o / sym.S, evaluate=False))
    definition_terms = sympy.Add.make_args(definition)

    def derivative(j: int) -> sympy.Expr:
        others = [
            (*a, *b)
            for n, (a, b) in enumerate(
                zip(student_row.classes(), teacher_row.classes(), strict=True)
            )
            if n != j
        ]
        placeholders = (*student_row._class_o, *teacher_row._class_o)
        rest = ClassSum(fixed_k.d_dz(term_o, j, sym), placeholders, others)
        return dw_dz * (fixed_k.d_dz(definition_terms[j], j, sym) + rest)

    if len(definition_terms) != k:
        raise ProofError("distillation: the definition is not one term per class")
    gradient = sympy.ImmutableMatrix([derivative(j) for j in idx])
    closed = sympy.ImmutableMatrix([T * (s[j] - q[j]) for j in idx])
    identities.append(
        prove_entries(
            "distillation-kl-gradient",
            gradient,
            closed,
            _entries_method(
                k,
                "(1/T) d/dw_j of T^2 sum_i q_i (log q_i - log s_i), differentiated, minus "
                "T (s_j - q_j) is 0, with sum_i q_i = 1 (S_t = sum_i e^{t_i})",
            ),
            relations=relations,
        )
    )

    # the loss: the guard only avoids 0 * (-inf + inf); both branches agree where q_i = 0
    (zero_branch, condition), (plain, _) = forms.kl_term.args
    if condition != sympy.Eq(forms.q_i, 0) or plain.subs(forms.q_i, 0) != zero_branch:
        raise ProofError("distillation: the kl term's guard differs from the formula at q_i = 0")
    on_rows = {
        forms.q_i: teacher_row._generic(forms.probability),
        forms.log_q_i: teacher_row._generic(forms.log_probability),
        forms.log_s_i: student_row._generic(forms.log_probability),
    }
    rows = [a + b for a, b in zip(student_row.classes(), teacher_row.classes(), strict=True)]
    kl = ClassSum(plain.xreplace(on_rows), (*student_row._class_o, *teacher_row._class_o), rows)
    identities.append(
        prove_entries(
            "stable-distillation-kl",
            forms.distillation_kl.xreplace({forms.kl: kl}),
            definition,
            "each row's stable log-probabilities (logarithms expanded, the terms in its shift "
            "cancel), T^2 times the sum of q_i (log q_i - log s_i); the q_i = 0 guard changes "
            "nothing",
            logs=logs,
            relations=relations,
        )
    )
    kernel_grad = [
        forms.distillation_grad.xreplace(
            {
                forms.s_i: student_row.at(forms.probability, i),
                forms.q_i: teacher_row.at(forms.probability, i),
            }
        )
        for i in idx
    ]
    identities.append(
        prove_entries(
            "kernel-distillation-kl-grad",
            sympy.ImmutableMatrix(kernel_grad),
            closed,
            _entries_method(k, "T (s_i - q_i) on both rows' stable probabilities"),
            relations=relations,
        )
    )
    return identities
