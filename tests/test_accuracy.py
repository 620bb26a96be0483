"""Every kernel meets its error budget (symsoft/runtime/accuracy.py) on 10,000 mixed rows."""

from __future__ import annotations

import numpy
import pytest

from symsoft.runtime.accuracy import measure


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
