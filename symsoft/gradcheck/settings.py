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
REDUCTIONS = ("none", "sum", "mean", "batchmean")
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
    "logsumexp": "gradient of log-sum-exp, d lse / d z_j (= softmax)",
    "distillation_kl": "gradient of T^2 KL(softmax(z_t/T) || softmax(z_s/T)) w.r.t. z_s",
    "cross_entropy_hessian": "Hessian of cross-entropy, d^2 L / dz_i dz_j",
}
# the options of a cross-entropy as torch.nn.functional.cross_entropy takes them, and more
CE_OPTIONS = ("weight", "ignore_index", "label_smoothing", "temperature", "z_loss")
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
class LossOptions:
    """Cross-entropy's options (torch.nn.functional.cross_entropy's, plus temperature and
    z-loss) and distillation's temperature; the defaults are the plain loss."""

    weight: tuple[float, ...] | None = None
    ignore_index: int | None = None
    label_smoothing: float = 0.0
    temperature: float = 1.0
    z_loss: float = 0.0

    @property
    def plain(self) -> bool:
        return self == LossOptions()

    def describe(self) -> str:
        parts = []
        if self.weight is not None:
            parts.append("weight [" + ", ".join(f"{w:g}" for w in self.weight) + "]")
        if self.ignore_index is not None:
            parts.append(f"ignore_index {self.ignore_index}")
        if self.label_smoothing:
            parts.append(f"label_smoothing {self.label_smoothing:g}")
        if self.temperature != 1.0:
            parts.append(f"temperature {self.temperature:g}")
        if self.z_loss:
            parts.append(f"z_loss {self.z_loss:g}")
        return ", ".join(parts)


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
    options: LossOptions = LossOptions()

    @property
    def jacobian(self) -> bool:
        """A K x K matrix per input is involved (the reference costs K^2 per input)."""
        return self.of in ("softmax", "log_softmax", "cross_entropy_hessian")

    @property
    def exact_reference(self) -> bool:
        """The reference is symsoft.derivation.reference at 50 digits; otherwise the NumPy
        extended-precision formulas of expected.py (the later members, the options)."""
        return self.of in ("softmax", "log_softmax") or (
            self.of == "cross_entropy" and self.options.plain
        )

    @property
    def distillation(self) -> bool:
        return self.of == "distillation_kl"

    @property
    def temperature(self) -> float:
        return self.options.temperature

    @property
    def has_loss(self) -> bool:
        """fn may return (loss, grad): the loss is checked too."""
        return self.of in ("cross_entropy", "logsumexp", "distillation_kl")

    @property
    def vjp(self) -> bool:
        return self.form == "vjp"

    @property
    def matrix(self) -> bool:
        """fn returns a K x K matrix per row."""
        return self.jacobian and not self.vjp

    @property
    def takes_labels(self) -> bool:
        return self.of in ("cross_entropy", "cross_entropy_hessian")

    @property
    def index_labels(self) -> bool:
        return self.labels == "index"

    @property
    def two_args(self) -> bool:
        return self.takes_labels or self.vjp or self.distillation

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
        if self.distillation:
            return "fn(Z_student, Z_teacher)" if self.batched else "fn(z_student, z_teacher)"
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
        elif self.distillation:
            parts.append(f"z_teacher {n}, T = {self.temperature:g}")
        elif self.index_labels:
            c = "an int64 array (N,)" if self.batched else "an int"
            parts.append(f"c {c}, the class index")
        if self.batched and self.reduction != "none":
            parts.append(f"returns the gradient of the {self.reduction} of the row losses")
        if self.of == "cross_entropy" and not self.options.plain:
            parts.append("as torch.nn.functional.cross_entropy with " + self.options.describe())
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


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise CheckUsageError(f"{name} must be a number; got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise CheckUsageError(f"{name} must be finite; got {value!r}")
    return value


def parse_weight(value: object, k: int) -> tuple[float, ...] | None:
    """--weight "w1,...,wK", a .npy file, or a sequence: K finite numbers >= 0."""
    if value is None:
        return None
    if isinstance(value, str):
        if value.endswith(".npy"):
            try:
                value = np.load(value, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise CheckUsageError(f"weight: cannot read {value}: {exc}") from exc
        else:
            try:
                value = [float(part) for part in value.split(",")]
            except ValueError as exc:
                raise CheckUsageError(
                    f"weight must be K numbers separated by commas or a .npy file; got {value!r}"
                ) from exc
    try:
        w = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CheckUsageError(f"weight must be K numbers; got {value!r}") from exc
    if w.shape != (k,):
        raise CheckUsageError(f"weight must have K = {k} entries, one per class; got {w.size}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise CheckUsageError(f"weight must be finite and >= 0; got {w.tolist()}")
    return tuple(float(v) for v in w)


def _options(
    of: str,
    k: int,
    labels: str,
    weight: object,
    ignore_index: object,
    label_smoothing: object,
    temperature: object,
    z_loss: object,
) -> LossOptions:
    t = _number(temperature, "temperature")
    if t <= 0:
        raise CheckUsageError(f"temperature must be > 0; got {temperature!r}")
    if t != 1.0 and of not in ("cross_entropy", "distillation_kl"):
        raise CheckUsageError("temperature is for --of cross_entropy or distillation_kl")
    eps = _number(label_smoothing, "label_smoothing")
    if not 0.0 <= eps <= 1.0:
        raise CheckUsageError(f"label_smoothing must be in [0, 1]; got {label_smoothing!r}")
    lam = _number(z_loss, "z_loss")
    if lam < 0:
        raise CheckUsageError(f"z_loss must be >= 0; got {z_loss!r}")
    if ignore_index is not None:
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int | np.integer):
            raise CheckUsageError(f"ignore_index must be an integer; got {ignore_index!r}")
        if labels != "index":
            raise CheckUsageError(
                "ignore_index is for integer labels (--labels index); probability targets "
                "have no class to ignore"
            )
        ignore_index = int(ignore_index)
    w = parse_weight(weight, k)
    options = LossOptions(w, ignore_index, eps, t, lam)
    if of != "cross_entropy" and (w is not None or ignore_index is not None or eps or lam):
        raise CheckUsageError(
            "weight, ignore_index, label_smoothing and z_loss are for --of cross_entropy"
        )
    return options


def _check_reduction(of: str, reduction: str, batched: bool) -> None:
    allowed = {
        "cross_entropy": ("sum", "mean"),
        "cross_entropy_hessian": ("sum", "mean"),
        "distillation_kl": ("sum", "batchmean"),
    }.get(of, ())
    if reduction == "none":
        return
    if not batched or reduction not in allowed:
        if of == "distillation_kl" and reduction == "mean":
            raise CheckUsageError(
                "reduction mean is not distillation's: F.kl_div's 'mean' divides by N*K; "
                "use batchmean (divides by N) or sum"
            )
        raise CheckUsageError(
            "reduction sum/mean is for a batched cross-entropy or its Hessian, sum/batchmean "
            "for a batched distillation_kl (--batched): the gradient of the reduced loss"
        )


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
    weight: object = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    temperature: float = 1.0,
    z_loss: float = 0.0,
) -> Settings:
    """Validate everything before any user code runs, so a bad request costs nothing."""
    of_name = str(of).replace("-", "_")
    if of_name not in OFS:
        raise CheckUsageError(f"of must be one of {', '.join(OFS)}; got {of!r}")
    try:
        k = validate_k(k)
    except SpecError as exc:
        raise CheckUsageError(str(exc)) from exc
    if of_name in ("softmax", "log_softmax", "cross_entropy_hessian") and k > JACOBIAN_K_MAX:
        raise CheckUsageError(
            f"K={k} is too large for a Jacobian check (at most {JACOBIAN_K_MAX}: the exact "
            "reference costs K^2 products per input); a smaller K checks the same code"
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
    _check_reduction(of_name, reduction, bool(batched))
    if form == "vjp" and of_name not in ("softmax", "log_softmax"):
        raise CheckUsageError(
            "form vjp is for --of softmax or log_softmax; a cross-entropy gradient is already "
            "the product of the loss's derivative with the Jacobian"
        )
    options = _options(
        of_name, k, labels, weight, ignore_index, label_smoothing, temperature, z_loss
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
        options,
    )
