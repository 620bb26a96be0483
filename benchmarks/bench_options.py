"""The fused integer-label loss and gradient with options, beside PyTorch and JAX.

    python benchmarks/bench_options.py                 # K = 10, 128, 1000; 2^20 values
    python benchmarks/bench_options.py --ks 32 --values 4194304
    python benchmarks/bench_options.py --symsoft-only --best 31  # symsoft alone, threads

Optional and not part of the tests. Each row of the table is one call computing the mean
loss and its gradient with respect to the logits, for integer labels, with class weights,
ignore_index (1 row in 16 ignored), label smoothing 0.1, temperature 2 and z-loss 1e-4:

- symsoft C: `symsoft.load(K).cross_entropy_with_grad_index(z, labels, **options)` (the
  options path, allocates the gradient), and the same call without options (the plain kernel),
  each on 1 thread and on every CPU the process may use (`threads=`, `--threads`);
- torch (1 thread): `F.cross_entropy(z / T, labels, weight, ignore_index, label_smoothing)`
  plus the z-loss term, forward and backward (`torch.autograd.grad`);
- JAX (if installed): `jax.jit(jax.value_and_grad(loss))` of the same loss written with
  jax.nn.log_softmax.

ns per logit, median of 7 runs after a warm-up (or the best of --best N); the loss of each is
checked against symsoft's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import numpy

import symsoft
from symsoft.runtime.ckernels import available_cpus

EPS, T, LAM, IGNORE = 0.1, 2.0, 1e-4, -100


# --best N: the best of N calls instead of the median of 7 (symsoft's calls in rounds); on a
# shared machine a call on 2 threads often waits for a core another job holds, and the best
# shows what the threads do when both cores are free
BEST = 0


def _median_ns(call, values: int, repeat: int = 7) -> float:
    call()
    times = []
    for _ in range(BEST or repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return (min(times) if BEST else statistics.median(times)) / values * 1e9


def _symsoft_ns(calls: dict, values: int) -> dict[str, float]:
    """ns per value of each call: the median of 7 each, or with --best the best of N rounds
    that call each in turn (a change in the shared machine's load slows them alike)."""
    if not BEST:
        return {name: _median_ns(call, values) for name, call in calls.items()}
    best = dict.fromkeys(calls, float("inf"))
    for call in calls.values():
        call()
    for _ in range(BEST):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: seconds / values * 1e9 for name, seconds in best.items()}


def _inputs(k: int, values: int, dtype: type) -> tuple:
    rng = numpy.random.default_rng(k)
    rows = values // k
    z = rng.normal(0, 3, (rows, k)).astype(dtype)
    labels = rng.integers(0, k, rows)
    labels[::16] = IGNORE
    weight = rng.uniform(0.5, 2, k).astype(dtype)
    return z, labels, weight


def bench(
    k: int, values: int, dtype: type, threads: list[int], libraries: bool = True
) -> dict[str, float]:
    z, labels, weight = _inputs(k, values, dtype)
    kernels = symsoft.load(k)
    options = dict(
        weight=weight,
        ignore_index=IGNORE,
        reduction="mean",
        label_smoothing=EPS,
        temperature=T,
        z_loss=LAM,
    )
    n = z.size
    # torch's float32 mean over 10^5 rows is off by about 2e-4 (symsoft's sums are compensated)
    rtol = 1e-9 if dtype == numpy.float64 else 1e-3
    ours = kernels.cross_entropy_with_grad_index(z, labels, **options)
    plain_labels = numpy.where(labels == IGNORE, 0, labels)
    if not kernels.openmp and max(threads) > 1:
        raise SystemExit("symsoft.load built these kernels without OpenMP: one thread only")
    calls = {}
    for t in threads:
        calls[f"symsoft C, options ({t} thread{'s' * (t > 1)})"] = lambda t=t: (
            kernels.cross_entropy_with_grad_index(z, labels, **options, threads=t)
        )
    for t in threads:
        calls[f"symsoft C, plain, no options ({t} thread{'s' * (t > 1)})"] = lambda t=t: (
            kernels.cross_entropy_with_grad_index(z, plain_labels, threads=t)
        )
    result = _symsoft_ns(calls, n)
    if not libraries:
        return result
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    zt, lt, wt = torch.from_numpy(z), torch.from_numpy(labels), torch.from_numpy(weight)
    kept = lt != IGNORE
    D = wt[lt.clamp(0, k - 1)][kept].sum()

    def torch_call():
        x = zt.detach().requires_grad_()
        q = x / T
        loss = F.cross_entropy(q, lt, weight=wt, ignore_index=IGNORE, label_smoothing=EPS)
        loss = loss + LAM * (torch.logsumexp(q, 1)[kept] ** 2).sum() / D
        (grad,) = torch.autograd.grad(loss, x)
        return loss, grad

    loss_t = float(torch_call()[0].detach())
    assert abs(loss_t - float(ours[0])) <= rtol * abs(loss_t), (loss_t, ours[0])
    result["torch F.cross_entropy fwd+bwd (1 thread)"] = _median_ns(torch_call, n)
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return result
    jax.config.update("jax_enable_x64", dtype == numpy.float64)
    zj, lj, wj = jnp.asarray(z), jnp.asarray(labels), jnp.asarray(weight)
    keep = lj != IGNORE
    safe = jnp.where(keep, lj, 0)

    def loss_j(x):
        q = x / T
        logp = jax.nn.log_softmax(q)
        lse = jax.scipy.special.logsumexp(q, axis=1)
        nll = -jnp.take_along_axis(logp, safe[:, None], 1)[:, 0] * wj[safe]
        smooth = -(logp * wj).sum(1)
        rows = (1 - EPS) * nll + EPS / k * smooth + LAM * lse**2
        return jnp.where(keep, rows, 0).sum() / jnp.where(keep, wj[safe], 0).sum()

    step = jax.jit(jax.value_and_grad(loss_j))
    loss_jax = float(step(zj)[0])
    assert abs(loss_jax - float(ours[0])) <= rtol * abs(loss_jax), (loss_jax, ours[0])
    result["jax.jit(jax.value_and_grad)"] = _median_ns(lambda: jax.block_until_ready(step(zj)), n)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", default="10,128,1000")
    parser.add_argument("--values", type=int, default=1 << 20)
    parser.add_argument(
        "--threads", default=f"1,{available_cpus()}", help="symsoft's thread counts"
    )
    parser.add_argument("--symsoft-only", action="store_true", help="no torch or JAX rows")
    parser.add_argument("--best", type=int, default=0, help="best of N calls, not median of 7")
    args = parser.parse_args()
    global BEST
    BEST = args.best
    ks = [int(k) for k in args.ks.split(",")]
    threads = sorted({int(t) for t in args.threads.split(",")})
    columns = [(k, dtype) for dtype in (numpy.float64, numpy.float32) for k in ks]
    table: dict[str, list[float]] = {}
    for k, dtype in columns:
        for name, ns in bench(k, args.values, dtype, threads, not args.symsoft_only).items():
            table.setdefault(name, []).append(ns)
    header = [f"K={k} {numpy.dtype(d).itemsize * 8}" for k, d in columns]
    print("| ns/logit | " + " | ".join(header) + " |")
    print("|---" * (len(header) + 1) + "|")
    for name, row in table.items():
        print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in row) + " |")


if __name__ == "__main__":
    main()
