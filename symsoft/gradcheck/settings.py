"""The validated options of one check."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from symsoft.errors import SpecError
from symsoft.gradcheck.errors import CheckUsageError
from symsoft.spec import validate_k

OFS = ("softmax", "log_softmax", "cross_entropy")
DTYPES = ("float64", "float32")
LABELS = ("simplex", "one-hot", "any")
CONTRACTS = {
    "simplex": "y >= 0, sum(y) = 1",
    "one-hot": "y is one-hot",
    "any": "y >= 0, any sum",
}
# what fn computes, as the report words it
WHAT = {
    "softmax": "Jacobian of softmax, d s_i / d z_j",
    "log_softmax": "Jacobian of log-softmax, d log s_i / d z_j",
    "cross_entropy": "gradient of cross-entropy, dL/dz",
}
DEFAULT_N_RANDOM = 96
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

    @property
    def jacobian(self) -> bool:
        return self.of != "cross_entropy"

    @property
    def takes_labels(self) -> bool:
        return self.of == "cross_entropy"

    @property
    def row_shape(self) -> tuple[int, ...]:
        return (self.k, self.k) if self.jacobian else (self.k,)

    @property
    def call(self) -> str:
        args = ("Z", "Y") if self.batched else ("z", "y")
        return f"fn({args[0]}, {args[1]})" if self.takes_labels else f"fn({args[0]})"


def make_settings(
    of: str,
    k: object,
    *,
    batched: bool = False,
    dtype: object = "float64",
    labels: str = "simplex",
    seed: int | None = 0,
    n_random: int | None = None,
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
    if labels not in LABELS:
        raise CheckUsageError(f"labels must be one of {', '.join(LABELS)}; got {labels!r}")
    if seed is None:
        seed = int(np.random.default_rng().integers(2**31))
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise CheckUsageError(f"seed must be a non-negative integer; got {seed!r}")
    if n_random is None:
        n_random = DEFAULT_N_RANDOM
    if isinstance(n_random, bool) or not isinstance(n_random, int) or n_random < 1:
        raise CheckUsageError(f"n_random must be a positive integer; got {n_random!r}")
    return Settings(of_name, k, dt, labels, bool(batched), seed, n_random)
