"""Cost of `symsoft generate` as K grows: wall time, size of the emitted C, its compile time.

    python benchmarks/bench_generation.py            # K = 2, 3, 8, 32, 128, 512, 1024
    python benchmarks/bench_generation.py --quick    # K = 2, 3, 8, 32, 128
    python benchmarks/bench_generation.py -k 64,256
    python benchmarks/bench_generation.py --stages 1024   # seconds per stage, in process

Each K is generated with the default targets (everything, including the PDF when pdflatex is
installed) by `python -m symsoft generate` in a fresh process into a temporary folder, so the
time is what a user waits for, interpreter start-up included. The emitted softmax_k{K}.c is
then compiled to an object file with the strict flags of symsoft.build (-O2 among them).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from symsoft.runtime.build import STRICT_FLAGS, find_compiler

FULL = (2, 3, 8, 32, 128, 512, 1024)
QUICK = (2, 3, 8, 32, 128)


def generate(k: int, out: Path) -> float:
    """Seconds of wall time for `symsoft generate -k K` into out."""
    command = [sys.executable, "-m", "symsoft", "generate", "-k", str(k), "-o", str(out), "-q"]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def compile_object(compiler: str, source: Path) -> float:
    """Seconds to compile source to an object file with the strict flags."""
    command = [compiler, *STRICT_FLAGS, "-c", str(source), "-o", str(source.with_suffix(".o"))]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def stages(k: int) -> None:
    """Seconds per stage of one generation in this process (imports not counted)."""
    from symsoft import pipeline
    from symsoft.document.builder import build_document
    from symsoft.document.pdf import build_pdf, pdflatex_available
    from symsoft.document.view import document_name
    from symsoft.emit.latex import figure_files
    from symsoft.spec import make_spec

    spec = make_spec(k)
    print(f"| stage (K = {k}) | seconds |")
    print("|---|---:|")
    start = time.perf_counter()
    bundle = pipeline.build_bundle(spec)
    print(f"| derive and prove (Bundle) | {time.perf_counter() - start:.2f} |", flush=True)
    begin = time.perf_counter()
    document = build_document(bundle)
    print(f"| build and check the document | {time.perf_counter() - begin:.2f} |", flush=True)
    proved = pipeline.Proved(bundle, document)
    files: dict[str, str | bytes] = {}
    for target, emit in pipeline.EMITTERS.items():
        begin = time.perf_counter()
        files.update(emit(proved))
        print(f"| emit {target} | {time.perf_counter() - begin:.2f} |", flush=True)
    if pdflatex_available():
        begin = time.perf_counter()
        tex = files[document_name(k, spec.lang, "tex")]
        assert isinstance(tex, str)
        build_pdf(tex, document_name(k, spec.lang, "pdf"), figure_files(document))
        print(f"| pdflatex | {time.perf_counter() - begin:.2f} |")
    print(f"| total | {time.perf_counter() - start:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"K = {QUICK} only")
    parser.add_argument("-k", type=str, help="comma-separated values of K")
    parser.add_argument("--stages", type=int, metavar="K", help="time each stage at this K")
    args = parser.parse_args()
    if args.stages:
        stages(args.stages)
        return
    ks = [int(v) for v in args.k.split(",")] if args.k else list(QUICK if args.quick else FULL)
    compiler = find_compiler()
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    pdf = "yes" if shutil.which("pdflatex") else "no (pdflatex not installed)"
    print(f"- machine: {platform.machine()}, Python {platform.python_version()}")
    print(f"- C: `{Path(compiler).name} {' '.join(STRICT_FLAGS)} -c`; {version.splitlines()[0]}")
    print(f"- PDF included: {pdf}")
    print()
    print("| K | generate (s) | softmax_k{K}.c bytes | lines | compile (s) |")
    print("|---:|---:|---:|---:|---:|")
    start = time.perf_counter()
    for k in ks:
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / f"k{k}"
            seconds = generate(k, out)
            source = out / f"softmax_k{k}.c"
            text = source.read_bytes()
            compiled = compile_object(compiler, source)
        lines = text.count(b"\n")
        print(f"| {k} | {seconds:.1f} | {len(text)} | {lines} | {compiled:.2f} |", flush=True)
    print()
    print(f"wall time of the run: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
