"""Speed of the C kernels beside softmax and the gradient (log-softmax, the losses alone, logsumexp,
the log-softmax products, distillation, the cross-entropy's Hessian and H v) beside PyTorch and
JAX doing the same: ns per logit.

    python benchmarks/bench_family.py                   # K = 3, 10, 100; float64 and float32
    python benchmarks/bench_family.py --ks 10 --quick   # a smoke run

One core, as benchmarks/bench_kernels.py (the process pinned to one CPU before the libraries
start, torch told to use one thread). Each operation is called on --elements logits per array
through what a Python user calls: the emitted C through symsoft.load (allocating its result, as
the libraries do), torch as its users write it (built-ins where they exist, else the formula on
whole tensors), and jax.jit of JAX's own functions and automatic differentiation (jax.grad,
jax.jvp, jax.hessian under jax.vmap). The three are timed in turn, round after round, and the
medians of --repeats calls reported; ratios are times slower than the emitted C in the same
run, which hold better than the absolute times on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy

import symsoft

T = 2.0  # the distillation temperature


def torch_calls(torch, z, t, y, v, labels) -> dict[str, Callable[[], object]]:
    F = torch.nn.functional
    zt, tt, yt, vt, lt = (torch.from_numpy(a) for a in (z, t, y, v, labels))

    def hessian():
        s = torch.softmax(zt, -1)
        h = torch.diag_embed(s) - s[..., :, None] * s[..., None, :]
        return yt.sum(-1)[..., None, None] * h

    def hvp():
        s = torch.softmax(zt, -1)
        return yt.sum(-1, keepdim=True) * s * (vt - (s * vt).sum(-1, keepdim=True))

    def distillation_grad():
        student = zt.detach().requires_grad_()
        loss = F.kl_div(
            F.log_softmax(student / T, -1),
            F.log_softmax(tt / T, -1),
            log_target=True,
            reduction="batchmean",
        )
        return torch.autograd.grad(loss * T**2, student)[0]

    return {
        "log_softmax": lambda: F.log_softmax(zt, -1),
        "cross_entropy_index": lambda: F.cross_entropy(zt, lt, reduction="none"),
        "cross_entropy": lambda: F.cross_entropy(zt, yt, reduction="none"),
        "logsumexp": lambda: torch.logsumexp(zt, -1),
        "log_softmax_vjp": lambda: vt - torch.softmax(zt, -1) * vt.sum(-1, keepdim=True),
        "log_softmax_jvp": lambda: vt - (torch.softmax(zt, -1) * vt).sum(-1, keepdim=True),
        "distillation_kl": lambda: (
            F.kl_div(
                F.log_softmax(zt / T, -1),
                F.log_softmax(tt / T, -1),
                log_target=True,
                reduction="batchmean",
            )
            * T**2
        ),
        "distillation_kl_grad": distillation_grad,
        "cross_entropy_hessian": hessian,
        "cross_entropy_hvp": hvp,
    }


def jax_calls(jax, z, t, y, v, labels) -> dict[str, Callable[[], object]]:
    jnp = jax.numpy
    zj, tj, yj, vj, lj = (jax.device_put(a) for a in (z, t, y, v, labels))

    def ce(a, b):
        return -jnp.sum(b * jax.nn.log_softmax(a))

    def kl(a, b):
        log_s, log_q = jax.nn.log_softmax(a / T, -1), jax.nn.log_softmax(b / T, -1)
        return T**2 * jnp.sum(jnp.exp(log_q) * (log_q - log_s)) / a.shape[0]

    def ce_index(a, c):
        return -jnp.take_along_axis(jax.nn.log_softmax(a), c[:, None], -1)[:, 0]

    functions = {
        "log_softmax": (lambda a: jax.nn.log_softmax(a, -1), (zj,)),
        "cross_entropy_index": (ce_index, (zj, lj)),
        "cross_entropy": (lambda a, b: -jnp.sum(b * jax.nn.log_softmax(a), -1), (zj, yj)),
        "logsumexp": (lambda a: jax.nn.logsumexp(a, axis=-1), (zj,)),
        "log_softmax_vjp": (
            lambda a, g: jax.vjp(lambda x: jax.nn.log_softmax(x, -1), a)[1](g)[0],
            (zj, vj),
        ),
        "log_softmax_jvp": (
            lambda a, w: jax.jvp(lambda x: jax.nn.log_softmax(x, -1), (a,), (w,))[1],
            (zj, vj),
        ),
        "distillation_kl": (kl, (zj, tj)),
        "distillation_kl_grad": (jax.grad(kl), (zj, tj)),
        "cross_entropy_hessian": (jax.vmap(jax.hessian(ce)), (zj, yj)),
        "cross_entropy_hvp": (
            jax.vmap(lambda a, b, w: jax.jvp(lambda x: jax.grad(ce)(x, b), (a,), (w,))[1]),
            (zj, yj, vj),
        ),
    }
    calls = {}
    for name, (function, args) in functions.items():
        compiled = jax.jit(function)
        calls[name] = lambda f=compiled, a=args: f(*a).block_until_ready()
    return calls


def c_calls(kern, z, t, y, v, labels) -> dict[str, Callable[[], object]]:
    return {
        "log_softmax": lambda: kern.log_softmax(z),
        "cross_entropy_index": lambda: kern.cross_entropy_index(z, labels),
        "cross_entropy": lambda: kern.cross_entropy(z, y),
        "logsumexp": lambda: kern.logsumexp(z),
        "log_softmax_vjp": lambda: kern.log_softmax_vjp(z, v),
        "log_softmax_jvp": lambda: kern.log_softmax_jvp(z, v),
        "distillation_kl": lambda: kern.distillation_kl(z, t, temperature=T),
        "distillation_kl_grad": lambda: kern.distillation_kl_grad(z, t, temperature=T),
        "cross_entropy_hessian": lambda: kern.cross_entropy_hessian(z, y),
        "cross_entropy_hvp": lambda: kern.cross_entropy_hvp(z, y, v),
    }


def medians(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    for call in calls.values():
        call()  # warm up: page faults, JIT compilation
    times: dict[str, list[float]] = {key: [] for key in calls}
    for _ in range(repeats):
        for key, call in calls.items():
            start = time.perf_counter()
            call()
            times[key].append(time.perf_counter() - start)
    return {key: statistics.median(t) for key, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", default="3,10,100")
    parser.add_argument("--elements", type=int, default=1 << 20)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="2^14 logits, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.elements, args.repeats = 1 << 14, 2
    import torch

    torch.set_num_threads(1)
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
    except ImportError:  # pip install jax jaxlib
        jax = None
    print(f"{args.elements} logits per array, medians of {args.repeats}; ns per logit")
    print("(times slower than the emitted C, measured in the same run)\n")
    print("| K | dtype | kernel | C (symsoft.load) | torch | JAX |")
    print("|---|---|---|---|---|---|")
    for k in (int(x) for x in args.ks.split(",")):
        kern = symsoft.load(k)
        rows = args.elements // k
        rng = numpy.random.default_rng(k)
        for dtype in (numpy.float64, numpy.float32):
            z, t, v = (rng.normal(size=(rows, k)).astype(dtype) * 3 for _ in range(3))
            y = rng.dirichlet(numpy.ones(k), size=rows).astype(dtype)
            labels = rng.integers(0, k, size=rows)
            for name in c_calls(kern, z, t, y, v, labels):
                # the Hessian writes K values per logit: at most 2^22 of them per call
                n = min(rows, (1 << 22) // (k * k)) if name == "cross_entropy_hessian" else rows
                data = (z[:n], t[:n], y[:n], v[:n], labels[:n])
                rounds = {"c": c_calls(kern, *data)[name], "torch": torch_calls(torch, *data)[name]}
                if jax is not None:
                    rounds["jax"] = jax_calls(jax, *data)[name]
                times = medians(rounds, args.repeats)
                ns = {key: 1e9 * value / (n * k) for key, value in times.items()}
                others = [
                    f"{ns[key]:.2f} ({ns[key] / ns['c']:.2f}x)" if key in ns else "-"
                    for key in ("torch", "jax")
                ]
                print(
                    f"| {k} | {numpy.dtype(dtype).name} | {name} | {ns['c']:.2f} | "
                    + " | ".join(others)
                    + " |"
                )


if __name__ == "__main__":
    main()
