"""The training step, loss and gradient for integer labels: symsoft beside PyTorch and JAX.

    python benchmarks/bench_training.py                      # K = 3, 10, 32, 128, 1000
    python benchmarks/bench_training.py --ks 3,10 --quick    # a smoke run

Contenders, each on a batch of --elements values (z of shape (elements / K, K)) with integer
labels, in float32, float64 and bf16:
- symsoft: `symsoft.load(K).cross_entropy_with_grad_index(z, labels)` (per-row losses and the
  gradient; bf16 through storage="bf16" on uint16 views of the torch tensor);
- torch: `F.cross_entropy(z, labels, reduction="sum").backward()` on a leaf tensor (the loss
  and z.grad, the same gradient);
- JAX: `jax.jit(jax.value_and_grad(loss))` with loss = the sum of -log_softmax(z)[label].

Two processes, one after the other, each measuring the contenders one after the other
(median of --repeats calls each), so that each ratio comes from one process and one run:
- "one core": pinned to one CPU before torch and JAX start their thread pools, torch on one
  thread, XLA's Eigen pool off, symsoft threads=1;
- "all cores": every CPU the process may use, torch and JAX at their default threads,
  symsoft at its default (all), and symsoft threads=1 beside it.
The machine's load average is printed before and after: on a shared machine the "all cores"
rows are only as good as the cores were free.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

DTYPES = ("float32", "float64", "bf16")


def loadavg() -> str:
    path = Path("/proc/loadavg")
    return " ".join(path.read_text().split()[:3]) if path.exists() else "-"


def measure(mode: str, ks: list[int], elements: int, repeats: int) -> dict[str, float]:
    """ns per value of each contender, keyed "K dtype contender"."""
    if mode == "one":
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
        os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false"
        os.environ["OMP_NUM_THREADS"] = "1"
    import jax
    import jax.numpy as jnp
    import numpy
    import torch
    import torch.nn.functional as F

    import symsoft

    jax.config.update("jax_enable_x64", True)
    if mode == "one":
        torch.set_num_threads(1)
    threads = torch.get_num_threads()

    def jax_loss(z, labels):
        picked = jnp.take_along_axis(jax.nn.log_softmax(z), labels[:, None], axis=1)
        return -jnp.sum(picked)

    libraries = (numpy, torch, F, jax, jnp, jax.jit(jax.value_and_grad(jax_loss)), threads)
    results: dict[str, float] = {}
    for k in ks:
        kernels = symsoft.load(k)
        rows = elements // k
        rng = numpy.random.default_rng(k)
        base = rng.normal(size=(rows, k)) * 3
        labels = rng.integers(0, k, rows)
        for dtype in DTYPES:
            contenders = _contenders(mode, dtype, kernels, base, labels, libraries)
            times: dict[str, list[float]] = {name: [] for name in contenders}
            for name, function in contenders.items():
                function()  # warm up: compilation, first touch
                # one contender at a time, after a pause: interleaved, the thread pools of
                # the others (torch's OpenMP, XLA's, ours) still spun on the two cores after
                # their calls, and every threaded contender waited for its threads
                time.sleep(0.05)
                for _ in range(repeats):
                    start = time.perf_counter()
                    function()
                    times[name].append(time.perf_counter() - start)
            for name, t in times.items():
                results[f"{k} {dtype} {name}"] = statistics.median(t) * 1e9 / (rows * k)
            print(f"{mode}: K={k} {dtype} done", file=sys.stderr, flush=True)
    return results


def _contenders(mode, dtype, kernels, base, labels, libraries) -> dict:
    """The functions timed for one K and dtype (closures over this call's arrays)."""
    numpy, torch, F, jax, jnp, jax_step, threads = libraries
    labels_t, labels_j = torch.from_numpy(labels), jax.device_put(labels)
    torch_dtype = {"float32": torch.float32, "float64": torch.float64}.get(dtype, torch.bfloat16)
    zt = torch.from_numpy(base).to(torch_dtype).contiguous()
    zj = jax.device_put(jnp.asarray(base, dtype=jnp.bfloat16 if dtype == "bf16" else dtype))

    def torch_step():
        leaf = zt.detach().requires_grad_()
        F.cross_entropy(leaf, labels_t, reduction="sum").backward()
        return leaf.grad

    if dtype == "bf16":  # the tensor's bits, no copy
        z, storage = zt.view(torch.int16).numpy().view(numpy.uint16), "bf16"
    else:
        z, storage = zt.numpy(), None

    def ours(threads=None):
        return kernels.cross_entropy_with_grad_index(z, labels, threads=threads, storage=storage)

    contenders = {"symsoft, 1 thread": lambda: ours(1)}
    if mode == "all":
        contenders[f"symsoft, {kernels.threads} threads"] = ours
    contenders[f"torch F.cross_entropy fwd+bwd, {threads} thread(s)"] = torch_step
    jax_name = f"jax.value_and_grad, {'one core' if mode == 'one' else 'default'}"
    contenders[jax_name] = lambda: jax.block_until_ready(jax_step(zj, labels_j))
    return contenders


def tables(results: dict[str, float], ks: list[int]) -> str:
    names = list(dict.fromkeys(key.split(" ", 2)[2] for key in results))
    columns = [(k, d) for d in DTYPES for k in ks]
    head = "| ns per value | " + " | ".join(f"K={k} {d}" for k, d in columns) + " |"
    lines = [head, "|---" * (len(columns) + 1) + "|"]
    for name in names:
        cells = [f"{results.get(f'{k} {d} {name}', float('nan')):.2f}" for k, d in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    ours = [n for n in names if n.startswith("symsoft")][-1]  # all threads where measured
    lines += ["", f"Times slower than `{ours}` (same process, same run):", ""]
    lines += [head.replace("ns per value", "ratio"), lines[1]]
    for name in names:
        if name == ours:
            continue
        cells = [
            f"{results[f'{k} {d} {name}'] / results[f'{k} {d} {ours}']:.2f}" for k, d in columns
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", default="3,10,32,128,1000")
    parser.add_argument("--elements", type=int, default=1 << 21, help="values per batch")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="2^18 values, 3 repeats")
    parser.add_argument("--mode", choices=["one", "all"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.elements, args.repeats = 1 << 18, 3
    ks = [int(k) for k in args.ks.split(",")]
    if args.mode:  # a child: measure and hand back JSON
        print(json.dumps(measure(args.mode, ks, args.elements, args.repeats)))
        return
    before, started = loadavg(), time.perf_counter()
    runs = {}
    for mode in ("one", "all"):
        command = [sys.executable, __file__, "--mode", mode, "--ks", args.ks]
        command += ["--elements", str(args.elements), "--repeats", str(args.repeats)]
        output = subprocess.run(command, capture_output=True, text=True, check=True)
        runs[mode] = json.loads(output.stdout)
    after = loadavg()
    import torch

    print(f"# The training step: loss and gradient, integer labels (median of {args.repeats})\n")
    print(f"- command: `python {' '.join(sys.argv)}`")
    print(
        f"- {args.elements} values per batch; {platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} CPUs this process may use"
    )
    print(f"- torch {torch.__version__}; /proc/loadavg before {before}, after {after}")
    print(f"- wall time of the run: {time.perf_counter() - started:.0f} s\n")
    print("## One core\n\n" + tables(runs["one"], ks) + "\n")
    print("## All cores\n\n" + tables(runs["all"], ks) + "\n")


if __name__ == "__main__":
    main()
