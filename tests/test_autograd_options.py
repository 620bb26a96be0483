"""symsoft.load(k).torch and .jax with the cross-entropy options (issue 17): values and
gradients against F.cross_entropy and torch autograd, the z-loss and temperature written out
in torch, every reduction, gradcheck, and JAX under jit, grad and vmap."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy
import pytest
import torch
import torch.nn.functional as F

from symsoft.runtime.load import load
from tests.conftest import require_tool

K = 5


@pytest.fixture(scope="module")
def kernels():  # cached in the session's temporary folder (conftest.pytest_configure)
    require_tool("cc")
    return load(K)


def reference(
    z,
    target,
    *,
    reduction,
    weight=None,
    ignore_index=None,
    label_smoothing=0.0,
    temperature=1.0,
    z_loss=0.0,
):
    """F.cross_entropy of z / T plus z_loss * lse(z / T)^2 per counted row, reduced by
    PyTorch's normaliser: written in torch, differentiated by torch's autograd."""
    q = z / temperature
    per_row = F.cross_entropy(
        q,
        target,
        weight=weight,
        ignore_index=-100 if ignore_index is None else ignore_index,
        label_smoothing=label_smoothing,
        reduction="none",
    )
    if z_loss:
        extra = z_loss * torch.logsumexp(q, dim=-1) ** 2
        if ignore_index is not None and not target.is_floating_point():
            extra = torch.where(target == ignore_index, 0.0, extra)
        per_row = per_row + extra
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return per_row.sum()
    if target.is_floating_point():
        return per_row.sum() / len(per_row)
    kept = target != ignore_index if ignore_index is not None else torch.ones_like(target) > 0
    counted = weight[target.clamp(0, K - 1)] if weight is not None else torch.ones(len(target))
    return per_row.sum() / torch.where(kept, counted.to(z.dtype), 0).sum()


def inputs(labels: bool, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(8, K, dtype=torch.float64, generator=generator) * 3
    if labels:
        target = torch.randint(0, K, (8,), generator=generator)
        target[[2, 5]] = -1  # the rows ignore_index=-1 leaves out
    else:
        raw = torch.rand(8, K, dtype=torch.float64, generator=generator)
        target = raw / raw.sum(-1, keepdim=True)
    weight = torch.tensor([1.0, 0.0, 2.5, 0.5, 1.5], dtype=torch.float64)
    return z, target, weight


COMBINATIONS = [
    dict(zip(("weight", "label_smoothing", "temperature", "z_loss"), values, strict=True))
    for values in itertools.product((False, True), (0.0, 0.2), (1.0, 0.7), (0.0, 1e-2))
]


@pytest.mark.parametrize("labels", [True, False], ids=["labels", "targets"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_torch_options_against_torch(kernels, labels, reduction):
    """Every combination of weight, smoothing, temperature and z-loss (with ignore_index for
    labels): the loss and torch.autograd's gradient of the reduced loss."""
    z, target, weight = inputs(labels)
    for combination in COMBINATIONS:
        options = {**combination, "weight": weight if combination["weight"] else None}
        if labels:
            options["ignore_index"] = -1
            function = kernels.torch.cross_entropy_index
        else:
            function = kernels.torch.cross_entropy
        z_ours = z.clone().requires_grad_()
        z_ref = z.clone().requires_grad_()
        got = function(z_ours, target, reduction=reduction, **options)
        expected = reference(z_ref, target, reduction=reduction, **options)
        torch.testing.assert_close(got, expected, rtol=1e-13, atol=1e-14, msg=str(options))
        (dz,) = torch.autograd.grad(got.sum(), z_ours)
        (dz_ref,) = torch.autograd.grad(expected.sum(), z_ref)
        torch.testing.assert_close(dz, dz_ref, rtol=1e-12, atol=1e-14, msg=str(options))


def test_torch_soft_target_gradient_with_options(kernels):
    """d loss / d y with weights, smoothing and temperature: torch autograd of the reference."""
    z, y, weight = inputs(labels=False, seed=3)
    options = dict(weight=weight, label_smoothing=0.1, temperature=1.5, z_loss=1e-3)
    y_ours, y_ref = y.clone().requires_grad_(), y.clone().requires_grad_()
    got = kernels.torch.cross_entropy(z, y_ours, reduction="mean", **options)
    expected = reference(z, y_ref, reduction="mean", **options)
    (dy,) = torch.autograd.grad(got, y_ours)
    (dy_ref,) = torch.autograd.grad(expected, y_ref)
    torch.testing.assert_close(dy, dy_ref, rtol=1e-12, atol=1e-15)
    assert torch.autograd.gradcheck(
        lambda z, y: kernels.torch.cross_entropy(z, y, reduction="sum", **options),
        (z.clone().requires_grad_(), y.clone().requires_grad_()),
    )


def test_torch_gradcheck_index_options(kernels):
    z, labels, weight = inputs(labels=True, seed=4)
    options = dict(weight=weight, ignore_index=-1, label_smoothing=0.1, temperature=0.5)
    assert torch.autograd.gradcheck(
        lambda z: kernels.torch.cross_entropy_index(z, labels, reduction="mean", **options),
        (z.clone().requires_grad_(),),
    )


def test_torch_every_row_ignored(kernels):
    """As F.cross_entropy: the mean of a batch whose rows are all ignored is NaN, and its
    gradient 0 (not NaN)."""
    z = torch.randn(3, K, dtype=torch.float64, requires_grad=True)
    labels = torch.full((3,), -100)
    got = kernels.torch.cross_entropy_index(z, labels, reduction="mean", ignore_index=-100)
    expected = F.cross_entropy(z, labels, reduction="mean")
    assert torch.isnan(got) and torch.isnan(expected)
    (dz,) = torch.autograd.grad(got, z)
    (dz_ref,) = torch.autograd.grad(expected, z)
    assert torch.equal(dz, torch.zeros_like(z)) and torch.equal(dz_ref, dz)


def test_jax_options_against_torch(kernels):
    """JAX: the same values and gradients as the torch reference, under jax.jit and
    jax.grad, and jax.vmap over a batch of batches gives the unbatched results."""
    jax.config.update("jax_enable_x64", True)
    z, labels, weight = inputs(labels=True, seed=5)
    options = dict(
        weight=weight, ignore_index=-1, label_smoothing=0.1, temperature=0.7, z_loss=1e-2
    )
    z_ref = z.clone().requires_grad_()
    expected = reference(z_ref, labels, reduction="mean", **options)
    (dz_ref,) = torch.autograd.grad(expected, z_ref)
    jax_options = {**options, "weight": numpy.asarray(weight)}

    def mean_loss(z):
        return kernels.jax.cross_entropy_index(
            z, jnp.asarray(labels.numpy()), reduction="mean", **jax_options
        )

    value, grad = jax.jit(jax.value_and_grad(mean_loss))(jnp.asarray(z.numpy()))
    numpy.testing.assert_allclose(value, expected.item(), rtol=1e-13)
    numpy.testing.assert_allclose(grad, dz_ref.numpy(), rtol=1e-12, atol=1e-15)
    batches = jnp.stack([jnp.asarray(z.numpy()), jnp.asarray(z.numpy()) * 0.5])
    mapped = jax.vmap(mean_loss)(batches)
    numpy.testing.assert_allclose(mapped[0], value, rtol=1e-15)
    numpy.testing.assert_allclose(mapped[1], mean_loss(batches[1]), rtol=1e-15)
    y = jnp.asarray(torch.softmax(z, -1).numpy())
    soft = dict(weight=numpy.asarray(weight), label_smoothing=0.1, temperature=0.7)
    dy = jax.grad(lambda y: kernels.jax.cross_entropy(batches[0], y, reduction="sum", **soft))(y)
    y_ref = torch.softmax(z, -1).requires_grad_()
    (dy_ref,) = torch.autograd.grad(
        reference(z, y_ref, reduction="sum", weight=weight, label_smoothing=0.1, temperature=0.7),
        y_ref,
    )
    numpy.testing.assert_allclose(dy, dy_ref.numpy(), rtol=1e-12)


def test_jax_option_errors(kernels):
    z = jnp.ones((2, K))
    with pytest.raises(ValueError, match="temperature"):
        kernels.jax.cross_entropy_index(z, jnp.array([0, 1]), temperature=0.0)
    with pytest.raises(TypeError, match="concrete"):
        jax.jit(lambda w: kernels.jax.cross_entropy_index(z, jnp.array([0, 1]), weight=w))(
            jnp.ones(K)
        )
