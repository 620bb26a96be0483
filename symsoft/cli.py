"""Command line: argument parsing and exit codes only."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from symsoft.errors import ProofError, SymsoftError, WriteError
from symsoft.version import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 2, like argparse, but clearer
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"K must be an integer, got {text!r}") from None


def _floats(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--example takes comma-separated numbers, got {text!r}"
        ) from None


def _targets(text: str) -> list[str]:
    from symsoft.pipeline import TARGETS

    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [t for t in chosen if t not in TARGETS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"--targets takes a comma-separated list of {', '.join(TARGETS)}; got {text!r}"
        )
    return sorted(set(chosen), key=TARGETS.index)


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",")]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="symsoft",
        description="Derive softmax, its Jacobian and the cross-entropy gradient with SymPy, "
        "prove the closed forms, and emit NumPy, C and LaTeX.",
    )
    parser.add_argument("--version", action="version", version=f"symsoft {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    gen = commands.add_parser(
        "generate",
        help="derive, prove and write the files for one K",
        description="Derive, prove and write softmax_k{K}.py/.h/.c, derivation_k{K}.tex and "
        "vectors_k{K}.json.",
        epilog="examples:\n  symsoft generate -k 10 -o out/k10\n"
        "  symsoft generate -k 4 --example 1,2,3,4 --labels apple,pear,plum,fig\n"
        "  symsoft generate -k 128 --targets c,numpy --masked-rows zero --prefix padded",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gen.add_argument("-k", "--k", type=_int, default=3, help="number of classes (default 3)")
    gen.add_argument("-o", "--out", type=Path, help="output folder (default generated/k{K})")
    gen.add_argument("--force", action="store_true", help="overwrite files that exist")
    gen.add_argument("--example", type=_floats, help="logits of the worked example, e.g. 1,2,3,4")
    gen.add_argument(
        "--labels", type=_names, help="class names of the worked example, e.g. apple,pear"
    )
    gen.add_argument(
        "--targets",
        type=_targets,
        help="what to emit, comma-separated (default all): numpy, c, latex, markdown, "
        "vectors, pdf (the PDF needs pdflatex; without it a note says how to get it)",
    )
    gen.add_argument(
        "--lang",
        choices=("en", "zh"),
        default="en",
        help="language of the derivation document (zh: Chinese, derivation_k{K}.zh.tex/.md)",
    )
    gen.add_argument(
        "--true-class",
        default="1",
        help="the worked example's true class for the gradient: 1..K or a label (default 1)",
    )
    gen.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print nothing but errors and notes: no progress bar (it shows only on a "
        "terminal), no list of the files written",
    )
    gen.add_argument(
        "--masked-rows",
        choices=("nan", "zero"),
        default="nan",
        help="result for a row whose logits are all -inf: NaN (default, like SciPy and "
        "PyTorch) or zero (the row is ignored: probabilities, loss and gradient 0)",
    )

    gen.add_argument(
        "--prefix",
        default="",
        metavar="NAME",
        help="prepend NAME to the kernels' C symbols (NAME_softmax_k{K}_f64), file names and "
        "header guard (NAME_softmax_k{K}.c/.h/.py) and Python module name, so that several "
        "builds of one K (e.g. both --masked-rows policies) link into one program; NAME must "
        "be a C and Python identifier",
    )
    gen.add_argument(
        "--numpy-only",
        action="store_true",
        help="the Python module calls NumPy directly and needs nothing else (default: "
        "written against the array API, for NumPy, PyTorch, JAX, CuPy and Dask arrays)",
    )

    from symsoft.gradcheck.cli import DESCRIPTION, add_check_arguments

    check = commands.add_parser(
        "check",
        help="check a hand-written gradient against the derived one",
        description=DESCRIPTION,
        epilog="example: symsoft check grads.py:ce_grad -k 5 --labels any",
    )
    add_check_arguments(check)
    return parser


def _true_class(text: str, labels: Sequence[str]) -> int:
    """1-based class number or a label -> the 0-based index the Spec holds."""
    from symsoft.errors import SpecError

    if text in labels:
        return labels.index(text)
    # ASCII digits only: str.isdigit() also accepts '²', which int() refuses
    if re.fullmatch(r"[0-9]+", text) and 1 <= int(text) <= len(labels):
        return int(text) - 1
    raise SpecError(
        f"--true-class must be a class number 1..{len(labels)} or one of the labels, got {text!r}"
    )


def _generate(args: argparse.Namespace) -> int:
    from symsoft.pipeline import TARGETS, generate, steps
    from symsoft.progress import Progress
    from symsoft.spec import make_spec

    spec = make_spec(
        args.k,
        example=args.example,
        labels=args.labels,
        masked_rows=args.masked_rows,
        lang=args.lang,
        numpy_only=args.numpy_only,
        prefix=args.prefix,
    )
    spec = replace(spec, true_class=_true_class(args.true_class, spec.labels))
    out = args.out if args.out is not None else Path("generated") / f"k{spec.k}"
    targets = args.targets or list(TARGETS)
    progress = Progress(steps(targets), quiet=args.quiet)

    def note(message: str) -> None:
        progress.close()
        print(f"symsoft: note: {message}", file=sys.stderr)

    try:
        written = generate(
            spec, out, force=args.force, targets=targets, progress=progress, notes=note
        )
    finally:
        progress.close()
    if not args.quiet:
        for path in written:
            print(path)
    return EXIT_OK


_VALUE_OPTIONS = ("--example",)  # options whose value may start with '-': a negative logit


def _join_negative_values(argv: Sequence[str]) -> list[str]:
    """`--example -1,2,3` -> `--example=-1,2,3`: argparse takes a value starting with '-' for
    an option unless it is one plain negative number."""
    joined: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        if token in _VALUE_OPTIONS:
            value = next(tokens, None)
            if value is None:
                joined.append(token)
            elif value.startswith("-") and re.fullmatch(r"-[0-9.]", value[:2]):
                joined.append(f"{token}={value}")
            else:
                joined += [token, value]
        else:
            joined.append(token)
    return joined


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:  # bare `symsoft`: what it can do, rather than a missing-argument error
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(_join_negative_values(argv))
    if args.command == "check":
        from symsoft.gradcheck.cli import run_check

        return run_check(args)
    try:
        return _generate(args)
    except ProofError as error:
        print(f"symsoft: proof failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    except WriteError as error:  # the disk, not the request: nothing was changed
        print(f"symsoft: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except SymsoftError as error:
        print(f"symsoft: error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
