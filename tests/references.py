"""Reference arrays for the tests: mpmath at high precision, row by row."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy


def rows(function: Callable[..., object], *arrays: numpy.ndarray) -> numpy.ndarray:
    """Apply a symsoft.reference function to each row (or pair of rows), as float64."""
    flat = [a.reshape(-1, a.shape[-1]).astype(numpy.float64) for a in arrays]
    out = [function(*(f[r].tolist() for f in flat)) for r in range(flat[0].shape[0])]
    result = numpy.array(out, dtype=object).astype(numpy.float64)
    return result.reshape(arrays[0].shape[:-1] + result.shape[1:])


def softmax_budget(z: numpy.ndarray) -> numpy.ndarray:
    """Per-row relative error bound (K + 3 + 2 max_j |z_j - max z|) u of the shifted algorithm
    (Blanchard, Higham & Higham 2021), u the unit roundoff of z's dtype."""
    u = numpy.finfo(z.dtype).eps / 2
    spread = numpy.max(z, axis=-1, keepdims=True) - numpy.min(z, axis=-1, keepdims=True)
    return (z.shape[-1] + 3 + 2 * spread.astype(numpy.float64)) * u


def assert_softmax_within_budget(got: numpy.ndarray, expected: numpy.ndarray, z: numpy.ndarray):
    """Relative error within budget; results below the normal range only need absolute accuracy
    of one subnormal step."""
    tiny = numpy.finfo(z.dtype).tiny
    error = numpy.abs(got.astype(numpy.float64) - expected)
    allowed = softmax_budget(z) * numpy.abs(expected) + tiny * numpy.finfo(z.dtype).eps
    assert numpy.all(error <= allowed), float(numpy.max(error / numpy.maximum(allowed, tiny)))


def random_logits(rng: numpy.random.Generator, n: int, k: int) -> numpy.ndarray:
    """Rows at several scales, including a large common offset."""
    scales = rng.choice([0.1, 1.0, 5.0, 30.0], size=(n, 1))
    offsets = rng.choice([0.0, 0.0, -50.0, 300.0], size=(n, 1))
    return rng.normal(size=(n, k)) * scales + offsets


def soft_labels(rng: numpy.random.Generator, n: int, k: int, *, normalised: bool) -> numpy.ndarray:
    y = rng.random((n, k))
    return y / y.sum(axis=-1, keepdims=True) if normalised else 1.7 * y


def assert_clean_log(log: str) -> None:
    """A pdflatex log without overfull boxes, undefined references or a needed rerun."""
    assert "Overfull \\hbox" not in log, re.findall(r"Overfull \\hbox.*", log)
    assert "There were undefined references" not in log
    assert "LaTeX Warning: Reference" not in log
    assert "Rerun to get" not in log
