"""Reference test vectors: deterministic inputs and their high-precision outputs as JSON."""

from __future__ import annotations

import json

import mpmath
import numpy

from symsoft.derivation import reference
from symsoft.derivation.bundle import Bundle
from symsoft.emit.render import header

SEED = 20261125


def _inputs(k: int) -> list[tuple[str, list[float], list[float]]]:
    """Named (z, y) cases: random at several scales, ties, a dominant logit, soft labels."""
    rng = numpy.random.default_rng([SEED, k])

    def simplex() -> list[float]:
        w = rng.random(k)
        return (w / w.sum()).tolist()

    one_hot = [1.0 if i == k - 1 else 0.0 for i in range(k)]
    cases = [
        ("normal", rng.normal(0.0, 1.0, k).tolist(), simplex()),
        ("wide", rng.normal(0.0, 30.0, k).tolist(), one_hot),
        ("offset", (1e4 + rng.normal(0.0, 1.0, k)).tolist(), simplex()),
        ("ties", [0.5] * k, simplex()),
        ("dominant", [40.0 if i == 0 else 0.0 for i in range(k)], one_hot),
        ("soft-labels", rng.normal(0.0, 2.0, k).tolist(), (0.5 * rng.random(k)).tolist()),
    ]
    return cases


# the Jacobian has K*K entries per case: above this K the file would be mostly Jacobian
JACOBIAN_K_MAX = 64


def _floats(values: object) -> object:
    """mpf -> the nearest float64 (mpmath rounds to nearest); lists recursively."""
    if isinstance(values, list):
        return [_floats(v) for v in values]
    return float(values) if isinstance(values, mpmath.mpf) else values


def emit_vectors(bundle: Bundle) -> dict[str, str]:
    k = bundle.k
    cases = []
    for name, z, y in _inputs(k):
        case = {
            "name": name,
            "z": z,
            "y": y,
            "softmax": _floats(reference.softmax(z)),
            "log_softmax": _floats(reference.log_softmax(z)),
            "cross_entropy": _floats(reference.cross_entropy(z, y)),
            "cross_entropy_grad": _floats(reference.cross_entropy_grad(z, y)),
        }
        if k <= JACOBIAN_K_MAX:
            case["softmax_jacobian"] = _floats(reference.softmax_jacobian(z))
        cases.append(case)
    document = {
        # "_" sorts first: the stamped header heads the file, as in the other outputs
        "_header": header("symsoft/emit/vectors.py", k, "float64"),
        "generator": f"symsoft {bundle.version}",
        "k": k,
        "precision": f"mpmath at {reference.DIGITS} digits, rounded to the nearest float64",
        "cases": cases,
    }
    return {vectors_name(k, bundle.prefix): json.dumps(document, indent=1, sort_keys=True) + "\n"}


def vectors_name(k: int, prefix: str = "") -> str:
    return f"{prefix}_vectors_k{k}.json" if prefix else f"vectors_k{k}.json"
