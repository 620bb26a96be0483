"""bf16 and fp16 storage (templates/c/storage.c.jinja): the conversions exactly, and every
kernel with 16-bit outputs against the 50-digit reference within its budget, stated in the
storage precision:

    |result - exact| <= ulp_s(exact) / 2 + (the float32 kernel's error bound)

that is, the float32 result rounded once to nearest-even (half an ulp of the storage format,
bf16: 8 significant bits, fp16: 11, subnormal fp16 steps 2^-24) on top of the float32
kernel's own error, which is a few hundredths of a storage ulp here (bound below per kernel).
A kernel that truncated instead of rounding, or rounded twice, would exceed it.
"""

from __future__ import annotations

import ctypes

import numpy
import pytest

from symsoft.derivation import reference
from symsoft.runtime.build import STRICT_FLAGS, compile_shared, load_library
from symsoft.runtime.ckernels import CKernels
from tests.conftest import require_tool
from tests.references import rows, soft_labels

# significant bits, smallest normal exponent of each storage
FORMATS = {"bf16": (8, -126), "f16": (11, -14)}
U32 = 2.0**-24  # float32 unit roundoff


def decode(bits: numpy.ndarray, storage: str) -> numpy.ndarray:
    if storage == "f16":
        return bits.view(numpy.float16).astype(numpy.float64)
    return (bits.astype(numpy.uint32) << 16).view(numpy.float32).astype(numpy.float64)


def encode_truncated(x: numpy.ndarray, storage: str) -> numpy.ndarray:
    """Inputs: float64 values made representable in the storage (their exact values are the
    inputs the reference sees)."""
    if storage == "f16":
        return x.astype(numpy.float16).view(numpy.uint16)
    return (x.astype(numpy.float32).view(numpy.uint32) >> 16).astype(numpy.uint16)


def half_ulp(exact: numpy.ndarray, storage: str) -> numpy.ndarray:
    bits, min_exponent = FORMATS[storage]
    magnitude = numpy.maximum(numpy.abs(exact), 2.0**min_exponent)  # subnormals: fixed step
    return 2.0 ** (numpy.floor(numpy.log2(magnitude)) - bits) / 1.0


@pytest.mark.parametrize("storage", ["bf16", "f16"])
@pytest.mark.parametrize("k", (3, 10, 16))
def test_kernels_within_the_storage_budget(generated, storage, k):
    kernels = generated(k).c
    rng = numpy.random.default_rng(k)
    n = 60
    z_bits = encode_truncated(rng.normal(size=(n, k)) * 3, storage)
    y_bits = encode_truncated(soft_labels(rng, n, k, normalised=False), storage)
    z, y = decode(z_bits, storage), decode(y_bits, storage)
    labels = rng.integers(0, k, n)
    onehot = numpy.eye(k)[labels]
    spread = (z.max(axis=-1, keepdims=True) - z.min(axis=-1, keepdims=True)) + 1

    def check(got_bits, exact, float32_bound, what):
        got = decode(got_bits, storage)
        assert got_bits.dtype == numpy.uint16 and got.shape == exact.shape, what
        error = numpy.abs(got - exact)
        budget = half_ulp(exact, storage) + float32_bound
        assert numpy.all(error <= budget), (what, float(numpy.max(error / budget)))

    s = rows(reference.softmax, z)
    check(kernels.softmax(z_bits, storage=storage), s, (k + 3 + 2 * spread) * U32 * s, "softmax")
    log_s = rows(reference.log_softmax, z)
    bound = (2 * numpy.abs(log_s) + k + 3) * U32
    check(kernels.log_softmax(z_bits, storage=storage), log_s, bound, "log_softmax")
    for name, targets, grad_ref in [
        ("cross_entropy_with_grad", (y_bits,), rows(reference.cross_entropy_grad, z, y)),
        ("cross_entropy_with_grad_index", (labels,), rows(reference.cross_entropy_grad, z, onehot)),
    ]:
        loss_ref = rows(reference.cross_entropy, z, y if targets[0] is y_bits else onehot)
        loss, grad = getattr(kernels, name)(z_bits, *targets, storage=storage)
        scale = numpy.sum(numpy.abs(y if targets[0] is y_bits else onehot), axis=-1)
        check(loss, loss_ref, (numpy.abs(loss_ref) + k + 3) * U32 * (scale + 1), f"{name} loss")
        check(grad, grad_ref, 8 * k * U32 * (scale[:, None] + 1), f"{name} gradient")
        # the same kernels separately: the same bits
        alone = (
            "cross_entropy_grad"
            if name == "cross_entropy_with_grad"
            else "cross_entropy_grad_index"
        )
        numpy.testing.assert_array_equal(
            grad, getattr(kernels, alone)(z_bits, *targets, storage=storage)
        )


@pytest.mark.parametrize("storage", ["bf16", "f16"])
def test_nan_stays_nan_and_out_of_range_becomes_infinite(generated, storage):
    kernels = generated(3).c
    z = numpy.array([[numpy.nan, 0.0, 1.0], [1.0, 2.0, 3.0]])
    bits = encode_truncated(z, storage)
    out = decode(kernels.softmax(bits, storage=storage), storage)
    assert numpy.all(numpy.isnan(out[0])) and numpy.all(numpy.isfinite(out[1]))
    # a loss past the format's range rounds to +inf: fp16 tops out at 65504
    if storage == "f16":
        big = encode_truncated(numpy.array([[60000.0, -60000.0, 0.0]]), storage)
        loss = kernels.cross_entropy_index(big, numpy.array([1]), storage=storage)
        assert decode(loss, storage)[0] == numpy.inf


def test_float16_arrays_go_to_the_fp16_kernels(generated):
    kernels = generated(10).c
    z = numpy.random.default_rng(0).normal(size=(40, 10)).astype(numpy.float16)
    s = kernels.softmax(z)
    assert s.dtype == numpy.float16
    numpy.testing.assert_array_equal(
        s.view(numpy.uint16), kernels.softmax(z.view(numpy.uint16), storage="f16")
    )
    with pytest.raises(TypeError, match="16-bit"):
        kernels.softmax_jacobian(z)
    with pytest.raises(TypeError, match="uint16"):
        kernels.softmax(z.astype(numpy.float32), storage="bf16")


@pytest.mark.parametrize(
    "k, masked_rows", [(3, "nan"), (5, "nan"), (10, "nan"), (19, "nan"), (10, "zero")]
)
def test_each_result_is_the_float32_kernels_rounded_once(generated, monkeypatch, k, masked_rows):
    """Every 16-bit kernel gives the float32 kernel's result on the decoded inputs, rounded once
    to nearest-even (bf16 by exact arithmetic, fp16 by NumPy), NaN where it is NaN: over many
    chunks (512 values each) and a short last one, infinities, NaN and a masked row included.
    K = 3, 5 and 10 are computed in groups of whole rows converted by their transposes (plain
    loops at 3, widened before the transposes at 5, in 8 x 8 tiles at 10), 19 in chunks; the
    masked row zero under --masked-rows zero. Two labels are invalid (-1 and K): the whole-row
    kernels store their NaN rows' bits straight into the 16-bit outputs, which must be the float
    kernel's NaN rounded once, bit for bit."""
    kernels = generated(k, masked_rows).c
    rng = numpy.random.default_rng(k)
    n = 700 // k * 3 + 5
    z = rng.normal(size=(n, k)) * 4
    z[1, 0], z[2, 1], z[3] = numpy.inf, numpy.nan, -numpy.inf
    y, v = soft_labels(rng, n, k, normalised=False), rng.normal(size=(n, k))
    labels = rng.integers(0, k, n)
    labels[4], labels[5] = -1, k
    # the C's NaN rows for them, past the wrapper's IndexError (as tests/test_kernels.py does)
    monkeypatch.setattr(CKernels, "_check_range", lambda self, labels, *_: labels)
    invalid = (labels < 0) | (labels >= k)
    for storage in ("bf16", "f16"):
        bits = {name: encode_truncated(x, storage) for name, x in (("z", z), ("y", y), ("v", v))}
        floats = {name: decode(b, storage).astype(numpy.float32) for name, b in bits.items()}

        def rounded(x, storage=storage):
            x = numpy.asarray(x, numpy.float32)
            if storage == "f16":
                return x.astype(numpy.float16).view(numpy.uint16)
            return rne_bf16(x)

        for name, args in [
            ("softmax", ("z",)),
            ("log_softmax", ("z",)),
            ("cross_entropy_with_grad", ("z", "y")),
            ("cross_entropy_with_grad_index", ("z", labels)),
            ("softmax_jvp", ("z", "v")),
            ("softmax_vjp", ("z", "v")),
            ("log_softmax_jvp", ("z", "v")),
            ("log_softmax_vjp", ("z", "v")),
            ("cross_entropy_grad", ("z", "y")),
            ("cross_entropy_grad_index", ("z", labels)),
            ("logsumexp", ("z",)),
            ("cross_entropy", ("z", "y")),
            ("cross_entropy_index", ("z", labels)),
        ]:
            kernel = getattr(kernels, name)
            got = kernel(*(bits[a] if isinstance(a, str) else a for a in args), storage=storage)
            want = kernel(*(floats[a] if isinstance(a, str) else a for a in args))
            pairs = zip(got, want, strict=True) if isinstance(got, tuple) else [(got, want)]
            for g, w in pairs:
                nan = numpy.isnan(w)
                assert numpy.array_equal(numpy.isnan(decode(g, storage)), nan), (storage, name)
                numpy.testing.assert_array_equal(g[~nan], rounded(w)[~nan], err_msg=name)
                if name.endswith(
                    "_index"
                ):  # the invalid labels' rows: NaN, and its bits rounded once
                    assert numpy.all(nan[invalid]), (storage, name)
                    numpy.testing.assert_array_equal(
                        g[invalid], rounded(w[invalid]), err_msg=f"{storage} {name} NaN bits"
                    )


SHIM = """\
#include "softmax_k3.c"

void bf16_out(const float *f, uint16_t *h, size_t n) { to_bf16(f, h, n); }
void bf16_in(const uint16_t *h, float *f, size_t n) { from_bf16(h, f, n); }
void f16_out(const float *f, uint16_t *h, size_t n) { to_f16(f, h, n); }
void f16_in(const uint16_t *h, float *f, size_t n) { from_f16(h, f, n); }
"""


def rne_bf16(x: numpy.ndarray) -> numpy.ndarray:
    """Round float32 values to bf16 by exact arithmetic: the nearer of the two bf16 neighbours
    (truncated, and one step away from zero), the even one on a tie."""
    u = x.view(numpy.uint32)
    low = (u >> 16).astype(numpy.uint32)
    down = (low << 16).view(numpy.float32).astype(numpy.float64)
    with numpy.errstate(all="ignore"):  # infinite x: its neighbour above is a NaN, unused
        up = ((low + 1) << 16).view(numpy.float32).astype(numpy.float64)
        # past the largest bf16 the next step would be 2^128 (round to nearest overflows there)
        up = numpy.where(numpy.isinf(up), numpy.copysign(2.0**128, down), up)
        exact = x.astype(numpy.float64)
        pick_up = (numpy.abs(up - exact) < numpy.abs(exact - down)) | (
            (numpy.abs(up - exact) == numpy.abs(exact - down)) & (low % 2 == 1)
        )
    return numpy.where(pick_up, low + 1, low).astype(numpy.uint16)


@pytest.mark.parametrize("flags", ["-O3", "-O0"])
def test_conversions_exactly(generated, tmp_path, flags):
    """Every 16-bit pattern in; float32 out: bf16 against exact rounding, fp16 against NumPy's
    (both nearest-even), over random floats, every tie and the overflow and subnormal
    boundaries."""
    folder = generated(3).folder
    (tmp_path / "shim.c").write_text(SHIM)
    library = load_library(
        compile_shared(
            tmp_path / "shim.c",
            tmp_path / "shim.so",
            compiler=require_tool("cc"),
            flags=(*(f for f in STRICT_FLAGS if not f.startswith("-O")), flags),
            extra=(f"-I{folder}",),
        )
    )

    def run(name, source, out_dtype):
        out = numpy.empty(source.shape, out_dtype)
        getattr(library, name)(
            ctypes.c_void_p(source.ctypes.data),
            ctypes.c_void_p(out.ctypes.data),
            ctypes.c_size_t(source.size),
        )
        return out

    every = numpy.arange(65536, dtype=numpy.uint32).astype(numpy.uint16)
    got = run("bf16_in", every, numpy.float32)
    numpy.testing.assert_array_equal(got.view(numpy.uint32), every.astype(numpy.uint32) << 16)
    got = run("f16_in", every, numpy.float32)
    expected = every.view(numpy.float16).astype(numpy.float32)
    assert numpy.array_equal(got, expected, equal_nan=True)
    nan = numpy.isnan(expected)
    h = every[nan].astype(numpy.uint32)  # NaN: sign and payload kept
    numpy.testing.assert_array_equal(
        got[nan].view(numpy.uint32), ((h & 0x8000) << 16) | 0x7F800000 | ((h & 0x3FF) << 13)
    )

    rng = numpy.random.default_rng(16)
    u = rng.integers(0, 2**32, 200_000, dtype=numpy.uint64).astype(numpy.uint32)
    ties = (rng.integers(0, 2**16, 20_000).astype(numpy.uint32) << 16) | 0x8000
    edges = numpy.array(
        [
            0x7F7FFFFF,
            0x7F7F8000,
            0x477FEFFF,
            0x477FF000,
            0x38800000,
            0x387FFFFF,
            0x33000000,
            0x33000001,
            0x32FFFFFF,
            0,
            0x80000000,
            0x7F800000,
        ],
        numpy.uint32,
    )
    x = numpy.concatenate([u, ties, ties + 1, ties - 1, edges, edges | 0x80000000]).view(
        numpy.float32
    )
    finite = ~numpy.isnan(x)
    got = run("bf16_out", x, numpy.uint16)
    numpy.testing.assert_array_equal(got[finite], rne_bf16(x[finite]))
    assert numpy.all(numpy.isnan(decode(got[~finite], "bf16")))
    numpy.testing.assert_array_equal(got[~finite] >> 15, x[~finite].view(numpy.uint32) >> 31)
    got = run("f16_out", x, numpy.uint16)
    with numpy.errstate(over="ignore"):
        expected = x.astype(numpy.float16).view(numpy.uint16)
    numpy.testing.assert_array_equal(got[finite], expected[finite])
    assert numpy.all(numpy.isnan(got[~finite].view(numpy.float16)))
