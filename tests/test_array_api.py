"""The default Python module, written against the array API, run on other array libraries:
each returns its own kind of array, and the values equal the NumPy-only module's."""

from __future__ import annotations

import array_api_strict
import dask
import dask.array
import numpy
import pytest
import torch

from tests.references import random_logits, soft_labels

K = 7
INF = numpy.inf
DTYPES = ("float64", "float32")


def from_numpy(library: str, x: numpy.ndarray):
    if library == "array-api-strict":
        return array_api_strict.asarray(x)
    if library == "torch":
        return torch.from_numpy(x)
    return dask.array.from_array(x, chunks=(16, -1)[: x.ndim])  # chunked by rows


def to_numpy(library: str, x) -> numpy.ndarray:
    if library == "dask":
        # NumPy computes Dask's blocks after the module has returned, outside its errstate:
        # silence here what the module silences for NumPy arrays (the NaN of a fully masked
        # row, 0 * inf in a discarded branch); errstate holds in this thread only
        with numpy.errstate(invalid="ignore", over="ignore"), dask.config.set(scheduler="sync"):
            x = x.compute()
    return numpy.asarray(x)


def library_type(library: str) -> type:
    return {
        "array-api-strict": type(array_api_strict.asarray(0.0)),
        "torch": torch.Tensor,
        "dask": dask.array.Array,
    }[library]


def inputs(dtype: str) -> dict[str, numpy.ndarray]:
    rng = numpy.random.default_rng(7)
    z = random_logits(rng, 40, K).astype(dtype)
    z[3, 2] = z[5, :3] = -INF  # masked classes
    z[7] = -INF  # a fully masked row: NaN by default
    y = soft_labels(rng, 40, K, normalised=False).astype(dtype)
    y[3, 2] = y[5, :3] = 0
    labels = rng.integers(0, K, size=40)
    labels[3], labels[5] = 1, 4  # not a masked class: finite losses
    v = rng.normal(size=(40, K)).astype(dtype)
    teacher = random_logits(rng, 40, K).astype(dtype)
    teacher[3, 2] = -INF  # masked in both rows: adds 0
    return {"z": z, "y": y, "v": v, "labels": labels, "g": v, "z_teacher": teacher}


CALLS = {
    "softmax": ("z",),
    "log_softmax": ("z",),
    "softmax_jacobian": ("z",),
    "cross_entropy": ("z", "y"),
    "cross_entropy_grad": ("z", "y"),
    "cross_entropy_index": ("z", "labels"),
    "cross_entropy_grad_index": ("z", "labels"),
    "cross_entropy_with_grad": ("z", "y"),
    "softmax_jvp": ("z", "v"),
    "softmax_vjp": ("z", "v"),
    "logsumexp": ("z",),
    "log_softmax_jvp": ("z", "v"),
    "log_softmax_vjp": ("z", "g"),
    "distillation_kl": ("z", "z_teacher"),
    "distillation_kl_grad": ("z", "z_teacher"),
    "cross_entropy_hessian": ("z", "y"),
    "cross_entropy_hvp": ("z", "y", "v"),
}


def results(output) -> tuple:
    return output if isinstance(output, tuple) else (output,)


@pytest.mark.parametrize("library", ["array-api-strict", "torch", "dask"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CALLS)
def test_every_kernel_returns_the_callers_arrays_with_numpys_values(
    generated, library, dtype, name
):
    g = generated(K)
    data = inputs(dtype)
    args = [from_numpy(library, data[arg]) for arg in CALLS[name]]
    got = results(getattr(g.numpy_module, name)(*args))
    expected = results(getattr(g.numpy_only_module, name)(*(data[a] for a in CALLS[name])))
    assert len(got) == len(expected)
    for out, want in zip(got, expected, strict=True):
        assert isinstance(out, library_type(library))
        values = to_numpy(library, out)
        assert values.dtype == want.dtype == numpy.dtype(dtype)
        if library == "torch":  # its own exp and log: equal within a few ulps of the
            # O(1) terms that the kernels combine (gradients are differences of such terms)
            eps = numpy.finfo(dtype).eps
            numpy.testing.assert_allclose(values, want, rtol=8 * eps, atol=16 * eps)
        else:  # NumPy underneath: the same operations, bit for bit
            numpy.testing.assert_array_equal(values, want)


def test_numpy_arrays_and_lists_give_numpy_arrays(generated):
    module = generated(3).numpy_module
    s = module.softmax([2.0, 1.0, 0.1])
    assert type(s) is numpy.ndarray
    numpy.testing.assert_allclose(s, [0.659, 0.242, 0.099], atol=5e-4)
    # z from torch and y as a list: y joins z's library
    grad = module.cross_entropy_grad(torch.tensor([2.0, 1.0, 0.1]), [1.0, 0.0, 0.0])
    assert isinstance(grad, torch.Tensor) and grad.dtype == torch.float32


def test_arrays_of_two_libraries_are_refused_by_name(generated):
    module = generated(3).numpy_module
    with pytest.raises(TypeError, match="y must be an array of the same library as z"):
        module.cross_entropy(torch.zeros(3, dtype=torch.float64), numpy.zeros(3))


def test_bad_input_is_refused_in_every_library(generated):
    module = generated(3).numpy_module
    with pytest.raises(ValueError, match="K=3"):
        module.softmax(torch.zeros(2, 4))
    with pytest.raises(TypeError, match="float32 or float64"):
        module.softmax(torch.zeros(3, dtype=torch.float16))
    with pytest.raises(TypeError, match="labels must be integers"):
        module.cross_entropy_index(array_api_strict.zeros(3), array_api_strict.asarray(0.0))
    with pytest.raises(IndexError, match=r"0\.\.2"):
        module.cross_entropy_index(torch.zeros(2, 3), torch.tensor([0, 3]))
    # integers are promoted to float64, as in NumPy
    assert module.softmax(torch.tensor([1, 2, 3])).dtype == torch.float64


def test_lazy_arrays_give_nan_rows_for_labels_out_of_range(generated):
    """Dask cannot be asked about its labels without computing them: a bad label must turn
    its row into NaN (as in the C kernels), never into some other class's loss."""
    module = generated(3).numpy_module
    z = dask.array.from_array(numpy.array([[2.0, 1.0, 0.1]] * 3), chunks=(1, 3))
    labels = dask.array.from_array(numpy.array([0, 3, -1]), chunks=1)
    loss = module.cross_entropy_index(z, labels).compute()
    grad = module.cross_entropy_grad_index(z, labels).compute()
    assert numpy.isfinite(loss[0]) and numpy.all(numpy.isnan(loss[1:]))
    assert numpy.all(numpy.isfinite(grad[0])) and numpy.all(numpy.isnan(grad[1:]))


def test_masked_rows_zero_policy_in_torch(generated):
    module = generated(3, "zero").numpy_module
    z = torch.tensor([[-INF, -INF, -INF], [2.0, 1.0, 0.1]], dtype=torch.float64)
    assert module.softmax(z)[0].tolist() == [0.0, 0.0, 0.0]
    assert module.cross_entropy_index(z, torch.tensor([1, 0]))[0].item() == 0.0
    assert torch.all(torch.isneginf(module.log_softmax(z)[0]))
