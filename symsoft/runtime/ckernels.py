"""Call emitted C kernels on NumPy arrays: signatures from the family's declarations."""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy

from symsoft.family.members import INPUT_KINDS, MEMBERS, OPTIONS, Member, c_name, stem
from symsoft.runtime.arrays import (
    as_numbers,
    bfloat16_bits,
    float32_from_storage,
    is_tensor,
    storage_from_float32,
    to_tensor,
)

if TYPE_CHECKING:
    from symsoft.runtime.autograd import JaxKernels, TorchKernels

_F16, _F32, _F64 = (numpy.dtype(t) for t in (numpy.float16, numpy.float32, numpy.float64))
_I64, _U16 = numpy.dtype(numpy.int64), numpy.dtype(numpy.uint16)
# the C kernels of each dtype: float16 arrays go to the fp16 storage kernels
_SUFFIX = {_F32: "f32", _F64: "f64", _F16: "f16"}
# storage="bf16" / "f16": uint16 arrays holding the bits (e.g. views of torch bfloat16 tensors)
STORAGE = ("bf16", "f16")
_CTYPE = {
    _F16: ctypes.c_uint16,
    _F32: ctypes.c_float,
    _F64: ctypes.c_double,
    _I64: ctypes.c_int64,
    _U16: ctypes.c_uint16,
}
# The OpenMP thread count is a setting of the calling OS thread (omp_set_num_threads): the
# last value set from each thread, so that a call sets it only when it changes.
_per_thread = threading.local()


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask), else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


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
    """float16/32/64 in any byte order keep their precision; integers become float64."""
    if dtype.kind in "biu":
        return _F64
    if dtype.kind == "f" and dtype.itemsize in (2, 4, 8):
        return dtype.newbyteorder("=")
    raise TypeError(f"{name} must be float16, float32 or float64 (or integers), got {dtype}")


# One Python function per kernel, written out for its parameters like namedtuple does: named
# arguments for free, and per call only the checks, one allocation and the ctypes call.
# from_buffer() costs a fraction of array.ctypes.data_as(); _as_c makes sure it applies.
_CALL = """\
def {name}({params}):
    # the first input is the logits, z in the body whatever the parameter is called
    _tensors = type({first}) is not _ndarray and _is_tensor({first}, {first!r}, "c")
    _given = {first}  # its type, for the results
    z, _key = _z({first}, storage)
    {options}
    {converts}
    {allocations}
    _rows = z.size // _k
    if _rows:  # from_buffer refuses empty buffers, and there is nothing to compute
        _function, _c = {kernels}[_key]
        _threads(threads)
        _function({pointers}, {out_pointers}, _rows{options_pointer})
    _result = {results}
    if _tensors:  # CPU torch tensors in, tensors out, as from the array-API module
        return _to_tensor(_result, _given.dtype)
    if type(_key) is str and storage is None:  # bfloat16 values in: the same type out
        return _bits_as(_result, _given.dtype)
    return _result
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


# With options (issue 17) the options are checked and, unless all are at their defaults,
# passed to NAME_opt as a pointer to the type's options struct; a reduced loss is one value.
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


_STRUCTS = {dtype: _options_struct(_CTYPE[dtype]) for dtype in (_F32, _F64)}
_REDUCTION_CODES = {"none": 0, "sum": 1, "mean": 2}  # emit.c.REDUCTION_CODES, the header's


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
    if z.dtype not in _STRUCTS:  # the options path has no 16-bit kernels
        raise TypeError(f"the options take float32 or float64 logits, got {z.dtype}")
    if not isinstance(reduction, str) or reduction not in _REDUCTION_CODES:
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
        w = as_numbers(weight)
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
        _REDUCTION_CODES[reduction],
        eps,
        T,
        lam,
    )
    return struct, w


class CKernels:
    """The kernels of one compiled softmax_k{K} library, as methods taking arrays (..., K).

    One method per member of family.members.MEMBERS, with the C parameter names. float32 in
    gives float32 out, float64 gives float64, float16 gives float16 (computed in float by the
    _f16 kernels, rounded once to nearest-even), bfloat16 (CPU torch tensors, NumPy arrays of
    ml_dtypes.bfloat16 as JAX has them) gives bfloat16 (the _bf16 kernels; further float
    inputs must then be bfloat16 too), integers become float64. Non-contiguous,
    Fortran-ordered, misaligned, read-only or non-native byte order arrays are copied first;
    complex and other dtypes are refused (TypeError), as is a last axis that is not K
    (ValueError). Further float inputs (y) must have z's shape and are converted to z's dtype;
    label inputs are integer class indices of shape z.shape[:-1], passed to C as int64.

    Keyword arguments of every method:
      threads: the threads one call may use (default: the instance's `threads`, all the CPUs
        the process may use). Only libraries built with OpenMP (`openmp` > 0, as
        symsoft.load builds them where the compiler can) use more than one, and only from
        PARALLEL_FROM values per call (smaller batches stay on one thread, where starting
        threads costs more than it saves); the results are the same bits on any number.
      storage: "bf16" or "f16" to call the 16-bit storage kernels on uint16 arrays holding
        bfloat16 or IEEE binary16 bits (every float input of the same storage, labels still
        integers); the outputs are uint16 arrays of the same storage. For torch tensors on
        the CPU: `x.contiguous().view(torch.int16).numpy().view(numpy.uint16)`, and back with
        `torch.from_numpy(out.view(numpy.int16)).view(torch.bfloat16)` (no copies). The
        Jacobian (K x K values a row) has no 16-bit kernels.
    """

    def __init__(
        self, library: ctypes.CDLL, k: int, prefix: str = "", threads: int | None = None
    ) -> None:
        self.k, self.prefix = k, prefix
        self.library = library
        self.names = tuple(member.name for member in MEMBERS)
        base = stem(k, prefix)
        self.openmp = int(getattr(library, f"{base}_openmp")())
        self._set_threads = getattr(library, f"{base}_set_threads")
        self._set_threads.argtypes = [ctypes.c_int]
        self._set_threads.restype = None
        self.threads = available_cpus() if threads is None else int(threads)
        if self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        for member in MEMBERS:
            setattr(self, member.name, self._method(library, member))

    def __repr__(self) -> str:
        return f"<CKernels K={self.k} threads={self.threads}: {', '.join(self.names)}>"

    def with_threads(self, threads: int | None) -> CKernels:
        """The same library's kernels with another default thread count."""
        return CKernels(self.library, self.k, self.prefix, threads)

    def _use_threads(self, threads: int | None) -> None:
        """Sets the calling thread's OpenMP thread count if it is not what this call wants."""
        wanted = self.threads if threads is None else threads
        if self.openmp and getattr(_per_thread, "threads", None) != wanted:
            if wanted < 1:
                raise ValueError(f"threads must be at least 1, got {wanted}")
            self._set_threads(wanted)
            _per_thread.threads = wanted

    # imported on first use: `import symsoft` imports neither torch nor jax
    @cached_property
    def torch(self) -> TorchKernels:
        """These kernels as torch.autograd functions of CPU tensors (see runtime/autograd.py)."""
        from symsoft.runtime.autograd import TorchKernels

        return TorchKernels(self)

    @cached_property
    def jax(self) -> JaxKernels:
        """These kernels as jax.custom_vjp functions (see runtime/autograd.py)."""
        from symsoft.runtime.autograd import JaxKernels

        return JaxKernels(self)

    def _method(self, library: ctypes.CDLL, member: Member) -> Callable[..., Any]:
        ranks = [out.rank for out in member.outputs]
        keys: list[tuple[object, str, numpy.dtype]] = [(_F32, "f32", _F32), (_F64, "f64", _F64)]
        if max(ranks) <= 1 and not member.scalars:  # 16-bit storage (emit/c.py: STORAGE)
            keys += [(_F16, "f16", _F16), ("bf16", "bf16", _U16), ("f16", "f16", _U16)]
        functions, opt_functions = {}, {}
        for key, suffix, dtype in keys:
            # the C type of each buffer: the inputs', then the outputs'
            buffers = [
                _CTYPE[_I64 if _converter(name) == "label" else dtype] for name in member.inputs
            ]
            buffers += [_CTYPE[dtype]] * len(member.scalars)  # by value, after the inputs
            buffers += [_CTYPE[dtype]] * len(ranks)
            function = getattr(library, c_name(member.name, self.k, suffix, self.prefix))
            pointers = [ctypes.POINTER(c) for c in buffers]
            n_in = len(member.inputs)
            for n in range(n_in, n_in + len(member.scalars)):
                pointers[n] = buffers[n]  # a scalar, by value
            function.argtypes = [*pointers, ctypes.c_size_t]
            function.restype = None
            functions[key] = (function, buffers)
            if member.options and key in _STRUCTS:  # NAME_opt: float and double only
                name = c_name(member.name + "_opt", self.k, suffix, self.prefix)
                function = getattr(library, name)
                function.argtypes = [*pointers, ctypes.c_size_t, ctypes.POINTER(_STRUCTS[key])]
                function.restype = None
                opt_functions[key] = (function, buffers)
        names = list(member.inputs)
        params = [*names, "*"]
        scalars = [name for name, _ in member.scalars]
        params += [f"{name}={default!r}" for name, default in member.scalars]
        params += [f"{o}={OPTIONS[o]!r}" for o in member.options]
        options = ""
        if member.options:
            # the defaults, compared cheaply: the per-call cost for small batches
            defaults = " and ".join(
                f"{o} is None" if OPTIONS[o] is None else f"{o} == {OPTIONS[o]!r}"
                for o in member.options
            )
            given = ", ".join(f"{o}={o}" for o in member.options)
            others = ", ".join(f"{n}={n}" for n in names[1:])
            # 16-bit storage: the float32 options path on the widened values, each result
            # rounded once (the 16-bit kernels' contract; the options have no 16-bit kernels)
            options = (
                f"if {defaults}:\n        _o = None\n"
                f"    elif _key not in _STRUCTS:\n"
                f"        return _in_float32({member.name}, _key, z, dict({others}), "
                f"dict({given}), threads, _tensors, _given, storage)\n"
                f"    else:\n        _o = _check_options(z, {given})"
            )
        # labels may hold ignore_index, which the options path skips
        ignored = ", ignore_index" if "ignore_index" in member.options else ""
        converts = [
            f"{n} = _{_converter(n)}({n}, {n!r}, z{ignored if n == 'labels' else ''})"
            for n in names[1:]
        ]
        if member.reduces:
            params.append('reduction="batchmean"')
            converts += [f"{scalars[0]} = _options({scalars[0]}, reduction)"]
        params += ["threads=None", "storage=None"]
        outs = [f"_out{o}" for o in range(len(ranks))]
        # with reduction sum or mean the options path's loss is one value: 0 for no rows, NaN
        # under mean
        reduced = "_o is not None and reduction != 'none'"
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
            first=names[0],
            options=options or "pass",
            converts="\n    ".join(converts) or "pass",
            allocations="\n    ".join(allocations),
            kernels="(_functions if _o is None else _opt_functions)"
            if member.options
            else "_functions",
            pointers=", ".join(pointers),
            out_pointers=", ".join(
                f"_c[{len(names) + len(scalars) + o}].from_buffer({out})"
                for o, out in enumerate(outs)
            ),
            options_pointer=", *(() if _o is None else (_byref(_o[0]),))" if member.options else "",
            results=", ".join(results) if len(results) > 1 else results[0],
        )
        namespace: dict[str, Any] = {
            "_ndarray": numpy.ndarray,
            "_is_tensor": is_tensor,
            "_to_tensor": to_tensor,
            "_bits_as": _bits_as,
            "_empty": numpy.empty,
            "_full": numpy.full,
            "_nan": numpy.nan,
            "_byref": ctypes.byref,
            "_check_options": check_options,
            "_STRUCTS": _STRUCTS,
            "_in_float32": self._in_float32,
            "_k": self.k,
            "_functions": _Kernels(member.name, functions, "the Jacobian has no 16-bit ones"),
            "_opt_functions": _Kernels(
                member.name, opt_functions, "options take float32 or float64"
            ),
            "_z": self._z,
            "_float": self._floats,
            "_label": self._labels,
            "_threads": self._use_threads,
            "_options": _options,
            "_reduced": _reduced,
        }
        exec(compile(source, f"<symsoft kernel {member.name}>", "exec"), namespace)
        call = namespace[member.name]
        sizes = "f32/f64/f16/bf16" if max(ranks) <= 1 else "f32/f64"
        call.__doc__ = (
            f"{member.doc} (C: {c_name(member.name, self.k, sizes, self.prefix)}). Keywords "
            "threads= and storage= ('bf16', 'f16': uint16 arrays of those bits): see CKernels."
        )
        if member.options:
            call.__doc__ += f" Options ({', '.join(member.options)}): see README."
        return call

    # Each converter returns its input untouched when C can take it as is (checked first and
    # cheaply: this is the per-call cost for small batches), else a checked copy.

    def _z(self, x: object, storage: str | None = None) -> tuple[numpy.ndarray, object]:
        """z ready for C and the key of its kernels: its dtype, or the storage name."""
        if storage is None:
            if (
                type(x) is numpy.ndarray
                and x.dtype in _SUFFIX
                and x.flags.carray
                and x.shape[-1:] == (self.k,)
            ):
                return x, x.dtype
            is_tensor(x, "z", "c")
            bits = bfloat16_bits(x)
            if bits is not None:  # bfloat16 tensors and arrays: the bf16 storage kernels
                self._check_last_axis(bits, "z")
                return _as_c(bits, _U16), "bf16"
            array = numpy.asarray(x)
            self._check_last_axis(array, "z")
            dtype = array.dtype if array.dtype in _SUFFIX else _float_dtype(array.dtype, "z")
            return _as_c(array, dtype), dtype
        if storage not in STORAGE:
            raise ValueError(f"storage must be one of {STORAGE} or None, got {storage!r}")
        array = numpy.asarray(x)
        if array.dtype != _U16:
            raise TypeError(
                f"storage={storage!r} takes uint16 arrays of its bits, got {array.dtype}"
            )
        self._check_last_axis(array, "z")
        return _as_c(array, _U16), storage

    def _floats(self, x: object, name: str, z: numpy.ndarray) -> numpy.ndarray:
        if (
            type(x) is numpy.ndarray
            and x.dtype == z.dtype
            and x.flags.carray
            and x.shape == z.shape
        ):
            return x
        is_tensor(x, name, "c")  # refuses arrays NumPy cannot read as they are
        bits = bfloat16_bits(x)
        array = numpy.asarray(x) if bits is None else bits
        self._check_last_axis(array, name)
        if array.shape != z.shape:
            raise ValueError(f"{name} must have the shape of z, {z.shape}, got {array.shape}")
        if array.dtype != z.dtype:
            if z.dtype == _U16:  # 16-bit storage: bits of another type cannot be converted
                raise TypeError(f"{name} must be uint16 bits of z's storage, got {array.dtype}")
            _float_dtype(array.dtype, name)  # refuses complex & co. rather than drop parts
        return _as_c(array, z.dtype)

    def _labels(
        self, x: object, name: str, z: numpy.ndarray, ignore_index: int | None = None
    ) -> numpy.ndarray:
        if (
            type(x) is numpy.ndarray
            and x.dtype == _I64
            and x.flags.carray
            and x.shape == z.shape[:-1]
        ):
            return self._check_range(x, name, ignore_index)
        is_tensor(x, name, "c")
        array = numpy.asarray(x)
        if array.dtype.kind not in "iu":
            raise TypeError(f"{name} must be integer class indices, got {array.dtype}")
        if array.shape != z.shape[:-1]:
            raise ValueError(
                f"{name} must have shape {z.shape[:-1]} (one class index per row of z), "
                f"got {array.shape}"
            )
        return self._check_range(_as_c(array, _I64), name, ignore_index)

    def _check_range(
        self, labels: numpy.ndarray, name: str, ignore_index: int | None
    ) -> numpy.ndarray:
        """IndexError for a label outside 0..K-1 other than ignore_index, as the NumPy and
        array-API modules raise (the C kernels would give that row NaN)."""
        if labels.size and (labels.min() < 0 or labels.max() >= self.k):
            kept = labels if ignore_index is None else labels[labels != ignore_index]
            if kept.size and (kept.min() < 0 or kept.max() >= self.k):
                raise IndexError(f"{name} must be class indices in 0..{self.k - 1}")
        return labels

    def _in_float32(
        self,
        call: Callable[..., Any],
        key: object,
        z: numpy.ndarray,
        inputs: dict[str, object],
        options: dict[str, object],
        threads: int | None,
        tensors: bool,
        given: Any,
        storage: str | None,
    ) -> Any:
        """call with options on 16-bit z (bits or float16, key its storage) and its other
        inputs: computed by the float32 kernels on the values widened exactly, each result
        rounded once to z's storage, and returned as the 16-bit kernels return theirs."""
        widened = {
            name: float32_from_storage(self._floats(x, name, z), key)
            if _converter(name) == "float"
            else x
            for name, x in inputs.items()
        }
        result = call(float32_from_storage(z, key), **widened, **options, threads=threads)
        results = result if type(result) is tuple else (result,)
        rounded = tuple(storage_from_float32(r, key)[()] for r in results)
        rounded_result = rounded if type(result) is tuple else rounded[0]
        if tensors:
            return to_tensor(rounded_result, given.dtype)
        if type(key) is str and storage is None:  # bfloat16 values in: the same type out
            return _bits_as(rounded_result, given.dtype)
        return rounded_result

    def _check_last_axis(self, array: numpy.ndarray, name: str) -> None:
        if array.ndim == 0 or array.shape[-1] != self.k:
            raise ValueError(
                f"{name} must have shape (..., {self.k}) for K={self.k}, got shape {array.shape}"
            )


def _bits_as(result: Any, dtype: numpy.dtype) -> Any:
    """uint16 results as arrays of dtype (ml_dtypes' bfloat16: the caller's type)."""
    if isinstance(result, tuple):
        return tuple(r.view(dtype) for r in result)
    return result.view(dtype)


class _Kernels(dict):
    """The C functions of one member by key (dtype or storage name); a missing key is a
    TypeError that names what is available."""

    def __init__(self, name: str, functions: dict[object, tuple[Any, list[Any]]], why: str) -> None:
        super().__init__(functions)
        self.name, self.why = name, why

    def __missing__(self, key: object) -> None:
        raise TypeError(f"{self.name} has no kernel for {key} ({self.why})")
