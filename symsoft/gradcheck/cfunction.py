"""A C function as the checked function: compiled from a .c file or taken from a .so.

The signature convention is the emitted kernels' (T is float or double from --dtype, n the
number of rows, K fixed by -k):

    void fn(const T *z, const T *y, T *grad, size_t n)           cross-entropy
    void fn(const T *z, const int64_t *labels, T *grad, size_t n) ... with --labels index
    void fn(const T *z, T *jac, size_t n)                         softmax / log-softmax
    void fn(const T *z, const T *g, T *out, size_t n)             ... with --form vjp
"""

from __future__ import annotations

import ctypes
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from symsoft.gradcheck.errors import CheckUsageError
from symsoft.gradcheck.settings import Settings

C_SUFFIXES = (".c", ".so", ".dylib")


def signature(settings: Settings) -> str:
    t = "float" if settings.dtype == np.float32 else "double"
    if settings.vjp:
        return f"void fn(const {t} *z, const {t} *g, {t} *out, size_t n)"
    if settings.distillation:
        return f"void fn(const {t} *z_student, const {t} *z_teacher, {t} *grad, size_t n)"
    if settings.of == "logsumexp":
        return f"void fn(const {t} *z, {t} *grad, size_t n)"
    if settings.of == "cross_entropy_hessian":
        labels = "const int64_t *labels" if settings.index_labels else f"const {t} *y"
        return f"void fn(const {t} *z, {labels}, {t} *hess, size_t n)"
    if settings.jacobian:
        return f"void fn(const {t} *z, {t} *jac, size_t n)"
    if settings.index_labels:
        return f"void fn(const {t} *z, const int64_t *labels, {t} *grad, size_t n)"
    return f"void fn(const {t} *z, const {t} *y, {t} *grad, size_t n)"


def _compiler() -> str:
    candidates = [os.environ["CC"]] if os.environ.get("CC") else ["cc", "gcc", "clang"]
    for name in candidates:
        path = shutil.which(name)
        if path:
            return path
    raise CheckUsageError(f"no C compiler found (tried {', '.join(candidates)}); set CC")


def split_cflags(cflags: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return tuple(shlex.split(cflags)) if isinstance(cflags, str) else tuple(cflags)


def compile_c(source: Path, cflags: tuple[str, ...], folder: Path) -> Path:
    """source -> folder/lib.so; run from the source's folder, so relative -I paths and
    #include "x.h" resolve from there. The first error line becomes the usage error."""
    output = folder / f"{source.stem}.so"
    command = [_compiler(), "-O2", "-fPIC", "-shared", *cflags, str(source.resolve())]
    command += ["-o", str(output), "-lm"]
    result = subprocess.run(
        command, capture_output=True, text=True, check=False, cwd=source.resolve().parent
    )
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        errors = [line for line in lines if re.search(r"\berror\b", line)]
        first = (errors or lines or [""])[0]
        raise CheckUsageError(f"compiling {source.name} failed: {first.strip()}")
    return output


class CFunction:
    """Called like a Python gradient; the library is opened lazily (in the worker)."""

    def __init__(self, library: Path, name: str, settings: Settings, keep: object = None) -> None:
        self.library, self.name, self.settings = library, name, settings
        self._keep = keep  # the temporary folder of a compiled .c, alive as long as this is
        self._fn = None
        try:
            getattr(ctypes.CDLL(str(library)), name)  # fail now, as a usage error
        except OSError as exc:
            raise CheckUsageError(f"cannot load {library.name}: {exc}") from exc
        except AttributeError as exc:
            raise CheckUsageError(f"{library.name} has no function {name!r}") from exc

    def close(self) -> None:
        """Removes the compiled .c's temporary folder (a library already loaded stays mapped)."""
        if self._keep is not None:
            self._keep.cleanup()  # type: ignore[attr-defined]
            self._keep = None

    def __call__(self, z: np.ndarray, second: object = None) -> np.ndarray:
        st = self.settings
        if self._fn is None:
            self._fn = getattr(ctypes.CDLL(str(self.library)), self.name)
            self._fn.restype = None
        z = np.ascontiguousarray(z, dtype=st.dtype)
        rows = z.reshape(-1, st.k)
        n = rows.shape[0]
        out_shape = (n, st.k, st.k) if st.matrix else (n, st.k)
        out = np.zeros(out_shape, dtype=st.dtype)
        args: list[object] = [rows.ctypes.data_as(ctypes.c_void_p)]
        keep: list[np.ndarray] = [rows]
        if st.two_args:
            if st.index_labels:
                other = np.ascontiguousarray(np.reshape(second, -1), dtype=np.int64)
            else:
                other = np.ascontiguousarray(second, dtype=st.dtype).reshape(n, st.k)
            keep.append(other)
            args.append(other.ctypes.data_as(ctypes.c_void_p))
        args += [out.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(n)]
        self._fn(*args)
        return out if st.batched else out[0]


def load_c_function(target: str, settings: Settings, cflags: tuple[str, ...]) -> CFunction:
    path_text, _, name = target.rpartition(":")
    path = Path(path_text)
    if not path.is_file():
        raise CheckUsageError(f"no such file: {path}")
    if settings.array != "numpy":
        raise CheckUsageError("a C function takes plain memory: --array must be numpy")
    if path.suffix == ".c":
        folder = tempfile.TemporaryDirectory(prefix="symsoft-check-")
        library = compile_c(path, cflags, Path(folder.name))
        return CFunction(library, name, settings, folder)
    if cflags:
        raise CheckUsageError("--cflags is for a .c file; a library is already compiled")
    return CFunction(path.resolve(), name, settings)
