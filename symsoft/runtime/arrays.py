"""Arrays of other libraries at the NumPy-facing backends (C and NumPy-only), so that one call
gives the same kind of result on every backend: CPU torch tensors in, tensors out (as from
the array-API module); arrays these backends cannot take are refused by name."""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy

_ARRAY_API = "load(k, backend='array-api') takes them"


def is_tensor(x: object, name: str, backend: str) -> bool:
    """Whether x is a torch tensor that the backend takes through NumPy (on the CPU, without
    autograd); TypeError for one it cannot take and for another library's array. Lists,
    scalars and NumPy arrays are not tensors."""
    kind = type(x)
    if kind is numpy.ndarray or isinstance(x, numpy.generic | list | tuple | int | float):
        return False
    library = kind.__module__.partition(".")[0]
    if library == "torch":
        if x.device.type != "cpu":  # type: ignore[attr-defined]
            raise TypeError(
                f"{name} is a torch tensor on {x.device}: the {backend} backend computes on "  # type: ignore[attr-defined]
                f"the CPU; move it with .cpu(), or {_ARRAY_API}"
            )
        if x.requires_grad:  # type: ignore[attr-defined]
            raise TypeError(
                f"{name} requires grad: the {backend} backend does not record gradients for "
                f"autograd; pass .detach(), or {_ARRAY_API}"
            )
        return True
    if hasattr(x, "__array_namespace__") or hasattr(x, "__dlpack__"):
        raise TypeError(
            f"{name} is a {library} array ({kind.__name__}): the {backend} backend takes "
            f"NumPy arrays and CPU torch tensors; {_ARRAY_API}"
        )
    return False


def to_tensor(result: Any, dtype: Any = None) -> Any:
    """A kernel's NumPy result (an array, a NumPy scalar for one row, or a tuple of them) as
    torch tensors; NumPy and torch share the memory. dtype torch.bfloat16: the results are
    bfloat16 bits (uint16), viewed as bfloat16 tensors."""
    import torch  # imported already: the caller passed a tensor

    if isinstance(result, tuple):
        return tuple(to_tensor(r, dtype) for r in result)
    tensor = torch.from_numpy(numpy.asarray(result))
    return tensor.view(torch.bfloat16) if dtype == torch.bfloat16 else tensor


def bfloat16_bits(x: object) -> numpy.ndarray | None:
    """The bits (uint16) of a bfloat16 CPU torch tensor, or of a NumPy array of ml_dtypes'
    bfloat16 (what JAX hands a host callback); None for anything else. NumPy has no bfloat16
    of its own: the C kernels take bfloat16 as storage="bf16" bits."""
    dtype = getattr(x, "dtype", None)
    if type(x) is numpy.ndarray:
        return x.view(numpy.uint16) if x.dtype.name == "bfloat16" else None
    if str(dtype) != "torch.bfloat16":
        return None
    import torch  # imported already: x is a tensor

    return x.contiguous().view(torch.int16).numpy().view(numpy.uint16)  # type: ignore[attr-defined]


def tensors_in_tensors_out(module: ModuleType, names: tuple[str, ...], backend: str) -> ModuleType:
    """A module like module whose functions names give tensors for tensors."""
    wrapped = ModuleType(module.__name__, module.__doc__)
    wrapped.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
    wrapped.__file__ = module.__file__
    for name in names:
        setattr(wrapped, name, _wrap(getattr(module, name), backend))
    return wrapped


def _wrap(function: Callable[..., Any], backend: str) -> Callable[..., Any]:
    @functools.wraps(function)
    def call(z: object, *args: object) -> Any:
        if type(z) is numpy.ndarray or not is_tensor(z, "z", backend):
            return function(z, *args)
        for index, arg in enumerate(args):
            is_tensor(arg, f"argument {index + 2}", backend)  # refuses what it cannot take
        return to_tensor(function(z.numpy(), *args))  # type: ignore[attr-defined]

    return call


def float32_from_storage(array: numpy.ndarray, storage: object) -> numpy.ndarray:
    """16-bit values as float32, exactly: bf16 or f16 bits (uint16, storage "bf16" / "f16"),
    or a NumPy float16 array."""
    if storage == "bf16":
        return (array.astype(numpy.uint32) << 16).view(numpy.float32)
    if storage == "f16":
        array = array.view(numpy.float16)
    return array.astype(numpy.float32)


def storage_from_float32(values: numpy.ndarray, storage: object) -> numpy.ndarray:
    """float32 values rounded once to nearest-even into 16-bit storage, as the C kernels round
    (float32_from_storage's inverse): bf16 bits with NaN kept NaN (quiet, sign and leading
    payload), f16 bits or a NumPy float16 array (NumPy's conversion rounds to nearest-even)."""
    values = numpy.asarray(values, dtype=numpy.float32)
    if storage == "bf16":
        bits = values.view(numpy.uint32)
        rounded = (bits + numpy.uint32(0x7FFF) + ((bits >> 16) & 1)) >> 16
        quiet = (bits >> 16) | numpy.uint32(0x0040)
        return numpy.where(numpy.isnan(values), quiet, rounded).astype(numpy.uint16)
    with numpy.errstate(over="ignore"):  # from 65520 on: infinity, as it should
        halves = values.astype(numpy.float16)
    return halves.view(numpy.uint16) if storage == "f16" else halves


def as_numbers(x: object) -> numpy.ndarray:
    """x as a NumPy array of its values (numpy.asarray), bfloat16 tensors and arrays widened to
    float32 exactly (NumPy cannot read a bfloat16 tensor)."""
    bits = bfloat16_bits(x)
    return numpy.asarray(x) if bits is None else float32_from_storage(bits, "bf16")
