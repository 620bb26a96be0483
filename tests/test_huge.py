"""Logits near the largest float: the reference and the kernels stay exact and finite where
the true values are (the header promises no overflow for any finite input)."""

from __future__ import annotations

import math

import mpmath
import numpy
import pytest

from symsoft.derivation import reference

BACKENDS = ("numpy", "numpy-only", "c")
HUGE = [1e308, -1e308, 0.0, 1.0]


def test_the_reference_keeps_its_digits_at_huge_magnitudes():
    assert [float(p) for p in reference.softmax([1e308, 1e308])] == [0.5, 0.5]
    assert [float(p) for p in reference.log_softmax([1e308, 1e308])] == [-math.log(2)] * 2
    assert float(reference.softmax([1e308, 1e308, -1e308])[2]) == 0.0
    # -log s_i of the tied pair, computed here by hand: log 2
    loss = reference.cross_entropy([1e308, 1e308], [1.0, 0.0])
    assert float(loss) == pytest.approx(math.log(2), rel=1e-15)
    # sum_i y_i (m - z_i + log S) with log S = log(1 + e^-1e308 + ...) = 0 to 50 digits
    big = mpmath.mpf(1e308)  # the float nearest 1e308, exactly
    exact = mpmath.mpf(0.25) * (0 + 2 * big + big + (big - 1))
    assert reference.cross_entropy(HUGE, [0.25] * 4) == pytest.approx(exact, rel=1e-40)
    assert float(reference.log_sum_exp([1e308, 1e308])) == 1e308


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype, big", [(numpy.float64, 1e308), (numpy.float32, 3e38)])
def test_soft_label_loss_is_finite_where_the_exact_loss_is(generated, backend, dtype, big):
    kern = generated(4).backend(backend)
    z = numpy.array([[big, -big, 0.0, 1.0], [0.5, -2.0, 3.0, 1.0]], dtype=dtype)
    y = numpy.full((2, 4), 0.25, dtype=dtype)
    expected = [float(reference.cross_entropy(row.tolist(), [0.25] * 4)) for row in z]
    assert expected[0] == pytest.approx(float(big), rel=1e-6)  # 0.25 (4 big - 1)
    loss, _ = kern.cross_entropy_with_grad(z, y)
    for got in (kern.cross_entropy(z, y), loss):
        assert got.dtype == dtype
        numpy.testing.assert_allclose(
            got, numpy.array(expected, dtype=dtype), rtol=4 * numpy.finfo(dtype).eps
        )
    # a loss whose exact value exceeds the largest float is +inf: y = 1 on the -big class
    y_over = numpy.zeros((1, 4), dtype=dtype)
    y_over[0, 1] = 1
    assert numpy.isposinf(kern.cross_entropy(z[:1], y_over)[0])
