"""Bundle -> softmax_k{K}.py: written against the array API (array_api_compat), or, with
numpy_only, the same code calling NumPy directly."""

from __future__ import annotations

import sympy

from symsoft.derivation.bundle import PRINTED_OPTION_FORMS, Bundle
from symsoft.emit.printers import numpy_code
from symsoft.emit.render import render
from symsoft.family.members import NAMES, masked_rows_note, stem


def emit_numpy(bundle: Bundle) -> dict[str, str]:
    f = bundle.kernel
    namespace = "numpy" if bundle.numpy_only else "xp"
    array = {
        f.z_i: sympy.Symbol("z"),
        f.y_i: sympy.Symbol("y"),
        f.d_i: sympy.Symbol("d"),
        f.e_i: sympy.Symbol("e"),
        f.s_i: sympy.Symbol("s"),
        f.v_i: sympy.Symbol("v"),
    }
    # the Jacobian broadcasts s as a column against s as a row
    outer = {
        f.s_i: sympy.Symbol("s[..., :, None]"),
        f.s_j: sympy.Symbol("s[..., None, :]"),
        f.delta_ij: sympy.Symbol("eye"),
    }
    half = sympy.Rational(1, 2)
    # the integer-label loss reads the label's logit, picked out into z_c
    at_label = {**array, f.z_i: sympy.Symbol("z_c")}

    def code(expr: sympy.Expr, names: dict[sympy.Symbol, sympy.Symbol] = array) -> str:
        return numpy_code(expr, names, namespace)

    o = bundle.options
    # the options path (issue 17): each option symbol under the name the template gives it
    opt_names = {
        **array,
        o.z_i: sympy.Symbol("z"),
        o.w_i: sympy.Symbol("w"),
        o.a_i: sympy.Symbol("a"),
        o.T: sympy.Symbol("T"),
        o.eps: sympy.Symbol("eps"),
        o.lam: sympy.Symbol("lam"),
    }
    option_forms = {
        f"option_{name}": code(getattr(o, name), opt_names) for name in PRINTED_OPTION_FORMS
    }
    text = render(
        "softmax.py.jinja",
        bundle.k,
        "float32, float64",
        functions=list(NAMES),
        shifted=code(f.shifted),
        exponential=code(f.exponential),
        probability=code(f.probability),
        log_normaliser=code(f.log_normaliser),
        log_probability=code(f.log_probability),
        jacobian=code(f.jacobian, outer),
        loss_term=code(f.loss_term),
        # at half scale, as in the C (see emit/c.py): no overflow of z - m for finite z
        half_shifted=code(f.shifted, {**array, f.z_i: half * array[f.z_i], f.m: half * f.m}),
        half_loss_term=code(
            f.loss_term, {**array, f.d_i: sympy.Symbol("h"), f.log_S: half * f.log_S}
        ),
        gradient=code(f.gradient),
        loss_index=code(f.loss_index, at_label),
        gradient_true_class=code(f.gradient_true_class),
        jvp_term=code(f.jvp_term),
        jvp=code(f.jvp),
        vjp=code(f.vjp),
        log_sum_exp=code(f.log_sum_exp),
        log_softmax_jvp=code(f.log_softmax_jvp),
        log_softmax_vjp=code(f.log_softmax_vjp, {**array, f.v_i: sympy.Symbol("g")}),
        hessian=code(f.hessian, outer),
        hvp=code(f.hvp),
        tempered=code(f.tempered),
        kl_term=code(f.kl_term),
        distillation_kl=code(f.distillation_kl),
        distillation_grad=code(f.distillation_grad),
        masked_rows=bundle.masked_rows,
        masked_rows_notes={name: masked_rows_note(bundle.masked_rows, name) for name in NAMES},
        masked_rows_note=masked_rows_note(bundle.masked_rows),
        numpy_only=bundle.numpy_only,
        **option_forms,
    )
    return {f"{stem(bundle.k, bundle.prefix)}.py": text}
