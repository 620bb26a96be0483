"""Bundle -> softmax_k{K}.py, a module that needs NumPy only."""

from __future__ import annotations

import sympy

from symsoft.bundle import Bundle
from symsoft.emit.kernels import FUNCTIONS
from symsoft.printers import numpy_code
from symsoft.render import render


def emit_numpy(bundle: Bundle) -> dict[str, str]:
    f = bundle.kernel
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
    text = render(
        "softmax.py.jinja",
        bundle.k,
        "float32, float64",
        functions=list(FUNCTIONS),
        shifted=numpy_code(f.shifted, array),
        exponential=numpy_code(f.exponential, array),
        probability=numpy_code(f.probability, array),
        log_normaliser=numpy_code(f.log_normaliser, array),
        log_probability=numpy_code(f.log_probability, array),
        jacobian=numpy_code(f.jacobian, outer),
        loss_term=numpy_code(f.loss_term, array),
        gradient=numpy_code(f.gradient, array),
        loss_index=numpy_code(f.loss_index, array),
        gradient_true_class=numpy_code(f.gradient_true_class, array),
        jvp_term=numpy_code(f.jvp_term, array),
        jvp=numpy_code(f.jvp, array),
        vjp=numpy_code(f.vjp, array),
        masked_rows=bundle.masked_rows,
    )
    return {f"softmax_k{bundle.k}.py": text}
