"""Worst error of the emitted kernels against a 50-digit mpmath reference, per kernel and
dtype, in ulps and as a fraction of the error budget (see symsoft/runtime/accuracy.py).

    python benchmarks/accuracy.py -k 10 --rows 10000
"""

from __future__ import annotations

import argparse

import numpy

import symsoft
from symsoft.runtime.accuracy import measure, measure_family


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    kernels = {backend: symsoft.load(args.k, backend=backend) for backend in ("numpy", "c")}
    print(f"K={args.k}, {args.rows} rows per dtype\n")
    print("| backend | dtype | kernel | worst error (ulp) | worst error / budget |")
    print("|---|---|---|---|---|")
    for dtype in (numpy.float64, numpy.float32):
        for name, backend in kernels.items():
            # the later members' references cost more: at most 3000 rows of them
            family = measure_family(backend, args.k, dtype, min(args.rows, 3000))
            for m in [*measure(backend, args.k, dtype, args.rows), *family]:
                print(
                    f"| {name} | {m.dtype} | {m.kernel} | {m.worst_ulps:.3g} "
                    f"| {m.worst_fraction:.3f} |"
                )


if __name__ == "__main__":
    main()
