"""Properties that hold for every input, checked with hypothesis on NumPy and C."""

from __future__ import annotations

import numpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tests.references import softmax_budget

K = 5
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def logits(dtype):
    bound = 80.0 if dtype == numpy.float32 else 700.0
    elements = st.floats(-bound, bound, allow_nan=False, width=32 if dtype == numpy.float32 else 64)
    return arrays(dtype, (3, K), elements=elements)


def each_backend_and_dtype(test):
    return pytest.mark.parametrize("backend", ["numpy", "c"])(
        pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])(test)
    )


def kernels(generated, backend):
    g = generated(K)
    return g.backend(backend)


@each_backend_and_dtype
def test_probabilities(generated, backend, dtype):
    kern = kernels(generated, backend)

    @SETTINGS
    @given(z=logits(dtype), shift=st.floats(-50, 50))
    def check(z, shift):
        s = kern.softmax(z)
        assert numpy.all((s >= 0) & (s <= 1))
        budget = softmax_budget(z)[:, 0]
        assert numpy.all(numpy.abs(s.astype(numpy.float64).sum(axis=-1) - 1) <= K * budget)
        shifted = kern.softmax((z - dtype(shift)).astype(dtype))
        # the shift itself rounds z, so allow for the changed spread
        numpy.testing.assert_allclose(
            shifted,
            s,
            rtol=4 * float(budget.max()) * (1 + abs(shift)),
            atol=numpy.finfo(dtype).tiny * 4,
        )
        assert numpy.all(kern.log_softmax(z) <= 0)

    check()


@each_backend_and_dtype
def test_jacobian_structure(generated, backend, dtype):
    kern = kernels(generated, backend)
    eps = numpy.finfo(dtype).eps

    @SETTINGS
    @given(z=logits(dtype))
    def check(z):
        jac = kern.softmax_jacobian(z)
        numpy.testing.assert_array_equal(jac, numpy.swapaxes(jac, -1, -2))  # J = J^T exactly
        assert numpy.all(numpy.abs(jac.sum(axis=-1)) <= 4 * K * eps)  # J 1 = 0

    check()


@each_backend_and_dtype
def test_gradients_sum_to_zero_on_the_simplex(generated, backend, dtype):
    kern = kernels(generated, backend)
    eps = numpy.finfo(dtype).eps

    @SETTINGS
    @given(z=logits(dtype), labels=arrays(numpy.int64, (3,), elements=st.integers(0, K - 1)))
    def check(z, labels):
        grad = kern.cross_entropy_grad_index(z, labels)
        assert numpy.all(numpy.abs(grad.sum(axis=-1)) <= 4 * K * eps)
        assert numpy.all(kern.cross_entropy_index(z, labels) >= 0)

    check()
