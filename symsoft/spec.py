"""The validated, frozen description of one generation run."""

from __future__ import annotations

import keyword
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from symsoft.errors import SpecError

# Kernels are loop-form with K a compile-time constant, so code size is O(K); the dense
# Jacobian output is K*K numbers per row, which is what bounds K in practice.
K_MAX = 4096

WORKED_EXAMPLE = (2.0, 1.0, 0.1)
WORKED_LABELS = ("cat", "dog", "bird")
MASKED_ROW_POLICIES = ("nan", "zero")
LANGUAGES = ("en", "zh")

_LABEL = re.compile(r"[A-Za-z][A-Za-z0-9 _-]{0,31}")  # fullmatch: "$" would allow "\n"


@dataclass(frozen=True)
class Spec:
    """What to generate: K classes, the worked example shown in the document, and options."""

    k: int
    example: tuple[float, ...]
    labels: tuple[str, ...]
    true_class: int = 0
    masked_rows: str = "nan"
    lang: str = "en"
    numpy_only: bool = False  # the Python module calls NumPy instead of an array-API namespace
    prefix: str = ""  # prepended to the kernels' C symbols, file names and module name


def validate_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise SpecError(f"K must be an integer, got {k!r}")
    if not 1 <= k <= K_MAX:
        raise SpecError(f"K must be between 1 and {K_MAX}, got {k}")
    return k


def default_example(k: int) -> tuple[float, ...]:
    """The tutorial's example for K=3; otherwise evenly spaced logits from 2.0 down to 0.1."""
    if k == len(WORKED_EXAMPLE):
        return WORKED_EXAMPLE
    if k == 1:
        return (2.0,)
    return tuple(round(2.0 - 1.9 * i / (k - 1), 3) for i in range(k))


def default_labels(k: int) -> tuple[str, ...]:
    if k == len(WORKED_LABELS):
        return WORKED_LABELS
    return tuple(f"class {i + 1}" for i in range(k))


def _validate_example(example: Sequence[float], k: int) -> tuple[float, ...]:
    values = tuple(example)
    if len(values) != k:
        raise SpecError(f"--example needs {k} logits for K={k}, got {len(values)}")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(f"--example values must be numbers, got {value!r}")
        if not math.isfinite(value) or abs(value) > 700:
            raise SpecError(f"--example values must be finite with |z| <= 700, got {value!r}")
    return tuple(float(v) for v in values)


def _validate_labels(labels: Sequence[str], k: int) -> tuple[str, ...]:
    names = tuple(labels)
    if len(names) != k:
        raise SpecError(f"--labels needs {k} names for K={k}, got {len(names)}")
    for name in names:
        if not isinstance(name, str) or not _LABEL.fullmatch(name):
            raise SpecError(
                f"label {name!r} must start with a letter and use only letters, digits, "
                "spaces, '_' or '-' (at most 32 characters)"
            )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SpecError(f"--labels must be distinct; repeated: {', '.join(duplicates)}")
    return names


def validate_identifier(name: str, what: str) -> str:
    """A user-chosen name that will appear in C and Python source."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name) or keyword.iskeyword(name):
        raise SpecError(f"{what} {name!r} is not a valid C and Python identifier")
    if name.startswith("_") and len(name) > 1 and (name[1] == "_" or name[1].isupper()):
        raise SpecError(f"{what} {name!r} is reserved in C (leading underscore)")
    return name


def make_spec(
    k: object = 3,
    *,
    example: Sequence[float] | None = None,
    labels: Sequence[str] | None = None,
    true_class: int = 0,
    masked_rows: str = "nan",
    lang: str = "en",
    numpy_only: bool = False,
    prefix: str = "",
) -> Spec:
    """Validate everything up front, so that a bad request fails before any work is done."""
    k = validate_k(k)
    if masked_rows not in MASKED_ROW_POLICIES:
        raise SpecError(f"masked-rows policy must be one of {MASKED_ROW_POLICIES}")
    if lang not in LANGUAGES:
        raise SpecError(f"language must be one of {LANGUAGES}, got {lang!r}")
    if not isinstance(prefix, str) or (prefix and not validate_identifier(prefix, "prefix")):
        raise SpecError(f"prefix must be a string, got {prefix!r}")
    if not isinstance(numpy_only, bool):
        raise SpecError(f"numpy_only must be True or False, got {numpy_only!r}")
    if isinstance(true_class, bool) or not isinstance(true_class, int) or not 0 <= true_class < k:
        raise SpecError(f"true class must be an index in 0..{k - 1}, got {true_class!r}")
    return Spec(
        k=k,
        example=default_example(k) if example is None else _validate_example(example, k),
        labels=default_labels(k) if labels is None else _validate_labels(labels, k),
        true_class=true_class,
        masked_rows=masked_rows,
        lang=lang,
        numpy_only=numpy_only,
        prefix=prefix,
    )
