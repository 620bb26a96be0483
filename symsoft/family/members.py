"""The softmax family, one declaration per kernel.

Everything a later stage needs to know about a member is here, once: its public name, its
inputs and outputs (from which the C signature, the Python binding and the array shapes
follow), its one-line doc, the stable forms it computes and the identities that prove them
(generation stops if one is missing), the document's equations that derive it, how its C
rows are computed, and which derivative `symsoft check` checks against it. The emitters,
`symsoft.load`, the document, the checker and the kernel tests iterate over MEMBERS; the
formulas themselves are derived (symsoft.derivation) and the loop bodies are layout
(templates/), so a new member is this declaration plus what is truly new about it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Input roles: the C parameter each becomes, and what the Python side passes for it.
INPUT_KINDS = {
    "z": "logits",  # (..., K) floats
    "y": "targets",  # (..., K) floats of z's dtype
    "v": "vector",  # (..., K) floats of z's dtype
    "labels": "labels",  # (...) integer class indices, int64 in C
}
_C_INPUT = {
    "logits": "const T",
    "targets": "const T",
    "vector": "const T",
    "labels": "const int64_t",
}


# The options of the cross-entropy family (issue 17), with their defaults; each default
# gives the plain kernel's result bit for bit.
OPTIONS = {
    "weight": None,
    "ignore_index": None,
    "reduction": "none",
    "label_smoothing": 0.0,
    "temperature": 1.0,
    "z_loss": 0.0,
}
_LOSS_OPTIONS = ("weight", "reduction", "label_smoothing", "temperature", "z_loss")
_INDEX_OPTIONS = ("weight", "ignore_index", "reduction", "label_smoothing", "temperature", "z_loss")


@dataclass(frozen=True)
class Output:
    name: str  # the C parameter
    rank: int  # trailing K axes per row: 0 (one value), 1 (K values), 2 (K x K, row-major)

    @property
    def size(self) -> str:
        """Values written for n rows, as the C doc comments say it: n, n*K, n*K*K."""
        return "n" + "*K" * self.rank


@dataclass(frozen=True)
class Member:
    name: str
    inputs: tuple[str, ...]  # keys of INPUT_KINDS, z first
    outputs: tuple[Output, ...]
    doc: str  # one line: the C header's comment and the Python binding's docstring
    forms: tuple[str, ...]  # the fields of derivation.bundle.KernelForms the kernel computes
    proofs: tuple[str, ...]  # identities (derivation) proving those forms equal the definition
    equations: tuple[str, ...] = ()  # the document's equations that derive it
    whole_rows: bool = False  # C: no log, label branch or K x K output: rows can be computed
    #                           whole over groups turned into columns (see emit/c.py)
    checks: str = ""  # `symsoft check --of NAME` checks a user's derivative of this member
    # keyword-only options (issue 17), in the order of OPTIONS; their proofs are
    # derivation.options.required_proofs(member), checked before generation
    options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.inputs[:1] != ("z",) or not set(self.inputs) <= INPUT_KINDS.keys():
            raise ValueError(f"{self.name}: inputs must start with z and be {set(INPUT_KINDS)}")
        if not set(self.options) <= OPTIONS.keys():
            raise ValueError(f"{self.name}: options must be among {set(OPTIONS)}")
        if not self.outputs or not self.proofs:
            raise ValueError(f"{self.name}: a member needs outputs and the proofs of its forms")
        for out in self.outputs:  # the doc says what the caller must allocate
            if f"{out.size} values" not in self.doc:
                raise ValueError(
                    f"{self.name}: the doc must say '{out.size} values' for {out.name}"
                )

    @property
    def takes_reduction(self) -> bool:
        """Takes reduction=: with "sum" or "mean" its loss output is one value."""
        return "reduction" in self.options

    def c_params(self, element: str = "T") -> str:
        """The C parameter list with the element type written as `element`."""
        params = [f"{_C_INPUT[INPUT_KINDS[name]]} *{name}" for name in self.inputs]
        params += [f"T *{out.name}" for out in self.outputs]
        return ", ".join([*params, "size_t n"]).replace("T ", f"{element} ")


MEMBERS = (
    Member(
        "softmax",
        ("z",),
        (Output("s", 1),),
        "s = softmax(z), n*K values",
        forms=("shifted", "exponential", "probability"),
        proofs=("stable-softmax", "softmax-sums-to-one", "shift-invariance"),
        equations=("softmax-definition", "stable-softmax"),
        whole_rows=True,
        checks="softmax",
        options=("temperature",),
    ),
    Member(
        "log_softmax",
        ("z",),
        (Output("out", 1),),
        "out = log softmax(z), n*K values",
        forms=("shifted", "exponential", "log_normaliser", "log_probability"),
        proofs=("stable-log-softmax", "log-softmax-jacobian-closed-form"),
        equations=("stable-log-softmax",),
        checks="log_softmax",
        options=("temperature",),
    ),
    Member(
        "softmax_jacobian",
        ("z",),
        (Output("jac", 2),),
        "jac = d s / d z, n*K*K values, row-major",
        forms=("probability", "jacobian"),
        proofs=("jacobian-closed-form", "kernel-jacobian", "jacobian-rows-sum-to-zero"),
        equations=("jacobian-matrix",),
    ),
    Member(
        "cross_entropy",
        ("z", "y"),
        (Output("loss", 0),),
        "loss = -sum_i y_i log s_i, n values",
        forms=("log_normaliser", "loss_term"),
        proofs=("stable-cross-entropy",),
        equations=("loss-definition",),
        options=_LOSS_OPTIONS,
    ),
    Member(
        "cross_entropy_grad",
        ("z", "y"),
        (Output("grad", 1),),
        "grad = s * sum(y) - y, n*K values",
        forms=("probability", "gradient"),
        proofs=("cross-entropy-gradient-closed-form", "kernel-cross-entropy-gradient"),
        equations=("cross-entropy-gradient",),
        whole_rows=True,
        checks="cross_entropy",
        options=_LOSS_OPTIONS,
    ),
    Member(
        "cross_entropy_index",
        ("z", "labels"),
        (Output("loss", 0),),
        "loss = -log s_label, n values; NaN where a label is outside 0..K-1",
        forms=("loss_index",),
        proofs=("kernel-cross-entropy-index",),
        equations=("one-hot",),
        options=_INDEX_OPTIONS,
    ),
    Member(
        "cross_entropy_grad_index",
        ("z", "labels"),
        (Output("grad", 1),),
        "grad = s - onehot(label), n*K values; NaN rows where a label is outside 0..K-1",
        forms=("probability", "gradient_true_class"),
        proofs=("kernel-cross-entropy-grad-index",),
        equations=("one-hot",),
        options=_INDEX_OPTIONS,
    ),
    Member(
        "cross_entropy_with_grad",
        ("z", "y"),
        (Output("loss", 0), Output("grad", 1)),
        "loss as cross_entropy (n values) and grad as cross_entropy_grad (n*K values), "
        "reading z and y once",
        forms=("log_normaliser", "loss_term", "probability", "gradient"),
        proofs=("stable-cross-entropy", "kernel-cross-entropy-gradient"),
        options=_LOSS_OPTIONS,
    ),
    Member(
        "cross_entropy_with_grad_index",
        ("z", "labels"),
        (Output("loss", 0), Output("grad", 1)),
        "loss as cross_entropy_index (n values) and grad as cross_entropy_grad_index "
        "(n*K values), reading z once",
        forms=("log_normaliser", "loss_index", "probability", "gradient_true_class"),
        proofs=("kernel-cross-entropy-index", "kernel-cross-entropy-grad-index"),
        options=_INDEX_OPTIONS,
    ),
    Member(
        "softmax_jvp",
        ("z", "v"),
        (Output("out", 1),),
        "out = J v = s * (v - <s, v>) with J = ds/dz, n*K values, O(K) per row",
        forms=("probability", "jvp_term", "jvp"),
        proofs=("kernel-softmax-jvp",),
        equations=("general-jvp",),
        whole_rows=True,
    ),
    Member(
        "softmax_vjp",
        ("z", "v"),
        (Output("out", 1),),
        "out = J^T v (= J v: J is symmetric), n*K values, O(K) per row",
        forms=("probability", "jvp_term", "vjp"),
        proofs=("kernel-softmax-vjp", "jacobian-equals-transpose"),
        equations=("general-vjp",),
        whole_rows=True,
    ),
)

NAMES = tuple(member.name for member in MEMBERS)
BY_NAME = {member.name: member for member in MEMBERS}


def c_name(function: str, k: int, suffix: str) -> str:
    return f"{function}_k{k}_{suffix}"
