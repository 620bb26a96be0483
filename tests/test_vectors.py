"""The reference vectors are reproducible and agree with the emitted kernels."""

from __future__ import annotations

import json

import numpy
import pytest
import scipy.special


@pytest.mark.parametrize("k", [1, 3, 7])
def test_vectors_agree_with_kernels_and_scipy(generated, k):
    g = generated(k)
    data = json.loads(g.files[f"vectors_k{k}.json"])
    assert data["k"] == k and len(data["cases"]) >= 5
    for case in data["cases"]:
        z = numpy.array(case["z"])
        y = numpy.array(case["y"])
        numpy.testing.assert_allclose(case["softmax"], scipy.special.softmax(z), rtol=1e-12)
        for name, args in [
            ("softmax", (z,)),
            ("log_softmax", (z,)),
            ("softmax_jacobian", (z,)),
            ("cross_entropy", (z, y)),
            ("cross_entropy_grad", (z, y)),
        ]:
            expected = numpy.array(case[name])
            got = getattr(g.numpy_module, name)(*args)
            numpy.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-13)
