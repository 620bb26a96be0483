"""Gradients computed with JAX, checked with --array jax."""

import jax
import jax.numpy as jnp


@jax.jit
def ce_mean(z, c):
    def loss(z):
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), c[:, None], axis=1))

    return jax.grad(loss)(z)


# compiled once per shape
softmax_jacobian = jax.jit(jax.jacrev(jax.nn.softmax))
