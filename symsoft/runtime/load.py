"""symsoft.load(k, backend): generated kernels one call away, built once and cached on disk."""

from __future__ import annotations

import ctypes
import dataclasses
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
from functools import cache
from pathlib import Path
from types import ModuleType

from symsoft.errors import SpecError, SymsoftError
from symsoft.family.members import stem
from symsoft.runtime.arrays import tensors_in_tensors_out
from symsoft.runtime.build import STRICT_FLAGS, compile_shared, find_compiler, load_library
from symsoft.runtime.cache import (
    ENV_VAR,
    cache_root,
    digest,
    is_intact,
    publish_recorded,
    staging_path,
)
from symsoft.runtime.ckernels import CKernels
from symsoft.spec import Spec, make_spec
from symsoft.stamp import is_unchanged_output
from symsoft.version import __version__

BACKENDS = ("c", "numpy", "array-api")
# STRICT_FLAGS (warnings are errors) at -O3. -ffp-contract=off: products and sums are fused
# only where the source says so (the exp's fma, on targets with a fast one), not at each
# compiler's whim (GCC's and Clang's defaults differ). Never -ffast-math: it drops NaN/inf.
C_FLAGS = (*STRICT_FLAGS, "-O3", "-ffp-contract=off")
# The library is built for the CPU it runs on (AVX2 and FMA here: 15-25 % faster than the
# x86-64 baseline, through symsoft.load at K = 3-1000), with 256-bit vectors where the compiler
# would pick 128 (gcc on AMD Zen 1: 10 % more at K >= 32). The first set the compiler accepts
# is used; the cache key holds the target it resolved, so a cache shared by several machines
# keeps one library per kind of CPU.
TARGET_FLAGS = (("-march=native", "-mprefer-vector-width=256"), ("-march=native",), ())
# OpenMP where the compiler has it (gcc's libgomp; clang needs libomp, e.g. libomp-14-dev):
# a call's blocks of rows are shared among threads (symsoft.load's threads=), with the same
# results as one thread. Without it the library is the plain C99 build.
OPENMP_FLAGS = ("-fopenmp",)
_OPENMP_PROBE = "#include <omp.h>\nint symsoft_probe(void) { return omp_get_max_threads(); }\n"
_TARGETS = ("c", "numpy")  # the emitters load() needs; LaTeX and vectors are not generated
_LIBRARY_SUFFIX = {"win32": ".dll", "darwin": ".dylib"}.get(sys.platform, ".so")

_loaded: dict[tuple[object, ...], CKernels | ModuleType] = {}
_loading = threading.Lock()  # threads asking for the same kernels build them once


def load(
    k: int,
    backend: str = "c",
    *,
    masked_rows: str = "nan",
    prefix: str = "",
    threads: int | None = None,
) -> CKernels | ModuleType:
    """The kernels for K classes, taking arrays of shape (..., K), float32 or float64 (and,
    backend="c", float16 and bf16/f16 bits: see CKernels).

    backend="c" compiles the emitted C with the system compiler ($CC, else cc/gcc/clang) on
    first use and returns a CKernels; backend="numpy" returns the emitted NumPy-only module
    and needs no compiler; backend="array-api" returns the emitted array-API module, which
    also takes PyTorch, JAX, CuPy and Dask arrays (it needs array_api_compat). Each has one
    function per kernel (see symsoft.family.members). masked_rows is the policy for rows whose
    logits are all -inf ("nan" or "zero", as --masked-rows); prefix, as --prefix, names the C
    symbols, files and module ({prefix}_softmax_k{K}).
    backend="c" builds with OpenMP where the compiler supports it: a call then uses `threads`
    threads (default: every CPU the process may use; each method also takes threads=) from
    a batch size on where that was measured to pay (below it, one thread), with the same
    results bit for bit; the C call releases the GIL.
    Generated source and libraries are cached under $SYMSOFT_CACHE_DIR (default: the user
    cache folder), so later calls, in this process or another, neither generate nor compile.

    Raises SpecError for a bad k, backend or option (before any work), and SymsoftError when
    no C compiler is found or compiling fails (with the compiler's message).
    """
    if backend not in BACKENDS:
        raise SpecError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    spec = make_spec(k, masked_rows=masked_rows, numpy_only=backend != "array-api", prefix=prefix)
    root = cache_root()
    compiler = _compiler(os.environ.get("CC"), os.environ.get("PATH")) if backend == "c" else ""
    key = (spec, backend, root, compiler)
    if key not in _loaded:
        with _loading:
            if key not in _loaded:
                _loaded[key] = _build(spec, backend, root, compiler)
    loaded = _loaded[key]
    if threads is not None:
        if not isinstance(loaded, CKernels):
            raise SpecError("threads= is an option of the C backend")
        return loaded.with_threads(threads)
    return loaded


def _build(spec: Spec, backend: str, root: Path, compiler: str) -> CKernels | ModuleType:
    sources = generated_sources(spec, root)
    base = stem(spec.k, spec.prefix)
    if backend == "array-api":
        return _import_module(sources / f"{base}.py")
    if backend == "numpy":  # CPU torch tensors in, tensors out, as from the other backends
        module = _import_module(sources / f"{base}.py")
        return tensors_in_tensors_out(module, tuple(module.__all__), backend)
    library = compiled_library(sources, base, compiler, root)
    return CKernels(_open_library(library), spec.k, spec.prefix)


def source_key(spec: Spec) -> str:
    """What the generated C and NumPy depend on: every Spec field (including options such as
    masked_rows), the symsoft version and its own code, so an edited checkout regenerates."""
    options = json.dumps(dataclasses.asdict(spec), sort_keys=True)
    return digest(__version__, _code_fingerprint(), options)


def library_key(source: bytes, header: bytes, compiler: str, flags: tuple[str, ...]) -> str:
    """What the compiled library depends on: the source, the compiler, how it was called and
    the target it resolved (its predefined macros, which name the CPU features it uses)."""
    machine = f"{sys.platform} {platform.machine()}"  # a shared home may serve several CPUs
    identity = _compiler_identity(compiler, flags)
    return digest(source, header, compiler, identity, " ".join(flags), machine)


def generated_sources(spec: Spec, root: Path) -> Path:
    """The folder holding softmax_k{K}.c/.h/.py for spec, generating them on first use."""
    folder = root / "src" / f"k{spec.k}-{source_key(spec)[:32]}"
    base = stem(spec.k, spec.prefix)
    names = [f"{base}.c", f"{base}.h", f"{base}.py"]
    # each file carries the digest of its content (symsoft.stamp): a damaged one is remade
    if not all(_is_intact_source(folder / name) for name in names):
        # imported here: SymPy takes a second to import, and a cache hit needs none of it
        from symsoft.pipeline import prove, render_all
        from symsoft.writer import write_files

        files = render_all(prove(spec, _TARGETS), _TARGETS)
        # every file is renamed into place whole, so a concurrent reader sees all or nothing
        write_files(folder, files, force=True)
    return folder


def compiled_library(sources: Path, base: str, compiler: str, root: Path) -> Path:
    """The shared library built from sources/{base}.c with compile_flags(), compiling on first
    use; base is the file stem, softmax_k{K} or {prefix}_softmax_k{K}."""
    source = sources / f"{base}.c"
    flags = compile_flags(compiler)
    key = library_key(source.read_bytes(), (sources / f"{base}.h").read_bytes(), compiler, flags)
    library = root / "lib" / f"{base}-{key[:32]}{_LIBRARY_SUFFIX}"
    # a missing, damaged or foreign library (size, hash or key not those recorded when it was
    # published) is rebuilt: loading it could crash the interpreter or compute the wrong thing
    if not is_intact(library, key):
        # compile beside the final name, then rename: concurrent builds never tear the file
        staged = staging_path(library)
        try:
            compile_shared(source, staged, compiler=compiler, flags=flags)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        publish_recorded(staged, library, key)
    return library


def _is_intact_source(path: Path) -> bool:
    try:
        return is_unchanged_output(path.read_bytes())
    except OSError:
        return False


def _open_library(path: Path) -> ctypes.CDLL:
    try:
        return load_library(path)
    except OSError as error:  # e.g. a cache folder shared with an incompatible system
        raise SymsoftError(
            f"cannot load the cached library {path}: {error}; delete it or set {ENV_VAR}"
        ) from error


def _import_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise SymsoftError(f"cannot import the generated module {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def _compiler(cc: str | None, path: str | None) -> str:
    """find_compiler() once per $CC and $PATH: its PATH search is most of a repeated load()."""
    return find_compiler()


@cache
def compile_flags(compiler: str) -> tuple[str, ...]:
    """C_FLAGS, the first of TARGET_FLAGS the compiler accepts and OPENMP_FLAGS if it builds
    and links an OpenMP library."""
    openmp = OPENMP_FLAGS if openmp_builds(compiler) else ()
    for target in TARGET_FLAGS[:-1]:
        if _predefined_macros(compiler, (*C_FLAGS, *target)).returncode == 0:
            return (*C_FLAGS, *target, *openmp)
    return (*C_FLAGS, *TARGET_FLAGS[-1], *openmp)


@cache
def openmp_builds(compiler: str) -> bool:
    """Whether compiler builds a shared library with OPENMP_FLAGS (header and runtime found)."""
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "probe.c"
        source.write_text(_OPENMP_PROBE)
        command = [compiler, *OPENMP_FLAGS, "-fPIC", "-shared", str(source)]
        command += ["-o", str(Path(folder) / "probe.so")]
        try:
            result = subprocess.run(command, capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return result.returncode == 0


@cache
def _compiler_identity(compiler: str, flags: tuple[str, ...]) -> str:
    """The resolved path and the macros the compiler predefines with flags: its version and
    the target's features, so a compiler upgrade or another CPU gets new libraries."""
    result = _predefined_macros(compiler, flags)
    return f"{os.path.realpath(compiler)}\n{result.stdout}{result.stderr}"


def _predefined_macros(compiler: str, flags: tuple[str, ...]) -> subprocess.CompletedProcess:
    command = [compiler, *flags, "-dM", "-E", "-x", "c", os.devnull]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SymsoftError(f"cannot run the C compiler {compiler}: {error}") from error


@cache
def _code_fingerprint() -> str:
    """A digest of symsoft's code and templates; read once per process (a few ms)."""
    package = Path(__file__).parents[1]
    # as render.templates_dir(), which cannot be imported here without paying for Jinja2
    templates = package / "templates"
    if not templates.is_dir():
        templates = package.parent / "templates"
    files = [(f"symsoft/{p.relative_to(package)}", p) for p in sorted(package.rglob("*.py"))]
    # rglob: the C template's parts sit in templates/c/
    files += [
        (f"templates/{p.relative_to(templates).as_posix()}", p)
        for p in sorted(templates.rglob("*.jinja"))
    ]
    return digest(*(part for name, path in files for part in (name, path.read_bytes())))
