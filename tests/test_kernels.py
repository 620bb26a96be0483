"""The emitted NumPy module and the emitted C, run and compared with independent references."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import numpy
import pytest
import scipy.special

from symsoft.derivation import reference
from symsoft.family.members import BY_NAME, INPUT_KINDS, MEMBERS, c_name
from symsoft.runtime.build import STRICT_FLAGS, compile_shared, load_library
from symsoft.runtime.ckernels import CKernels
from tests.conftest import require_tool
from tests.references import assert_softmax_within_budget, random_logits, rows, soft_labels

# each way the C computes a row (symsoft/emit/c.py): whole rows in groups (3, 4, 7, 10; the
# other kernels' exponentials row by row at 3, 4 and as a flat loop over a block at 7, 10), a
# flat loop (1, 2), lane accumulators (16)
KS = (1, 2, 3, 4, 7, 10, 16)
BACKENDS = ("numpy", "numpy-only", "c")
# relative error allowed against the 50-digit reference, per dtype
TOLERANCE = {numpy.float64: 1e-13, numpy.float32: 2e-6}


def kernels(generated, k: int, backend: str):
    g = generated(k)
    return g.backend(backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
def test_worked_example(generated, backend, dtype):
    kern = kernels(generated, 3, backend)
    z = numpy.array([2.0, 1.0, 0.1], dtype=dtype)
    s = kern.softmax(z)
    assert s.dtype == dtype
    numpy.testing.assert_allclose(s, [0.659, 0.242, 0.099], atol=5e-4)
    assert numpy.argmax(s) == 0 and abs(float(s.sum()) - 1) < 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("k", KS)
def test_against_mpmath(generated, backend, dtype, k):
    rng = numpy.random.default_rng(1000 + k)
    kern = kernels(generated, k, backend)
    z = random_logits(rng, 40, k).astype(dtype)
    y = soft_labels(rng, 40, k, normalised=False).astype(dtype)  # sums differ from 1 on purpose
    tol = TOLERANCE[dtype]
    assert_softmax_within_budget(kern.softmax(z), rows(reference.softmax, z), z)
    log_s = kern.log_softmax(z)
    assert log_s.dtype == dtype
    # log-probabilities near 0 have a tiny scale: compare absolutely, relative to log S
    err = numpy.abs(log_s - rows(reference.log_softmax, z))
    assert numpy.all(err <= tol * (1 + numpy.abs(z - z.max(axis=-1, keepdims=True))))
    jac = kern.softmax_jacobian(z[:10])
    assert jac.shape == (10, k, k) and jac.dtype == dtype
    assert numpy.max(numpy.abs(jac - rows(reference.softmax_jacobian, z[:10]))) < tol
    loss = kern.cross_entropy(z, y)
    assert loss.shape == (40,) and loss.dtype == dtype
    expected_loss = rows(reference.cross_entropy, z, y)
    assert numpy.all(numpy.abs(loss - expected_loss) <= tol * (1 + numpy.abs(expected_loss)) * k)
    grad = kern.cross_entropy_grad(z, y)
    expected_grad = rows(reference.cross_entropy_grad, z, y)
    assert numpy.max(numpy.abs(grad - expected_grad)) < tol * 4 * k


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", KS)
def test_against_scipy(generated, backend, k):
    rng = numpy.random.default_rng(k)
    z = random_logits(rng, 200, k)
    kern = kernels(generated, k, backend)
    numpy.testing.assert_allclose(kern.softmax(z), scipy.special.softmax(z, axis=-1), rtol=1e-12)
    numpy.testing.assert_allclose(
        kern.log_softmax(z), scipy.special.log_softmax(z, axis=-1), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("k", KS)
def test_maxima_at_every_position_and_tied(generated, backend, dtype, k):
    """Rows whose maximum sits at each position, once or repeated (whole rows skip the exp of a
    maximum and route the others around it: every exponential must land where it belongs)."""
    kern = kernels(generated, k, backend)
    base = numpy.linspace(-3.0, -0.25, k)
    z = []
    for p in range(k):
        z.append(numpy.insert(numpy.delete(base, p), p, 1.0))  # the maximum at p
        for q in range(p + 1, k):  # tied at p and q
            row = numpy.roll(base, p)
            row[p] = row[q] = 1.0
            z.append(row)
    z.append(numpy.ones(k))
    z = numpy.array(z, dtype=dtype)
    y = soft_labels(numpy.random.default_rng(k), len(z), k, normalised=True).astype(dtype)
    assert_softmax_within_budget(kern.softmax(z), rows(reference.softmax, z), z)
    jacobian_times_y = (rows(reference.softmax_jacobian, z) @ y[..., None].astype(float))[..., 0]
    for got, expected in [
        (kern.cross_entropy_grad(z, y), rows(reference.cross_entropy_grad, z, y)),
        (kern.softmax_jvp(z, y), jacobian_times_y),
        (kern.softmax_vjp(z, y), jacobian_times_y),  # the Jacobian is symmetric
    ]:
        assert numpy.max(numpy.abs(got - expected)) < TOLERANCE[dtype] * 4 * k


def central_difference(f, z: numpy.ndarray, h: float = 1e-6) -> numpy.ndarray:
    """d f / d z_j by central differences, stacked on the last axis."""
    columns = []
    for j in range(z.shape[-1]):
        step = numpy.zeros_like(z)
        step[..., j] = h
        columns.append((f(z + step) - f(z - step)) / (2 * h))
    return numpy.stack(columns, axis=-1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", KS)
def test_derivatives_match_finite_differences(generated, backend, k):
    rng = numpy.random.default_rng(7 * k)
    kern = kernels(generated, k, backend)
    z = rng.normal(size=(6, k)) * 2
    numpy.testing.assert_allclose(
        kern.softmax_jacobian(z), central_difference(kern.softmax, z), atol=1e-8
    )
    for normalised in (True, False):
        y = soft_labels(rng, 6, k, normalised=normalised)
        fd = central_difference(lambda v, y=y: kern.cross_entropy(v, y), z)
        numpy.testing.assert_allclose(kern.cross_entropy_grad(z, y), fd, atol=1e-7)


@pytest.mark.parametrize("k", KS)
def test_c_and_numpy_agree_on_batches_of_any_shape(generated, k):
    rng = numpy.random.default_rng(k + 99)
    g = generated(k)
    z = rng.normal(size=(2, 3, k)) * 10
    y = soft_labels(rng, 6, k, normalised=True).reshape(2, 3, k)
    for name, args in [
        ("softmax", (z,)),
        ("log_softmax", (z,)),
        ("softmax_jacobian", (z,)),
        ("cross_entropy", (z, y)),
        ("cross_entropy_grad", (z, y)),
        ("softmax_jvp", (z, y)),
        ("softmax_vjp", (z, y)),
    ]:
        expected = getattr(g.numpy_module, name)(*args)
        got = getattr(g.c, name)(*args)
        assert got.shape == expected.shape
        numpy.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)
    labels = rng.integers(0, k, (2, 3))
    for got, expected in [
        *zip(
            g.c.cross_entropy_with_grad(z, y),
            g.numpy_module.cross_entropy_with_grad(z, y),
            strict=True,
        ),
        *zip(
            g.c.cross_entropy_with_grad_index(z, labels),
            g.numpy_module.cross_entropy_with_grad_index(z, labels),
            strict=True,
        ),
    ]:
        assert got.shape == expected.shape
        numpy.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)


# the C kernels that compute rows of K = 3-15 whole, in groups of 8 (double) or 16 (float) rows
GROUPED = tuple(member.name for member in MEMBERS if member.whole_rows)


def member_inputs(name: str, z: numpy.ndarray, v: numpy.ndarray, labels: numpy.ndarray):
    """The inputs of a family member: z, then v for float inputs and labels for label ones."""
    return tuple({"z": z, "labels": labels}.get(kind, v) for kind in BY_NAME[name].inputs)


def as_outputs(result) -> tuple[numpy.ndarray, ...]:
    return result if isinstance(result, tuple) else (result,)


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("k", (3, 4, 10))
def test_a_row_gets_the_same_bits_in_a_group_or_in_the_padded_last_one(
    generated, dtype, k, monkeypatch
):
    """A short last group is padded and computed like the others: every row's result must not
    depend on where the batch ends, masked rows and invalid labels included, and nothing past
    it is written."""
    g = generated(k, "zero")
    # the C's NaN rows for invalid labels, past the wrapper's IndexError (tests/test_edges.py)
    monkeypatch.setattr(CKernels, "_check_range", lambda self, labels, *_: labels)
    rng = numpy.random.default_rng(k)
    n = 37  # 4 groups of 8 doubles and a tail of 5; 2 groups of 16 floats and a tail of 5
    z = random_logits(rng, n, k).astype(dtype)
    z[[5, 20, n - 1]] = -numpy.inf  # fully masked rows (zero) in full groups and in the tail
    v = rng.normal(size=(n, k)).astype(dtype)
    labels = rng.integers(0, k, n)
    labels[[7, 33]] = [-1, k]  # invalid: NaN rows, in a full group and in the tail
    for name in GROUPED:
        args = member_inputs(name, z, v, labels)
        whole = as_outputs(getattr(g.c, name)(*args))
        # ignored: log_softmax's and logsumexp's log 0 = -inf, every other member's 0
        ignored = -numpy.inf if name in ("log_softmax", "logsumexp") else 0
        for out in whole:
            assert numpy.all(out[n - 1] == ignored)
            assert numpy.all(numpy.isnan(out[[7, 33]])) == ("labels" in BY_NAME[name].inputs)
            assert not numpy.any(numpy.isnan(numpy.delete(out, [7, 33], axis=0)))
        for count in (1, 2, 7, 8, 9, 15, 16, 17, 33, 36):
            part = as_outputs(getattr(g.c, name)(*(a[:count] for a in args)))
            for got, expected in zip(part, whole, strict=True):
                numpy.testing.assert_array_equal(got, expected[:count], err_msg=f"{name}, {count}")

    library = ctypes.CDLL(str(g.folder / f"libsoftmax_k{k}.so"))
    floats = numpy.ctypeslib.ndpointer(dtype, flags="C_CONTIGUOUS")
    integers = numpy.ctypeslib.ndpointer(numpy.int64, flags="C_CONTIGUOUS")
    for name in GROUPED:
        member = BY_NAME[name]
        function = getattr(library, c_name(name, k, "f64" if dtype == numpy.float64 else "f32"))
        inputs = member_inputs(name, z, v, labels)
        function.argtypes = [
            *(integers if kind == "labels" else floats for kind in member.inputs),
            *[floats] * len(member.outputs),
            ctypes.c_size_t,
        ]
        for count in (3, 16, 21):
            outs = [numpy.full((n,) + (k,) * o.rank, 7.0, dtype) for o in member.outputs]
            function(*inputs, *outs, count)
            expected = as_outputs(getattr(g.c, name)(*(a[:count] for a in inputs)))
            for out, want in zip(outs, expected, strict=True):
                numpy.testing.assert_array_equal(out[:count], want)
                assert numpy.all(out[count:] == 7.0), f"{name} wrote past row {count}"


def plain_path_kernels(folder, k: int, fast_path: str, plain_switch: str) -> CKernels:
    """The emitted C with plain_switch defined, after checking that cc takes fast_path (a macro
    the source defines) without it: what the fast path is compared with."""
    source = folder / f"softmax_k{k}.c"
    macros = subprocess.run(
        [require_tool("cc"), *STRICT_FLAGS, "-E", "-dM", str(source)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"#define {fast_path}" in macros, f"this compiler should take {fast_path}"
    library = compile_shared(
        source,
        folder / f"lib{plain_switch.lower()}_k{k}.so",
        compiler=require_tool("cc"),
        extra=(f"-D{plain_switch}",),
    )
    return CKernels(load_library(library), k)


def storage_bits(x: numpy.ndarray, storage: str) -> numpy.ndarray:
    """Float values as uint16 bits of a 16-bit storage (bf16 by truncation: any bits will do)."""
    x = numpy.asarray(x, numpy.float32)
    if storage == "f16":
        return x.astype(numpy.float16).view(numpy.uint16)
    return (x.view(numpy.uint32) >> 16).astype(numpy.uint16)


@pytest.mark.parametrize("k", (4, 7, 10))
def test_shuffle_transposes_give_the_bits_of_the_plain_loops(generated, k):
    """Groups are turned into columns by vector shuffles where the compiler has them (tiles
    that overlap at K = 7 and 10) or by plain loops: the same values moved, the same bits.
    At K = 10 the bf16 and f16 whole-row kernels too, whose groups are widened in 8 x 8 tiles
    of 16-bit values (from_<s>_tile) or in the plain loops of to_columns_<s>."""
    g = generated(k)
    plain = plain_path_kernels(g.folder, k, "SHUFFLE_TRANSPOSES", "SYMSOFT_PLAIN_TRANSPOSES")
    rng = numpy.random.default_rng(70 + k)
    for dtype in (numpy.float64, numpy.float32, *(("bf16", "f16") if k == 10 else ())):
        storage = dtype if isinstance(dtype, str) else None
        z = random_logits(rng, 37, k).astype(numpy.float32 if storage else dtype)
        z[3, 1], z[9, k - 1], z[30] = numpy.inf, numpy.nan, -numpy.inf
        v = rng.normal(size=(37, k)).astype(numpy.float32 if storage else dtype)
        if storage:
            z, v = storage_bits(z, storage), storage_bits(v, storage)
        labels = rng.integers(0, k, 37)
        for name in GROUPED:
            args = member_inputs(name, z, v, labels)
            for got, expected in zip(
                as_outputs(getattr(g.c, name)(*args, storage=storage)),
                as_outputs(getattr(plain, name)(*args, storage=storage)),
                strict=True,
            ):
                assert got.dtype == (numpy.uint16 if storage else dtype), (name, dtype)
                numpy.testing.assert_array_equal(got, expected, err_msg=f"{name}, {dtype}")


@pytest.mark.parametrize("k", (16, 24, 45, 70))
def test_vector_maximum_gives_the_results_of_the_plain_loops(generated, k):
    """Long float rows take their maxima in GNU C vectors (16 entries a step, then 8, then one
    at a time: K = 16, 24, 45 and 70 reach each part) or in the plain loops: the same maxima,
    so every kernel gives the same results, infinities, NaN and fully masked rows included."""
    g = generated(k)
    plain = plain_path_kernels(g.folder, k, "VECTOR_MAXIMUM", "SYMSOFT_PLAIN_MAXIMUM")
    rng = numpy.random.default_rng(90 + k)
    z = random_logits(rng, 60, k).astype(numpy.float32)
    for row, column in enumerate(rng.integers(0, k, 12)):
        z[row, column] = z[row].max() + rng.uniform(0, 3)  # each lane and position the maximum
    z[20, k - 1] = z[21, 0] = numpy.inf
    z[22, k // 2], z[23] = numpy.nan, -numpy.inf
    z[24, :] = z[24, 0]  # all tied
    y = soft_labels(rng, 60, k, normalised=False).astype(numpy.float32)
    labels = rng.integers(0, k, 60)
    for name, args in [
        ("softmax", (z,)),
        ("log_softmax", (z,)),
        ("cross_entropy", (z, y)),
        ("cross_entropy_grad", (z, y)),
        ("cross_entropy_index", (z, labels)),
        ("softmax_jvp", (z, y)),
    ]:
        numpy.testing.assert_array_equal(
            getattr(g.c, name)(*args), getattr(plain, name)(*args), err_msg=name
        )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("k", KS)
def test_jacobian_vector_products(generated, backend, dtype, k):
    """J v and J^T v against the dense Jacobian, and J v against finite differences."""
    rng = numpy.random.default_rng(31 * k)
    kern = kernels(generated, k, backend)
    z = random_logits(rng, 20, k).astype(dtype)
    v = rng.normal(size=(20, k)).astype(dtype)
    jac = kern.softmax_jacobian(z).astype(numpy.float64)
    s, a = kern.softmax(z).astype(numpy.float64), numpy.abs(v.astype(numpy.float64))
    # the terms of s_i v_i - s_i sum_j s_j v_j, which both sides sum
    scale = s * (a + numpy.sum(s * a, axis=-1, keepdims=True))
    budget = 8 * (k + 3) * numpy.finfo(dtype).eps * scale + numpy.finfo(dtype).tiny
    for got, dense in [
        (kern.softmax_jvp(z, v), jac @ v[..., None]),
        (kern.softmax_vjp(z, v), numpy.swapaxes(jac, -1, -2) @ v[..., None]),
    ]:
        assert got.shape == z.shape and got.dtype == dtype
        assert numpy.all(numpy.abs(got - dense[..., 0]) <= budget), numpy.max(
            numpy.abs(got - dense[..., 0]) / budget
        )
    if dtype == numpy.float64:
        z64, h = rng.normal(size=(6, k)) * 2, 1e-6
        v64 = rng.normal(size=(6, k))
        fd = (kern.softmax(z64 + h * v64) - kern.softmax(z64 - h * v64)) / (2 * h)
        numpy.testing.assert_allclose(kern.softmax_jvp(z64, v64), fd, atol=1e-8)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("k", (*KS, 19))  # 19: the loss's lane sums end in a partial chunk
@pytest.mark.parametrize("masked_rows", ["nan", "zero"])
def test_fused_loss_and_gradient_equal_the_separate_kernels(
    generated, backend, dtype, k, masked_rows, monkeypatch
):
    """The training step's kernels, soft and integer labels, give the separate kernels' bits:
    infinite and NaN logits, masked rows and invalid labels (C: NaN rows) included."""
    # the C's NaN rows for invalid labels, past the wrapper's IndexError (tests/test_edges.py)
    monkeypatch.setattr(CKernels, "_check_range", lambda self, labels, *_: labels)
    rng = numpy.random.default_rng(5 + k)
    kern = generated(k, masked_rows).backend(backend)
    z = random_logits(rng, 50, k).astype(dtype)
    z[3, 0], z[4, k - 1], z[5] = numpy.inf, numpy.nan, -numpy.inf
    y = soft_labels(rng, 50, k, normalised=False).astype(dtype)
    y[6, 0] = 0.0
    z[6, 0] = -numpy.inf  # a masked class without weight adds 0
    labels = rng.integers(0, k, 50)
    if backend == "c":
        labels[[8, 40]] = [-3, k]
    loss, grad = kern.cross_entropy_with_grad(z, y)
    assert loss.dtype == grad.dtype == dtype and loss.shape == (50,) and grad.shape == (50, k)
    numpy.testing.assert_array_equal(loss, kern.cross_entropy(z, y))
    numpy.testing.assert_array_equal(grad, kern.cross_entropy_grad(z, y))
    loss, grad = kern.cross_entropy_with_grad_index(z, labels)
    assert loss.dtype == grad.dtype == dtype and loss.shape == (50,) and grad.shape == (50, k)
    numpy.testing.assert_array_equal(loss, kern.cross_entropy_index(z, labels))
    numpy.testing.assert_array_equal(grad, kern.cross_entropy_grad_index(z, labels))
    if backend == "c":
        assert numpy.isnan(loss[8]) and numpy.all(numpy.isnan(grad[40]))  # invalid labels


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("k", KS)
def test_fused_integer_label_kernel_against_mpmath(generated, backend, dtype, k):
    rng = numpy.random.default_rng(300 + k)
    kern = kernels(generated, k, backend)
    z = random_logits(rng, 40, k).astype(dtype)
    labels = rng.integers(0, k, 40)
    onehot = numpy.eye(k)[labels]
    loss, grad = kern.cross_entropy_with_grad_index(z, labels)
    expected_loss = rows(reference.cross_entropy, z, onehot)
    u = numpy.finfo(dtype).eps / 2
    # the budget of symsoft/runtime/accuracy.py for cross_entropy_index
    assert numpy.all(numpy.abs(loss - expected_loss) <= (numpy.abs(expected_loss) + k + 3) * u)
    expected_grad = rows(reference.cross_entropy_grad, z, onehot)
    assert numpy.max(numpy.abs(grad - expected_grad)) < TOLERANCE[dtype] * 4 * k


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_last_dimension_names_k(generated, backend):
    kern = kernels(generated, 3, backend)
    with pytest.raises(ValueError, match="K=3"):
        kern.softmax(numpy.zeros((2, 4)))
    with pytest.raises(ValueError, match="K=3"):
        kern.cross_entropy(numpy.zeros(3), numpy.zeros(4))


def imported_modules(path) -> set[str]:
    """The modules path imports at its top, less the standard library's (always there)."""
    lines = path.read_text().splitlines()
    found = {line.split()[1] for line in lines if line.startswith(("import ", "from "))}
    return found - set(sys.stdlib_module_names)


def test_python_modules_import_only_what_they_promise(generated):
    folder = generated(3).folder
    assert imported_modules(folder / "numpy-only" / "softmax_k3.py") == {"numpy"}
    assert imported_modules(folder / "softmax_k3.py") == {"array_api_compat", "numpy"}


def test_no_overflow_for_large_finite_logits(generated):
    for backend in BACKENDS:
        kern = kernels(generated, 3, backend)
        z = numpy.array([[1000.0, 999.0, -1000.0], [-1e4, -1e4 - 1, -1e4 - 2]])
        s = kern.softmax(z)
        assert numpy.all(numpy.isfinite(s))
        numpy.testing.assert_allclose(s, scipy.special.softmax(z, axis=-1), rtol=1e-13)
        assert numpy.all(numpy.isfinite(kern.cross_entropy(z, numpy.eye(3)[[0, 2]])))


# --- every member of the family, from its declaration --------------------------------------


def _one_hot(label: int, k: int) -> list[float]:
    return [1.0 if i == label else 0.0 for i in range(k)]


def _matvec(matrix, vector, transpose: bool = False) -> list:
    k = len(vector)
    if transpose:
        return [sum(matrix[i][j] * vector[i] for i in range(k)) for j in range(k)]
    return [sum(matrix[i][j] * vector[j] for j in range(k)) for i in range(k)]


# each member's value on one row, from symsoft.derivation.reference (mpmath, 50 digits), in
# the order of its declared inputs; a member without an entry fails the test below
MEMBER_REFERENCES = {
    "softmax": reference.softmax,
    "log_softmax": reference.log_softmax,
    "softmax_jacobian": reference.softmax_jacobian,
    "cross_entropy": reference.cross_entropy,
    "cross_entropy_grad": reference.cross_entropy_grad,
    "cross_entropy_index": lambda z, c: reference.cross_entropy(z, _one_hot(c, len(z))),
    "cross_entropy_grad_index": lambda z, c: reference.cross_entropy_grad(z, _one_hot(c, len(z))),
    "cross_entropy_with_grad": lambda z, y: (
        reference.cross_entropy(z, y),
        reference.cross_entropy_grad(z, y),
    ),
    "cross_entropy_with_grad_index": lambda z, c: (
        reference.cross_entropy(z, _one_hot(c, len(z))),
        reference.cross_entropy_grad(z, _one_hot(c, len(z))),
    ),
    "softmax_jvp": lambda z, v: _matvec(reference.softmax_jacobian(z), v),
    "softmax_vjp": lambda z, v: _matvec(reference.softmax_jacobian(z), v, transpose=True),
    "logsumexp": reference.log_sum_exp,
    "log_softmax_jvp": lambda z, v: _matvec(reference.log_softmax_jacobian(z), v),
    "log_softmax_vjp": lambda z, g: _matvec(reference.log_softmax_jacobian(z), g, transpose=True),
    # at the default temperature 1, per row (reduction="none", see MEMBER_OPTIONS)
    "distillation_kl": lambda zs, zt: reference.distillation_kl(zs, zt, 1.0),
    "distillation_kl_grad": lambda zs, zt: reference.distillation_kl_grad(zs, zt, 1.0),
    "cross_entropy_hessian": reference.cross_entropy_hessian,
    "cross_entropy_hvp": lambda z, y, v: _matvec(reference.cross_entropy_hessian(z, y), v),
}
# members that reduce over the batch by default are checked row by row
MEMBER_OPTIONS = {member.name: {"reduction": "none"} for member in MEMBERS if member.reduces}


def valid_inputs(member, rng: numpy.random.Generator, n: int, k: int, dtype) -> list:
    """Valid inputs for a member, by the kinds its declaration names."""
    made = {
        "logits": lambda: random_logits(rng, n, k).astype(dtype),
        "targets": lambda: soft_labels(rng, n, k, normalised=False).astype(dtype),
        "vector": lambda: rng.normal(size=(n, k)).astype(dtype),
        "labels": lambda: rng.integers(0, k, n),
    }
    return [made[INPUT_KINDS[name]]() for name in member.inputs]


@pytest.mark.parametrize("member", MEMBERS, ids=lambda m: m.name)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("k", (1, 3, 16))
def test_every_member_against_mpmath(generated, member, backend, dtype, k):
    """Each declared output, with its declared shape and the input's dtype, within
    TOLERANCE * 8K of the reference relative to 1 + its size (losses and log-probabilities
    grow with the logits' spread; probabilities and gradients are O(K))."""
    rng = numpy.random.default_rng(k)
    n = 12
    args = valid_inputs(member, rng, n, k, dtype)
    got = getattr(kernels(generated, k, backend), member.name)(
        *args, **MEMBER_OPTIONS.get(member.name, {})
    )
    got = got if isinstance(got, tuple) else (got,)
    expected_rows = [
        MEMBER_REFERENCES[member.name](*(a[r].tolist() for a in args)) for r in range(n)
    ]
    if len(member.outputs) == 1:
        expected_rows = [(row,) for row in expected_rows]
    assert len(got) == len(member.outputs)
    for o, output in enumerate(member.outputs):
        expected = numpy.array([row[o] for row in expected_rows], dtype=object).astype(float)
        assert got[o].shape == (n,) + (k,) * output.rank and got[o].dtype == dtype
        error = numpy.abs(got[o].astype(numpy.float64) - expected)
        assert numpy.all(error <= TOLERANCE[dtype] * 8 * k * (1 + numpy.abs(expected))), (
            output.name,
            float(numpy.max(error)),
        )
