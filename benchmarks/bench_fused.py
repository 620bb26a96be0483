"""Wall clock of the fused loss + gradient against the gradient alone, through symsoft.load.

    python benchmarks/bench_fused.py                 # K = 3, 10, 32, 128, 1000
    python benchmarks/bench_fused.py --ks 32 --rounds 11

ns per value, one thread pinned to the last CPU, best over --rounds rounds in which the four
kernels are called in turn (so that a change of the shared machine's speed moves them alike):
cross_entropy_grad and cross_entropy_with_grad (soft labels), cross_entropy_grad_index and
cross_entropy_with_grad_index (integer labels). "ratio" is fused / alone. The callgrind script
benchmarks/callgrind/fused.sh counts the same kernels' instructions, which repeat exactly;
these times include what instructions do not show (stalls, latency chains).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np


def best_times(
    calls: dict[str, Callable[[], object]], rounds: int, values: int
) -> dict[str, float]:
    """The best ns per value of each call, the calls made in turn round after round."""
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter_ns()
            call()
            best[name] = min(best[name], (time.perf_counter_ns() - start) / values)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", default="3,10,32,128,1000")
    parser.add_argument("--values", type=int, default=1 << 16, help="values per call")
    parser.add_argument("--rounds", type=int, default=41)
    args = parser.parse_args()
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    import symsoft

    loadavg = Path("/proc/loadavg")
    print(f"- load average before: {' '.join(loadavg.read_text().split()[:3])}")
    print(f"- {args.values} values per call, best of {args.rounds} rounds, one thread\n")
    print("| K | dtype | grad | with_grad | ratio | grad_index | with_grad_index | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for k in (int(k) for k in args.ks.split(",")):
        kernels = symsoft.load(k, threads=1)
        rows = max(1, args.values // k)
        for dtype in (np.float32, np.float64):
            z = rng.standard_normal((rows, k)).astype(dtype)
            y = rng.dirichlet(np.ones(k), rows).astype(dtype)
            labels = rng.integers(0, k, rows)
            t = best_times(
                {
                    "grad": partial(kernels.cross_entropy_grad, z, y),
                    "with_grad": partial(kernels.cross_entropy_with_grad, z, y),
                    "grad_index": partial(kernels.cross_entropy_grad_index, z, labels),
                    "with_grad_index": partial(kernels.cross_entropy_with_grad_index, z, labels),
                },
                args.rounds,
                rows * k,
            )
            print(
                f"| {k} | {np.dtype(dtype).name} | {t['grad']:.3f} | {t['with_grad']:.3f} "
                f"| {t['with_grad'] / t['grad']:.2f} | {t['grad_index']:.3f} "
                f"| {t['with_grad_index']:.3f} | {t['with_grad_index'] / t['grad_index']:.2f} |"
            )
    print(f"\n- load average after: {' '.join(loadavg.read_text().split()[:3])}")


if __name__ == "__main__":
    main()
