"""Speed of the emitted kernels against NumPy, SciPy, PyTorch and JAX: ns per element.

    python benchmarks/bench_kernels.py                       # K = 3, 10, 32, 128, 1000
    python benchmarks/bench_kernels.py --ks 3,10 --quick     # a smoke run

One core: the process is pinned to one CPU before the libraries start their thread pools (XLA
otherwise ran its elementwise loops on both cores of this machine whatever its flags said, which
halved JAX's times), PyTorch is told to use one thread, and the table's header reports the
largest CPU time / wall time seen, which is above 1 only if something ran in parallel. Run on
a quiet machine. Batches of --elements values per array (2^22: 32 MiB of float64, larger than
the caches), medians of --repeats calls (the bounds and the emitted C called in turn, round
after round; the others one after the other).
The C is compiled by cc with --cflags (default: strict C99 at -O3 -march=native, 256-bit
vectors), never with -ffast-math, and by clang too when installed (one more row). Rows: the
emitted C (called once on the whole batch into preallocated arrays, as from C, so neither call
overhead nor allocation counts; and once more through symsoft.load, which allocates its result
as the Python libraries do), the emitted NumPy module, a hand-written NumPy softmax,
scipy.special.softmax, torch.softmax and jax.jit(jax.nn.softmax) when installed
(`pip install -e '.[bench]'`), and the bounds: a plain copy, NumPy's exp and the kernels' own
exp alone over the array (of z - max z, the kernels' exp's domain). The same for the
cross-entropy gradient, where the others compute softmax(z) - y (labels on the simplex) and
the emitted kernels s * sum(y) - y, alone and fused with the loss.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# one core for the libraries that would use more; must be set before they are imported, since
# XLA and OpenMP size their thread pools by the CPUs the process may run on
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy
import scipy.special

from symsoft.pipeline import prove, render_all
from symsoft.runtime.build import STRICT_FLAGS, compile_shared, load_library
from symsoft.runtime.load import load
from symsoft.spec import make_spec
from symsoft.writer import write_files

DEFAULT_CFLAGS = "-O3 -march=native -mprefer-vector-width=256"
EXP_SHIM = """\
#include "softmax_k{k}.c"

void exp_f64(const double *x, double *y, size_t n)
{{
    for (size_t i = 0; i < n; ++i) {{
        y[i] = symsoft_exp_scaled_f64(x[i]) * 0x1p-64;
    }}
}}

void exp_f32(const float *x, float *y, size_t n)
{{
    for (size_t i = 0; i < n; ++i) {{
        y[i] = symsoft_exp_scaled_f32(x[i]) * 0x1p-32F;
    }}
}}
"""

Timed = Callable[[], object]


def interleaved_medians(
    functions: dict[object, Timed], repeats: int
) -> dict[object, tuple[float, float, float]]:
    """Each function's median wall time of a call, and the wall and CPU time (of all the
    process's threads) its calls took in all. The functions are called in turn, `repeats`
    rounds: a change in the shared machine's speed then slows them alike, and their ratios
    (the emitted C against the exp alone, say) hold better than timed one after the other."""
    for function in functions.values():
        function()  # warm up: first-touch page faults, JIT compilation
    times: dict[object, list[float]] = {key: [] for key in functions}
    cpu = dict.fromkeys(functions, 0.0)
    for _ in range(repeats):
        for key, function in functions.items():
            cpu_started = time.process_time()
            start = time.perf_counter()
            function()
            times[key].append(time.perf_counter() - start)
            cpu[key] += time.process_time() - cpu_started
    return {key: (statistics.median(t), sum(t), cpu[key]) for key, t in times.items()}


def load_emitted(k: int, folder: Path, cflags: tuple[str, ...]):
    write_files(folder, render_all(prove(make_spec(k), ["numpy", "c"]), ["numpy", "c"]), force=True)
    spec = importlib.util.spec_from_file_location(f"softmax_k{k}", folder / f"softmax_k{k}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    flags = (*(f for f in STRICT_FLAGS if not f.startswith("-O")), *cflags)
    library = load_library(compile_shared(folder / f"softmax_k{k}.c", folder / "k.so", flags=flags))
    shim = folder / "exp_shim.c"
    shim.write_text(EXP_SHIM.format(k=k))
    exp_library = load_library(
        compile_shared(shim, folder / "exp.so", flags=flags, extra=(f"-I{folder}",))
    )
    clang = shutil.which("clang")  # the other compiler users have: its row, when installed
    clang_library = clang and load_library(
        compile_shared(folder / f"softmax_k{k}.c", folder / "clang.so", compiler=clang, flags=flags)
    )
    # symsoft.load builds its own library (flags: symsoft/runtime/load.py), as a Python user gets it
    return module, load(k), library, exp_library, clang_library


def c_call(library: ctypes.CDLL, name: str, *arrays: numpy.ndarray, count: int) -> Timed:
    """library's name_f64/_f32(*arrays, count) into preallocated arrays: what a C caller pays."""
    double = arrays[0].dtype == numpy.float64
    ctype = ctypes.c_double if double else ctypes.c_float
    function = getattr(library, f"{name}_{'f64' if double else 'f32'}")
    function.argtypes = [ctypes.POINTER(ctype)] * len(arrays) + [ctypes.c_size_t]
    pointers = [a.ctypes.data_as(ctypes.POINTER(ctype)) for a in arrays]
    return lambda: function(*pointers, count)


def hand_softmax(z: numpy.ndarray) -> numpy.ndarray:
    e = numpy.exp(z - z.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e


def optional_libraries() -> dict[str, object]:
    found: dict[str, object] = {}
    try:
        import torch

        torch.set_num_threads(1)
        found["torch"] = torch
    except ImportError:
        pass
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        found["jax"] = jax
    except ImportError:
        pass
    return found


def contenders(
    k: int, z: numpy.ndarray, y: numpy.ndarray, emitted, libraries: dict[str, object]
) -> tuple[dict[str, Timed], dict[str, Timed], dict[str, Timed]]:
    """(bounds, softmax, cross-entropy gradient) functions for one K and dtype."""
    module, kernels, library, exp_library, clang_library = emitted
    rows = z.shape[0]
    out, loss = numpy.empty_like(z), numpy.empty(rows, z.dtype)
    shifted = z - z.max(axis=-1, keepdims=True)  # the kernels' exp takes z_i - max z <= 0
    bounds = {
        "copy": lambda: numpy.copyto(out, z),
        "exp alone, NumPy": lambda: numpy.exp(shifted, out=out),
        "exp alone, emitted C exp": c_call(exp_library, "exp", shifted, out, count=z.size),
    }
    softmax = {
        "emitted C": c_call(library, f"softmax_k{k}", z, out, count=rows),
        "emitted C via symsoft.load (allocates s)": lambda: kernels.softmax(z),
        **(
            {"emitted C, clang": c_call(clang_library, f"softmax_k{k}", z, out, count=rows)}
            if clang_library
            else {}
        ),
        "emitted NumPy": lambda: module.softmax(z),
        "hand-written NumPy": lambda: hand_softmax(z),
        "scipy.special.softmax": lambda: scipy.special.softmax(z, axis=-1),
    }
    gradient = {
        "emitted C": c_call(library, f"cross_entropy_grad_k{k}", z, y, out, count=rows),
        "emitted C, fused with loss": c_call(
            library, f"cross_entropy_with_grad_k{k}", z, y, loss, out, count=rows
        ),
        "emitted C via symsoft.load (allocates the gradient)": lambda: kernels.cross_entropy_grad(
            z, y
        ),
        "emitted NumPy": lambda: module.cross_entropy_grad(z, y),
        "hand-written NumPy": lambda: hand_softmax(z) - y,
        "scipy.special.softmax": lambda: scipy.special.softmax(z, axis=-1) - y,
    }
    if "torch" in libraries:
        torch = libraries["torch"]
        zt, yt = torch.from_numpy(z), torch.from_numpy(y)
        softmax["torch.softmax (1 thread)"] = lambda: torch.softmax(zt, dim=-1)
        gradient["torch.softmax (1 thread)"] = lambda: torch.softmax(zt, dim=-1) - yt
    if "jax" in libraries:
        jax = libraries["jax"]
        zj, yj = jax.device_put(z), jax.device_put(y)
        jax_softmax = jax.jit(jax.nn.softmax)
        jax_grad = jax.jit(jax.grad(lambda z, y: -(y * jax.nn.log_softmax(z)).sum()))
        softmax["jax.jit(jax.nn.softmax)"] = lambda: jax_softmax(zj).block_until_ready()
        gradient["jax.jit(jax.grad(loss))"] = lambda: jax_grad(zj, yj).block_until_ready()
    return bounds, softmax, gradient


def table(title: str, results: dict[str, dict[tuple[int, str], float]], ks, dtypes) -> str:
    columns = [(k, d) for d in dtypes for k in ks]
    head = "| " + title + " | " + " | ".join(f"K={k} {d[5:]}" for k, d in columns) + " |"
    lines = [head, "|---" * (len(columns) + 1) + "|"]
    for name, row in results.items():
        cells = [f"{row[c]:.2f}" if c in row else "-" for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio_table(
    title: str, results: dict[str, dict[tuple[int, str], float]], ks, dtypes, ours: str
) -> str:
    """How many times faster the emitted C is than each row (> 1: the emitted C wins)."""
    columns = [(k, d) for d in dtypes for k in ks]
    head = "| " + title + " | " + " | ".join(f"K={k} {d[5:]}" for k, d in columns) + " |"
    lines = [head, "|---" * (len(columns) + 1) + "|"]
    for name, row in results.items():
        if name == ours:
            continue
        cells = [
            f"{row[c] / results[ours][c]:.2f}" if c in row and c in results[ours] else "-"
            for c in columns
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", default="3,10,32,128,1000")
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--elements", type=int, default=1 << 22, help="values per array")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cflags", default=DEFAULT_CFLAGS)
    parser.add_argument("--quick", action="store_true", help="2^18 values, 3 repeats")
    args = parser.parse_args()
    if args.quick:
        args.elements, args.repeats = 1 << 18, 3
    ks = [int(k) for k in args.ks.split(",")]
    dtypes = args.dtypes.split(",")
    libraries = optional_libraries()
    bounds: dict[str, dict] = {}
    softmax: dict[str, dict] = {}
    gradient: dict[str, dict] = {}
    # wall and CPU time per contender: CPU time above wall time means it ran in parallel
    # (summed over all its calls: the CPU time of other threads is counted in clock ticks)
    time_taken: dict[str, list[float]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for k in ks:
            emitted = load_emitted(k, Path(tmp) / f"k{k}", tuple(args.cflags.split()))
            rows = args.elements // k
            rng = numpy.random.default_rng(k)
            for dtype in dtypes:
                z = (rng.normal(size=(rows, k)) * 3).astype(dtype)
                y = rng.random((rows, k))
                y = (y / y.sum(axis=-1, keepdims=True)).astype(dtype)
                stores = (bounds, softmax, gradient)
                groups = contenders(k, z, y, emitted, libraries)
                calls = {
                    (store, name): function
                    for store, functions in enumerate(groups)
                    for name, function in functions.items()
                }
                # the bounds and the emitted C in turn (their ratios are the targets); the
                # others one after the other, as they run best (interleaved, allocating
                # libraries paid for the others' memory traffic: JAX float32 K = 128 1.5x)
                together = [key for key in calls if key[0] == 0 or key[1] == "emitted C"]
                measured = interleaved_medians({key: calls[key] for key in together}, args.repeats)
                for key in calls:
                    if key not in measured:
                        measured |= interleaved_medians({key: calls[key]}, args.repeats)
                for store, name in calls:  # in the contenders' order: the tables' rows
                    seconds, wall, cpu = measured[(store, name)]
                    stores[store].setdefault(name, {})[(k, dtype)] = seconds * 1e9 / z.size
                    totals = time_taken.setdefault(name, [0.0, 0.0])
                    totals[0] += wall
                    totals[1] += cpu
                print(f"K={k} {dtype} done", file=sys.stderr, flush=True)
    compiler = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout
    print(f"# ns per element (median of {args.repeats}), {args.elements} values per array\n")
    print(f"- command: `python {' '.join(sys.argv)}`")
    print(f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor()}")
    print(f"- C: `cc {args.cflags}` with the strict flags; {compiler.splitlines()[0]}")
    if shutil.which("clang"):
        clang = subprocess.run(["clang", "--version"], capture_output=True, text=True).stdout
        print(f"- clang row: the same flags; {clang.splitlines()[0]}")
    versions = [f"numpy {numpy.__version__}", f"scipy {scipy.__version__}"]
    versions += [f"{name} {lib.__version__}" for name, lib in libraries.items()]
    print(f"- libraries: {', '.join(versions)}")
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "all"
    parallelism, busiest = max((cpu / wall, name) for name, (wall, cpu) in time_taken.items())
    print(
        f"- one core (CPUs the process may use: {cpus}); CPU time / wall time at most "
        f"{parallelism:.2f} ({busiest})"
    )
    print(f"- wall time of the run: {time.perf_counter() - started:.0f} s\n")
    print("## Bounds\n")
    print(table("ns/element", bounds, ks, dtypes) + "\n")
    print("## Softmax\n")
    print(table("ns/element", softmax, ks, dtypes) + "\n")
    print("Times slower than the emitted C (same run):\n")
    print(ratio_table("ratio", softmax, ks, dtypes, "emitted C") + "\n")
    exp_c = bounds["exp alone, emitted C exp"]
    ours = softmax["emitted C"]
    print(
        "Emitted C softmax / the C exp alone: "
        + ", ".join(f"K={k} {d[5:]} {ours[(k, d)] / exp_c[(k, d)]:.2f}" for d in dtypes for k in ks)
        + "\n"
    )
    print("## Cross-entropy gradient\n")
    print(table("ns/element", gradient, ks, dtypes) + "\n")
    print("Times slower than the emitted C (same run):\n")
    print(ratio_table("ratio", gradient, ks, dtypes, "emitted C") + "\n")


if __name__ == "__main__":
    main()
