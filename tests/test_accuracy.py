"""Every kernel meets its error budget (symsoft/runtime/accuracy.py) on 10,000 mixed rows."""

from __future__ import annotations

import numpy
import pytest

from symsoft.runtime.accuracy import measure, measure_family, measure_options


# the C computes rows whole at K = 3 and a block's exponentials in one flat loop at K = 5
@pytest.mark.parametrize(("k", "backend"), [(5, "numpy"), (5, "numpy-only"), (5, "c"), (3, "c")])
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_within_budget(generated, k, backend, dtype):
    kernels = generated(k).backend(backend)
    for m in measure(kernels, k, dtype, rows=10_000):
        assert m.worst_fraction <= 1.0, m


def test_budget_catches_an_inaccurate_kernel(generated):
    """A softmax computed in float32 and returned as float64 must blow the float64 budget."""
    module = generated(5).numpy_module

    class Downcast:
        def softmax(self, z):
            return module.softmax(z.astype(numpy.float32)).astype(z.dtype)

        log_softmax = staticmethod(module.log_softmax)
        cross_entropy_index = staticmethod(module.cross_entropy_index)

    results = {m.kernel: m for m in measure(Downcast(), 5, numpy.float64, rows=600)}
    assert results["softmax"].worst_fraction > 1
    assert results["log_softmax"].worst_fraction <= 1


# logsumexp, the log-softmax products, H v and distillation (T = 1 and 3); fewer rows: their
# references cost more
@pytest.mark.parametrize(("k", "backend"), [(5, "numpy"), (5, "c"), (3, "c")])
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_new_members_within_budget(generated, k, backend, dtype):
    kernels = generated(k).backend(backend)
    results = measure_family(kernels, k, dtype, rows=1200)
    assert len(results) == 6
    for m in results:
        assert m.worst_fraction <= 1.0, m


def test_family_budgets_catch_an_inaccurate_kernel(generated):
    """log-sum-exp and distillation computed in float32, returned as float64, blow the budget."""
    module = generated(5).numpy_module

    class Downcast:
        def __getattr__(self, name):
            function = getattr(module, name)

            def call(*args, **options):
                low = [a.astype(numpy.float32) for a in args]
                return numpy.asarray(function(*low, **options)).astype(numpy.float64)

            return call

    results = measure_family(Downcast(), 5, numpy.float64, rows=300)
    assert all(m.worst_fraction > 1 for m in results), results


@pytest.mark.parametrize(("k", "backend"), [(5, "numpy"), (5, "numpy-only"), (5, "c"), (3, "c")])
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_options_within_budget(generated, k, backend, dtype):
    kernels = generated(k).backend(backend)
    for m in measure_options(kernels, k, dtype, rows=600):
        assert m.worst_fraction <= 1.0, m


def test_options_budget_catches_a_forgotten_temperature(generated):
    """A gradient that forgets the 1/T factor (T = 0.7) must blow its budget."""
    module = generated(5).numpy_module

    class Forgetful:
        def cross_entropy_with_grad_index(self, z, labels, **kw):
            loss, grad = module.cross_entropy_with_grad_index(z, labels, **kw)
            return loss, grad * kw["temperature"]

        cross_entropy_with_grad = staticmethod(module.cross_entropy_with_grad)

    results = {m.kernel: m for m in measure_options(Forgetful(), 5, numpy.float64, rows=120)}
    assert results["cross_entropy_with_grad options (labels, grad)"].worst_fraction > 1
    assert results["cross_entropy_with_grad options (targets, grad)"].worst_fraction <= 1
