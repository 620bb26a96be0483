"""The emitted C under AddressSanitizer + UndefinedBehaviorSanitizer, with gcc and clang, on
ordinary and edge inputs: no reports, and the same numbers as the emitted NumPy module."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy
import pytest

from symsoft.runtime.build import STRICT_FLAGS
from tests.conftest import require_tool

DRIVER = Path(__file__).parent / "c" / "driver.c"
INF, NAN = numpy.inf, numpy.nan
KERNELS = (
    "softmax",
    "log_softmax",
    "softmax_jacobian",
    "cross_entropy",
    "cross_entropy_grad",
    "cross_entropy_index",
    "cross_entropy_grad_index",
    "cross_entropy_with_grad",
    "softmax_jvp",
    "softmax_vjp",
    "cross_entropy_with_grad_index",
    "logsumexp",
    "log_softmax_jvp",
    "log_softmax_vjp",
    "cross_entropy_hessian",
    "cross_entropy_hvp",
    "distillation_kl",
    "distillation_kl_grad",
)


def inputs(k: int) -> tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    rng = numpy.random.default_rng(k)
    z = rng.normal(size=(12, k)) * 5
    z[1, 0] = -INF  # masked class
    z[2, :] = -INF  # fully masked row
    z[3, -1] = INF
    z[4, 0] = NAN
    z[5, :] = [1e308 if i % 2 else -1e308 for i in range(k)]
    z[6, :] = 1e4
    y = rng.random((12, k))
    y[1, 0] = 0
    labels = rng.integers(0, k, 12)
    labels[7], labels[8] = -1, k  # out of range: NaN rows, never an out-of-bounds read
    return z, y, labels


def run_driver(executable: Path, z, y, labels) -> dict[str, numpy.ndarray]:
    text = " ".join(
        [str(len(labels))] + [repr(float(v)) for v in (*z.ravel(), *y.ravel(), *labels)]
    )
    result = subprocess.run(
        [str(executable)], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "runtime error" not in result.stderr and "Sanitizer" not in result.stderr
    return {
        name: numpy.array([float(v) for v in values])
        for name, *values in (line.split() for line in result.stdout.splitlines())
    }


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
# 3, 7: whole rows in groups of 8 doubles (the 12 rows: a group and a padded tail) and 16
# floats (a tail), at 7 turned into columns by shuffles in tiles that overlap; 70, 45: lane
# accumulators and blocks of 7, 11 rows, so the 12 rows span two blocks (45: the float
# maximum's vectors take every step)
@pytest.mark.parametrize(
    ("k", "masked_rows"), [(1, "nan"), (3, "nan"), (7, "zero"), (70, "nan"), (45, "zero")]
)
def test_sanitized_kernels_match_numpy(generated, tmp_path, compiler, k, masked_rows):
    g = generated(k, masked_rows)
    executable = tmp_path / f"driver-{compiler}"
    command = [
        require_tool(compiler),
        *STRICT_FLAGS,
        "-g",
        "-fsanitize=address,undefined",
        "-fno-sanitize-recover=all",
        "-fno-omit-frame-pointer",
        f"-DSYMSOFT_K={k}",
        f"-I{g.folder}",
        "-include",
        f"softmax_k{k}.h",
        str(DRIVER),
        str(g.folder / f"softmax_k{k}.c"),
        "-o",
        str(executable),
        "-lm",
    ]
    built = subprocess.run(command, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    z, y, labels = inputs(k)
    outputs = run_driver(executable, z, y, labels)
    module = g.numpy_module
    in_range = (labels >= 0) & (labels < k)
    # float32 log-probabilities near 0 differ by rounding in the last place: an absolute
    # tolerance of a few u covers that, the relative one everything else
    tolerances = [("f64", numpy.float64, 1e-13, 1e-14), ("f32", numpy.float32, 1e-5, 1e-6)]
    for suffix, dtype, rtol, atol in tolerances:
        with numpy.errstate(over="ignore", invalid="ignore"):  # 1e308 is inf in float32
            zt, yt = z.astype(dtype), y.astype(dtype)
            expected = {
                "softmax": module.softmax(zt),
                "log_softmax": module.log_softmax(zt),
                "softmax_jacobian": module.softmax_jacobian(zt),
                "cross_entropy": module.cross_entropy(zt, yt),
                "cross_entropy_grad": module.cross_entropy_grad(zt, yt),
            }
            index_loss = numpy.full(len(labels), NAN)
            index_grad = numpy.full((len(labels), k), NAN)
            index_loss[in_range] = module.cross_entropy_index(zt[in_range], labels[in_range])
            index_grad[in_range] = module.cross_entropy_grad_index(zt[in_range], labels[in_range])
            loss, grad = module.cross_entropy_with_grad(zt, yt)
            # the driver prints the gradient (n*K values), then the losses (n)
            expected["cross_entropy_with_grad"] = numpy.concatenate([grad.ravel(), loss.ravel()])
            # the options path: the driver's weights and options (ignore_index = K)
            opts = dict(
                weight=(0.5 + numpy.arange(k) % 3).astype(dtype),
                label_smoothing=0.1,
                temperature=0.7,
                z_loss=0.01,
            )
            kept = labels != -1  # -1 is out of range: a NaN row in C, IndexError here
            o_loss = numpy.full(len(labels), NAN)
            o_grad = numpy.full((len(labels), k), NAN)
            o_loss[kept], o_grad[kept] = module.cross_entropy_with_grad_index(
                zt[kept], labels[kept], ignore_index=k, **opts
            )
            expected["options_index"] = numpy.concatenate([o_grad.ravel(), o_loss.ravel()])
            loss, grad = module.cross_entropy_with_grad(zt, yt, reduction="mean", **opts)
            expected["options_mean"] = numpy.concatenate([grad.ravel(), [loss]])
            expected["softmax_jvp"] = module.softmax_jvp(zt, yt)
            expected["softmax_vjp"] = module.softmax_vjp(zt, yt)
            expected["logsumexp"] = module.logsumexp(zt)
            expected["log_softmax_jvp"] = module.log_softmax_jvp(zt, yt)
            expected["log_softmax_vjp"] = module.log_softmax_vjp(zt, yt)
            expected["cross_entropy_hessian"] = module.cross_entropy_hessian(zt, yt)
            expected["cross_entropy_hvp"] = module.cross_entropy_hvp(zt, yt, yt)
            expected["distillation_kl"] = module.distillation_kl(
                zt, yt, temperature=2.0, reduction="none"
            )
            expected["distillation_kl_grad"] = module.distillation_kl_grad(
                zt, yt, temperature=0.5, reduction="none"
            )
        expected["cross_entropy_index"] = index_loss
        expected["cross_entropy_grad_index"] = index_grad
        expected["cross_entropy_with_grad_index"] = numpy.concatenate(
            [index_grad.ravel(), index_loss.ravel()]
        )
        for name in (*KERNELS, "options_index", "options_mean"):
            got = outputs[f"{name}_{suffix}"]
            want = numpy.asarray(expected[name], dtype=numpy.float64).ravel()
            numpy.testing.assert_allclose(
                got, want, rtol=rtol, atol=atol, equal_nan=True, err_msg=f"{name}_{suffix}"
            )
