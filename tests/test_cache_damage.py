"""A damaged cache never crashes the interpreter: truncated, zeroed or foreign libraries and
damaged sources are found before loading and rebuilt. Each load runs in a fresh process, as
a damaged library would kill the test process itself (SIGBUS, SIGSEGV)."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy
import pytest

from symsoft.runtime.load import source_key
from symsoft.spec import make_spec
from symsoft.stamp import is_unchanged_output
from tests.conftest import require_tool

K = 5
# softmax of z = [0, 1, 2, 3, 4] (NumPy formula, float64) and the row sums of the nan/zero
# policies on a fully masked row
LOAD = """
import json, sys, numpy, symsoft
k, policy, backend = int(sys.argv[1]), sys.argv[2], sys.argv[3]
kernels = symsoft.load(k, backend, masked_rows=policy)
z = numpy.arange(float(k))
masked = kernels.softmax(numpy.full(k, -numpy.inf))
print(json.dumps({"softmax": kernels.softmax(z).tolist(), "masked": masked.tolist()}))
"""


def load_in_a_process(
    cache: Path, k: int = K, policy: str = "nan", backend: str = "c"
) -> dict[str, list]:
    done = subprocess.run(
        [sys.executable, "-c", LOAD, str(k), policy, backend],
        env={**os.environ, "SYMSOFT_CACHE_DIR": str(cache)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr}"
    return json.loads(done.stdout)


def library(cache: Path, k: int = K, policy: str = "nan") -> Path:
    """The library in cache for (k, policy), told apart by what it gives for a masked row.

    A copy is loaded, never the file itself: the tests damage that file afterwards, and a
    library this process had mapped would then crash it (SIGBUS) when it is unloaded."""
    for path in sorted((cache / "lib").glob(f"softmax_k{k}-*.so")):
        copy = Path(tempfile.mkdtemp(prefix="symsoft-probe-")) / path.name
        shutil.copyfile(path, copy)
        function = getattr(ctypes.CDLL(str(copy)), f"softmax_k{k}_f64")
        z = numpy.full(k, -numpy.inf)
        s = numpy.empty(k)
        function(z.ctypes.data_as(ctypes.c_void_p), s.ctypes.data_as(ctypes.c_void_p), 1)
        if numpy.isnan(s).all() == (policy == "nan"):
            return path
    raise AssertionError(f"no library of policy {policy} for K={k} in {cache}")


def expected(k: int = K) -> list[float]:
    e = numpy.exp(numpy.arange(float(k)) - (k - 1))
    return (e / e.sum()).tolist()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding K = 5 (both policies) and K = 3, built once; tests damage copies."""
    require_tool("cc")
    cache = tmp_path_factory.mktemp("cache")
    # in one process: each process start costs a second
    build = (
        "import symsoft\n"
        "for k, policy in ((5, 'nan'), (5, 'zero'), (3, 'nan')):\n"
        "    symsoft.load(k, masked_rows=policy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", build],
        env={**os.environ, "SYMSOFT_CACHE_DIR": str(cache)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return cache


def truncate(fraction: float) -> Callable[[Path, Path], None]:
    def damage(path: Path, cache: Path) -> None:
        size = path.stat().st_size
        with path.open("r+b") as handle:
            handle.truncate(int(size * fraction))

    return damage


def zero_4k(path: Path, cache: Path) -> None:
    with path.open("r+b") as handle:
        handle.seek(path.stat().st_size // 2)
        handle.write(bytes(4096))


def other_k(path: Path, cache: Path) -> None:
    shutil.copyfile(library(cache, k=3), path)


def other_policy(path: Path, cache: Path) -> None:
    shutil.copyfile(library(cache, policy="zero"), path)


def other_policy_with_its_record(path: Path, cache: Path) -> None:
    other = library(cache, policy="zero")
    shutil.copyfile(other, path)
    shutil.copyfile(f"{other}.json", f"{path}.json")


@pytest.mark.parametrize(
    "damage",
    [truncate(0.5), truncate(0.9), zero_4k, other_k, other_policy, other_policy_with_its_record],
    ids=[
        "truncated-50%",
        "truncated-90%",
        "4KiB-zeroed",
        "other-K",
        "other-policy",
        "other-policy-and-record",
    ],
)
def test_a_damaged_or_foreign_library_is_rebuilt_not_loaded(built, tmp_path, damage):
    cache = tmp_path / "cache"
    shutil.copytree(built, cache, symlinks=True)
    path = library(cache)
    intact = path.read_bytes()
    damage(path, cache)
    result = load_in_a_process(cache)
    assert result["softmax"] == pytest.approx(expected(), rel=1e-15)
    assert all(value != value for value in result["masked"])  # NaN: the nan policy's library
    assert path.read_bytes() == intact  # rebuilt in place
    record = json.loads(Path(f"{path}.json").read_text())
    assert record["size"] == len(intact)


@pytest.mark.parametrize("name, backend", [("softmax_k5.c", "c"), ("softmax_k5.py", "numpy")])
def test_a_damaged_cached_source_is_regenerated(built, tmp_path, name, backend):
    cache = tmp_path / "cache"
    shutil.copytree(built, cache, symlinks=True)
    # the sources load(5) uses (c and numpy: the NumPy-only module, policy nan)
    source = cache / "src" / f"k{K}-{source_key(make_spec(K, numpy_only=True))[:32]}" / name
    source.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    for lib in (cache / "lib").glob(f"softmax_k{K}-*"):
        lib.unlink()  # so the C is compiled again, from the sources
    result = load_in_a_process(cache, backend=backend)
    assert result["softmax"] == pytest.approx(expected(), rel=1e-15)
    assert is_unchanged_output(source.read_bytes())
