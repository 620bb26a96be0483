"""Cost of symsoft.load() (first use, cache hit) and of one kernel call, C vs NumPy vs SciPy
(and the array-API module, on NumPy arrays and on torch tensors when torch is installed).

    python benchmarks/bench_overhead.py            # K=3, a fresh temporary cache
    python benchmarks/bench_overhead.py -k 10 --cache-dir ~/.cache/symsoft

Single-threaded (the thread-count variables are set before NumPy is imported). Each figure is
the best of several timeit repeats, in nanoseconds per call (load times in milliseconds).
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import ctypes  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import timeit  # noqa: E402
from collections.abc import Callable  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy  # noqa: E402
import scipy.special  # noqa: E402

# what a child process times: load() alone, after the interpreter and NumPy are up
_TIME_LOAD = """
import sys, time
import numpy
from symsoft.runtime.load import load
start = time.perf_counter()
kernels = load({k}, backend={backend!r})
first = time.perf_counter() - start
start = time.perf_counter()
load({k}, backend={backend!r})
print(first, time.perf_counter() - start)
"""


def load_times(k: int, backend: str, cache: Path) -> tuple[float, float]:
    """(seconds for load() in a new process, seconds for a repeated load() in that process)."""
    code = _TIME_LOAD.format(k=k, backend=backend)
    env = {**os.environ, "SYMSOFT_CACHE_DIR": str(cache)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    first, again = result.stdout.split()
    return float(first), float(again)


def best_ns(cases: dict[str, Callable[[], object]], rounds: int = 9) -> dict[str, float]:
    """Best time per call of each case; rounds interleave the cases so that a busy machine
    slows them all alike rather than whichever ran at the wrong moment."""
    numbers = {name: timeit.Timer(call).autorange()[0] for name, call in cases.items()}
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(rounds):
        for name, call in cases.items():
            seconds = timeit.timeit(call, number=numbers[name]) / numbers[name]
            best[name] = min(best[name], seconds * 1e9)
    return best


def bare_call(kernels_path: Path, k: int) -> Callable[[numpy.ndarray], numpy.ndarray]:
    """softmax through ctypes with nothing else: no checks, the floor for any binding."""
    library = ctypes.CDLL(str(kernels_path))
    function = library[f"softmax_k{k}_f64"]
    pointer = ctypes.POINTER(ctypes.c_double)
    function.argtypes, function.restype = [pointer, pointer, ctypes.c_size_t], None
    double = ctypes.c_double

    def softmax(z: numpy.ndarray) -> numpy.ndarray:
        out = numpy.empty(z.shape, z.dtype)
        function(double.from_buffer(z), double.from_buffer(out), z.size // k)
        return out

    return softmax


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, help="default: a fresh temporary folder")
    args = parser.parse_args()
    k = args.k
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache_dir or Path(tmp)
        warm = (cache / "lib").is_dir()
        print(f"K={k}, cache {cache}{' (already filled)' if warm else ' (empty)'}\n")
        print("| load() | ms |")
        print("|---|---|")
        first, again = load_times(k, "c", cache)
        label = "cache hit" if warm else "first use: generate + compile"
        print(f"| c, new process, {label} | {first * 1e3:.1f} |")
        second, _ = load_times(k, "c", cache)
        print(f"| c, new process, cache hit | {second * 1e3:.1f} |")
        print(f"| c, same process, again | {again * 1e3:.3f} |")
        numpy_first, _ = load_times(k, "numpy", cache)
        print(f"| numpy, new process, cache hit | {numpy_first * 1e3:.1f} |")

        os.environ["SYMSOFT_CACHE_DIR"] = str(cache)
        from symsoft.runtime.load import load

        c, py, xp = load(k, "c"), load(k, "numpy"), load(k, "array-api")
        bare = bare_call(next((cache / "lib").glob(f"softmax_k{k}-*")), k)
        rng = numpy.random.default_rng(0)
        cases: dict[str, tuple[Callable[[numpy.ndarray], object], type]] = {
            "softmax, c backend, float64": (c.softmax, float),
            "softmax, c backend, float32": (c.softmax, numpy.float32),
            "softmax, numpy backend, float64": (py.softmax, float),
            "softmax, array-api backend, NumPy float64": (xp.softmax, float),
            "scipy.special.softmax(z, axis=-1), float64": (
                lambda z: scipy.special.softmax(z, axis=-1),
                float,
            ),
            "softmax, bare ctypes call (the floor), float64": (bare, float),
            "cross_entropy(z, y), c backend, float64": (lambda z: c.cross_entropy(z, z), float),
            "cross_entropy(z, y), numpy backend, float64": (
                lambda z: py.cross_entropy(z, z),
                float,
            ),
        }
        try:
            import torch

            torch.set_num_threads(1)
            cases["softmax, array-api backend, torch float64"] = (
                lambda z: xp.softmax(torch.from_numpy(z)),
                float,
            )
            cases["torch.softmax(z, dim=-1), float64"] = (
                lambda z: torch.softmax(torch.from_numpy(z), dim=-1),
                float,
            )
        except ImportError:
            pass
        timings = {}
        for rows in (1, 1000):
            z = {
                dtype: rng.normal(size=(rows, k)).astype(dtype) for dtype in (float, numpy.float32)
            }
            calls = {name: partial(f, z[dtype]) for name, (f, dtype) in cases.items()}
            timings[rows] = best_ns(calls)
        print("\n| ns per call | 1 row | 1000 rows |")
        print("|---|---|---|")
        for name in cases:
            print(f"| {name} | {timings[1][name]:,.0f} | {timings[1000][name]:,.0f} |")


if __name__ == "__main__":
    main()
