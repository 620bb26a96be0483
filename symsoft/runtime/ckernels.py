"""Call emitted C kernels on NumPy arrays: signatures from the family's declarations."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import numpy

from symsoft.family.members import INPUT_KINDS, MEMBERS, Member, c_name

_F32, _F64, _I64 = numpy.dtype(numpy.float32), numpy.dtype(numpy.float64), numpy.dtype(numpy.int64)
_SUFFIX = {_F32: "f32", _F64: "f64"}
_CTYPE = {_F32: ctypes.c_float, _F64: ctypes.c_double, _I64: ctypes.c_int64}


def _converter(name: str) -> str:
    """The CKernels method that checks and converts an input: z itself, float arrays of z's
    shape and dtype, or int64 class indices of z's shape less the last axis."""
    kind = INPUT_KINDS[name]
    return {"logits": "z", "labels": "label"}.get(kind, "float")


def _as_c(array: numpy.ndarray, dtype: numpy.dtype) -> numpy.ndarray:
    """array itself if C can take it as is, else a fresh C-ordered, aligned, native copy.

    Writable too (flags.carray): ctypes' cheap from_buffer wants writable memory; the kernels
    never write their inputs, so only read-only arrays pay for this copy.
    """
    if array.dtype == dtype and array.flags.carray:
        return array
    return numpy.array(array, dtype=dtype, order="C")


def _float_dtype(dtype: numpy.dtype, name: str) -> numpy.dtype:
    """float32/float64 in any byte order keep their precision; integers become float64."""
    if dtype.kind in "biu":
        return _F64
    if dtype.kind == "f" and dtype.itemsize in (4, 8):
        return dtype.newbyteorder("=")
    raise TypeError(f"{name} must be float32 or float64 (or integers), got {dtype}")


# One Python function per kernel, written out for its parameters like namedtuple does: named
# arguments for free, and per call only the checks, one allocation and the ctypes call.
# from_buffer() costs a fraction of array.ctypes.data_as(); _as_c makes sure it applies.
_CALL = """\
def {name}({params}):
    {converts}
    {allocations}
    _rows = z.size // _k
    if _rows:  # from_buffer refuses empty buffers, and there is nothing to compute
        _function, _c = _functions[z.dtype]
        _function({pointers}, {out_pointers}, _rows)
    return {results}
"""
# distillation's options: checked in Python (C would give NaN rows), the outputs reduced here
_REDUCTIONS = ("batchmean", "sum", "none")


def _options(temperature: object, reduction: object) -> float:
    value = float(temperature)  # type: ignore[arg-type]
    if not 0 < value < float("inf"):
        raise ValueError(f"temperature must be finite and > 0, got {value}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(_REDUCTIONS)}, got {reduction!r}")
    return value


def _reduced(value: numpy.ndarray, reduction: str, z: numpy.ndarray, per_row: bool) -> Any:
    """As the emitted Python module: none as computed; sum of the rows' values (a gradient is
    each row's own); batchmean divided by z.shape[0] (one for a single row)."""
    if reduction == "none":
        return value if value.ndim else value[()]
    batch = z.shape[0] if z.ndim > 1 else 1
    if per_row:
        value = value.sum(dtype=value.dtype)
    if reduction == "sum":
        return value
    with numpy.errstate(invalid="ignore"):  # an empty batch: 0 / 0 is NaN, as in PyTorch
        return value / value.dtype.type(batch) if batch else value * value.dtype.type("nan")


class CKernels:
    """The kernels of one compiled softmax_k{K} library, as methods taking arrays (..., K).

    One method per member of family.members.MEMBERS, with the C parameter names. float32 in
    gives float32 out, float64 gives float64, integers become float64. Non-contiguous,
    Fortran-ordered, misaligned, read-only or non-native byte order arrays are copied first;
    complex, float16 and other dtypes are refused (TypeError), as is a last axis that is not K
    (ValueError). Further float inputs (y) must have z's shape and are converted to z's dtype;
    label inputs are integer class indices of shape z.shape[:-1], passed to C as int64.
    """

    def __init__(self, library: ctypes.CDLL, k: int) -> None:
        self.k = k
        self.names = tuple(member.name for member in MEMBERS)
        for member in MEMBERS:
            setattr(self, member.name, self._method(library, member))

    def __repr__(self) -> str:
        return f"<CKernels K={self.k}: {', '.join(self.names)}>"

    def _method(self, library: ctypes.CDLL, member: Member) -> Callable[..., Any]:
        functions = {}
        ranks = [out.rank for out in member.outputs]
        for dtype, suffix in _SUFFIX.items():
            # the C type of each buffer: the inputs', then the outputs'
            buffers = [
                _CTYPE[_I64 if _converter(name) == "label" else dtype] for name in member.inputs
            ]
            buffers += [_CTYPE[dtype]] * len(member.scalars)  # by value, after the inputs
            buffers += [_CTYPE[dtype]] * len(ranks)
            function = getattr(library, c_name(member.name, self.k, suffix))
            pointers = [ctypes.POINTER(c) for c in buffers]
            n_in = len(member.inputs)
            for n in range(n_in, n_in + len(member.scalars)):
                pointers[n] = buffers[n]  # a scalar, by value
            function.argtypes = [*pointers, ctypes.c_size_t]
            function.restype = None
            functions[dtype] = (function, buffers)
        names = list(member.inputs)
        # the first input is the logits, z in the body whatever the parameter is called
        converts = [f"z = _z({names[0]})"]
        converts += [f"{n} = _{_converter(n)}({n}, {n!r}, z)" for n in names[1:]]
        params = list(names)
        scalars = [name for name, _ in member.scalars]
        if member.scalars or member.reduces:
            params.append("*")
            params += [f"{name}={default!r}" for name, default in member.scalars]
        if member.reduces:
            params.append('reduction="batchmean"')
            converts += [f"{scalars[0]} = _options({scalars[0]}, reduction)"]
        outs = [f"_out{o}" for o in range(len(ranks))]
        allocations = [
            f"{out} = _empty(z.shape[:-1] + {(self.k,) * rank!r}, z.dtype)"
            for out, rank in zip(outs, ranks, strict=True)
        ]
        # a scalar for one row, as NumPy reductions give
        results = [f"({out} if {out}.ndim else {out}[()])" for out in outs]
        if member.reduces:
            results = [
                f"_reduced({out}, reduction, z, {rank == 0})"
                for out, rank in zip(outs, ranks, strict=True)
            ]
        pointers = [f"_c[{i}].from_buffer({n})" for i, n in enumerate(["z", *names[1:]])]
        pointers += [f"_c[{len(names) + n}]({name})" for n, name in enumerate(scalars)]
        source = _CALL.format(
            name=member.name,
            params=", ".join(params),
            converts="\n    ".join(converts),
            allocations="\n    ".join(allocations),
            pointers=", ".join(pointers),
            out_pointers=", ".join(
                f"_c[{len(names) + len(scalars) + o}].from_buffer({out})"
                for o, out in enumerate(outs)
            ),
            results=", ".join(results) if len(results) > 1 else results[0],
        )
        namespace: dict[str, Any] = {
            "_empty": numpy.empty,
            "_k": self.k,
            "_functions": functions,
            "_z": self._z,
            "_float": self._floats,
            "_label": self._labels,
            "_options": _options,
            "_reduced": _reduced,
        }
        exec(compile(source, f"<symsoft kernel {member.name}>", "exec"), namespace)
        call = namespace[member.name]
        call.__doc__ = f"{member.doc} (C: {c_name(member.name, self.k, 'f32/f64')})"
        return call

    # Each converter returns its input untouched when C can take it as is (checked first and
    # cheaply: this is the per-call cost for small batches), else a checked copy.

    def _z(self, x: object) -> numpy.ndarray:
        if (
            type(x) is numpy.ndarray
            and x.dtype in _SUFFIX
            and x.flags.carray
            and x.shape[-1:] == (self.k,)
        ):
            return x
        array = numpy.asarray(x)
        self._check_last_axis(array, "z")
        dtype = array.dtype if array.dtype in _SUFFIX else _float_dtype(array.dtype, "z")
        return _as_c(array, dtype)

    def _floats(self, x: object, name: str, z: numpy.ndarray) -> numpy.ndarray:
        if (
            type(x) is numpy.ndarray
            and x.dtype == z.dtype
            and x.flags.carray
            and x.shape == z.shape
        ):
            return x
        array = numpy.asarray(x)
        self._check_last_axis(array, name)
        if array.shape != z.shape:
            raise ValueError(f"{name} must have the shape of z, {z.shape}, got {array.shape}")
        if array.dtype != z.dtype:
            _float_dtype(array.dtype, name)  # refuses complex & co. rather than drop parts
        return _as_c(array, z.dtype)

    def _labels(self, x: object, name: str, z: numpy.ndarray) -> numpy.ndarray:
        if (
            type(x) is numpy.ndarray
            and x.dtype == _I64
            and x.flags.carray
            and x.shape == z.shape[:-1]
        ):
            return x
        array = numpy.asarray(x)
        if array.dtype.kind not in "iu":
            raise TypeError(f"{name} must be integer class indices, got {array.dtype}")
        if array.shape != z.shape[:-1]:
            raise ValueError(
                f"{name} must have shape {z.shape[:-1]} (one class index per row of z), "
                f"got {array.shape}"
            )
        return _as_c(array, _I64)

    def _check_last_axis(self, array: numpy.ndarray, name: str) -> None:
        if array.ndim == 0 or array.shape[-1] != self.k:
            raise ValueError(
                f"{name} must have shape (..., {self.k}) for K={self.k}, got shape {array.shape}"
            )
