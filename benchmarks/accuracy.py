"""Worst error of the emitted kernels against a 50-digit mpmath reference, per kernel and
dtype, in ulps and as a fraction of the error budget (see symsoft/accuracy.py).

    python benchmarks/accuracy.py -k 10 --rows 10000
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
from pathlib import Path

import numpy

from symsoft.accuracy import measure
from symsoft.build import compile_shared, load_library
from symsoft.ckernels import CKernels
from symsoft.pipeline import build_bundle, render_all
from symsoft.spec import make_spec
from symsoft.writer import write_files


def backends(k: int, folder: Path) -> dict[str, object]:
    write_files(folder, render_all(build_bundle(make_spec(k)), ["numpy", "c"]), force=True)
    spec = importlib.util.spec_from_file_location("emitted", folder / f"softmax_k{k}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    library = compile_shared(folder / f"softmax_k{k}.c", folder / "kernels.so", extra=("-O3",))
    return {"numpy": module, "c": CKernels(load_library(library), k)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        kernels = backends(args.k, Path(tmp))
        print(f"K={args.k}, {args.rows} rows per dtype\n")
        print("| backend | dtype | kernel | worst error (ulp) | worst error / budget |")
        print("|---|---|---|---|---|")
        for dtype in (numpy.float64, numpy.float32):
            for name, backend in kernels.items():
                for m in measure(backend, args.k, dtype, args.rows):
                    print(
                        f"| {name} | {m.dtype} | {m.kernel} | {m.worst_ulps:.3g} "
                        f"| {m.worst_fraction:.3f} |"
                    )


if __name__ == "__main__":
    main()
