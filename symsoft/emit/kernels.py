"""The public kernel names and signatures, shared by the C and Python emitters and the docs."""

from __future__ import annotations

from dataclasses import dataclass

FUNCTIONS = (
    "softmax",
    "log_softmax",
    "softmax_jacobian",
    "cross_entropy",
    "cross_entropy_grad",
    "cross_entropy_index",
    "cross_entropy_grad_index",
    "cross_entropy_with_grad",
    "softmax_jvp",
    "softmax_vjp",
)


@dataclass(frozen=True)
class CKernel:
    name: str
    params: str  # with the element type written as T
    doc: str


C_KERNELS = (
    CKernel("softmax", "const T *z, T *s, size_t n", "s = softmax(z), n*K values"),
    CKernel("log_softmax", "const T *z, T *out, size_t n", "out = log softmax(z), n*K values"),
    CKernel(
        "softmax_jacobian",
        "const T *z, T *jac, size_t n",
        "jac = d s / d z, n*K*K values, row-major",
    ),
    CKernel(
        "cross_entropy",
        "const T *z, const T *y, T *loss, size_t n",
        "loss = -sum_i y_i log s_i, n values",
    ),
    CKernel(
        "cross_entropy_grad",
        "const T *z, const T *y, T *grad, size_t n",
        "grad = s * sum(y) - y, n*K values",
    ),
    CKernel(
        "cross_entropy_index",
        "const T *z, const int64_t *labels, T *loss, size_t n",
        "loss = -log s_label, n values; NaN where a label is outside 0..K-1",
    ),
    CKernel(
        "cross_entropy_grad_index",
        "const T *z, const int64_t *labels, T *grad, size_t n",
        "grad = s - onehot(label), n*K values; NaN rows where a label is outside 0..K-1",
    ),
    CKernel(
        "cross_entropy_with_grad",
        "const T *z, const T *y, T *loss, T *grad, size_t n",
        "loss as cross_entropy (n values) and grad as cross_entropy_grad (n*K values), "
        "reading z and y once",
    ),
    CKernel(
        "softmax_jvp",
        "const T *z, const T *v, T *out, size_t n",
        "out = J v = s * (v - <s, v>) with J = ds/dz, n*K values, O(K) per row",
    ),
    CKernel(
        "softmax_vjp",
        "const T *z, const T *v, T *out, size_t n",
        "out = J^T v (= J v: J is symmetric), n*K values, O(K) per row",
    ),
)


def c_name(function: str, k: int, suffix: str) -> str:
    return f"{function}_k{k}_{suffix}"
