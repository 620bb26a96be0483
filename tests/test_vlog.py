"""The C kernels' own log (templates/c/log.c.jinja), taken from the emitted source and measured
against mpmath: below 0.85 ulp over its domain as the kernels use it, log S with S in [1, K]
(every K up to 2^11 and the values near the reduction's boundary sqrt(2)), and over the
positive normal numbers; NaN gives NaN and log 1 = +0.

As in tests/test_vexp.py, the shim includes the emitted .c file and is compiled with the
strict flags at -O3 (its loop vectorised), -O0 (scalar) and -O3 -march=native (fma where the
machine has a fast one).
"""

from __future__ import annotations

import ctypes

import mpmath
import numpy
import pytest
import sympy

from symsoft.emit.printers import c_code
from symsoft.runtime.build import STRICT_FLAGS, compile_shared, load_library
from tests.conftest import require_tool
from tests.test_vexp import callable_from_arrays

SHIM = """\
#include "softmax_k1.c"

void log_f64(const double *x, double *y, size_t n)
{
    for (size_t i = 0; i < n; ++i) {
        y[i] = symsoft_log_f64(x[i]);
    }
}

void log_f32(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; ++i) {
        y[i] = symsoft_log_f32(x[i]);
    }
}
"""
BOUND_ULPS = 0.85  # measured 0.820 (double) and 0.814 (float), near m = sqrt(2) / 2 and sqrt(2)
BUILDS = ["-O3", "-O0", "-O3 -march=native"]


@pytest.fixture(scope="module", params=BUILDS)
def log_c(request, generated, tmp_path_factory):
    build = tmp_path_factory.mktemp("vlog")
    shim = build / "shim.c"
    shim.write_text(SHIM)
    library = load_library(
        compile_shared(
            shim,
            build / "libshim.so",
            compiler=require_tool("cc"),
            flags=(*(f for f in STRICT_FLAGS if not f.startswith("-O")), *request.param.split()),
            extra=(f"-I{generated(1).folder}",),
        )
    )
    return {
        numpy.float64: callable_from_arrays(library.log_f64, ctypes.c_double, numpy.float64),
        numpy.float32: callable_from_arrays(library.log_f32, ctypes.c_float, numpy.float32),
    }


def sample(dtype) -> numpy.ndarray:
    """log S's domain [1, 2^11] uniformly and at integers, the reduction's boundaries
    2^k sqrt(2) (and sqrt(2)/2), around 1, and the positive normal numbers."""
    rng = numpy.random.default_rng(11)
    finfo = numpy.finfo(dtype)
    k = rng.integers(0, 11, 2000)
    boundary = numpy.sqrt(2.0) * 2.0**k * (1 + rng.uniform(-1e-6, 1e-6, 2000))
    exponents = rng.uniform(numpy.log2(float(finfo.tiny)), numpy.log2(float(finfo.max)) - 1, 3000)
    parts = [
        rng.uniform(1, 2048, 8000),
        numpy.arange(1, 2049),
        boundary,
        numpy.sqrt(0.5) * (1 + rng.uniform(-1e-6, 1e-6, 500)),
        1 + rng.uniform(-1e-3, 1e-3, 1000),
        2.0**exponents,
    ]
    return numpy.concatenate(parts).astype(dtype)


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_log_within_bound(log_c, dtype):
    x = sample(dtype)
    got = log_c[dtype](x).astype(numpy.float64)
    with mpmath.workdps(40):
        exact = numpy.array([mpmath.log(mpmath.mpf(float(v))) for v in x], dtype=object)
    hi = exact.astype(numpy.float64)
    lo = (exact - hi).astype(numpy.float64)
    error = numpy.abs((got - hi) - lo)
    ulp = numpy.spacing(numpy.abs(hi).astype(dtype)).astype(numpy.float64)
    ulps = error / numpy.where(hi == 0, numpy.finfo(dtype).tiny, ulp)
    assert numpy.max(ulps) <= BOUND_ULPS, (numpy.max(ulps), x[numpy.argmax(ulps)])


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_log_special_values(log_c, dtype):
    got = log_c[dtype](numpy.array([1.0, numpy.nan, -numpy.nan, 2.0], dtype=dtype))
    assert got[0] == 0 and not numpy.signbit(got[0])
    assert numpy.isnan(got[1]) and numpy.isnan(got[2])
    assert got[3] == dtype(numpy.log(2.0))


def test_only_log_s_is_printed_with_the_kernels_log():
    """Its domain is log S's, [1, K]: any other log a member may print stays libm's."""
    x = sympy.Symbol("x")
    assert c_code(sympy.log(x), "float32", {}, kernel_log=True) == "symsoft_log_f32(x)"
    assert c_code(sympy.log(x), "float64", {}, kernel_log=True) == "symsoft_log_f64(x)"
    assert c_code(sympy.log(x), "float32", {}) == "logf(x)"
    assert c_code(sympy.log(x), "float64", {}) == "log(x)"
