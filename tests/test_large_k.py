"""K = 1000: generation proves every identity (representative entries, O(K) each), and the
loop-form kernels compile with the strict flags and match mpmath, the dense Jacobian and
finite differences on a few rows. Generation time is not asserted (about 10-15 s here)."""

from __future__ import annotations

from pathlib import Path

import numpy
import pytest
import sympy

from symsoft import reference
from symsoft.pipeline import build_bundle, render_all
from symsoft.spec import make_spec
from symsoft.writer import write_files
from tests.conftest import Generated
from tests.references import assert_softmax_within_budget, rows

K = 1000


class Kernels(Generated):
    """Generated, but only the NumPy module and the C (the document is not needed here)."""

    def __init__(self, k: int, root: Path) -> None:
        self.k = k
        self.bundle = build_bundle(make_spec(k))
        self.files = render_all(self.bundle, ["numpy", "c"])
        self.folder = root / f"k{k}"
        write_files(self.folder, self.files, force=False)
        self._module = None
        self._c = None


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> Generated:
    return Kernels(K, tmp_path_factory.mktemp("large-k"))


def test_every_identity_is_proved(large):
    names = [identity.name for identity in large.bundle.identities]
    assert {"kernel-softmax-jvp", "kernel-softmax-vjp", "jacobian-equals-transpose"} <= set(names)
    matrices = [i for i in large.bundle.identities if isinstance(i.lhs, sympy.MatrixBase)]
    assert all(i.lhs.shape[0] <= 4 for i in matrices)  # representative entries, never K^2


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_kernels_match_mpmath(large, backend):
    kern = large.numpy_module if backend == "numpy" else large.c
    rng = numpy.random.default_rng(1)
    z = rng.normal(size=(3, K)) * 4
    z[1] += 300.0
    z[2, ::7] = -numpy.inf  # masked classes
    labels = numpy.array([0, 999, 3])
    s = kern.softmax(z)
    assert_softmax_within_budget(s[:2], rows(reference.softmax, z[:2]), z[:2])
    assert numpy.all(s[2, ::7] == 0)
    numpy.testing.assert_allclose(s[2], rows(reference.softmax, z[2:])[0], rtol=1e-12)
    expected = rows(reference.log_softmax, z)
    finite = numpy.isfinite(expected)
    log_s = kern.log_softmax(z)
    assert numpy.all(numpy.isneginf(log_s[~finite]))
    numpy.testing.assert_allclose(log_s[finite], expected[finite], rtol=1e-13)
    y = numpy.eye(K)[labels]
    loss, grad = kern.cross_entropy_with_grad(z, y)
    numpy.testing.assert_allclose(loss, rows(reference.cross_entropy, z, y), rtol=1e-13)
    numpy.testing.assert_allclose(
        grad, rows(reference.cross_entropy_grad, z, y), rtol=1e-12, atol=1e-18
    )
    numpy.testing.assert_allclose(kern.cross_entropy_index(z, labels), loss, rtol=1e-14)


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_jacobian_vector_products(large, backend):
    kern = large.numpy_module if backend == "numpy" else large.c
    rng = numpy.random.default_rng(2)
    z = rng.normal(size=(2, K))
    v = rng.normal(size=(2, K))
    jac = kern.softmax_jacobian(z)
    assert jac.shape == (2, K, K)
    dense = numpy.einsum("rij,rj->ri", jac, v)
    numpy.testing.assert_allclose(kern.softmax_jvp(z, v), dense, rtol=1e-9, atol=1e-17)
    numpy.testing.assert_allclose(
        kern.softmax_vjp(z, v), numpy.einsum("rij,ri->rj", jac, v), rtol=1e-9, atol=1e-17
    )
    h = 1e-5
    fd = (kern.softmax(z + h * v) - kern.softmax(z - h * v)) / (2 * h)
    numpy.testing.assert_allclose(kern.softmax_jvp(z, v), fd, rtol=1e-6, atol=1e-12)


def test_c_matches_numpy_in_float32(large):
    rng = numpy.random.default_rng(3)
    z = (rng.normal(size=(20, K)) * 3).astype(numpy.float32)
    v = rng.normal(size=(20, K)).astype(numpy.float32)
    numpy.testing.assert_allclose(
        large.c.softmax(z), large.numpy_module.softmax(z), rtol=2e-6, atol=1e-30
    )
    numpy.testing.assert_allclose(
        large.c.softmax_jvp(z, v), large.numpy_module.softmax_jvp(z, v), rtol=1e-4, atol=1e-7
    )
