"""SymPy printers configured per target: the only way expressions become code or LaTeX."""

from __future__ import annotations

from collections.abc import Mapping

import sympy
from sympy.codegen.ast import float32, float64, real
from sympy.printing.c import C99CodePrinter
from sympy.printing.latex import LatexPrinter
from sympy.printing.numpy import NumPyPrinter

C_TYPES = {"float32": "float", "float64": "double"}
C_SUFFIXES = {"float32": "f32", "float64": "f64"}

Names = Mapping[sympy.Symbol, sympy.Basic]


class CKernelPrinter(C99CodePrinter):
    """C99 for one dtype: F literals for float; refuses unsupported nodes. exp(x) only with
    scaled_exp, as the C template's scaled exp: exp(x) times a power of 2, for values whose
    scale cancels (see exp.c.jinja); with kernel_log, log(x) as the C template's branch-free
    log (log.c.jinja), for log S only (its domain is [1, K] and NaN); else libm's."""

    def __init__(self, dtype: str, scaled_exp: bool = False, kernel_log: bool = False) -> None:
        alias = {"float32": float32, "float64": float64}[dtype]
        super().__init__({"type_aliases": {real: alias}, "strict": True})
        self.suffix = C_SUFFIXES[dtype]
        self.scaled_exp = scaled_exp
        self.kernel_log = kernel_log

    def _print_CompensatedSum(self, expr: sympy.Function) -> str:
        # sum3_<suffix> is defined by the C template
        return f"sum3_{self.suffix}({', '.join(self._print(a) for a in expr.args)})"

    def _print_exp(self, expr: sympy.exp) -> str:
        # the template's own branch-free exp, which vectorises without -ffast-math (libm's
        # exp is called one element at a time)
        if not self.scaled_exp:
            raise ValueError("the C kernels have only the scaled exp: print with scaled_exp")
        return f"symsoft_exp_scaled_{self.suffix}({self._print(expr.args[0])})"

    def _print_log(self, expr: sympy.log) -> str:
        # log S (kernel_log) through the template's branch-free log: libm's, once per row,
        # stopped the loop over rows from vectorising (the fused loss and gradient cost
        # 1.3-3.3x the gradient alone with it, issue 22). Its domain is [1, K] and NaN, so any
        # other log stays libm's.
        if self.kernel_log:
            return f"symsoft_log_{self.suffix}({self._print(expr.args[0])})"
        return self._print_math_func(expr)

    def _print_KroneckerDelta(self, expr: sympy.KroneckerDelta) -> str:
        i, j = (self._print(a) for a in expr.args)
        return f"(({i} == {j}) ? {self._print(sympy.Float(1))} : {self._print(sympy.Float(0))})"

    def _print_Piecewise(self, expr: sympy.Piecewise) -> str:
        # choose_<suffix>(cond, a, b), nested for more branches: the C template's select in
        # bits, both arms computed (gcc branches on (cond) ? a : b with an arithmetic arm, and
        # the loop around it no longer vectorises)
        *branches, (last, _) = expr.args
        text = self._print(last)
        for value, condition in reversed(branches):
            text = f"choose_{self.suffix}({self._print(condition)}, {self._print(value)}, {text})"
        return text


class NumPyKernelPrinter(NumPyPrinter):
    """NumPy code whose functions are taken from `namespace` (`numpy`, or `xp` for an array-API
    namespace: the functions printed here exist under the same names in both); Piecewise as
    where() for a single guard."""

    def __init__(self, namespace: str = "numpy") -> None:
        super().__init__({"strict": True})
        self.namespace = namespace

    def _module_format(self, fqn: str, register: bool = True) -> str:
        if fqn.startswith("numpy."):
            fqn = f"{self.namespace}.{fqn.removeprefix('numpy.')}"
        return super()._module_format(fqn, register)

    def _print_CompensatedSum(self, expr: sympy.Function) -> str:
        # _sum3 is defined by the NumPy template
        return f"_sum3({', '.join(self._print(a) for a in expr.args)})"

    def _print_Piecewise(self, expr: sympy.Piecewise) -> str:
        (value, condition), (otherwise, cond_rest) = expr.args
        if len(expr.args) != 2 or cond_rest is not sympy.true:
            return super()._print_Piecewise(expr)
        return (
            f"{self._module_format('numpy.where')}({self._print(condition)}, "
            f"{self._print(value)}, {self._print(otherwise)})"
        )


def c_code(
    expr: sympy.Basic,
    dtype: str,
    names: Names,
    scaled_exp: bool = False,
    kernel_log: bool = False,
) -> str:
    return CKernelPrinter(dtype, scaled_exp, kernel_log).doprint(expr.xreplace(dict(names)))


def numpy_code(expr: sympy.Basic, names: Names, namespace: str = "numpy") -> str:
    return NumPyKernelPrinter(namespace).doprint(expr.xreplace(dict(names)))


class DocumentLatexPrinter(LatexPrinter):
    """LaTeX for the derivation document: terms in the order they were written."""

    def __init__(self) -> None:
        super().__init__({"order": "none", "mul_symbol": None})


def latex(expr: sympy.Basic) -> str:
    return DocumentLatexPrinter().doprint(expr)
