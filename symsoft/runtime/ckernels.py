"""Call emitted C kernels on NumPy arrays: signatures from the family's declarations."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import numpy

from symsoft.family.members import INPUT_KINDS, MEMBERS, OPTIONS, Member, c_name

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


# With options (issue 17): the options are checked and, unless all are at their defaults,
# passed to NAME_opt as a pointer to the type's options struct; a reduced loss is one value.
_CALL_OPTIONS = """\
def {name}({params}, *, {keywords}):
    {converts}
    _o = None if {defaults} else _check_options(z, {option_args})
    _function, _c = (_functions if _o is None else _opt_functions)[z.dtype]
    {allocations}
    _rows = z.size // _k
    if _rows:
        _function({pointers}, {out_pointers}, _rows{options_pointer})
    return {results}
"""


def _options_struct(ctype: type) -> type:
    class Options(ctypes.Structure):
        _fields_ = [
            ("weight", ctypes.POINTER(ctype)),
            ("ignore_index", ctypes.c_int64),
            ("has_ignore_index", ctypes.c_int),
            ("reduction", ctypes.c_int),
            ("label_smoothing", ctype),
            ("temperature", ctype),
            ("z_loss", ctype),
        ]

    return Options


_STRUCTS = {dtype: _options_struct(_CTYPE[dtype]) for dtype in _SUFFIX}
_REDUCTIONS = {"none": 0, "sum": 1, "mean": 2}  # emit.c.REDUCTION_CODES, the header's


def _number(value: object, name: str) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None


def check_options(
    z: numpy.ndarray,
    weight: object = None,
    ignore_index: object = None,
    reduction: object = "none",
    label_smoothing: object = 0.0,
    temperature: object = 1.0,
    z_loss: object = 0.0,
) -> tuple[Any, numpy.ndarray | None] | None:
    """(options struct, weight array it points to) for z's type, or None when every option
    is at its default; ValueError naming a bad option (the checks of the Python module)."""
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")
    T = _number(temperature, "temperature")
    if not 0 < T < float("inf"):
        raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")
    eps = _number(label_smoothing, "label_smoothing")
    if not 0 <= eps <= 1:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    lam = _number(z_loss, "z_loss")
    if not 0 <= lam < float("inf"):
        raise ValueError(f"z_loss must be finite and >= 0, got {z_loss!r}")
    if ignore_index is not None:
        try:
            ignore_index = type(ignore_index).__index__(ignore_index)  # type: ignore[attr-defined]
        except (TypeError, AttributeError):
            raise ValueError(f"ignore_index must be an integer, got {ignore_index!r}") from None
    w = None
    if weight is not None:
        w = numpy.asarray(weight)
        k = z.shape[-1]
        if w.shape != (k,) or w.dtype.kind not in "biuf":
            raise ValueError(f"weight must be {k} real numbers, one per class, got {w.shape}")
        w = numpy.ascontiguousarray(w, dtype=z.dtype)
        if not bool(numpy.all(numpy.isfinite(w) & (w >= 0))):
            raise ValueError("weight must be finite and >= 0")
    neutral = eps == 0 and T == 1 and lam == 0
    if neutral and w is None and ignore_index is None and reduction == "none":
        return None
    struct = _STRUCTS[z.dtype](
        w.ctypes.data_as(ctypes.POINTER(_CTYPE[z.dtype])) if w is not None else None,
        ignore_index if ignore_index is not None else 0,
        ignore_index is not None,
        _REDUCTIONS[reduction],
        eps,
        T,
        lam,
    )
    return struct, w


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
            buffers += [_CTYPE[dtype]] * len(ranks)
            function = getattr(library, c_name(member.name, self.k, suffix))
            function.argtypes = [*(ctypes.POINTER(c) for c in buffers), ctypes.c_size_t]
            function.restype = None
            functions[dtype] = (function, buffers)
        names = list(member.inputs)
        converts = ["z = _z(z)"] + [f"{n} = _{_converter(n)}({n}, {n!r}, z)" for n in names[1:]]
        outs = [f"_out{o}" for o in range(len(ranks))]
        # a reduced loss (reduction sum or mean) is one value: 0 for no rows, NaN under mean
        reduced = "_o is not None and reduction != 'none'" if member.takes_reduction else "False"
        allocations = [
            f"{out} = _empty(z.shape[:-1] + {(self.k,) * rank!r}, z.dtype)"
            if rank or not member.takes_reduction
            else f"{out} = _full(1, 0.0 if reduction == 'sum' else _nan, z.dtype) "
            f"if {reduced} else _empty(z.shape[:-1], z.dtype)"
            for out, rank in zip(outs, ranks, strict=True)
        ]
        # a scalar for one row, as NumPy reductions give
        results = [f"({out} if {out}.ndim else {out}[()])" for out in outs]
        if member.takes_reduction and ranks[0] == 0:
            results[0] = f"({outs[0]}[0] if {reduced} else {results[0]})"
        fields = {
            "name": member.name,
            "params": ", ".join(names),
            "converts": "\n    ".join(converts),
            "allocations": "\n    ".join(allocations),
            "pointers": ", ".join(f"_c[{i}].from_buffer({n})" for i, n in enumerate(names)),
            "out_pointers": ", ".join(
                f"_c[{len(names) + o}].from_buffer({out})" for o, out in enumerate(outs)
            ),
            "results": ", ".join(results) if len(results) > 1 else results[0],
        }
        opt_functions = {}
        if member.options:
            for dtype, suffix in _SUFFIX.items():
                function = getattr(library, c_name(member.name + "_opt", self.k, suffix))
                buffers = functions[dtype][1]
                function.argtypes = [
                    *(ctypes.POINTER(c) for c in buffers),
                    ctypes.c_size_t,
                    ctypes.POINTER(_STRUCTS[dtype]),
                ]
                function.restype = None
                opt_functions[dtype] = (function, buffers)
            source = _CALL_OPTIONS.format(
                **fields,
                keywords=", ".join(f"{o}={OPTIONS[o]!r}" for o in member.options),
                option_args=", ".join(
                    f"{o}={o if o in member.options else repr(OPTIONS[o])}" for o in OPTIONS
                ),
                options_pointer=", *(() if _o is None else (_byref(_o[0]),))",
                # the defaults, compared cheaply: the per-call cost for small batches
                defaults=" and ".join(
                    f"{o} is None" if OPTIONS[o] is None else f"{o} == {OPTIONS[o]!r}"
                    for o in member.options
                ),
            )
        else:
            source = _CALL.format(**fields)
        namespace: dict[str, Any] = {
            "_empty": numpy.empty,
            "_full": numpy.full,
            "_nan": numpy.nan,
            "_byref": ctypes.byref,
            "_check_options": check_options,
            "_k": self.k,
            "_functions": functions,
            "_opt_functions": opt_functions,
            "_z": self._z,
            "_float": self._floats,
            "_label": self._labels,
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
