"""The C kernels as differentiable functions: `symsoft.load(k).torch` and `.jax`.

Forward and backward both run in the emitted C (through CKernels), on CPU data:

- softmax: s = softmax(z); backward softmax_vjp(z, g) = s * (g - <s, g>) (J is symmetric);
- log_softmax: backward log_softmax_vjp(z, g) = g - s * sum(g);
- cross_entropy (probability targets y) and cross_entropy_index (integer labels): when z
  needs a gradient, forward computes loss and gradient together (the fused kernel, reading z
  once) and backward only scales the saved gradient by the incoming one, row by row; the
  gradient with respect to y is -log_softmax(z) scaled the same way.

Losses are per row unless `reduction` says otherwise ("mean" and "sum" as in PyTorch, which
for these losses is the mean and the sum over every row). Further keyword options are passed
to both the loss and the gradient kernel unchanged, so that class weights, ignore_index and
label smoothing reach them once the kernels take them (issue 17).

torch and jax are imported only when `.torch` or `.jax` is first used.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy

if TYPE_CHECKING:
    import jax
    import torch

    from symsoft.runtime.ckernels import CKernels

REDUCTIONS = ("none", "mean", "sum")
_FLOATS = ("float32", "float64")  # the dtypes the C kernels have


def _check_reduction(reduction: str, options: dict[str, Any]) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    # PyTorch's mean divides by the total weight of the rows it counts, not by their number,
    # when some are weighted or ignored: not known here until the kernels take those options
    if reduction == "mean" and {"weight", "ignore_index"} & options.keys():
        raise NotImplementedError("reduction='mean' with weight or ignore_index (issue 17)")


# --- PyTorch ------------------------------------------------------------------------------------


def _array(tensor: torch.Tensor) -> numpy.ndarray:
    """The tensor's memory as a NumPy array (no copy; CKernels copies what C cannot take)."""
    return tensor.detach().numpy()


def _tensor(array: object) -> torch.Tensor:
    import torch

    # asarray: for a single row the kernels return a NumPy scalar, as NumPy's reductions do
    return torch.from_numpy(numpy.asarray(array))


def _check_tensor(tensor: object, name: str, floats: bool = True) -> None:
    import torch

    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.device.type != "cpu":
        raise ValueError(
            f"{name} is on {tensor.device}: symsoft's C kernels run on the CPU; move it with "
            ".cpu(), or use symsoft.load(k, backend='array-api'), which runs on any device"
        )
    if floats and str(tensor.dtype).removeprefix("torch.") not in _FLOATS:
        raise TypeError(f"{name} must be float32 or float64, got {tensor.dtype}")
    if not floats and (tensor.dtype.is_floating_point or tensor.dtype.is_complex):
        raise TypeError(f"{name} must be integer class indices, got {tensor.dtype}")


def _torch_options(options: dict[str, Any]) -> dict[str, Any]:
    import torch

    return {k: _array(v) if isinstance(v, torch.Tensor) else v for k, v in options.items()}


@cache
def _torch_functions() -> dict[str, Any]:
    """The autograd.Function classes, made once: defining them needs torch imported."""
    import torch
    from torch.autograd.function import once_differentiable

    class FirstDerivativeOnly(torch.autograd.Function):
        """A gradient computed in C, tied to the inputs it depends on: differentiating it
        again raises instead of treating it as a constant."""

        @staticmethod
        def forward(ctx, gradient: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
            return gradient.clone()  # only under create_graph=True

        @staticmethod
        def backward(ctx, *grads: torch.Tensor) -> None:
            raise RuntimeError(
                "symsoft's torch functions cannot differentiate twice: their backward runs "
                "in C, outside autograd (use torch.nn.functional for second derivatives)"
            )

    def first_order(backward: Callable) -> Callable:
        """once_differentiable (backward under no_grad), and with create_graph=True every
        gradient tied to what it depends on (the saved inputs and the incoming gradient):
        once_differentiable alone ties it to detached copies, so torch.autograd.grad(...,
        inputs=z) of a second derivative never reaches its error and silently leaves this
        term out, and when the incoming gradient is a constant (loss.backward() of a sum) it
        returns a constant."""
        once = once_differentiable(backward)

        @functools.wraps(backward)
        def wrapper(ctx: Any, *grads: torch.Tensor) -> tuple[Any, ...]:
            results = once(ctx, *grads)
            if not torch.is_grad_enabled():  # an ordinary backward, without create_graph
                return results
            sources = [*ctx.saved_tensors, *grads]
            sources = [t for t in sources if t is not None and t.requires_grad]
            if not sources:
                return results
            return tuple(
                None if r is None else FirstDerivativeOnly.apply(r.detach(), *sources)
                for r in results
            )

        return wrapper

    # Each takes the CKernels first (not differentiable: backward returns None for it) and
    # saves its tensor inputs (references, not copies) for first_order.

    class Softmax(torch.autograd.Function):
        @staticmethod
        def forward(ctx, kernels: CKernels, z: torch.Tensor) -> torch.Tensor:
            ctx.kernels = kernels
            ctx.save_for_backward(z)
            return _tensor(kernels.softmax(_array(z)))

        @staticmethod
        @first_order
        def backward(ctx, g: torch.Tensor) -> tuple[None, torch.Tensor]:
            (z,) = ctx.saved_tensors
            return None, _tensor(ctx.kernels.softmax_vjp(_array(z), _array(g)))

    class LogSoftmax(torch.autograd.Function):
        @staticmethod
        def forward(ctx, kernels: CKernels, z: torch.Tensor) -> torch.Tensor:
            ctx.kernels = kernels
            ctx.save_for_backward(z)
            return _tensor(kernels.log_softmax(_array(z)))

        @staticmethod
        @first_order
        def backward(ctx, g: torch.Tensor) -> tuple[None, torch.Tensor]:
            (z,) = ctx.saved_tensors
            return None, _tensor(ctx.kernels.log_softmax_vjp(_array(z), _array(g)))

    class CrossEntropy(torch.autograd.Function):
        @staticmethod
        def forward(
            ctx, kernels: CKernels, z: torch.Tensor, y: torch.Tensor, options: dict[str, Any]
        ) -> torch.Tensor:
            ctx.kernels, ctx.options = kernels, options
            z_, y_ = _array(z), _array(y)
            if ctx.needs_input_grad[1]:
                loss, grad = kernels.cross_entropy_with_grad(z_, y_, **options)
                ctx.grad = _tensor(grad)
            else:
                loss = kernels.cross_entropy(z_, y_, **options)
            ctx.save_for_backward(z, y)
            return _tensor(loss)

        @staticmethod
        @first_order
        def backward(ctx, g: torch.Tensor) -> tuple[Any, ...]:
            z, y = ctx.saved_tensors
            per_row = g.unsqueeze(-1)
            dz = ctx.grad * per_row if ctx.needs_input_grad[1] else None
            dy = None
            if ctx.needs_input_grad[2]:  # dL/dy_i = -log s_i
                if ctx.options:
                    raise NotImplementedError("the gradient with respect to y with options")
                dy = _tensor(ctx.kernels.log_softmax(_array(z))).neg_() * per_row
                dy = dy.to(y.dtype)
            return None, dz, dy, None

    class CrossEntropyIndex(torch.autograd.Function):
        @staticmethod
        def forward(
            ctx,
            kernels: CKernels,
            z: torch.Tensor,
            labels: torch.Tensor,
            options: dict[str, Any],
        ) -> torch.Tensor:
            z_, labels_ = _array(z), _array(labels)
            if ctx.needs_input_grad[1]:
                loss, grad = kernels.cross_entropy_with_grad_index(z_, labels_, **options)
                ctx.grad = _tensor(grad)
            else:
                loss = kernels.cross_entropy_index(z_, labels_, **options)
            ctx.save_for_backward(z)
            return _tensor(loss)

        @staticmethod
        @first_order
        def backward(ctx, g: torch.Tensor) -> tuple[None, torch.Tensor, None, None]:
            return None, ctx.grad * g.unsqueeze(-1), None, None

    return {
        "softmax": Softmax,
        "log_softmax": LogSoftmax,
        "cross_entropy": CrossEntropy,
        "cross_entropy_index": CrossEntropyIndex,
    }


def _reduce(loss: Any, reduction: str) -> Any:
    """PyTorch's reductions of per-row losses (without weights: the mean over rows)."""
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


class TorchKernels:
    """`symsoft.load(k).torch`: softmax, log_softmax and the cross-entropy losses as
    differentiable functions of CPU tensors (float32 or float64), forward and backward in C.

    As torch.nn.functional, with the class axis last, as every symsoft kernel has it:
    `softmax(z, dim=-1)`, `log_softmax(z, dim=-1)` (another dim is moved last and back, at
    the cost of a copy); `cross_entropy(z, y)` for probability targets y of z's shape and
    `cross_entropy_index(z, labels)` for integer labels of shape z.shape[:-1]. For (N, K)
    logits these are F.cross_entropy's (N, C) cases; for (N, C, d1, ...) pass
    z.movedim(1, -1). The losses are per row (`reduction="none"`, the kernels' own
    convention) unless `reduction="mean"` or `"sum"` is given, as in F.cross_entropy. A label
    outside 0..K-1 gives a NaN loss and gradient for its row (F.cross_entropy raises).
    Second derivatives raise (RuntimeError): backward is computed in C, outside autograd.
    """

    def __init__(self, kernels: CKernels) -> None:
        self.kernels = kernels
        self.k = kernels.k
        self._functions = _torch_functions()  # imports torch: without it, its ImportError

    def __repr__(self) -> str:
        return f"<symsoft torch functions K={self.k}>"

    def softmax(self, z: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """softmax(z) along dim, as F.softmax(z, dim)."""
        return self._along(self._functions["softmax"], z, dim)

    def log_softmax(self, z: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """log softmax(z) along dim, as F.log_softmax(z, dim)."""
        return self._along(self._functions["log_softmax"], z, dim)

    def cross_entropy(
        self, z: torch.Tensor, y: torch.Tensor, *, reduction: str = "none", **options: Any
    ) -> torch.Tensor:
        """-sum_i y_i log softmax(z)_i per row, as F.cross_entropy(z, y, reduction=...) with
        probability targets; differentiable in z and in y."""
        _check_tensor(z, "z")
        _check_tensor(y, "y")
        _check_reduction(reduction, options)
        function = self._functions["cross_entropy"]
        loss = function.apply(self.kernels, z, y, _torch_options(options))
        return _reduce(loss, reduction)

    def cross_entropy_index(
        self, z: torch.Tensor, labels: torch.Tensor, *, reduction: str = "none", **options: Any
    ) -> torch.Tensor:
        """-log softmax(z)_label per row, as F.cross_entropy(z, labels, reduction=...) with
        class indices."""
        _check_tensor(z, "z")
        _check_tensor(labels, "labels", floats=False)
        _check_reduction(reduction, options)
        function = self._functions["cross_entropy_index"]
        loss = function.apply(self.kernels, z, labels, _torch_options(options))
        return _reduce(loss, reduction)

    def _along(self, function: Any, z: torch.Tensor, dim: int) -> torch.Tensor:
        _check_tensor(z, "z")
        if z.ndim == 0:
            raise ValueError(f"z must have shape (..., {self.k}), got a 0-d tensor")
        dim = dim % z.ndim if -z.ndim <= dim < z.ndim else dim
        if not 0 <= dim < z.ndim:
            raise IndexError(f"dim {dim} is out of range for a {z.ndim}-d tensor")
        if dim == z.ndim - 1:
            return function.apply(self.kernels, z)
        # autograd moves the gradient back through movedim
        return function.apply(self.kernels, z.movedim(dim, -1)).movedim(-1, dim)


# --- JAX ----------------------------------------------------------------------------------------


class JaxKernels:
    """`symsoft.load(k).jax`: softmax, log_softmax and the cross-entropy losses as
    jax.custom_vjp functions whose forward and backward call the C kernels through
    jax.pure_callback (on the host CPU); they work under jax.jit, jax.grad and jax.vmap.

    As jax.nn.softmax / jax.nn.log_softmax (`axis=-1`), and the losses as the torch ones:
    `cross_entropy(z, y)` and `cross_entropy_index(z, labels)` per row, or
    `reduction="mean"` / `"sum"`. float32 or float64 (float64 needs jax_enable_x64).
    """

    def __init__(self, kernels: CKernels) -> None:
        import jax

        self.kernels = kernels
        self.k = kernels.k
        self._jax = jax
        self._softmax = self._probabilities("softmax", "softmax_vjp")
        self._log_softmax = self._probabilities("log_softmax", "log_softmax_vjp")
        self._cross_entropy = self._soft_loss()
        self._cross_entropy_index = self._index_loss()

    def __repr__(self) -> str:
        return f"<symsoft jax functions K={self.k}>"

    def softmax(self, z: jax.Array, axis: int = -1) -> jax.Array:
        """softmax(z) along axis, as jax.nn.softmax(z, axis)."""
        return self._along(self._softmax, z, axis)

    def log_softmax(self, z: jax.Array, axis: int = -1) -> jax.Array:
        """log softmax(z) along axis, as jax.nn.log_softmax(z, axis)."""
        return self._along(self._log_softmax, z, axis)

    def cross_entropy(self, z: jax.Array, y: jax.Array, *, reduction: str = "none") -> jax.Array:
        """-sum_i y_i log softmax(z)_i per row; differentiable in z and in y."""
        _check_reduction(reduction, {})
        z = self._logits(z)
        y = self._jax.numpy.asarray(y)
        if y.shape != z.shape:
            raise ValueError(f"y must have the shape of z, {z.shape}, got {y.shape}")
        if y.dtype.name not in _FLOATS:
            raise TypeError(f"y must be float32 or float64, got {y.dtype}")
        loss = self._cross_entropy(z, y.astype(z.dtype))
        return _reduce(loss, reduction)

    def cross_entropy_index(
        self, z: jax.Array, labels: jax.Array, *, reduction: str = "none"
    ) -> jax.Array:
        """-log softmax(z)_label per row (NaN where a label is outside 0..K-1)."""
        _check_reduction(reduction, {})
        z = self._logits(z)
        labels = self._jax.numpy.asarray(labels)
        if labels.dtype.kind not in "iu":
            raise TypeError(f"labels must be integer class indices, got {labels.dtype}")
        if labels.shape != z.shape[:-1]:
            raise ValueError(f"labels must have shape {z.shape[:-1]}, got {labels.shape}")
        return _reduce(self._cross_entropy_index(z, labels), reduction)

    # Shapes and dtypes are checked here, while tracing: an exception inside a pure_callback
    # would surface as an opaque runtime error.

    def _logits(self, z: object) -> jax.Array:
        z = self._jax.numpy.asarray(z)
        if z.dtype.name not in _FLOATS:
            raise TypeError(f"z must be float32 or float64, got {z.dtype}")
        if z.ndim == 0 or z.shape[-1] != self.k:
            raise ValueError(f"z must have shape (..., {self.k}) for K={self.k}, got {z.shape}")
        return z

    def _along(self, function: Callable, z: object, axis: int) -> jax.Array:
        moved = self._jax.numpy.moveaxis(self._jax.numpy.asarray(z), axis, -1)
        return self._jax.numpy.moveaxis(function(self._logits(moved)), -1, axis)

    def _call(self, name: str, shapes: Any, *args: jax.Array) -> Any:
        """The kernel `name` on the host; shapes: the results' jax.ShapeDtypeStruct(s)."""

        def host(*arrays: Any) -> Any:
            # JAX hands the callback its own CPU arrays, which the C backend refuses by name
            # (one behaviour per backend): the host-side NumPy views are what it takes
            result = getattr(self.kernels, name)(*(numpy.asarray(a) for a in arrays))
            if isinstance(result, tuple):
                return tuple(numpy.asarray(r) for r in result)
            return numpy.asarray(result)

        # broadcast_all: under vmap every input gets the batch axis first, and the kernels
        # take any leading axes as rows
        return self._jax.pure_callback(host, shapes, *args, vmap_method="broadcast_all")

    def _rows(self, z: jax.Array) -> Any:
        return self._jax.ShapeDtypeStruct(z.shape[:-1], z.dtype)

    def _like(self, z: jax.Array) -> Any:
        return self._jax.ShapeDtypeStruct(z.shape, z.dtype)

    def _probabilities(self, forward: str, backward: str) -> Callable:
        jax = self._jax

        @jax.custom_vjp
        def function(z: jax.Array) -> jax.Array:
            return self._call(forward, self._like(z), z)

        def fwd(z: jax.Array) -> tuple[jax.Array, jax.Array]:
            return function(z), z

        def bwd(z: jax.Array, g: jax.Array) -> tuple[jax.Array]:
            return (self._call(backward, self._like(z), z, g),)

        function.defvjp(fwd, bwd)
        return function

    def _soft_loss(self) -> Callable:
        jax = self._jax

        @jax.custom_vjp
        def loss(z: jax.Array, y: jax.Array) -> jax.Array:
            return self._call("cross_entropy", self._rows(z), z, y)

        def fwd(z: jax.Array, y: jax.Array) -> tuple[jax.Array, tuple]:
            value, grad = self._call(
                "cross_entropy_with_grad", (self._rows(z), self._like(z)), z, y
            )
            return value, (grad, z)

        def bwd(saved: tuple, g: jax.Array) -> tuple[jax.Array, jax.Array]:
            grad, z = saved
            per_row = g[..., None]
            # dL/dy_i = -log s_i; jax drops it when y needs no gradient
            return grad * per_row, -self._call("log_softmax", self._like(z), z) * per_row

        loss.defvjp(fwd, bwd)
        return loss

    def _index_loss(self) -> Callable:
        jax = self._jax

        @jax.custom_vjp
        def loss(z: jax.Array, labels: jax.Array) -> jax.Array:
            return self._call("cross_entropy_index", self._rows(z), z, labels)

        def fwd(z: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
            if hasattr(self.kernels, "cross_entropy_with_grad_index"):
                shapes = (self._rows(z), self._like(z))
                value, grad = self._call("cross_entropy_with_grad_index", shapes, z, labels)
            else:
                value = self._call("cross_entropy_index", self._rows(z), z, labels)
                grad = self._call("cross_entropy_grad_index", self._like(z), z, labels)
            return value, grad

        def bwd(grad: jax.Array, g: jax.Array) -> tuple[jax.Array, None]:
            return grad * g[..., None], None  # labels are integers: no cotangent

        loss.defvjp(fwd, bwd)
        return loss
