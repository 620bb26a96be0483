"""The validated options of one check."""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass

import numpy as np

from symsoft.errors import SpecError
from symsoft.family.members import MEMBERS
from symsoft.gradcheck.errors import CheckUsageError
from symsoft.spec import validate_k

# what `--of` can name: the family members whose derivative the checker has a contract for
OFS = tuple(member.checks for member in MEMBERS if member.checks)
DTYPES = ("float64", "float32")
LABELS = ("simplex", "one-hot", "any", "index")
REDUCTIONS = ("none", "sum", "mean")
FORMS = ("jacobian", "vjp")
ARRAYS = ("numpy", "torch", "jax")
CONTRACTS = {
    "simplex": "y >= 0, sum(y) = 1",
    "one-hot": "y is one-hot",
    "any": "y >= 0, any sum",
    "index": "y is an integer class c",
}
# what fn computes, as the report words it
WHAT = {
    "softmax": "Jacobian of softmax, d s_i / d z_j",
    "log_softmax": "Jacobian of log-softmax, d log s_i / d z_j",
    "cross_entropy": "gradient of cross-entropy, dL/dz",
}
WHAT_VJP = {
    "softmax": "vector-Jacobian product of softmax, g^T J",
    "log_softmax": "vector-Jacobian product of log-softmax, g^T J",
}
DEFAULT_N_RANDOM = 96
DEFAULT_TIMEOUT = 10.0  # seconds per call: room for a first torch call or a JAX compile
DEFAULT_CHECK_TIMEOUT = 300.0  # seconds for the whole check
# the 50-digit Jacobian costs K^2 per input (~1 s per input at K = 256); the bug classes this
# finds do not depend on K, so a smaller K checks the same code
JACOBIAN_K_MAX = 256


@dataclass(frozen=True)
class Settings:
    of: str
    k: int
    dtype: np.dtype
    labels: str
    batched: bool
    seed: int
    n_random: int
    reduction: str = "none"
    form: str = "jacobian"
    array: str = "numpy"
    finite: bool = False
    timeout: float = DEFAULT_TIMEOUT
    check_timeout: float = DEFAULT_CHECK_TIMEOUT

    @property
    def jacobian(self) -> bool:
        """The reference involves the K x K Jacobian (its cost is K^2 per input)."""
        return self.of != "cross_entropy"

    @property
    def vjp(self) -> bool:
        return self.form == "vjp"

    @property
    def matrix(self) -> bool:
        """fn returns a K x K matrix per row."""
        return self.jacobian and not self.vjp

    @property
    def takes_labels(self) -> bool:
        return self.of == "cross_entropy"

    @property
    def index_labels(self) -> bool:
        return self.labels == "index"

    @property
    def two_args(self) -> bool:
        return self.takes_labels or self.vjp

    @property
    def row_shape(self) -> tuple[int, ...]:
        return (self.k, self.k) if self.matrix else (self.k,)

    @property
    def what(self) -> str:
        return WHAT_VJP[self.of] if self.vjp else WHAT[self.of]

    @property
    def call(self) -> str:
        z = "Z" if self.batched else "z"
        if self.vjp:
            return f"fn({z}, {'G' if self.batched else 'g'})"
        if not self.takes_labels:
            return f"fn({z})"
        if self.index_labels:
            return f"fn({z}, {'C' if self.batched else 'c'})"
        return f"fn({z}, {'Y' if self.batched else 'y'})"

    @property
    def contract(self) -> str:
        """The calling contract, as the report names it."""
        n = "(N, K)" if self.batched else "(K,)"
        parts = [f"{self.call}: z {n} {self.dtype.name} {self.array} array"]
        if self.vjp:
            parts.append(f"g {n}, returns g^T J {n}")
        elif self.index_labels:
            c = "an int64 array (N,)" if self.batched else "an int"
            parts.append(f"c {c}, the class index")
        if self.batched and self.reduction != "none":
            parts.append(f"returns the gradient of the {self.reduction} of the row losses")
        return "; ".join(parts)


def _positive_seconds(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CheckUsageError(f"{name} must be a positive number of seconds; got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise CheckUsageError(f"{name} must be a positive number of seconds; got {value!r}")
    return float(value)


def _choice(value: object, name: str, options: tuple[str, ...]) -> str:
    text = str(value).replace("_", "-") if name == "labels" else str(value)
    if text not in options:
        raise CheckUsageError(f"{name} must be one of {', '.join(options)}; got {value!r}")
    return text


def make_settings(
    of: str,
    k: object,
    *,
    batched: bool = False,
    dtype: object = "float64",
    labels: str = "simplex",
    seed: int | None = 0,
    n_random: int | None = None,
    reduction: str = "none",
    form: str = "jacobian",
    array: str = "numpy",
    finite: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    check_timeout: float = DEFAULT_CHECK_TIMEOUT,
) -> Settings:
    """Validate everything before any user code runs, so a bad request costs nothing."""
    of_name = str(of).replace("-", "_")
    if of_name not in OFS:
        raise CheckUsageError(f"of must be one of {', '.join(OFS)}; got {of!r}")
    try:
        k = validate_k(k)
    except SpecError as exc:
        raise CheckUsageError(str(exc)) from exc
    if of_name != "cross_entropy" and k > JACOBIAN_K_MAX:
        raise CheckUsageError(
            f"K={k} is too large for a Jacobian check (at most {JACOBIAN_K_MAX}: the exact "
            "reference costs K^2 50-digit products per input); a smaller K checks the same code"
        )
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise CheckUsageError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}") from exc
    if dt.name not in DTYPES:
        raise CheckUsageError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    labels = _choice(labels, "labels", LABELS)
    reduction = _choice(reduction, "reduction", REDUCTIONS)
    form = _choice(form, "form", FORMS)
    array = _choice(array, "array", ARRAYS)
    if reduction != "none" and not (batched and of_name == "cross_entropy"):
        raise CheckUsageError(
            "reduction sum/mean is for a batched cross-entropy (--of cross_entropy --batched): "
            "the gradient of the summed or mean loss over the rows"
        )
    if form == "vjp" and of_name == "cross_entropy":
        raise CheckUsageError(
            "form vjp is for --of softmax or log_softmax; a cross-entropy gradient is already "
            "the product of the loss's derivative with the Jacobian"
        )
    if array != "numpy" and importlib.util.find_spec(array) is None:
        raise CheckUsageError(f"array {array} needs the {array} package, which is not installed")
    if seed is None:
        seed = int(np.random.default_rng().integers(2**31))
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise CheckUsageError(f"seed must be a non-negative integer; got {seed!r}")
    if n_random is None:
        n_random = DEFAULT_N_RANDOM
    if isinstance(n_random, bool) or not isinstance(n_random, int) or n_random < 1:
        raise CheckUsageError(f"n_random must be a positive integer; got {n_random!r}")
    return Settings(
        of_name,
        k,
        dt,
        labels,
        bool(batched),
        seed,
        n_random,
        reduction,
        form,
        array,
        bool(finite),
        _positive_seconds(timeout, "timeout"),
        _positive_seconds(check_timeout, "check_timeout"),
    )
