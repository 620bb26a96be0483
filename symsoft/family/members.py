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
    "g": "vector",  # (..., K) an upstream gradient, floats of z's dtype
    "z_student": "logits",  # (..., K) logits, as z, under the name distillation gives them
    "z_teacher": "vector",  # (..., K) the teacher's logits, floats of z_student's dtype
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
    whole_rows: bool = False  # C: no libm call, label branch or K x K output: rows can be
    #                           computed whole over groups turned into columns (see emit/c.py)
    checks: str = ""  # `symsoft check --of NAME` checks a user's derivative of this member
    # scalar parameters (name, default): C takes each by value after the arrays; Python as a
    # keyword-only argument. A temperature must be finite and > 0 (C: NaN rows otherwise).
    scalars: tuple[tuple[str, float], ...] = ()
    # C computes per row; Python takes reduction="batchmean" | "sum" | "none" and reduces the
    # outputs: the per-row values summed (divided by the batch size z.shape[0] for
    # batchmean), the per-row gradient divided by the batch size for batchmean
    reduces: bool = False
    # keyword-only options (issue 17), in the order of OPTIONS; their proofs are
    # derivation.options.required_proofs(member), checked before generation
    options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        known = set(self.inputs) <= INPUT_KINDS.keys()
        if not self.inputs or INPUT_KINDS.get(self.inputs[0]) != "logits" or not known:
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
        params += [f"T {name}" for name, _ in self.scalars]
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
        whole_rows=True,  # its log is the branch-free one (templates/c/log.c.jinja)
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
        whole_rows=True,  # its log is the branch-free one (templates/c/log.c.jinja)
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
        whole_rows=True,  # the label's logit picked by selects (templates/c/label_rows.c.jinja)
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
        whole_rows=True,  # the label's entries picked by selects (templates/c/label_rows.c.jinja)
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
        whole_rows=True,  # its log is the branch-free one (templates/c/log.c.jinja)
        options=_LOSS_OPTIONS,
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
    # --- issue 18: log-sum-exp, log-softmax products, distillation, second order ---------
    Member(
        "logsumexp",
        ("z",),
        (Output("out", 0),),
        "out = log sum_j exp(z_j), n values",
        forms=("log_normaliser", "log_sum_exp"),
        proofs=("stable-logsumexp", "logsumexp-gradient"),
        checks="logsumexp",  # fn(z) -> the gradient of log-sum-exp (= softmax)
        equations=("logsumexp-definition", "logsumexp-stable"),
        whole_rows=True,  # its log is the branch-free one (templates/c/log.c.jinja)
    ),
    Member(
        "log_softmax_jvp",
        ("z", "v"),
        (Output("out", 1),),
        "out = J v = v - <s, v> with J = d log s / dz, n*K values, O(K) per row",
        forms=("probability", "jvp_term", "log_softmax_jvp"),
        proofs=("kernel-log-softmax-jvp",),
        equations=("log-softmax-jvp",),
        whole_rows=True,
    ),
    Member(
        "log_softmax_vjp",
        ("z", "g"),
        (Output("out", 1),),
        "out = J^T g = g - s * sum(g) with J = d log s / dz (log-softmax's backward pass), "
        "n*K values, O(K) per row",
        forms=("probability", "log_softmax_vjp"),
        proofs=("kernel-log-softmax-vjp",),
        equations=("log-softmax-vjp",),
        whole_rows=True,
    ),
    Member(
        "distillation_kl",
        ("z_student", "z_teacher"),
        (Output("loss", 0),),
        "loss = T^2 KL(softmax(z_teacher/T) || softmax(z_student/T)) per row, n values "
        "(NaN rows unless T is finite and > 0)",
        forms=("tempered", "log_probability", "probability", "kl_term", "distillation_kl"),
        proofs=("tempered-logits", "stable-distillation-kl"),
        equations=("kd-definition",),
        scalars=(("temperature", 1.0),),
        reduces=True,
    ),
    Member(
        "distillation_kl_grad",
        ("z_student", "z_teacher"),
        (Output("grad", 1),),
        "grad = d distillation_kl / d z_student = T (softmax(z_student/T) - "
        "softmax(z_teacher/T)) per row, n*K values (NaN rows unless T is finite and > 0)",
        forms=("tempered", "probability", "distillation_grad"),
        proofs=("tempered-logits", "distillation-kl-gradient", "kernel-distillation-kl-grad"),
        equations=("kd-gradient",),
        scalars=(("temperature", 1.0),),
        reduces=True,
        checks="distillation_kl",  # fn(z_student, z_teacher) -> this gradient (--temperature)
    ),
    Member(
        "cross_entropy_hessian",
        ("z", "y"),
        (Output("hess", 2),),
        "hess = d^2 L / dz dz = sum(y) (diag(s) - s s^T), n*K*K values, row-major",
        forms=("probability", "hessian"),
        proofs=(
            "cross-entropy-hessian-closed-form",
            "cross-entropy-hessian-symmetric",
            "kernel-cross-entropy-hessian",
        ),
        checks="cross_entropy_hessian",  # fn(z, y) -> (K, K)
        equations=("hessian-matrix",),
    ),
    Member(
        "cross_entropy_hvp",
        ("z", "y", "v"),
        (Output("out", 1),),
        "out = H v = sum(y) s * (v - <s, v>) with H = d^2 L / dz dz, n*K values, O(K) per row",
        forms=("probability", "jvp_term", "hvp"),
        proofs=("kernel-cross-entropy-hvp",),
        equations=("hvp",),
    ),
)

NAMES = tuple(member.name for member in MEMBERS)
BY_NAME = {member.name: member for member in MEMBERS}


def c_name(function: str, k: int, suffix: str, prefix: str = "") -> str:
    """The C symbol of a member; a prefix (--prefix) keeps builds of one K apart in a program."""
    return f"{prefix}_{function}_k{k}_{suffix}" if prefix else f"{function}_k{k}_{suffix}"


def stem(k: int, prefix: str = "") -> str:
    """The kernels' file stem and Python module name: softmax_k{K}, or {prefix}_softmax_k{K}."""
    return f"{prefix}_softmax_k{k}" if prefix else f"softmax_k{k}"


def masked_rows_note(policy: str, function: str = "") -> str:
    """What a fully masked row (every logit -inf) gives under policy, for comments."""
    if policy == "nan":
        return "a fully masked row (every z_i = -inf) gives NaN (--masked-rows nan)"
    fill = "-inf" if function == "log_softmax" else "0" if function else "0 (log_softmax: -inf)"
    return f"a fully masked row (every z_i = -inf) is ignored: {fill} (--masked-rows zero)"


# Appended (issue 22): the training step for integer labels, loss and gradient in one pass.
MEMBERS += (
    Member(
        "cross_entropy_with_grad_index",
        ("z", "labels"),
        (Output("loss", 0), Output("grad", 1)),
        "loss as cross_entropy_index (n values) and grad as cross_entropy_grad_index "
        "(n*K values), reading z once; NaN where a label is outside 0..K-1",
        forms=("log_normaliser", "loss_index", "probability", "gradient_true_class"),
        proofs=("kernel-cross-entropy-index", "kernel-cross-entropy-grad-index"),
        equations=("one-hot",),
        whole_rows=True,
        options=_INDEX_OPTIONS,
    ),
)
NAMES = tuple(member.name for member in MEMBERS)
BY_NAME = {member.name: member for member in MEMBERS}
