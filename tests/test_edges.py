"""Edge inputs have the documented results (README, "Edge inputs"), identical in NumPy and C."""

from __future__ import annotations

import ctypes
import warnings

import numpy
import pytest

INF, NAN = numpy.inf, numpy.nan
BACKENDS = ("numpy", "numpy-only", "c")
DTYPES = (numpy.float64, numpy.float32)


def kernels(generated, k, backend):
    g = generated(k)
    return g.backend(backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_masked_classes_are_exact_zeros_and_never_nan(generated, backend, dtype):
    kern = kernels(generated, 4, backend)
    z = numpy.array([[1.0, -INF, 0.5, -INF], [-INF, 3.0, -INF, -INF]], dtype=dtype)
    y = numpy.array([[0.25, 0.0, 0.75, 0.0], [0.0, 1.0, 0.0, 0.0]], dtype=dtype)
    s = kern.softmax(z)
    assert numpy.all(s[numpy.isneginf(z)] == 0)
    assert s[1, 1] == 1
    log_s = kern.log_softmax(z)
    assert numpy.all(numpy.isneginf(log_s[numpy.isneginf(z)]))
    for grad in (kern.cross_entropy_grad(z, y), kern.cross_entropy_grad_index(z, [2, 1])):
        assert not numpy.any(numpy.isnan(grad))
        assert numpy.all(grad[numpy.isneginf(z)] == 0)
    for loss in (kern.cross_entropy(z, y), kern.cross_entropy_index(z, [2, 1])):
        assert numpy.all(numpy.isfinite(loss))
    loss, grad = kern.cross_entropy_with_grad(z, y)
    assert numpy.all(numpy.isfinite(loss)) and numpy.all(grad[numpy.isneginf(z)] == 0)
    v = numpy.ones_like(z) * dtype(0.5)
    for product in (kern.softmax_jvp(z, v), kern.softmax_vjp(z, v)):
        assert not numpy.any(numpy.isnan(product))
        assert numpy.all(product[numpy.isneginf(z)] == 0)
    jac = kern.softmax_jacobian(z)
    assert not numpy.any(numpy.isnan(jac))
    assert numpy.all(jac[0][numpy.isneginf(z[0])] == 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fully_masked_row_is_nan_by_default(generated, backend):
    kern = kernels(generated, 3, backend)
    z = numpy.array([[-INF, -INF, -INF], [0.0, 1.0, 2.0]])
    y = numpy.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    loss, grad = kern.cross_entropy_with_grad(z, y)
    for out in (
        kern.softmax(z),
        kern.log_softmax(z),
        kern.cross_entropy_grad(z, y),
        grad,
        kern.softmax_jvp(z, y),
        kern.softmax_vjp(z, y),
    ):
        assert numpy.all(numpy.isnan(out[0])) and numpy.all(numpy.isfinite(out[1]))
    assert numpy.isnan(kern.cross_entropy(z, y)[0]) and numpy.isnan(loss[0])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_fully_masked_row_is_nan_whatever_its_targets(generated, backend, dtype):
    """y = 0 on the whole row: its terms are all skipped, but the row is still NaN (loss and
    gradient alike), as the edge table says; other rows with y = 0 have loss 0."""
    kern = kernels(generated, 3, backend)
    z = numpy.array([[-INF, -INF, -INF], [0.0, 1.0, 2.0]], dtype=dtype)
    y = numpy.zeros_like(z)
    loss, grad = kern.cross_entropy_with_grad(z, y)
    for got in (kern.cross_entropy(z, y), loss):
        assert numpy.isnan(got[0]) and got[1] == 0
    for got in (kern.cross_entropy_grad(z, y), grad):
        assert numpy.all(numpy.isnan(got[0])) and numpy.all(got[1] == 0)
    # the zero policy ignores the row, whatever its targets
    zero = generated(3, "zero").backend(backend)
    loss, grad = zero.cross_entropy_with_grad(z, y)
    assert zero.cross_entropy(z, y)[0] == loss[0] == 0 and numpy.all(grad[0] == 0)


@pytest.mark.parametrize(
    "row",
    [
        [INF, 0.0, 1.0],
        [0.0, 1.0, INF],
        [NAN, 0.0, 1.0],
        [0.0, NAN, 1.0],
        [0.0, 1.0, NAN],
        [INF, INF, -INF],
        [NAN, NAN, NAN],
    ],
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_inf_or_nan_entries_make_the_whole_row_nan(generated, backend, row):
    kern = kernels(generated, 3, backend)
    z = numpy.array([row, [0.0, 1.0, 2.0]])
    y = numpy.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    for out in (
        kern.softmax(z),
        kern.log_softmax(z),
        kern.cross_entropy_grad(z, y),
        kern.cross_entropy_grad_index(z, [0, 0]),
        kern.cross_entropy_with_grad(z, y)[1],
        kern.softmax_jvp(z, y),
        kern.softmax_vjp(z, y),
    ):
        assert numpy.all(numpy.isnan(out[0])), out
        assert numpy.all(numpy.isfinite(out[1]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("dtype", "big"), [(numpy.float64, 1e308), (numpy.float32, 3e38)])
def test_huge_finite_values_give_exact_results(generated, backend, dtype, big):
    kern = kernels(generated, 4, backend)
    z = numpy.array([[big, -big, 0.0, 1.0], [-big, -big, big, big]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the overflow of z - m to -inf is expected: no warning
        s = kern.softmax(z)
    numpy.testing.assert_array_equal(s[0], [1, 0, 0, 0])
    numpy.testing.assert_array_equal(s[1], [0, 0, 0.5, 0.5])
    grad = kern.cross_entropy_grad_index(z, [0, 2])
    numpy.testing.assert_array_equal(grad[0], [0, 0, 0, 0])
    numpy.testing.assert_array_equal(grad[1], [0, 0, -0.5, 0.5])
    assert kern.cross_entropy_index(z, [0, 2]).tolist() == pytest.approx([0.0, numpy.log(2)])


@pytest.mark.parametrize("backend", BACKENDS)
def test_k1_and_empty_batches(generated, backend):
    kern = kernels(generated, 1, backend)
    z = numpy.array([[3.0], [-7.0]])
    numpy.testing.assert_array_equal(kern.softmax(z), [[1.0], [1.0]])
    numpy.testing.assert_array_equal(kern.log_softmax(z), [[0.0], [0.0]])
    numpy.testing.assert_array_equal(kern.softmax_jacobian(z), [[[0.0]], [[0.0]]])
    numpy.testing.assert_array_equal(kern.cross_entropy_grad(z, [[1.0], [1.0]]), [[0.0], [0.0]])
    kern3 = kernels(generated, 3, backend)
    empty = numpy.zeros((0, 3))
    assert kern3.softmax(empty).shape == (0, 3)
    assert kern3.softmax_jacobian(empty).shape == (0, 3, 3)
    assert kern3.cross_entropy(empty, empty).shape == (0,)
    assert kern3.cross_entropy_index(empty, numpy.zeros(0, dtype=numpy.int64)).shape == (0,)


@pytest.mark.parametrize("backend", BACKENDS)
def test_true_class_gradient_keeps_relative_accuracy_when_saturated(generated, backend):
    """-sum_{i != c} s_i, not s_c - 1: at z = [40, 0, 0] the answer is -2 e^-40 / (1 + 2 e^-40)."""
    kern = kernels(generated, 3, backend)
    z = numpy.array([[40.0, 0.0, 0.0]])
    expected = -2 * numpy.exp(-40.0) / (1 + 2 * numpy.exp(-40.0))
    got = kern.cross_entropy_grad_index(z, [0])[0, 0]
    assert abs(got - expected) <= 4 * numpy.finfo(numpy.float64).eps * abs(expected)


def test_label_out_of_range(generated):
    module = generated(3).numpy_module
    z = numpy.zeros((2, 3))
    for labels in ([0, 3], [-1, 0]):
        with pytest.raises(IndexError, match=r"0\.\.2"):
            module.cross_entropy_index(z, labels)
        with pytest.raises(IndexError, match=r"0\.\.2"):
            module.cross_entropy_grad_index(z, labels)
    with pytest.raises(TypeError, match="integers"):
        module.cross_entropy_index(z, [0.0, 1.0])
    # the C library through symsoft.load's wrapper raises the same error
    g = generated(3)
    for labels in ([0, 3], [-1, 0]):
        with pytest.raises(IndexError, match=r"0\.\.2"):
            g.c.cross_entropy_index(z, labels)
        with pytest.raises(IndexError, match=r"0\.\.2"):
            g.c.cross_entropy_grad_index(z, labels)
    # C itself cannot raise: the documented result is a NaN row for that label only
    library = ctypes.CDLL(str(g.folder / "libsoftmax_k3.so"))
    loss, grad = numpy.empty(2), numpy.empty((2, 3))
    pointer = ctypes.c_void_p
    calls = (("cross_entropy_index", [0, 3], loss), ("cross_entropy_grad_index", [-1, 1], grad))
    for name, labels, out in calls:
        classes = numpy.array(labels, dtype=numpy.int64)  # kept alive through the call
        getattr(library, f"{name}_k3_f64")(
            pointer(z.ctypes.data),
            pointer(classes.ctypes.data),
            pointer(out.ctypes.data),
            ctypes.c_size_t(2),
        )
    assert loss[0] == pytest.approx(numpy.log(3)) and numpy.isnan(loss[1])
    assert numpy.all(numpy.isnan(grad[0])) and numpy.all(numpy.isfinite(grad[1]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_masked_rows_zero_policy_ignores_fully_masked_rows(generated, backend, dtype):
    g = generated(3, "zero")
    kern = g.backend(backend)
    z = numpy.array([[-INF, -INF, -INF], [2.0, 1.0, 0.1]], dtype=dtype)
    y = numpy.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=dtype)
    reference = generated(3)  # the default policy agrees on every other row
    ordinary = reference.numpy_module
    numpy.testing.assert_array_equal(kern.softmax(z)[0], [0, 0, 0])
    assert numpy.all(numpy.isneginf(kern.log_softmax(z)[0]))
    numpy.testing.assert_array_equal(kern.softmax_jacobian(z)[0], numpy.zeros((3, 3)))
    assert kern.cross_entropy(z, y)[0] == 0 and kern.cross_entropy_index(z, [1, 0])[0] == 0
    numpy.testing.assert_array_equal(kern.cross_entropy_grad(z, y)[0], [0, 0, 0])
    numpy.testing.assert_array_equal(kern.cross_entropy_grad_index(z, [1, 0])[0], [0, 0, 0])
    loss, grad = kern.cross_entropy_with_grad(z, y)
    assert loss[0] == 0 and numpy.all(grad[0] == 0) and numpy.isfinite(loss[1])
    for product in (kern.softmax_jvp(z, y), kern.softmax_vjp(z, y)):
        numpy.testing.assert_array_equal(product[0], [0, 0, 0])
        assert numpy.all(numpy.isfinite(product[1]))
    # a masked label in a row that is not fully masked: s_c = 0, so the loss is +inf
    partly = numpy.array([[-INF, 1.0, 0.0]], dtype=dtype)
    assert kern.cross_entropy_index(partly, [0])[0] == INF
    assert kern.cross_entropy(partly, [[1.0, 0.0, 0.0]])[0] == INF
    # a NaN among -inf is not a masked row: the row is NaN
    nan_row = numpy.array([[-INF, NAN, -INF]], dtype=dtype)
    assert numpy.all(numpy.isnan(kern.softmax(nan_row)))
    numpy.testing.assert_allclose(kern.softmax(z)[1], ordinary.softmax(z[1]), rtol=1e-6)
    numpy.testing.assert_allclose(
        kern.cross_entropy_grad(z, y)[1], ordinary.cross_entropy_grad(z[1], y[1]), rtol=1e-6
    )
