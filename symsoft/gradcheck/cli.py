"""`symsoft check FILE.py:FUNCTION -k K --of ...`: exit 0 correct, 1 wrong, 2 usage error."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from symsoft.errors import SpecError
from symsoft.gradcheck.check import check_gradient
from symsoft.gradcheck.loader import load_function
from symsoft.gradcheck.settings import (
    ARRAYS,
    DEFAULT_CHECK_TIMEOUT,
    DEFAULT_TIMEOUT,
    DTYPES,
    FORMS,
    LABELS,
    OFS,
    REDUCTIONS,
    make_settings,
)

DESCRIPTION = (
    "Check a hand-written softmax / log-softmax / cross-entropy (with F.cross_entropy's options, "
    "temperature and z-loss) / log-sum-exp / distillation KL derivative or cross-entropy Hessian "
    "against symsoft's exact one on random, tied, dominant, huge, masked (-inf) and batched "
    "inputs. The function runs in a child process. Exit 0: correct on every input; 1: wrong "
    "somewhere (or raised, exited, crashed, hung); 2: usage error."
)


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        metavar="FILE.py:FUNCTION",
        help="the function to check, e.g. grads.py:ce_grad; or a C function, kernel.c:backward "
        "(compiled first) or libkernel.so:backward",
    )
    parser.add_argument("-k", dest="k", type=int, required=True, help="number of classes K")
    parser.add_argument(
        "--of",
        choices=OFS,
        default="cross_entropy",
        help="softmax: fn(z) is the KxK Jacobian of s; log_softmax: of log s; "
        "cross_entropy: fn(z, y) is dL/dz (default); logsumexp: fn(z) is d lse/dz; "
        "distillation_kl: fn(z_student, z_teacher) is d/dz_student of T^2 KL(p_t || p_s); "
        "cross_entropy_hessian: fn(z, y) is the KxK Hessian",
    )
    parser.add_argument(
        "--batched", action="store_true", help="fn takes (N, K) arrays, returns (N, K[, K])"
    )
    parser.add_argument("--dtype", choices=DTYPES, default="float64", help="default float64")
    parser.add_argument(
        "--labels",
        choices=LABELS,
        default="simplex",
        help="what fn assumes about y: simplex (y >= 0, sum 1; default), one-hot, "
        "any (y >= 0, any sum), index (fn(z, c) with an integer class c; batched an int64 (N,))",
    )
    parser.add_argument(
        "--reduction",
        choices=REDUCTIONS,
        default="none",
        help="batched: fn returns the gradient of the sum or mean (cross-entropy, Hessian) or "
        "batchmean (distillation_kl) of the row losses (default none: per row)",
    )
    parser.add_argument(
        "--weight",
        default=None,
        metavar="W1,...,WK|FILE.npy",
        help="cross-entropy: class weights, as F.cross_entropy's weight",
    )
    parser.add_argument(
        "--ignore-index",
        dest="ignore_index",
        type=int,
        default=None,
        metavar="N",
        help="cross-entropy with --labels index: rows whose label is N contribute nothing",
    )
    parser.add_argument(
        "--label-smoothing",
        dest="label_smoothing",
        type=float,
        default=0.0,
        metavar="EPS",
        help="cross-entropy: targets (1 - EPS) y + EPS/K, as F.cross_entropy's (default 0)",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        metavar="T",
        help="cross-entropy and distillation_kl: the logits are divided by T (default 1)",
    )
    parser.add_argument(
        "--z-loss",
        dest="z_loss",
        type=float,
        default=0.0,
        metavar="LAMBDA",
        help="cross-entropy: adds LAMBDA * logsumexp(z/T)^2 per non-ignored row (default 0)",
    )
    parser.add_argument(
        "--form",
        choices=FORMS,
        default="jacobian",
        help="softmax / log_softmax: jacobian (fn(z) -> K x K; default) or vjp (fn(z, g) -> g^T J)",
    )
    parser.add_argument(
        "--array",
        choices=ARRAYS,
        default="numpy",
        help="pass the inputs as numpy (default), torch or jax arrays",
    )
    parser.add_argument(
        "--finite",
        action="store_true",
        help="fn's contract excludes -inf logits: no masked input is tried",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"time limit per call (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--check-timeout",
        dest="check_timeout",
        type=float,
        default=DEFAULT_CHECK_TIMEOUT,
        metavar="SECONDS",
        help=f"time limit for the whole check (default {DEFAULT_CHECK_TIMEOUT:g})",
    )
    parser.add_argument(
        "--cflags",
        default="",
        metavar="FLAGS",
        help='compiler flags for a .c target, e.g. "-I include -DK=5" (relative paths from '
        "the file's folder)",
    )
    parser.add_argument("--seed", type=int, default=0, help="input generator seed (default 0)")
    parser.add_argument(
        "--n-random",
        dest="n_random",
        type=int,
        default=None,
        metavar="N",
        help="random-logit inputs to try (default 96; the special kinds come on top)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run_check(args: argparse.Namespace) -> int:
    options = {
        "of": args.of,
        "batched": args.batched,
        "dtype": args.dtype,
        "labels": args.labels,
        "seed": args.seed,
        "n_random": args.n_random,
        "reduction": args.reduction,
        "form": args.form,
        "array": args.array,
        "finite": args.finite,
        "timeout": args.timeout,
        "check_timeout": args.check_timeout,
        "weight": args.weight,
        "ignore_index": args.ignore_index,
        "label_smoothing": args.label_smoothing,
        "temperature": args.temperature,
        "z_loss": args.z_loss,
    }
    try:
        # a bad option fails before the file is imported
        settings = make_settings(k=args.k, **options)
        # whatever the user's code prints must not end up inside the JSON on stdout
        with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
            fn, name = load_function(args.target, settings, args.cflags)
            report = check_gradient(fn, args.k, name=name, **options)
    except SpecError as exc:  # CheckUsageError, bad K
        print(f"symsoft check: error: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps({"verdict": "usage error", "exit_code": 2, "error": str(exc)}))
        return 2
    print(report.to_json() if args.json else report.text())
    return report.exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="symsoft check", description=DESCRIPTION)
    add_check_arguments(parser)
    return run_check(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
