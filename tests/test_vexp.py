"""The C kernels' own exp (templates/c/exp.c.jinja), taken from the emitted source and measured
against mpmath over its domain (x <= 0: the kernels ask for exp(z_i - max z)): at most 0.75 ulp
(normal results) and 0.8 subnormal ulp, exact special values; and the scaled exp the kernels
call, exp(x) * 2^64 (2^32 for float), a normal number within 0.75 ulp down to the underflow
threshold and +0 below it.

The shim includes the emitted .c file, so what is measured is the emitted function, compiled
with the strict flags at -O3 (its loop vectorised), at -O0 (scalar) and at -O3 -march=native,
which uses fma where the machine has a fast one (FP_FAST_FMA) and, with gcc on SSE4.2 or
later, the end mask instead of the clamp (both measured there).
"""

from __future__ import annotations

import ctypes
import re
import subprocess

import mpmath
import numpy
import pytest
import sympy

from symsoft.emit.printers import c_code
from symsoft.runtime.build import STRICT_FLAGS, compile_shared, load_library
from tests.conftest import require_tool

SHIM = """\
#include "softmax_k1.c"

void exp_f64(const double *x, double *y, size_t n)
{
    for (size_t i = 0; i < n; ++i) {
        y[i] = symsoft_exp_scaled_f64(x[i]) * 0x1p-64;
    }
}

void exp_f32(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; ++i) {
        y[i] = symsoft_exp_scaled_f32(x[i]) * 0x1p-32F;
    }
}

void exp_scaled_f64(const double *x, double *y, size_t n)
{
    for (size_t i = 0; i < n; ++i) {
        y[i] = symsoft_exp_scaled_f64(x[i]);
    }
}

void exp_scaled_f32(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; ++i) {
        y[i] = symsoft_exp_scaled_f32(x[i]);
    }
}
"""
SCALE = {numpy.float64: 64, numpy.float32: 32}  # the scaled exp's power of 2
BOUND_ULPS = 0.75  # measured 0.731 (double) and 0.723 (float, every input) in scratch research
BOUND_SUBNORMAL_ULPS = 0.8


# -O3: SSE2, so a double x is clamped first (SYMSOFT_CLAMP_FIRST); -O3 -march=native: the
# end mask and fma; the last: fma with the clamp
BUILDS = ["-O3", "-O0", "-O3 -march=native", "-O3 -march=native -DSYMSOFT_CLAMP_FIRST"]


def callable_from_arrays(function, ctype, dtype):
    """A C function (const T *x, T *y, size_t n) as a function from an array to a new array."""
    function.argtypes = [ctypes.POINTER(ctype), ctypes.POINTER(ctype), ctypes.c_size_t]

    def call(x):
        x = numpy.ascontiguousarray(x, dtype=dtype)
        y = numpy.empty_like(x)
        function(
            x.ctypes.data_as(ctypes.POINTER(ctype)), y.ctypes.data_as(ctypes.POINTER(ctype)), x.size
        )
        return y

    return call


def build_exp(folder, build, flags: str):
    """The emitted exp functions, compiled with the strict flags and `flags`, as callables
    from an array to an array, keyed by name ("exp", "exp_scaled") and dtype."""
    shim = build / "shim.c"
    shim.write_text(SHIM)
    library = load_library(
        compile_shared(
            shim,
            build / "libshim.so",
            compiler=require_tool("cc"),
            flags=(*(f for f in STRICT_FLAGS if not f.startswith("-O")), *flags.split()),
            extra=(f"-I{folder}",),
        )
    )
    types = [(numpy.float64, "f64", ctypes.c_double), (numpy.float32, "f32", ctypes.c_float)]
    functions: dict[str, dict] = {"exp": {}, "exp_scaled": {}}
    for name in functions:
        for dtype, suffix, ctype in types:
            functions[name][dtype] = callable_from_arrays(
                getattr(library, f"{name}_{suffix}"), ctype, dtype
            )
    return functions


@pytest.fixture(scope="module", params=BUILDS)
def exp_builds(request, generated, tmp_path_factory):
    return build_exp(generated(1).folder, tmp_path_factory.mktemp("vexp"), request.param)


@pytest.fixture
def exp_c(exp_builds):
    return exp_builds["exp"]


@pytest.fixture
def exp_scaled_c(exp_builds):
    return exp_builds["exp_scaled"]


def sample(dtype) -> numpy.ndarray:
    """Uniform over the whole domain, near 0 and the underflow threshold, near the reduction
    boundaries (k + 1/2) ln 2, tiny arguments, and integers and eighths; all <= 0."""
    rng = numpy.random.default_rng(2024)
    low, n = (-745.2, 6000) if dtype == numpy.float64 else (-103.98, 6000)
    ln2 = numpy.log(2.0)
    k = rng.integers(int(low / ln2), 0, 1500)
    parts = [
        rng.uniform(low, 0, n),
        rng.uniform(-2, 0, 1500),
        low + rng.uniform(0, 30, 600),  # the subnormal-result range
        numpy.minimum((k + 0.5) * ln2 + rng.uniform(-1e-6, 1e-6, 1500), 0),
        k * ln2,
        -numpy.exp2(rng.uniform(-60, 0, 300)),
        numpy.arange(int(low) * 8, 1) / 8,
    ]
    return numpy.concatenate(parts).astype(dtype)


def ulps(x: numpy.ndarray, got: numpy.ndarray, dtype, scale: int = 0) -> numpy.ndarray:
    """|got - exp(x) 2^scale| in units of the last place of exp(x) 2^scale (subnormal ulps
    below the normal range), exp(x) from mpmath at 40 digits."""
    finfo = numpy.finfo(dtype)
    smallest = float(finfo.smallest_subnormal)
    out = numpy.empty(x.size)
    with mpmath.workdps(40):
        for n, (xv, gv) in enumerate(zip(x.tolist(), got.tolist(), strict=True)):
            exact = mpmath.exp(mpmath.mpf(xv)) * mpmath.mpf(2) ** scale
            if exact < finfo.tiny:
                unit = mpmath.mpf(smallest)
            else:
                unit = mpmath.mpf(2) ** (mpmath.floor(mpmath.log(exact, 2)) - finfo.nmant)
            out[n] = float(abs(mpmath.mpf(gv) - exact) / unit)
    return out


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_error_bound(exp_c, dtype):
    x = sample(dtype)
    assert numpy.all(x <= 0)
    got = exp_c[dtype](x)
    assert numpy.all(numpy.isfinite(got))
    errors = ulps(x, got, dtype)
    normal = got >= numpy.finfo(dtype).tiny
    assert errors[normal].max() <= BOUND_ULPS, errors[normal].max()
    assert errors[~normal].max(initial=0) <= BOUND_SUBNORMAL_ULPS
    assert numpy.count_nonzero(~normal) > 100  # the gradual-underflow range was sampled


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_scaled_exp_is_normal_down_to_the_threshold_then_zero(exp_scaled_c, dtype):
    """What the kernels sum and divide: exp(x) 2^E within the bound as a normal number where
    exp(x) itself is subnormal too (the division by the scaled sum rounds such results once),
    and +0 exactly below -746 / -104 and at -inf (the clamp's arm gives +0 as well)."""
    x = sample(dtype)
    got = exp_scaled_c[dtype](x)
    assert numpy.all(got >= numpy.finfo(dtype).tiny)
    assert ulps(x, got, dtype, SCALE[dtype]).max() <= BOUND_ULPS
    low = -746.0 if dtype == numpy.float64 else -104.0
    below = numpy.concatenate([low - numpy.geomspace(1e-3, 1e30, 300), [-numpy.inf]])
    zero = exp_scaled_c[dtype](below.astype(dtype))
    assert numpy.all(zero == 0) and not numpy.any(numpy.signbit(zero))
    assert numpy.isnan(exp_scaled_c[dtype](numpy.array([numpy.nan], dtype))[0])


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_special_values(exp_c, dtype):
    inf, nan = numpy.inf, numpy.nan
    huge = numpy.finfo(dtype).max
    x = numpy.array([0.0, -0.0, -inf, nan, -nan, -huge, -1000.0], dtype=dtype)
    got = exp_c[dtype](x)
    assert got[0] == 1 and got[1] == 1
    assert got[2] == 0 and not numpy.signbit(got[2])
    assert numpy.isnan(got[3]) and numpy.isnan(got[4])
    assert got[5] == 0 and got[6] == 0 and not numpy.any(numpy.signbit(got[5:]))
    tiny = numpy.array([-745.1, -745.2] if dtype == numpy.float64 else [-103.9, -104.0], dtype)
    assert exp_c[dtype](tiny)[0] > 0 and exp_c[dtype](tiny)[1] == 0  # gradual, then +0


def test_kernels_print_our_exp_and_our_log(generated):
    source = (generated(3).folder / "softmax_k3.c").read_text()
    code = re.sub(r"/\*.*?\*/", "", source, flags=re.S)  # comments may say exp(x)
    assert "symsoft_exp_scaled_f64(d_i)" in code and "symsoft_exp_scaled_f32(d_i)" in code
    assert not re.search(r"\bexpf?\(", code)
    # log S through templates/c/log.c.jinja (tests/test_vlog.py), never libm's
    assert "symsoft_log_f64(S)" in code and "symsoft_log_f32(S)" in code
    assert not re.search(r"\blogf?\(", code)


def test_clamping_first_and_masking_at_the_end_give_the_same_bits(generated, tmp_path):
    """The double exp's two ways of sending x < -746 to +0 (templates/c/exp.c.jinja, step 1)
    agree exactly, with the same fma use, over the sample, below the range and at the special
    values. (float has only the mask.)"""
    folder = generated(1).folder
    flags = "-O3 -march=native"
    preprocessed = subprocess.run(
        [require_tool("cc"), "-E", "-march=native", f"-I{folder}", "-"],
        input=SHIM,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    double_exp = preprocessed.split("symsoft_exp_scaled_f64")[1].split("symsoft_exp_scaled_f32")[0]
    assert "keep" in double_exp, (
        "this test needs a compiler and target that take the mask path for double "
        "(gcc; on x86 SSE4.2 or later)"
    )
    (tmp_path / "mask").mkdir()
    (tmp_path / "clamp").mkdir()
    masked = build_exp(folder, tmp_path / "mask", flags)["exp"]
    clamped = build_exp(folder, tmp_path / "clamp", flags + " -DSYMSOFT_CLAMP_FIRST")["exp"]
    below = -numpy.geomspace(700, 1e300, 400)
    specials = [0.0, -0.0, -numpy.inf, numpy.nan, -746.0, -745.5]
    x = numpy.concatenate([sample(numpy.float64), below, specials])
    numpy.testing.assert_array_equal(
        masked[numpy.float64](x).view("u8"), clamped[numpy.float64](x).view("u8")
    )


def test_the_c_printer_gives_exp_only_scaled():
    """Where the scale would not cancel, an exp in a C expression is refused, not printed."""
    x = sympy.Symbol("x")
    assert c_code(sympy.exp(x), "float32", {}, scaled_exp=True) == "symsoft_exp_scaled_f32(x)"
    with pytest.raises(ValueError, match="scaled exp"):
        c_code(sympy.exp(x), "float64", {})
