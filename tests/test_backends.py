"""One call, one behaviour, whichever backend symsoft.load() returns: the same kind of result
(CPU torch tensors in, tensors out) and the same errors."""

from __future__ import annotations

import numpy
import pytest
import torch

import symsoft
from symsoft.family.members import INPUT_KINDS, MEMBERS
from tests.conftest import require_tool

K = 4
BACKENDS = ("c", "numpy", "array-api")


@pytest.fixture(scope="module", params=BACKENDS)
def kernels(request):
    if request.param == "c":
        require_tool("cc")
    return request.param, symsoft.load(K, request.param)


def arguments(member, dtype: torch.dtype, rows: tuple[int, ...]) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    z = torch.randn(*rows, K, generator=generator, dtype=dtype) * 4
    args = [z]
    for name in member.inputs[1:]:
        if INPUT_KINDS[name] == "labels":
            args.append(torch.randint(0, K, rows, generator=generator))
        else:
            args.append(torch.rand(*rows, K, generator=generator, dtype=dtype))
    return args


@pytest.mark.parametrize("rows", [(5,), (), (2, 3)], ids=["batch", "one-row", "2d-batch"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("member", MEMBERS, ids=lambda m: m.name)
def test_torch_tensors_in_give_tensors_out_on_every_backend(kernels, member, dtype, rows):
    backend, module = kernels
    args = arguments(member, dtype, rows)
    got = getattr(module, member.name)(*args)
    got = got if isinstance(got, tuple) else (got,)
    # the reference: the same inputs as NumPy arrays, through the NumPy-only module
    want = getattr(symsoft.load(K, "numpy"), member.name)(*(a.numpy() for a in args))
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want)
    for out, ref in zip(got, want, strict=True):
        assert type(out) is torch.Tensor, (backend, type(out))
        assert out.dtype == dtype and out.device.type == "cpu"
        assert tuple(out.shape) == numpy.shape(ref)
        eps = torch.finfo(dtype).eps
        numpy.testing.assert_allclose(out.numpy(), ref, rtol=16 * eps, atol=16 * eps)


@pytest.mark.parametrize("library", ["numpy", "torch"])
@pytest.mark.parametrize("label", [K, -1])
def test_an_out_of_range_label_is_an_index_error_on_every_backend(kernels, library, label):
    _, module = kernels
    z = numpy.zeros((2, K))
    labels = numpy.array([0, label])
    if library == "torch":
        z, labels = torch.from_numpy(z), torch.from_numpy(labels)
    for name in ("cross_entropy_index", "cross_entropy_grad_index"):
        with pytest.raises(IndexError, match=rf"class indices in 0\.\.{K - 1}"):
            getattr(module, name)(z, labels)


@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_tensors_the_numpy_backends_cannot_take_are_refused_by_name(backend):
    if backend == "c":
        require_tool("cc")
    module = symsoft.load(K, backend)
    with pytest.raises(TypeError, match=r"on meta.*backend='array-api'"):
        module.softmax(torch.zeros(K, device="meta"))
    with pytest.raises(TypeError, match=r"requires grad.*backend='array-api'"):
        module.softmax(torch.zeros(K, requires_grad=True))
    with pytest.raises(TypeError, match=r"array_api_strict.*backend='array-api'"):
        import array_api_strict

        module.softmax(array_api_strict.zeros(K))
