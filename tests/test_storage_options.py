"""The cross-entropy options on 16-bit logits (bf16 and fp16): symsoft.load computes them by
the float32 options kernels on the values widened exactly and rounds each result once, the
16-bit kernels' contract. Checked against the float32 kernels' results rounded by torch (its
own float32 -> bfloat16 / float16 conversion, not symsoft's) and against F.cross_entropy in
float32 within one unit in the last place of the 16-bit type; the torch and JAX autograd
wrappers in bf16 against F.cross_entropy's float32 gradient."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy
import pytest
import torch
import torch.nn.functional as F

from symsoft.runtime.arrays import float32_from_storage, storage_from_float32
from symsoft.runtime.load import load
from tests.conftest import require_tool

K = 5
OPTIONS = {
    "weight": numpy.array([1.0, 2.0, 0.5, 1.5, 0.25]),
    "ignore_index": -100,
    "label_smoothing": 0.1,
    "temperature": 1.5,
    "z_loss": 1e-3,
}
TORCH_TYPE = {"bf16": torch.bfloat16, "f16": torch.float16}


@pytest.fixture(scope="module")
def kernels():  # cached in the session's temporary folder (conftest.pytest_configure)
    require_tool("cc")
    return load(K)


def batch(rows: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 logits that are exact in bf16 (so in float16 too: few significant bits, small
    exponents), and labels with some ignored."""
    generator = torch.Generator().manual_seed(0)
    z = (torch.randn(rows, K, generator=generator) * 3).to(torch.bfloat16).float()
    labels = torch.randint(0, K, (rows,), generator=generator)
    labels[::7] = -100
    return z, labels


def rounded_by_torch(values: object, storage: str) -> numpy.ndarray:
    """float32 values rounded to the storage by torch, as uint16 bits."""
    tensor = torch.as_tensor(numpy.asarray(values, dtype=numpy.float32))
    return tensor.to(TORCH_TYPE[storage]).view(torch.int16).numpy().view(numpy.uint16)


def bits_of(z: torch.Tensor, storage: str) -> numpy.ndarray:
    return z.to(TORCH_TYPE[storage]).view(torch.int16).numpy().view(numpy.uint16)


@pytest.mark.parametrize("storage", ["bf16", "f16"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_16_bit_logits_with_options_are_the_float32_results_rounded_once(
    kernels, storage, reduction
):
    z, labels = batch()
    loss, grad = kernels.cross_entropy_with_grad_index(
        bits_of(z, storage), labels.numpy(), storage=storage, reduction=reduction, **OPTIONS
    )
    loss32, grad32 = kernels.cross_entropy_with_grad_index(
        z.numpy(), labels.numpy(), reduction=reduction, **OPTIONS
    )
    assert loss.dtype == grad.dtype == numpy.uint16
    numpy.testing.assert_array_equal(loss, rounded_by_torch(loss32, storage))
    numpy.testing.assert_array_equal(grad, rounded_by_torch(grad32, storage))
    # and the value is F.cross_entropy's, to the 16-bit type's precision
    reference = F.cross_entropy(
        z / OPTIONS["temperature"],
        labels,
        weight=torch.from_numpy(OPTIONS["weight"]).float(),
        ignore_index=-100,
        label_smoothing=OPTIONS["label_smoothing"],
        reduction="none",
    )
    lse = torch.logsumexp(z / OPTIONS["temperature"], dim=-1)
    reference = reference + torch.where(labels == -100, 0.0, OPTIONS["z_loss"] * lse**2)
    if reduction == "sum":
        reference = reference.sum()
    elif reduction == "mean":
        kept = labels != -100
        weights = torch.from_numpy(OPTIONS["weight"]).float()[labels[kept]]
        reference = reference.sum() / weights.sum()
    decoded = float32_from_storage(numpy.asarray(loss), storage)
    unit = 2.0**-7 if storage == "bf16" else 2.0**-10
    numpy.testing.assert_allclose(decoded, reference.numpy(), rtol=unit, atol=1e-6)


def test_float16_arrays_with_options_give_float16(kernels):
    z, labels = batch(8)
    z16 = z.numpy().astype(numpy.float16)
    loss = kernels.cross_entropy_index(z16, labels.numpy(), **OPTIONS)
    expected = kernels.cross_entropy_index(z16.astype(numpy.float32), labels.numpy(), **OPTIONS)
    assert loss.dtype == numpy.float16
    numpy.testing.assert_array_equal(loss.view(numpy.uint16), rounded_by_torch(expected, "f16"))
    one = kernels.cross_entropy_index(z16[1], labels.numpy()[1], label_smoothing=0.1)
    assert isinstance(one, numpy.float16)  # one row: a scalar, as without options


def test_soft_targets_and_temperature_only_members_take_16_bit_logits(kernels):
    z, _ = batch(8)
    y = torch.softmax(torch.randn(8, K, generator=torch.Generator().manual_seed(1)), -1)
    y = y.to(torch.bfloat16)
    zb = z.to(torch.bfloat16)
    loss = kernels.cross_entropy(zb, y, weight=OPTIONS["weight"], label_smoothing=0.2)
    expected = kernels.cross_entropy(
        z.numpy(), y.float().numpy(), weight=OPTIONS["weight"], label_smoothing=0.2
    )
    assert loss.dtype == torch.bfloat16
    numpy.testing.assert_array_equal(
        loss.view(torch.int16).numpy().view(numpy.uint16), rounded_by_torch(expected, "bf16")
    )
    s = kernels.softmax(zb, temperature=2.0)
    assert s.dtype == torch.bfloat16
    numpy.testing.assert_array_equal(
        s.view(torch.int16).numpy().view(numpy.uint16),
        rounded_by_torch(kernels.softmax(z.numpy(), temperature=2.0), "bf16"),
    )


def test_rounding_to_16_bit_storage_is_torchs():
    """storage_from_float32 against torch's conversion: ties, NaN, infinities, overflow, the
    smallest values, and a spread of ordinary ones."""
    generator = numpy.random.default_rng(0)
    special = numpy.array(
        [0.0, -0.0, 1.0, 1.00390625, 1.01171875, 65504.0, 65520.0, 3.4e38, 6e-8, 1e-40, -2.5],
        dtype=numpy.float32,
    )
    values = numpy.concatenate(
        [special, numpy.array([numpy.inf, -numpy.inf], dtype=numpy.float32)]
        + [generator.normal(size=4096).astype(numpy.float32) * 10.0**e for e in (-6, 0, 4)]
    )
    for storage in ("bf16", "f16"):
        numpy.testing.assert_array_equal(
            storage_from_float32(values, storage), rounded_by_torch(values, storage)
        )
        back = float32_from_storage(storage_from_float32(values, storage), storage)
        expected = torch.from_numpy(values).to(TORCH_TYPE[storage]).float().numpy()
        numpy.testing.assert_array_equal(back, expected)
    nan = storage_from_float32(numpy.array([numpy.nan], dtype=numpy.float32), "bf16")
    assert numpy.isnan(float32_from_storage(nan, "bf16")[0])


def test_torch_autograd_in_bf16_with_options(kernels):
    z, labels = batch()
    weight = torch.from_numpy(OPTIONS["weight"]).to(torch.bfloat16)
    options = dict(weight=weight, ignore_index=-100, label_smoothing=0.1, reduction="mean")
    zb = z.to(torch.bfloat16).requires_grad_()
    loss = kernels.torch.cross_entropy_index(zb, labels, **options)
    loss.backward()
    z32 = z.clone().requires_grad_()
    reference = F.cross_entropy(
        z32, labels, weight=weight.float(), ignore_index=-100, label_smoothing=0.1
    )
    reference.backward()
    assert loss.dtype == zb.grad.dtype == torch.bfloat16
    torch.testing.assert_close(loss.float(), reference.detach(), rtol=2**-7, atol=0)
    # per row rounded once, then reduced in bf16 by torch: within two units
    torch.testing.assert_close(zb.grad.float(), z32.grad, rtol=2**-6, atol=2**-12)


def test_torch_soft_targets_in_bf16_with_weight_differentiate_y(kernels):
    z, _ = batch(8)
    y = torch.softmax(torch.randn(8, K, generator=torch.Generator().manual_seed(2)), -1)
    yb = y.to(torch.bfloat16).requires_grad_()
    weight = torch.from_numpy(OPTIONS["weight"]).to(torch.bfloat16)
    kernels.torch.cross_entropy(z.to(torch.bfloat16), yb, weight=weight, reduction="sum").backward()
    y32 = yb.detach().float().requires_grad_()
    F.cross_entropy(z, y32, weight=weight.float(), reduction="sum").backward()
    assert yb.grad.dtype == torch.bfloat16
    torch.testing.assert_close(yb.grad.float(), y32.grad, rtol=2**-7, atol=2**-12)


def test_jax_in_bf16_with_options(kernels):
    z, labels = batch()
    weight = numpy.array(OPTIONS["weight"])

    def loss(logits):
        return kernels.jax.cross_entropy_index(
            logits,
            jnp.asarray(labels.numpy()),
            weight=weight,
            ignore_index=-100,
            label_smoothing=0.1,
            reduction="mean",
        )

    value, grad = jax.jit(jax.value_and_grad(loss))(jnp.asarray(z.numpy(), dtype=jnp.bfloat16))
    z32 = z.clone().requires_grad_()
    reference = F.cross_entropy(
        z32,
        labels,
        weight=torch.from_numpy(weight).float(),
        ignore_index=-100,
        label_smoothing=0.1,
    )
    reference.backward()
    assert value.dtype == grad.dtype == jnp.bfloat16
    numpy.testing.assert_allclose(float(value), reference.item(), rtol=2**-7)
    numpy.testing.assert_allclose(
        numpy.asarray(grad, dtype=numpy.float32), z32.grad.numpy(), rtol=2**-6, atol=2**-12
    )
