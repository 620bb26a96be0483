"""The C kernels as differentiable functions: `symsoft.load(k).torch` and `.jax`.

Forward and backward both run in the emitted C (through CKernels), on CPU data:

- softmax: s = softmax(z); backward softmax_vjp(z, g) = s * (g - <s, g>) (J is symmetric);
- log_softmax: backward log_softmax_vjp(z, g) = g - s * sum(g);
- cross_entropy (probability targets y) and cross_entropy_index (integer labels): when z
  needs a gradient, forward computes loss and gradient together (the fused kernel, reading z
  once) and backward only scales the saved gradient by the incoming one, row by row; the
  gradient with respect to y is -log_softmax(z) scaled the same way.

Losses are per row unless `reduction` says otherwise ("mean" and "sum" as in PyTorch). The
cross-entropy options (weight, ignore_index, label_smoothing, temperature, z_loss: issue 17)
go to the kernels, which give each row's loss and that loss's gradient; the reduction is done
here, in torch or jax, so that autograd (and jax.vmap) see it: "mean" divides by PyTorch's
normaliser, the sum of the weights of the labels not ignored (the number of rows for
probability targets), and a batch with nothing to count gives NaN with a zero gradient.

torch and jax are imported only when `.torch` or `.jax` is first used.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy

from symsoft.runtime.arrays import as_numbers

if TYPE_CHECKING:
    import jax
    import torch

    from symsoft.runtime.ckernels import CKernels

REDUCTIONS = ("none", "mean", "sum")
# the dtypes the C kernels have: float, double, and bfloat16 / float16 storage (computed in
# float, rounded once; the options path is float and double only)
_FLOATS = ("float32", "float64", "bfloat16", "float16")


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")


def _options(
    weight: Any, ignore_index: Any, label_smoothing: Any, temperature: Any, z_loss: Any
) -> dict[str, Any]:
    """The options the kernels take, leaving out those at their default (the plain kernels)."""
    given = {
        "weight": weight,
        "ignore_index": ignore_index,
        "label_smoothing": label_smoothing,
        "temperature": temperature,
        "z_loss": z_loss,
    }
    defaults = {"label_smoothing": 0.0, "temperature": 1.0, "z_loss": 0.0}
    return {
        name: value
        for name, value in given.items()
        if value is not None and not (name in defaults and _is_number(value, defaults[name]))
    }


def _is_number(value: Any, number: float) -> bool:
    return isinstance(value, int | float) and value == number


def _reduce(xp: Any, loss: Any, reduction: str, labels: Any, options: dict[str, Any]) -> Any:
    """PyTorch's reductions of per-row losses (xp: torch or jax.numpy). "mean" divides by the
    sum of the weights of the labels not ignored (integer labels; the number of rows when
    nothing is weighted or ignored, and for probability targets); with nothing to count it
    is NaN with a zero gradient (the NaN is selected, not divided into: 0/0 would carry NaN
    into the gradient)."""
    if reduction == "none":
        return loss
    total = xp.sum(loss)
    if reduction == "sum":
        return total
    if labels is None or not {"weight", "ignore_index"} & options.keys():
        return total / math.prod(loss.shape)
    ignore_index = options.get("ignore_index")
    kept = None if ignore_index is None else labels != ignore_index
    if "weight" in options:
        weight = xp.asarray(options["weight"], dtype=loss.dtype)
        rows = weight[labels if kept is None else xp.where(kept, labels, 0)]
    else:
        rows = xp.ones(labels.shape, dtype=loss.dtype)
    if kept is not None:
        rows = xp.where(kept, rows, 0)
    normaliser = xp.sum(rows)
    counted = normaliser > 0
    return xp.where(counted, total / xp.where(counted, normaliser, 1), xp.nan)


def _soft_target_gradient(
    kernels: CKernels, z: numpy.ndarray, options: dict[str, Any], convert: Callable
) -> Any:
    """d loss / d y of each row's loss: the target of class j is a_j = w_j ((1 - eps) y_j +
    eps / K) and the loss sum_j a_j (lse - q_j) + lam lse^2 with q = z / T, so the derivative
    is -(1 - eps) w_j log softmax(z / T)_j (the z-loss does not depend on y)."""
    temperature = options.get("temperature", 1.0)
    gradient = convert(kernels.log_softmax(z, temperature=temperature))
    gradient = gradient * -(1 - options.get("label_smoothing", 0.0))
    if "weight" in options:
        # in z's type; for a bfloat16 tensor (no NumPy type) float32
        dtype = z.dtype if isinstance(z, numpy.ndarray) else numpy.float32
        gradient = gradient * convert(as_numbers(options["weight"]).astype(dtype))
    return gradient


# --- PyTorch ------------------------------------------------------------------------------------


def _array(tensor: torch.Tensor) -> numpy.ndarray | torch.Tensor:
    """The tensor's memory as a NumPy array (no copy; CKernels copies what C cannot take);
    a bfloat16 tensor as it is (NumPy has no bfloat16: CKernels takes its bits)."""
    tensor = tensor.detach()
    return tensor if str(tensor.dtype) == "torch.bfloat16" else tensor.numpy()


def _tensor(array: object) -> torch.Tensor:
    import torch

    if isinstance(array, torch.Tensor):  # CKernels gives tensors for tensors (bfloat16)
        return array
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
        raise TypeError(f"{name} must be float32, float64, bfloat16 or float16, got {tensor.dtype}")
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
            if ctx.needs_input_grad[2]:
                dy = _soft_target_gradient(ctx.kernels, _array(z), ctx.options, _tensor)
                dy = (dy * per_row).to(y.dtype)
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


class TorchKernels:
    """`symsoft.load(k).torch`: softmax, log_softmax and the cross-entropy losses as
    differentiable functions of CPU tensors (float32, float64, bfloat16 or float16), forward
    and backward in C.

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
        self,
        z: torch.Tensor,
        y: torch.Tensor,
        *,
        reduction: str = "none",
        weight: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
        temperature: float = 1.0,
        z_loss: float = 0.0,
    ) -> torch.Tensor:
        """-sum_i y_i log softmax(z)_i per row, as F.cross_entropy(z, y, reduction=...,
        weight=..., label_smoothing=...) with probability targets, and symsoft's temperature
        and z_loss; differentiable in z and in y."""
        import torch

        _check_tensor(z, "z")
        _check_tensor(y, "y")
        _check_reduction(reduction)
        options = _options(weight, None, label_smoothing, temperature, z_loss)
        function = self._functions["cross_entropy"]
        loss = function.apply(self.kernels, z, y, _torch_options(options))
        return _reduce(torch, loss, reduction, None, options)

    def cross_entropy_index(
        self,
        z: torch.Tensor,
        labels: torch.Tensor,
        *,
        reduction: str = "none",
        weight: torch.Tensor | None = None,
        ignore_index: int | None = None,
        label_smoothing: float = 0.0,
        temperature: float = 1.0,
        z_loss: float = 0.0,
    ) -> torch.Tensor:
        """-log softmax(z)_label per row, as F.cross_entropy(z, labels, reduction=...,
        weight=..., ignore_index=..., label_smoothing=...) with class indices (no row is
        ignored unless ignore_index is given: F.cross_entropy's default is -100), and
        symsoft's temperature and z_loss."""
        import torch

        _check_tensor(z, "z")
        _check_tensor(labels, "labels", floats=False)
        _check_reduction(reduction)
        options = _options(weight, ignore_index, label_smoothing, temperature, z_loss)
        function = self._functions["cross_entropy_index"]
        loss = function.apply(self.kernels, z, labels, _torch_options(options))
        return _reduce(torch, loss, reduction, labels, options)

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
    `reduction="mean"` / `"sum"`. float32, float64 (with jax_enable_x64), bfloat16 or float16.
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

    def cross_entropy(
        self,
        z: jax.Array,
        y: jax.Array,
        *,
        reduction: str = "none",
        weight: Any = None,
        label_smoothing: float = 0.0,
        temperature: float = 1.0,
        z_loss: float = 0.0,
    ) -> jax.Array:
        """-sum_i y_i log softmax(z)_i per row, with the torch functions' options;
        differentiable in z and in y."""
        _check_reduction(reduction)
        z = self._logits(z)
        y = self._jax.numpy.asarray(y)
        if y.shape != z.shape:
            raise ValueError(f"y must have the shape of z, {z.shape}, got {y.shape}")
        if y.dtype.name not in _FLOATS:
            raise TypeError(f"y must be float32, float64, bfloat16 or float16, got {y.dtype}")
        options = self._static(z, _options(weight, None, label_smoothing, temperature, z_loss))
        loss = self._cross_entropy(options, z, y.astype(z.dtype))
        return _reduce(self._jax.numpy, loss, reduction, None, dict(options))

    def cross_entropy_index(
        self,
        z: jax.Array,
        labels: jax.Array,
        *,
        reduction: str = "none",
        weight: Any = None,
        ignore_index: int | None = None,
        label_smoothing: float = 0.0,
        temperature: float = 1.0,
        z_loss: float = 0.0,
    ) -> jax.Array:
        """-log softmax(z)_label per row, with the torch functions' options."""
        _check_reduction(reduction)
        z = self._logits(z)
        labels = self._jax.numpy.asarray(labels)
        if labels.dtype.kind not in "iu":
            raise TypeError(f"labels must be integer class indices, got {labels.dtype}")
        if labels.shape != z.shape[:-1]:
            raise ValueError(f"labels must have shape {z.shape[:-1]}, got {labels.shape}")
        options = self._static(
            z, _options(weight, ignore_index, label_smoothing, temperature, z_loss)
        )
        loss = self._cross_entropy_index(options, z, labels)
        return _reduce(self._jax.numpy, loss, reduction, labels, dict(options))

    def _static(self, z: jax.Array, options: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
        """The options checked now, while tracing (a ValueError naming a bad one), as a
        hashable tuple: custom_vjp takes them as a static argument. A weight must be a
        concrete array, not a traced one."""
        from symsoft.runtime.ckernels import check_options

        if not options:
            return ()
        if "weight" in options:
            try:
                weight = numpy.asarray(options["weight"], dtype=z.dtype)
            except self._jax.errors.TracerArrayConversionError:
                raise TypeError("weight must be a concrete array, not one traced by jax") from None
            options["weight"] = tuple(weight.tolist()) if weight.ndim == 1 else weight
        # 16-bit logits take the float32 options path (CKernels: each result rounded once)
        wide = z.dtype if z.dtype in (numpy.float32, numpy.float64) else numpy.float32
        check_options(numpy.empty((0, self.k), wide), **options)
        return tuple(sorted(options.items()))

    # Shapes and dtypes are checked here, while tracing: an exception inside a pure_callback
    # would surface as an opaque runtime error.

    def _logits(self, z: object) -> jax.Array:
        z = self._jax.numpy.asarray(z)
        if z.dtype.name not in _FLOATS:
            raise TypeError(f"z must be float32, float64, bfloat16 or float16, got {z.dtype}")
        if z.ndim == 0 or z.shape[-1] != self.k:
            raise ValueError(f"z must have shape (..., {self.k}) for K={self.k}, got {z.shape}")
        return z

    def _along(self, function: Callable, z: object, axis: int) -> jax.Array:
        moved = self._jax.numpy.moveaxis(self._jax.numpy.asarray(z), axis, -1)
        return self._jax.numpy.moveaxis(function(self._logits(moved)), -1, axis)

    def _call(self, name: str, shapes: Any, *args: jax.Array, options: tuple = ()) -> Any:
        """The kernel `name` on the host; shapes: the results' jax.ShapeDtypeStruct(s);
        options: the static options (_static), passed as keywords."""
        keywords = {k: numpy.asarray(v) if k == "weight" else v for k, v in options}

        def host(*arrays: Any) -> Any:
            # JAX hands the callback its own CPU arrays, which the C backend refuses by name
            # (one behaviour per backend): the host-side NumPy views are what it takes
            result = getattr(self.kernels, name)(*(numpy.asarray(a) for a in arrays), **keywords)
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

        @functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
        def loss(options: tuple, z: jax.Array, y: jax.Array) -> jax.Array:
            return self._call("cross_entropy", self._rows(z), z, y, options=options)

        def fwd(options: tuple, z: jax.Array, y: jax.Array) -> tuple[jax.Array, tuple]:
            shapes = (self._rows(z), self._like(z))
            value, grad = self._call("cross_entropy_with_grad", shapes, z, y, options=options)
            return value, (grad, z)

        def bwd(options: tuple, saved: tuple, g: jax.Array) -> tuple[jax.Array, jax.Array]:
            grad, z = saved
            per_row = g[..., None]

            def target_gradient(z: numpy.ndarray) -> numpy.ndarray:
                return numpy.asarray(
                    _soft_target_gradient(
                        self.kernels, numpy.asarray(z), dict(options), numpy.asarray
                    )
                )

            # jax drops dL/dy when y needs no gradient
            dy = jax.pure_callback(target_gradient, self._like(z), z, vmap_method="broadcast_all")
            return grad * per_row, dy * per_row

        loss.defvjp(fwd, bwd)
        return loss

    def _index_loss(self) -> Callable:
        jax = self._jax

        @functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
        def loss(options: tuple, z: jax.Array, labels: jax.Array) -> jax.Array:
            return self._call("cross_entropy_index", self._rows(z), z, labels, options=options)

        def fwd(options: tuple, z: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
            shapes = (self._rows(z), self._like(z))
            return self._call("cross_entropy_with_grad_index", shapes, z, labels, options=options)

        def bwd(options: tuple, grad: jax.Array, g: jax.Array) -> tuple[jax.Array, None]:
            return grad * g[..., None], None  # labels are integers: no cotangent

        loss.defvjp(fwd, bwd)
        return loss
