"""Inputs as NumPy, PyTorch or JAX arrays; any of those (or lists, scalars) back to NumPy.

Runs inside the worker process: the array library is imported there, never in the checker.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def input_converter(array: str, dtype: np.dtype) -> Callable[[object], object]:
    """A function taking a NumPy array (or an int class index) to the library's array."""
    if array == "torch":
        import torch

        def to_torch(a: object) -> object:
            return torch.from_numpy(a) if isinstance(a, np.ndarray) else a

        return to_torch
    if array == "jax":
        import jax

        if dtype == np.float64:  # JAX computes in float32 unless asked
            jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        def to_jax(a: object) -> object:
            return jnp.asarray(a) if isinstance(a, np.ndarray) else a

        return to_jax
    return lambda a: a


def to_numpy(x: object) -> np.ndarray:
    """Tensors that require grad are detached; device arrays come to the host."""
    if hasattr(x, "detach") and callable(x.detach):  # torch
        x = x.detach()
        if hasattr(x, "cpu"):
            x = x.cpu()
        if hasattr(x, "numpy"):
            x = x.numpy()
    return np.asarray(x)


def convert_output(out: object) -> tuple:
    """("array", a) | ("pair", a, b) for a 2-tuple, maybe (loss, grad) | ("bad", why)."""
    try:
        if isinstance(out, tuple) and len(out) == 2:
            return ("pair", to_numpy(out[0]), to_numpy(out[1]))
        return ("array", to_numpy(out))
    except Exception as exc:
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        return ("bad", f"{type(out).__name__} cannot be read as an array ({text})")
