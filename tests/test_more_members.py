"""logsumexp, the log-softmax products, distillation and the cross-entropy's second order:
against PyTorch autograd, torch.func.hessian and torch.func.jvp in float64, the mpmath
reference, and the edge policy of the README."""

from __future__ import annotations

import ctypes

import numpy
import pytest
import torch
import torch.nn.functional as F

from symsoft.derivation import reference
from symsoft.family.members import c_name
from tests.references import random_logits, rows, soft_labels

BACKENDS = ("numpy", "numpy-only", "c")
KS = (1, 2, 3, 4, 10, 16)  # every way the C computes a row (see test_kernels.py)
INF, NAN = numpy.inf, numpy.nan
TOL = 1e-13  # float64, against torch (its own exp and log) and mpmath


def kernels(generated, k: int, backend: str, masked_rows: str = "nan"):
    return generated(k, masked_rows).backend(backend)


def t64(x: numpy.ndarray) -> torch.Tensor:
    return torch.tensor(numpy.asarray(x, dtype=numpy.float64))


def cross_entropy(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -(y * torch.log_softmax(z, -1)).sum(-1)


def torch_distillation(zs, zt, temperature: float, reduction: str) -> torch.Tensor:
    """The issue's definition: F.kl_div on the tempered log-probabilities times T^2."""
    log_s = F.log_softmax(zs / temperature, -1)
    log_q = F.log_softmax(zt / temperature, -1)
    if reduction == "none":  # kl_div's "none" is per element: a row's loss is their sum
        return F.kl_div(log_s, log_q, log_target=True, reduction="none").sum(-1) * temperature**2
    return F.kl_div(log_s, log_q, log_target=True, reduction=reduction) * temperature**2


def assert_close(got, expected, scale=1.0) -> None:
    """|got - expected| <= TOL (|expected| + scale), scale broadcasting over the entries."""
    expected = numpy.asarray(expected, dtype=numpy.float64)
    assert numpy.shape(got) == expected.shape
    error = numpy.abs(numpy.asarray(got, dtype=numpy.float64) - expected)
    allowed = TOL * (numpy.abs(expected) + scale)
    assert numpy.all(error <= allowed), float(numpy.max(error / allowed))


# --- against PyTorch ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", KS)
def test_logsumexp_and_its_gradient_against_torch(generated, backend, k):
    kern = kernels(generated, k, backend)
    z = random_logits(numpy.random.default_rng(k), 30, k)
    zt = t64(z).requires_grad_()
    lse = torch.logsumexp(zt, -1)
    (grad,) = torch.autograd.grad(lse.sum(), zt)
    assert_close(kern.logsumexp(z), lse.detach(), scale=1 + numpy.abs(z).max())
    assert_close(kern.softmax(z), grad)  # the gradient of log-sum-exp is softmax (proved)
    assert_close(kern.logsumexp(z).reshape(5, 6), lse.detach().reshape(5, 6), scale=1e3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", KS)
def test_log_softmax_products_against_autograd_and_jvp(generated, backend, k):
    kern = kernels(generated, k, backend)
    rng = numpy.random.default_rng(10 + k)
    z, g = random_logits(rng, 30, k), rng.normal(size=(30, k))
    zt = t64(z).requires_grad_()
    (vjp,) = torch.autograd.grad(torch.log_softmax(zt, -1), zt, t64(g))  # the backward pass
    _, jvp = torch.func.jvp(lambda a: torch.log_softmax(a, -1), (t64(z),), (t64(g),))
    scale = 1 + numpy.abs(g).sum(axis=-1, keepdims=True)
    assert_close(kern.log_softmax_vjp(z, g), vjp, scale)
    assert_close(kern.log_softmax_jvp(z, g), jvp, scale)
    assert_close(kern.log_softmax_vjp(z=z, g=g), vjp, scale)  # the parameter names


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", KS)
def test_hessian_and_hvp_against_torch_func(generated, backend, k):
    kern = kernels(generated, k, backend)
    rng = numpy.random.default_rng(20 + k)
    z = random_logits(rng, 24, k)
    y = soft_labels(rng, 24, k, normalised=False)  # sum(y) != 1: the factor must be there
    v = rng.normal(size=(24, k))
    hessian = torch.func.vmap(torch.func.hessian(cross_entropy))(t64(z), t64(y))
    # forward-over-reverse: the derivative of autograd's gradient along v, no Hessian formed
    gradient = torch.func.grad(cross_entropy)
    hvp = torch.func.vmap(lambda a, b, c: torch.func.jvp(lambda x: gradient(x, b), (a,), (c,))[1])(
        t64(z), t64(y), t64(v)
    )
    assert_close(kern.cross_entropy_hessian(z, y), hessian)
    assert_close(kern.cross_entropy_hvp(z, y, v), hvp, scale=1 + numpy.abs(v).max())
    h = kern.cross_entropy_hessian(z, y)
    numpy.testing.assert_array_equal(h, numpy.swapaxes(h, -1, -2))  # symmetric, bit for bit
    assert kern.cross_entropy_hessian(z[:6].reshape(2, 3, k), y[:6].reshape(2, 3, k)).shape == (
        2,
        3,
        k,
        k,
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_hessian_is_positive_semidefinite_of_rank_k_minus_1_with_kernel_ones(generated, backend):
    k = 6
    kern = kernels(generated, k, backend)
    rng = numpy.random.default_rng(8)
    z, y = rng.normal(size=(20, k)) * 2, soft_labels(rng, 20, k, normalised=False)
    hessians = kern.cross_entropy_hessian(z, y)
    for h in hessians:
        eigenvalues = numpy.linalg.eigvalsh(h)  # ascending
        assert eigenvalues[0] >= -1e-15 and eigenvalues[1] > 1e-6  # one zero, K - 1 positive
        assert numpy.max(numpy.abs(h @ numpy.ones(k))) < 1e-15  # the kernel: 1
        assert numpy.linalg.matrix_rank(h, tol=1e-12) == k - 1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.5, 4.0])
def test_distillation_against_kl_div_and_autograd(generated, backend, k, temperature):
    kern = kernels(generated, k, backend)
    rng = numpy.random.default_rng(30 + k)
    zs, zt = random_logits(rng, 20, k), random_logits(rng, 20, k)
    for shape in ((20, k), (4, 5, k)):  # batchmean divides by shape[0], as torch does
        a, b = zs.reshape(shape), zt.reshape(shape)
        for reduction in ("batchmean", "sum", "none"):
            student = t64(a).requires_grad_()
            loss = torch_distillation(student, t64(b), temperature, reduction)
            (grad,) = torch.autograd.grad(loss.sum(), student)
            options = {"temperature": temperature, "reduction": reduction}
            scale = temperature**2 * (1 + numpy.abs(a).max() + numpy.abs(b).max())
            assert_close(kern.distillation_kl(a, b, **options), loss.detach(), scale)
            assert_close(kern.distillation_kl_grad(a, b, **options), grad, temperature)
    # the default is batchmean at T = 1; a single row is a batch of one
    loss = torch_distillation(t64(zs), t64(zt), 1.0, "batchmean")
    assert_close(kern.distillation_kl(zs, zt), loss, 1 + numpy.abs(zs).max())
    one = torch_distillation(t64(zs[:1]), t64(zt[:1]), temperature, "sum")
    assert_close(kern.distillation_kl(zs[0], zt[0], temperature=temperature), one, 1e3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_distillation_against_mpmath(generated, backend):
    k = 7
    kern = kernels(generated, k, backend)
    rng = numpy.random.default_rng(5)
    zs, zt = random_logits(rng, 40, k), random_logits(rng, 40, k)
    for temperature in (1.0, 3.0):
        expected = rows(lambda a, b, t=temperature: reference.distillation_kl(a, b, t), zs, zt)
        got = kern.distillation_kl(zs, zt, temperature=temperature, reduction="none")
        assert numpy.all(numpy.abs(got - expected) <= 1e-12 * (1 + numpy.abs(expected)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_and_hessian_against_mpmath(generated, backend):
    k = 5
    kern = kernels(generated, k, backend)
    rng = numpy.random.default_rng(6)
    zs, zt = random_logits(rng, 30, k), random_logits(rng, 30, k)
    y = soft_labels(rng, 30, k, normalised=False)
    for temperature in (0.5, 3.0):
        expected = rows(lambda a, b, t=temperature: reference.distillation_kl_grad(a, b, t), zs, zt)
        got = kern.distillation_kl_grad(zs, zt, temperature=temperature, reduction="none")
        assert numpy.all(numpy.abs(got - expected) <= 1e-13 * temperature)
    expected = rows(reference.cross_entropy_hessian, zs, y)
    assert numpy.all(numpy.abs(kern.cross_entropy_hessian(zs, y) - expected) <= 1e-14 * k)


@pytest.mark.parametrize("backend", BACKENDS)
def test_distillation_options_are_checked(generated, backend):
    kern = kernels(generated, 3, backend)
    z = numpy.zeros((2, 3))
    for temperature in (0.0, -1.0, NAN, INF):
        for function in (kern.distillation_kl, kern.distillation_kl_grad):
            with pytest.raises(ValueError, match="temperature"):
                function(z, z, temperature=temperature)
    with pytest.raises(ValueError, match="batchmean, sum, none"):
        kern.distillation_kl(z, z, reduction="mean")
    with pytest.raises(ValueError, match="shape of z"):
        kern.distillation_kl(z, numpy.zeros((3, 3)))


def test_c_distillation_gives_nan_rows_for_a_bad_temperature(generated):
    """C cannot raise: without a usable temperature every value written is NaN."""
    g = generated(3)
    assert g.c.k == 3  # compiles the library this test opens directly
    library = ctypes.CDLL(str(g.folder / "libsoftmax_k3.so"))
    pointer = numpy.ctypeslib.ndpointer(numpy.float64, flags="C_CONTIGUOUS")
    z = numpy.zeros((4, 3))
    for name, size in (("distillation_kl", (4,)), ("distillation_kl_grad", (4, 3))):
        function = getattr(library, c_name(name, 3, "f64"))
        function.argtypes = [pointer, pointer, ctypes.c_double, pointer, ctypes.c_size_t]
        for temperature in (0.0, -2.0, NAN, INF):
            out = numpy.zeros(size)
            function(z, z, temperature, out, 4)
            assert numpy.all(numpy.isnan(out)), (name, temperature)
        out = numpy.full(size, 7.0)
        function(z, z, 2.0, out, 4)
        assert numpy.all(out == 0)  # equal rows: no divergence, no gradient


@pytest.mark.parametrize("k", (3, 10, 16))
def test_c_agrees_with_numpy_on_batches(generated, k):
    g = generated(k)
    rng = numpy.random.default_rng(k)
    z, t = rng.normal(size=(3, 7, k)) * 8, rng.normal(size=(3, 7, k)) * 8
    y, v = soft_labels(rng, 21, k, normalised=False).reshape(3, 7, k), rng.normal(size=(3, 7, k))
    calls = [
        ("logsumexp", (z,), {}),
        ("log_softmax_jvp", (z, v), {}),
        ("log_softmax_vjp", (z, v), {}),
        ("cross_entropy_hessian", (z, y), {}),
        ("cross_entropy_hvp", (z, y, v), {}),
        ("distillation_kl", (z, t), {"temperature": 2.0, "reduction": "none"}),
        ("distillation_kl_grad", (z, t), {"temperature": 0.7}),
    ]
    for name, args, options in calls:
        expected = getattr(g.numpy_module, name)(*args, **options)
        got = getattr(g.c, name)(*args, **options)
        assert got.shape == expected.shape and got.dtype == expected.dtype, name
        numpy.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-14, err_msg=name)


# --- the edge policy (README, "Edge inputs") ---------------------------------------------------


def all_outputs(kern, z, other, v):
    """Every new member's per-row output on (z, other, v): name -> array of rows."""
    return {
        "logsumexp": kern.logsumexp(z),
        "log_softmax_jvp": kern.log_softmax_jvp(z, v),
        "log_softmax_vjp": kern.log_softmax_vjp(z, v),
        "cross_entropy_hessian": kern.cross_entropy_hessian(z, other),
        "cross_entropy_hvp": kern.cross_entropy_hvp(z, other, v),
        "distillation_kl": kern.distillation_kl(z, other, reduction="none"),
        "distillation_kl_grad": kern.distillation_kl_grad(z, other, reduction="none"),
    }


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_masked_classes_are_exact_and_never_nan(generated, backend, dtype):
    kern = kernels(generated, 4, backend)
    z = numpy.array([[1.0, -INF, 0.5, -INF], [-INF, 3.0, -INF, -INF]], dtype=dtype)
    teacher = numpy.array([[2.0, -INF, -1.0, -INF], [-INF, 0.5, -INF, -INF]], dtype=dtype)
    v = numpy.array([[0.5, 2.0, -1.0, 3.0], [1.0, -2.0, 0.25, 4.0]], dtype=dtype)
    finite = numpy.isfinite(z)
    lse = kern.logsumexp(z)
    expected = [numpy.logaddexp(1.0, 0.5), 3.0]
    numpy.testing.assert_allclose(lse, expected, rtol=4 * numpy.finfo(dtype).eps)
    masked = ~finite
    y = numpy.where(finite, 0.5, 0).astype(dtype)  # no target on a masked class
    for name in ("log_softmax_jvp", "log_softmax_vjp", "cross_entropy_hvp"):
        out = all_outputs(kern, z, y, v)[name]
        assert not numpy.any(numpy.isnan(out)), name
    # the log-softmax products pass a masked class's entry through, as PyTorch's backward
    zt = torch.tensor(z.astype(numpy.float64), requires_grad=True)
    (vjp,) = torch.autograd.grad(torch.log_softmax(zt, -1), zt, t64(v))
    numpy.testing.assert_allclose(kern.log_softmax_vjp(z, v), vjp, rtol=1e-6, atol=1e-6)
    hessian = kern.cross_entropy_hessian(z, y)
    assert numpy.all(hessian[masked] == 0) and numpy.all(numpy.swapaxes(hessian, 1, 2)[masked] == 0)
    assert numpy.all(kern.cross_entropy_hvp(z, y, v)[masked] == 0)
    # masked in both rows: the class adds 0, its gradient is 0; the rest is the KL over the others
    loss = kern.distillation_kl(z, teacher, temperature=2.0, reduction="none")
    assert numpy.all(numpy.isfinite(loss)) and loss[1] == 0
    kept = numpy.array([0, 2])
    alone = kern.distillation_kl(z[:1], teacher[:1], temperature=2.0, reduction="none")
    reduced = torch_distillation(t64(z[:1, kept]), t64(teacher[:1, kept]), 2.0, "none")
    numpy.testing.assert_allclose(alone, reduced, rtol=1e-5)
    grad = kern.distillation_kl_grad(z, teacher, temperature=2.0)
    assert not numpy.any(numpy.isnan(grad)) and numpy.all(grad[masked] == 0)
    # masked in the teacher only: 0 log 0 = 0; in the student only, where q > 0: infinite
    only_teacher = numpy.array([[1.0, 2.0, 0.5, 0.0]], dtype=dtype)
    assert numpy.isfinite(kern.distillation_kl(only_teacher, teacher[:1]))
    assert kern.distillation_kl(z[:1], only_teacher) == INF


@pytest.mark.parametrize("backend", BACKENDS)
def test_fully_masked_row_is_nan_by_default(generated, backend):
    kern = kernels(generated, 3, backend)
    z = numpy.array([[-INF, -INF, -INF], [0.0, 1.0, 2.0]])
    other = numpy.array([[0.0, 0.5, 1.0], [0.0, 0.0, 1.0]])
    for name, out in all_outputs(kern, z, other, other).items():
        assert numpy.all(numpy.isnan(out[0])) and numpy.all(numpy.isfinite(out[1])), name
    # a fully masked teacher row as well
    loss = kern.distillation_kl(other, z, reduction="none")
    grad = kern.distillation_kl_grad(other, z, reduction="none")
    assert numpy.isnan(loss[0]) and numpy.all(numpy.isnan(grad[0])) and numpy.isfinite(loss[1])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_masked_rows_zero_policy_ignores_fully_masked_rows(generated, backend, dtype):
    kern = kernels(generated, 3, backend, "zero")
    z = numpy.array([[-INF, -INF, -INF], [2.0, 1.0, 0.1]], dtype=dtype)
    other = numpy.array([[0.0, 0.5, 1.0], [1.0, 0.0, 0.5]], dtype=dtype)
    out = all_outputs(kern, z, other, other)
    assert out["logsumexp"][0] == -INF  # log of an empty sum, as torch.logsumexp gives
    for name, value in out.items():
        if name != "logsumexp":
            assert numpy.all(value[0] == 0), name
        assert numpy.all(numpy.isfinite(value[1])), name
    for student, teacher in ((other, z), (z, other)):  # masked in either row: ignored
        assert kern.distillation_kl(student, teacher, reduction="none")[0] == 0
        assert numpy.all(kern.distillation_kl_grad(student, teacher, reduction="none")[0] == 0)
    ordinary = generated(3).numpy_module
    for name, value in all_outputs(ordinary, z[1:], other[1:], other[1:]).items():
        numpy.testing.assert_allclose(out[name][1:], value, rtol=2e-6, atol=1e-6, err_msg=name)


@pytest.mark.parametrize(
    "row", [[INF, 0.0, 1.0], [0.0, NAN, 1.0], [INF, INF, -INF], [NAN, NAN, NAN]]
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_inf_or_nan_entries_make_the_whole_row_nan(generated, backend, row):
    kern = kernels(generated, 3, backend)
    z = numpy.array([row, [0.0, 1.0, 2.0]])
    other = numpy.array([[0.2, 0.3, 0.5], [0.5, 0.25, 0.25]])
    for name, out in all_outputs(kern, z, other, other).items():
        assert numpy.all(numpy.isnan(out[0])) and numpy.all(numpy.isfinite(out[1])), name
    loss = kern.distillation_kl(other, z, reduction="none")  # in the teacher's row
    assert numpy.isnan(loss[0]) and numpy.isfinite(loss[1])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("dtype", "big"), [(numpy.float64, 1e308), (numpy.float32, 3e38)])
def test_huge_finite_values(generated, backend, dtype, big):
    kern = kernels(generated, 4, backend)
    z = numpy.array([[big, -big, 0.0, 1.0], [-big, -big, big, big], [1.0, 1.0, 1.0, 1.0]], dtype)
    lse = kern.logsumexp(z)
    assert lse[0] == dtype(big) and lse[1] == dtype(big)  # big + log 2 rounds to big
    numpy.testing.assert_allclose(lse[2], 1 + numpy.log(4), rtol=4 * numpy.finfo(dtype).eps)
    # (z - max z) / T overflows to -inf where exp is exactly 0: a row against itself is 0
    numpy.testing.assert_array_equal(
        kern.distillation_kl(z, z, temperature=0.25, reduction="none"), [0, 0, 0]
    )
    numpy.testing.assert_array_equal(kern.distillation_kl_grad(z, z, temperature=0.25), 0 * z)


@pytest.mark.parametrize("backend", BACKENDS)
def test_k1_and_empty_batches(generated, backend):
    kern = kernels(generated, 1, backend)
    z, one = numpy.array([[3.0], [-7.0]]), numpy.array([[2.0], [0.5]])
    numpy.testing.assert_array_equal(kern.logsumexp(z), [3.0, -7.0])
    for name, out in all_outputs(kern, z, one, one).items():
        if name != "logsumexp":
            assert numpy.all(out == 0), name
    kern3 = kernels(generated, 3, backend)
    empty = numpy.zeros((0, 3))
    assert kern3.logsumexp(empty).shape == (0,)
    assert kern3.cross_entropy_hessian(empty, empty).shape == (0, 3, 3)
    assert kern3.log_softmax_vjp(empty, empty).shape == (0, 3)
    assert kern3.distillation_kl(empty, empty, reduction="none").shape == (0,)
    assert kern3.distillation_kl(empty, empty, reduction="sum") == 0
    assert numpy.isnan(kern3.distillation_kl(empty, empty))  # 0 / 0, as torch's batchmean
