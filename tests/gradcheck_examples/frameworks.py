"""Gradients computed with PyTorch and JAX, checked with --array torch / jax."""

import jax
import jax.numpy as jnp
import torch
import torch.nn.functional as F


def torch_ce_sum(z, c):
    """(loss, grad) of F.cross_entropy over the batch; both tensors still require grad."""
    z = z.clone().requires_grad_(True)
    loss = F.cross_entropy(z, c, reduction="sum")
    (grad,) = torch.autograd.grad(loss, z, create_graph=True)
    return loss, grad


def torch_log_softmax_backward(z, g):
    z = z.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(torch.log_softmax(z, dim=-1), z, g)
    return grad


def jax_ce_mean(z, c):
    def loss(z):
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), c[:, None], axis=1))

    return jax.grad(loss)(z)


def jax_softmax_jacobian(z):
    return jax.jacrev(jax.nn.softmax)(z)
