"""symsoft.load(k).torch and .jax: the C kernels as differentiable functions, checked against
torch's and jax's own autograd of their reference functions, gradcheck, and a training run."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from symsoft.runtime.autograd import JaxKernels, TorchKernels
from symsoft.runtime.load import load
from tests.conftest import require_tool

FUNCTIONS = ("softmax", "log_softmax", "cross_entropy", "cross_entropy_index")
SHAPES = ((), (7,), (2, 3))  # the batch axes before K
# float32 results against a float64 reference: a few float32 ulps of values of order 1
TOLERANCE = {torch.float32: 2e-6, torch.float64: 1e-14}


@pytest.fixture(scope="module")
def kernels():  # cached in the session's temporary folder (conftest.pytest_configure)
    require_tool("cc")
    return {k: load(k) for k in (3, 10)}


# --- PyTorch ------------------------------------------------------------------------------------


def torch_reference(name: str, z: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """torch's own functions, per row (F.cross_entropy wants the classes on dim 1)."""
    if name == "softmax":
        return F.softmax(z, dim=-1)
    if name == "log_softmax":
        return F.log_softmax(z, dim=-1)
    assert target is not None
    rows = z.reshape(-1, z.shape[-1])
    if name == "cross_entropy":
        loss = F.cross_entropy(rows, target.reshape(rows.shape), reduction="none")
    else:
        loss = F.cross_entropy(rows, target.reshape(-1), reduction="none")
    return loss.reshape(z.shape[:-1])


def symsoft_torch(torch_kernels: TorchKernels, name: str, z, target, **options):
    function = getattr(torch_kernels, name)
    return function(z) if target is None else function(z, target, **options)


def make_target(name: str, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor | None:
    """Soft labels (a random point of the simplex), class indices, or none."""
    if name == "cross_entropy":
        raw = torch.rand(z.shape, generator=generator, dtype=torch.float64)
        return (raw / raw.sum(-1, keepdim=True)).to(z.dtype)
    if name == "cross_entropy_index":
        return torch.randint(0, z.shape[-1], z.shape[:-1], generator=generator)
    return None


def gradients(output: torch.Tensor, inputs: list[torch.Tensor], dtype: torch.dtype) -> list:
    """d<output, g>/d inputs for a random g (rounded to dtype, the tested functions' type):
    a vector-Jacobian product with a generic vector."""
    generator = torch.Generator().manual_seed(1)
    g = torch.randn(output.shape, generator=generator, dtype=torch.float64).to(dtype)
    return list(torch.autograd.grad(output, inputs, g.to(output.dtype)))


def assert_close(got: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    assert got.dtype == dtype and got.shape == expected.shape
    scale = 1 + expected.abs().max().item() if expected.numel() else 1
    tolerance = TOLERANCE[dtype] * scale
    torch.testing.assert_close(got.double(), expected.double(), rtol=0, atol=tolerance)


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [3, 10])
def test_torch_values_and_gradients_equal_torch_autograd(kernels, name, dtype, k):
    """Outputs and vector-Jacobian products against torch autograd of torch's functions in
    float64, on one row, a batch and a batch of batches; soft labels get a gradient too."""
    generator = torch.Generator().manual_seed(k)
    for batch in SHAPES:
        z64 = 3 * torch.randn((*batch, k), generator=generator, dtype=torch.float64)
        target64 = make_target(name, z64, generator)
        z = z64.to(dtype).requires_grad_()
        target = target64
        if name == "cross_entropy":
            target = target64.to(dtype).requires_grad_()
        got = symsoft_torch(kernels[k].torch, name, z, target)
        # the reference sees exactly the rounded inputs the kernels see
        z_ref = z.detach().double().requires_grad_()
        target_ref = target
        if name == "cross_entropy":
            target_ref = target.detach().double().requires_grad_()
        expected = torch_reference(name, z_ref, target_ref)
        assert_close(got.detach(), expected.detach(), dtype)
        inputs = [z, target] if name == "cross_entropy" else [z]
        inputs_ref = [z_ref, target_ref] if name == "cross_entropy" else [z_ref]
        for g, g_ref in zip(
            gradients(got, inputs, dtype), gradients(expected, inputs_ref, dtype), strict=True
        ):
            assert_close(g, g_ref.to(dtype).double(), dtype)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_torch_gradcheck(kernels, name):
    """Analytical gradients (the C backward) against torch's finite differences, float64."""
    generator = torch.Generator().manual_seed(5)
    z = torch.randn(4, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    target = make_target(name, z, generator)
    inputs = (z,)
    if name == "cross_entropy":
        inputs = (z, target.requires_grad_())
        assert torch.autograd.gradcheck(kernels[3].torch.cross_entropy, inputs)
    else:
        assert torch.autograd.gradcheck(
            lambda z: symsoft_torch(kernels[3].torch, name, z, target), inputs
        )


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name", ["cross_entropy", "cross_entropy_index"])
def test_torch_reductions_are_pytorchs(kernels, name, reduction):
    """reduction="mean"/"sum" give F.cross_entropy's value and gradient (and gradcheck)."""
    generator = torch.Generator().manual_seed(6)
    z = torch.randn(6, 10, dtype=torch.float64, generator=generator, requires_grad=True)
    target = make_target(name, z, generator)
    got = symsoft_torch(kernels[10].torch, name, z, target, reduction=reduction)
    expected = F.cross_entropy(z, target, reduction=reduction)
    assert got.shape == () == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-14, atol=0)
    (dz,) = torch.autograd.grad(got, z)
    (dz_ref,) = torch.autograd.grad(expected, z)
    torch.testing.assert_close(dz, dz_ref, rtol=0, atol=1e-15)
    assert torch.autograd.gradcheck(
        lambda z: symsoft_torch(kernels[10].torch, name, z, target, reduction=reduction), (z,)
    )


def test_torch_masked_classes_match_torch(kernels):
    """A class at -inf (masked): probability 0 and gradient exactly 0 there, as torch."""
    z = torch.tensor([[1.0, -torch.inf, 0.5], [-torch.inf, 2.0, -1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 2])
    for name in ("softmax", "log_softmax", "cross_entropy_index"):
        got_z = z.clone().requires_grad_()
        ref_z = z.clone().requires_grad_()
        target = labels if name == "cross_entropy_index" else None
        got = symsoft_torch(kernels[3].torch, name, got_z, target)
        expected = torch_reference(name, ref_z, target)
        torch.testing.assert_close(got, expected, rtol=1e-15, atol=0)
        (dz,) = gradients(got, [got_z], torch.float64)
        (dz_ref,) = gradients(expected, [ref_z], torch.float64)
        torch.testing.assert_close(dz, dz_ref, rtol=0, atol=1e-15)
        if name != "log_softmax":  # log_softmax's gradient at a masked class is g_i
            assert dz[0, 1] == 0 and dz[1, 0] == 0


def test_torch_non_contiguous_inputs_and_other_dims(kernels):
    """Transposed and strided views (and incoming gradients) are read as they are; dim=0
    computes along the first axis, as F.softmax(z, dim=0)."""
    torch_kernels = kernels[3].torch
    base = torch.randn(3, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    z = base.clone().requires_grad_()
    view = z[:, ::2].t()  # (5, 3), not contiguous
    assert not view.is_contiguous()
    for name in ("softmax", "log_softmax"):
        got = getattr(torch_kernels, name)(view)
        z_ref = base.clone().requires_grad_()
        expected = torch_reference(name, z_ref[:, ::2].t(), None)
        torch.testing.assert_close(got, expected, rtol=1e-14, atol=1e-15)
        # an expanded (stride 0) incoming gradient, as sum() sends
        (dz,) = torch.autograd.grad(got[:, 0].sum(), z)
        (dz_ref,) = torch.autograd.grad(expected[:, 0].sum(), z_ref)
        torch.testing.assert_close(dz, dz_ref, rtol=0, atol=1e-15)
        # along dim 0 of a (3, 10) tensor: K = 3 rows, moved last and back
        got = getattr(torch_kernels, name)(z, dim=0)
        expected = getattr(F, name)(z_ref, dim=0)
        torch.testing.assert_close(got, expected, rtol=1e-14, atol=1e-15)
        g = torch.randn(3, 10, dtype=torch.float64)
        (dz,) = torch.autograd.grad(got, z, g)
        (dz_ref,) = torch.autograd.grad(expected, z_ref, g)
        torch.testing.assert_close(dz, dz_ref, rtol=0, atol=1e-14)
    labels = torch.tensor([0, 1, 2, 1, 0, 2])[::2]  # strided labels
    rows = z.t()[::3]  # (4, 3), strided
    loss = torch_kernels.cross_entropy_index(rows[:3], labels)
    torch.testing.assert_close(loss, F.cross_entropy(rows[:3], labels, reduction="none"))


def test_torch_without_gradients(kernels):
    """Tensors that need no gradient (and no_grad) give the same values, no graph, and use
    the loss kernel alone."""
    z = torch.randn(5, 3, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0, 1])
    loss = kernels[3].torch.cross_entropy_index(z, labels)
    assert loss.grad_fn is None and not loss.requires_grad
    numpy.testing.assert_array_equal(
        loss.numpy(), kernels[3].cross_entropy_index(z.numpy(), labels.numpy())
    )
    with torch.no_grad():
        s = kernels[3].torch.softmax(z.clone().requires_grad_())
    assert s.grad_fn is None
    numpy.testing.assert_array_equal(s.numpy(), kernels[3].softmax(z.numpy()))


def test_torch_second_derivatives_raise(kernels):
    """Double backward is not implemented: it raises rather than return a wrong value, both
    where the incoming gradient depends on z and where it does not (a sum's)."""
    labels = torch.tensor([0, 1, 2, 0])
    y = F.softmax(torch.randn(4, 3, dtype=torch.float64), -1)
    functions = {
        "softmax": lambda z: kernels[3].torch.softmax(z)[:, 0],
        "log_softmax": lambda z: kernels[3].torch.log_softmax(z)[:, 0],
        "cross_entropy_index": lambda z: kernels[3].torch.cross_entropy_index(z, labels),
        "cross_entropy": lambda z: kernels[3].torch.cross_entropy(z, y),
    }
    for name, function in functions.items():
        z = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
        for outer in (torch.sum, lambda out: (out**2).sum()):
            (dz,) = torch.autograd.grad(outer(function(z)), z, create_graph=True)
            # a second derivative with another term, which alone would be fine
            penalty = (dz**2).sum() + (z**3).sum()
            with pytest.raises(RuntimeError, match="differentiate twice"):
                torch.autograd.grad(penalty, z)
            assert name  # which function failed shows in the traceback's locals


def test_torch_errors(kernels):
    torch_kernels = kernels[3].torch
    z = torch.randn(2, 3)
    with pytest.raises(ValueError, match="CPU"):  # any device but the CPU, as CUDA would be
        torch_kernels.softmax(torch.empty(2, 3, device="meta"))
    with pytest.raises(TypeError, match="float32, float64, bfloat16 or float16"):
        torch_kernels.log_softmax(z.to(torch.complex64))
    with pytest.raises(TypeError, match="float32, float64, bfloat16 or float16"):
        torch_kernels.softmax(torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="integer class indices"):
        torch_kernels.cross_entropy_index(z, torch.zeros(2))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        torch_kernels.softmax(numpy.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        torch_kernels.softmax(torch.randn(2, 4))
    with pytest.raises(ValueError, match="reduction"):
        torch_kernels.cross_entropy_index(z, torch.tensor([0, 1]), reduction="average")
    with pytest.raises(ValueError, match="label_smoothing"):  # options reach the kernels
        torch_kernels.cross_entropy_index(z, torch.tensor([0, 1]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="weight"):
        torch_kernels.cross_entropy_index(z, torch.tensor([0, 1]), weight=-z[0].detach().abs())
    with pytest.raises(TypeError, match="softcap"):
        torch_kernels.cross_entropy_index(z, torch.tensor([0, 1]), softcap=30.0)


def test_torch_out_of_range_labels_raise(kernels):
    """As symsoft.load's C backend and F.cross_entropy: a label outside 0..K-1 is an
    IndexError, never a silent NaN row."""
    z = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(IndexError, match=r"0\.\.2"):
        kernels[3].torch.cross_entropy_index(z, torch.tensor([3, 1]))
    with pytest.raises(IndexError):
        torch.nn.functional.cross_entropy(z, torch.tensor([3, 1]))


def test_torch_training_matches_f_cross_entropy(kernels):
    """Softmax regression on scikit-learn's digits (K = 10), trained with SGD on minibatches:
    symsoft's loss gives F.cross_entropy's loss curve, epoch by epoch, and learns."""
    digits = load_digits()
    x = torch.from_numpy(digits.data / 16.0)
    labels = torch.from_numpy(digits.target)
    torch_kernels = kernels[10].torch

    def train(loss_function, dtype: torch.dtype) -> tuple[numpy.ndarray, float]:
        torch.manual_seed(0)
        model = torch.nn.Linear(64, 10, dtype=dtype)
        optimiser = torch.optim.SGD(model.parameters(), lr=0.5)
        order = torch.Generator().manual_seed(1)
        inputs = x.to(dtype)
        losses = []
        for _epoch in range(12):
            total = 0.0
            for batch in torch.randperm(len(inputs), generator=order).split(128):
                optimiser.zero_grad()
                loss = loss_function(model(inputs[batch]), labels[batch])
                loss.backward()
                optimiser.step()
                total += loss.item() * len(batch)
            losses.append(total / len(inputs))
        with torch.no_grad():
            accuracy = (model(inputs).argmax(1) == labels).double().mean().item()
        return numpy.array(losses), accuracy

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads on a shared machine only cost time
    try:
        for dtype, rtol in ((torch.float64, 1e-13), (torch.float32, 1e-6)):
            expected, accuracy = train(F.cross_entropy, dtype)
            got, got_accuracy = train(
                lambda z, y: torch_kernels.cross_entropy_index(z, y, reduction="mean"), dtype
            )
            numpy.testing.assert_allclose(got, expected, rtol=rtol)
            assert got_accuracy == accuracy
            assert got[-1] < 0.35 < 1.8 < got[0] and accuracy > 0.9  # it did learn
    finally:
        torch.set_num_threads(threads)


# --- JAX ----------------------------------------------------------------------------------------


def jax_reference(name: str, z: jax.Array, target: jax.Array | None) -> jax.Array:
    if name == "softmax":
        return jax.nn.softmax(z)
    if name == "log_softmax":
        return jax.nn.log_softmax(z)
    if name == "cross_entropy":
        return -jnp.sum(target * jax.nn.log_softmax(z), axis=-1)
    return -jnp.take_along_axis(jax.nn.log_softmax(z), target[..., None], axis=-1)[..., 0]


def jax_target(name: str, z: numpy.ndarray, rng: numpy.random.Generator):
    if name == "cross_entropy":
        return jnp.asarray(rng.dirichlet(numpy.ones(z.shape[-1]), size=z.shape[:-1]), z.dtype)
    if name == "cross_entropy_index":
        return jnp.asarray(rng.integers(0, z.shape[-1], size=z.shape[:-1]))
    return None


def jax_value_and_vjp(function, z, target, g, argnums, jit: bool):
    """function(z, target) and the gradient of <function(z, target), g>: the VJP with a
    generic cotangent."""

    def scalar(z, target):
        value = function(z, target)
        return jnp.sum(value * g), value

    grad = jax.grad(scalar, argnums=argnums, has_aux=True)
    grads, value = (jax.jit(grad) if jit else grad)(z, target)
    return value, jax.tree.leaves(grads)


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jax_values_and_gradients_equal_jax_grad(kernels, name, dtype):
    """Values and jax.grad under jax.jit against jax.grad of jax.nn's functions."""
    rng = numpy.random.default_rng(8)
    jax_kernels = kernels[10].jax
    argnums = (0, 1) if name == "cross_entropy" else 0
    tolerance = 1e-14 if dtype == "float64" else 2e-6

    def ours(z, target):
        function = getattr(jax_kernels, name)
        return function(z) if target is None else function(z, target)

    def reference(z, target):
        return jax_reference(name, z.astype("float64"), target).astype(dtype)

    with jax.enable_x64(True):  # float64 arrays exist only with x64 on
        for batch in SHAPES:
            z = jnp.asarray(3 * rng.standard_normal((*batch, 10)), dtype)
            target = jax_target(name, z, rng)
            g = jnp.asarray(
                rng.standard_normal(z.shape[:-1] if "cross" in name else z.shape), dtype
            )
            got, got_grads = jax_value_and_vjp(ours, z, target, g, argnums, jit=True)
            expected, expected_grads = jax_value_and_vjp(reference, z, target, g, argnums, False)
            assert got.dtype == dtype and got.shape == g.shape
            numpy.testing.assert_allclose(got, expected, rtol=tolerance, atol=tolerance)
            for a, b in zip(got_grads, expected_grads, strict=True):
                assert a.dtype == dtype
                numpy.testing.assert_allclose(a, b, rtol=0, atol=tolerance * (1 + abs(b).max()))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_jax_reductions_and_vmap(kernels, reduction):
    """reduction as in torch; jax.vmap over a batch of batches gives the unbatched results."""
    rng = numpy.random.default_rng(9)
    jax_kernels = kernels[3].jax
    z = jnp.asarray(rng.standard_normal((4, 5, 3)), "float32")
    labels = jnp.asarray(rng.integers(0, 3, size=(4, 5)))
    reduce = jnp.mean if reduction == "mean" else jnp.sum

    def ours(z, labels):
        return jax_kernels.cross_entropy_index(z, labels, reduction=reduction)

    def reference(z, labels):
        return reduce(jax_reference("cross_entropy_index", z, labels))

    batched = jax.jit(jax.vmap(jax.value_and_grad(ours)))(z, labels)
    for i in range(4):
        expected = jax.value_and_grad(reference)(z[i], labels[i])
        numpy.testing.assert_allclose(batched[0][i], expected[0], rtol=1e-6)
        numpy.testing.assert_allclose(batched[1][i], expected[1], rtol=0, atol=3e-7)
    # softmax along another axis, vmapped
    s = jax.vmap(lambda z: jax_kernels.softmax(z.T, axis=0))(z)
    numpy.testing.assert_allclose(s, jax.nn.softmax(jnp.swapaxes(z, 1, 2), axis=1), rtol=2e-6)


def test_jax_errors(kernels):
    jax_kernels = kernels[3].jax
    with pytest.raises(TypeError, match="float32, float64, bfloat16 or float16"):
        jax_kernels.softmax(jnp.ones((2, 3), "int32"))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        jax_kernels.log_softmax(jnp.ones((2, 4)))
    with pytest.raises(TypeError, match="integer class indices"):
        jax_kernels.cross_entropy_index(jnp.ones((2, 3)), jnp.ones(2))
    with pytest.raises(ValueError, match="shape"):
        jax_kernels.cross_entropy(jnp.ones((2, 3)), jnp.ones((3, 3)))
    with pytest.raises(ValueError, match="reduction"):
        jax_kernels.cross_entropy(jnp.ones((2, 3)), jnp.ones((2, 3)), reduction="mean-ish")


def test_importing_symsoft_imports_neither_torch_nor_jax():
    """.torch and .jax import torch and jax on first use: load() alone pays for neither."""
    code = (
        "import sys, symsoft; symsoft.load(3); "
        "assert 'torch' not in sys.modules and 'jax' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    # made once per kernels object
    assert isinstance(load(3).torch, TorchKernels) and load(3).torch is load(3).torch
    assert isinstance(load(3).jax, JaxKernels) and load(3).jax is load(3).jax


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16_bit_tensors(kernels, dtype):
    """bfloat16 and float16 CPU tensors: through symsoft.load's methods and .torch, computed
    in float and rounded once, so within one unit in the last place of torch's float32 result
    rounded to the same type; tensors of that dtype come out."""
    generator = torch.Generator().manual_seed(16)
    z = (torch.randn(64, 10, generator=generator) * 4).to(dtype)
    labels = torch.randint(0, 10, (64,), generator=generator)
    ulp = torch.finfo(dtype).eps  # relative spacing at 1

    def close(got, expected):
        assert got.dtype == dtype
        torch.testing.assert_close(got.float(), expected.to(dtype).float(), rtol=ulp, atol=1e-6)

    z32 = z.float()
    close(kernels[10].softmax(z), F.softmax(z32, -1))
    loss, grad = kernels[10].cross_entropy_with_grad_index(z, labels)
    expected = F.cross_entropy(z32, labels, reduction="none")
    close(loss, expected)
    close(grad, F.softmax(z32, -1) - F.one_hot(labels, 10))
    leaf = z.clone().requires_grad_()
    kernels[10].torch.cross_entropy_index(leaf, labels, reduction="sum").backward()
    close(leaf.grad, F.softmax(z32, -1) - F.one_hot(labels, 10))
    leaf = z.clone().requires_grad_()
    kernels[10].torch.log_softmax(leaf).backward(torch.ones_like(leaf))
    reference = z32.clone().requires_grad_()
    F.log_softmax(reference, -1).backward(torch.ones_like(reference))
    close(leaf.grad, reference.grad)


def test_jax_bfloat16(kernels):
    """JAX bfloat16 arrays reach the bf16 kernels through the host callback (ml_dtypes
    arrays), values and gradients within one bfloat16 unit of jax in float32."""
    rng = numpy.random.default_rng(17)
    z = jnp.asarray(rng.normal(size=(32, 10)) * 4, dtype=jnp.bfloat16)
    labels = jnp.asarray(rng.integers(0, 10, 32))
    jax_kernels = kernels[10].jax
    got = jax_kernels.softmax(z)
    assert got.dtype == jnp.bfloat16
    expected = jax.nn.softmax(z.astype(jnp.float32)).astype(jnp.bfloat16)
    ulp = float(jnp.finfo(jnp.bfloat16).eps)
    numpy.testing.assert_allclose(
        numpy.asarray(got, numpy.float32),
        numpy.asarray(expected, numpy.float32),
        rtol=ulp,
        atol=1e-6,
    )

    def loss(z):
        return jax_kernels.cross_entropy_index(z, labels, reduction="sum")

    grad = jax.grad(lambda z: loss(z).astype(jnp.float32))(z)
    reference = jax.nn.softmax(z.astype(jnp.float32)) - jax.nn.one_hot(labels, 10)
    numpy.testing.assert_allclose(
        numpy.asarray(grad, numpy.float32),
        numpy.asarray(reference.astype(jnp.bfloat16), numpy.float32),
        rtol=ulp,
        atol=1e-6,
    )
