"""Threads: the training step's kernel (cross_entropy_with_grad_index, float32) against the
number of threads and the batch size, and the crossover below which one thread is faster.

    python benchmarks/bench_threads.py                     # K = 3, 10, 128, 1000
    python benchmarks/bench_threads.py --ks 3 --quick

The emitted C is built like symsoft.load builds it (strict C99, -O3 -march=native, -fopenmp)
with -DPARALLEL_FROM=1, so that every call is shared among the threads it is given, and
called through ctypes on preallocated arrays, threads 1, 2, ... up to the CPUs the process may
use, each batch size in turn (round after round: a change in the shared machine's speed slows
them alike); best of --repeats rounds. The crossover is the smallest batch (values, n * K)
from which every larger one runs faster on all the threads than on one: the value
symsoft/emit/c.py's PARALLEL_FROM is set from.
"""

from __future__ import annotations

import argparse
import ctypes
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy

from symsoft.pipeline import prove, render_all
from symsoft.runtime.build import compile_shared, load_library
from symsoft.runtime.ckernels import CKernels, available_cpus
from symsoft.runtime.load import compile_flags, find_compiler
from symsoft.spec import make_spec
from symsoft.writer import write_files


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages (how busy the shared machine was), or "-"."""
    path = Path("/proc/loadavg")
    return " ".join(path.read_text().split()[:3]) if path.exists() else "-"


def build(k: int, folder: Path) -> CKernels:
    write_files(folder, render_all(prove(make_spec(k), ["c"]), ["c"]), force=True)
    compiler = find_compiler()
    flags = compile_flags(compiler)
    if "-fopenmp" not in flags:
        sys.exit(f"{compiler} does not build OpenMP libraries here: nothing to measure")
    library = compile_shared(
        folder / f"softmax_k{k}.c",
        folder / "k.so",
        compiler=compiler,
        flags=flags,
        extra=("-DPARALLEL_FROM=1",),
    )
    return CKernels(load_library(library), k)


def timed_call(kernels: CKernels, k: int, values: int, threads: int):
    rows = max(1, values // k)
    rng = numpy.random.default_rng(k)
    z = (rng.normal(size=(rows, k)) * 3).astype(numpy.float32)
    labels = rng.integers(0, k, rows)
    loss, grad = numpy.empty(rows, numpy.float32), numpy.empty_like(z)
    function = getattr(kernels.library, f"cross_entropy_with_grad_index_k{k}_f32")
    function.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_size_t]
    arrays = (z, labels, loss, grad)  # kept alive by the closure below
    pointers = [a.ctypes.data for a in arrays]
    calls = max(1, 2_000_000 // values)  # about 2e6 values a measurement

    def run() -> float:
        kernels._use_threads(threads)
        assert all(a.ctypes.data == p for a, p in zip(arrays, pointers, strict=True))
        start = time.perf_counter()
        for _ in range(calls):
            function(*pointers, rows)
        return (time.perf_counter() - start) / calls / (rows * k) * 1e9

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", default="3,10,128,1000")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 repeats")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    cpus = available_cpus()
    counts = list(range(1, cpus + 1))
    sizes = [2**e for e in range(10, 23)]  # values per call
    load_before = loadavg()
    started = time.perf_counter()
    results: dict[int, dict[tuple[int, int], float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in (int(k) for k in args.ks.split(",")):
            kernels = build(k, Path(tmp) / f"k{k}")
            runs = {(v, t): timed_call(kernels, k, v, t) for v in sizes if v >= k for t in counts}
            best = dict.fromkeys(runs, float("inf"))
            for _ in range(repeats):
                for key, run in runs.items():
                    best[key] = min(best[key], run())
            results[k] = best
            print(f"K={k} done", file=sys.stderr, flush=True)
    load_after = loadavg()
    print(f"# Threads: cross_entropy_with_grad_index, float32, ns per value (best of {repeats})\n")
    print(f"- command: `python {' '.join(sys.argv)}`")
    print(f"- machine: {platform.machine()}, {cpus} CPUs this process may use")
    print(f"- /proc/loadavg before {load_before}, after {load_after}")
    print(f"- wall time of the run: {time.perf_counter() - started:.0f} s\n")
    for k, best in results.items():
        print(f"## K = {k}\n")
        print(
            "| values per call | "
            + " | ".join(f"{t} thread{'s' * (t > 1)}" for t in counts)
            + f" | speed-up on {cpus} |"
        )
        print("|---" * (len(counts) + 2) + "|")
        crossover = None
        for v in sizes:
            if (v, 1) not in best:
                continue
            cells = [f"{best[(v, t)]:.3f}" for t in counts]
            speedup = best[(v, 1)] / best[(v, cpus)]
            print(f"| {v} | " + " | ".join(cells) + f" | {speedup:.2f} |")
            if speedup > 1 and crossover is None:
                crossover = v
            elif speedup <= 1:
                crossover = None
        print(f"\nCrossover (all larger batches faster on {cpus} threads): {crossover} values\n")


if __name__ == "__main__":
    main()
