"""Call emitted C kernels on NumPy arrays: shape and dtype checks, contiguous buffers."""

from __future__ import annotations

import ctypes

import numpy

from symsoft.emit.kernels import C_KERNELS, c_name

_SUFFIX = {numpy.dtype(numpy.float32): "f32", numpy.dtype(numpy.float64): "f64"}
_CTYPE = {"f32": ctypes.c_float, "f64": ctypes.c_double}


class CKernels:
    """The five kernels of one compiled softmax_k{K} library, taking arrays of shape (..., K).

    Inputs are converted to C-contiguous float32/float64 copies when they are not already
    (integers become float64); anything else is refused rather than read as garbage.
    """

    def __init__(self, library: ctypes.CDLL, k: int) -> None:
        self.k = k
        self._functions: dict[tuple[str, str], ctypes._CFuncPtr] = {}
        for suffix, ctype in _CTYPE.items():
            pointer = ctypes.POINTER(ctype)
            for kern in C_KERNELS:
                function = getattr(library, c_name(kern.name, k, suffix))
                inputs = 2 if "const T *y" in kern.params else 1
                function.argtypes = [pointer] * (inputs + 1) + [ctypes.c_size_t]
                function.restype = None
                self._functions[(kern.name, suffix)] = function

    def _array(self, x: object, name: str, dtype: numpy.dtype | None = None) -> numpy.ndarray:
        array = numpy.asarray(x)
        if dtype is None:
            if array.dtype.kind in "biu":
                array = array.astype(numpy.float64)
            elif array.dtype not in _SUFFIX:
                raise TypeError(f"{name} must be float32 or float64, got {array.dtype}")
            dtype = array.dtype
        if array.ndim == 0 or array.shape[-1] != self.k:
            raise ValueError(
                f"{name} must have shape (..., {self.k}) for K={self.k}, got shape {array.shape}"
            )
        return numpy.ascontiguousarray(array, dtype=dtype)

    def _call(self, name: str, out_shape: tuple[int, ...], *arrays: numpy.ndarray) -> numpy.ndarray:
        z = arrays[0]
        suffix = _SUFFIX[z.dtype]
        pointer = ctypes.POINTER(_CTYPE[suffix])
        out = numpy.empty(out_shape, dtype=z.dtype)
        rows = z.size // self.k
        args = [a.ctypes.data_as(pointer) for a in (*arrays, out)]
        self._functions[(name, suffix)](*args, rows)
        return out

    def _with_targets(self, z: object, y: object) -> tuple[numpy.ndarray, numpy.ndarray]:
        z_arr = self._array(z, "z")
        y_arr = self._array(y, "y", z_arr.dtype)
        if y_arr.shape != z_arr.shape:
            raise ValueError(f"y must have the shape of z, {z_arr.shape}, got {y_arr.shape}")
        return z_arr, y_arr

    def softmax(self, z: object) -> numpy.ndarray:
        z = self._array(z, "z")
        return self._call("softmax", z.shape, z)

    def log_softmax(self, z: object) -> numpy.ndarray:
        z = self._array(z, "z")
        return self._call("log_softmax", z.shape, z)

    def softmax_jacobian(self, z: object) -> numpy.ndarray:
        z = self._array(z, "z")
        return self._call("softmax_jacobian", (*z.shape, self.k), z)

    def cross_entropy(self, z: object, y: object) -> numpy.ndarray:
        z_arr, y_arr = self._with_targets(z, y)
        return self._call("cross_entropy", z_arr.shape[:-1], z_arr, y_arr)

    def cross_entropy_grad(self, z: object, y: object) -> numpy.ndarray:
        z_arr, y_arr = self._with_targets(z, y)
        return self._call("cross_entropy_grad", z_arr.shape, z_arr, y_arr)
