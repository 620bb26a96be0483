"""Shared fixtures: generate once per session, compile the emitted C with the real compiler."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import numpy
import pytest

from symsoft.emit.numpy import emit_numpy
from symsoft.pipeline import build_bundle, prove, render_all
from symsoft.runtime.build import compile_shared, load_library
from symsoft.runtime.ckernels import CKernels
from symsoft.spec import make_spec
from symsoft.writer import write_files

ON_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
_CACHE_DIR = "SYMSOFT_CACHE_DIR"


def pytest_configure(config: pytest.Config) -> None:
    """Every symsoft.load() of the session, in this process and in those the tests start
    (benchmark scripts, CLI runs), caches in a temporary folder, never in the user's cache.
    Set before collection, so that no import can see the user's setting."""
    config.stash[_saved_cache] = os.environ.get(_CACHE_DIR)
    os.environ[_CACHE_DIR] = tempfile.mkdtemp(prefix="symsoft-test-cache-")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(os.environ[_CACHE_DIR], ignore_errors=True)
    saved = config.stash.get(_saved_cache, None)
    if saved is None:
        os.environ.pop(_CACHE_DIR, None)
    else:
        os.environ[_CACHE_DIR] = saved


_saved_cache = pytest.StashKey[str | None]()


def require_tool(name: str) -> str:
    """Path of a required external tool: missing fails under CI, skips visibly elsewhere."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (.ci/run installs it)"
        if ON_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


class Generated:
    """The files symsoft emits for one K, written to a temporary folder."""

    def __init__(self, k: int, root: Path, masked_rows: str = "nan") -> None:
        self.k = k
        self.proved = prove(make_spec(k, masked_rows=masked_rows))
        self.bundle = self.proved.bundle
        self.files = render_all(self.proved)
        self.folder = root / f"k{k}-{masked_rows}"
        write_files(self.folder, self.files, force=False)
        # the --numpy-only variant of the Python module, from the same proved bundle
        only = emit_numpy(dataclasses.replace(self.bundle, numpy_only=True))
        write_files(self.folder / "numpy-only", only, force=False)
        self._modules: dict[Path, ModuleType] = {}
        self._c: CKernels | None = None

    def _import(self, folder: Path) -> ModuleType:
        if folder not in self._modules:
            name = f"softmax_k{self.k}"
            spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[f"_generated_{self.folder.name}_{folder.name}"] = module
            spec.loader.exec_module(module)
            self._modules[folder] = module
        return self._modules[folder]

    @property
    def numpy_module(self) -> ModuleType:
        """The default Python module, written against the array API."""
        return self._import(self.folder)

    @property
    def numpy_only_module(self) -> ModuleType:
        return self._import(self.folder / "numpy-only")

    def backend(self, name: str) -> ModuleType | CKernels:
        """The kernels behind a test's backend name: numpy, numpy-only or c."""
        if name == "c":
            return self.c
        return self.numpy_only_module if name == "numpy-only" else self.numpy_module

    @property
    def c(self) -> CKernels:
        """The emitted C, compiled with the strict flags, behind a NumPy-facing wrapper."""
        if self._c is None:
            source = self.folder / f"softmax_k{self.k}.c"
            library = compile_shared(
                source, self.folder / f"libsoftmax_k{self.k}.so", compiler=require_tool("cc")
            )
            self._c = CKernels(load_library(library), self.k)
        return self._c


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory):
    """generated(k, masked_rows) -> Generated, built once per option set for the session."""
    root = tmp_path_factory.mktemp("generated")
    cache: dict[tuple[int, str], Generated] = {}

    def get(k: int, masked_rows: str = "nan") -> Generated:
        if (k, masked_rows) not in cache:
            cache[(k, masked_rows)] = Generated(k, root, masked_rows)
        return cache[(k, masked_rows)]

    return get


@pytest.fixture(scope="session")
def bundle():
    """bundle(k) -> (Spec, Bundle) of the default options, derived and proved once per
    session (tests/test_document.py has its own, which adds a custom spec)."""
    cache: dict[int, tuple[object, object]] = {}

    def get(k: int = 3):
        if k not in cache:
            spec = make_spec(k)
            cache[k] = (spec, build_bundle(spec))
        return cache[k]

    return get


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: torch's threads only contend for the shared cores (45 ms a call, 1 ms
    on one thread). For a module: pytestmark = pytest.mark.usefixtures("one_torch_thread")."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def finite_masks(z: object, temperature: float = 1.0) -> numpy.ndarray:
    """-inf replaced by a logit so far below the row's maximum that exp of it (divided by the
    temperature) is exactly 0: torch's kl_div and soft-target losses compute 0 * (-inf) = NaN
    at masks, and the answer at every other entry does not change."""
    z = numpy.array(z, dtype=numpy.float64)
    for row in z.reshape(-1, z.shape[-1]):
        live = numpy.isfinite(row)
        row[~live] = row[live].max() - 1e5 * max(temperature, 1.0)
    return z
