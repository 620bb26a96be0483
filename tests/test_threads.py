"""The kernels under OpenMP (-fopenmp): a call's blocks of rows shared among threads give the
bits of one thread, for every member, type and 16-bit storage, and for the options path
(NAME_opt, issue 17) with every family of options and its reductions; the threads are really
started; the pragmas leave the plain C99 build warning-free (gcc and clang, -Werror); and
symsoft.load builds with OpenMP and takes threads=."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy
import pytest

from symsoft.emit.c import PARALLEL_FROM
from symsoft.family.members import BY_NAME, MEMBERS
from symsoft.runtime.build import STRICT_FLAGS, compile_shared, load_library
from symsoft.runtime.ckernels import CKernels
from tests.conftest import require_tool
from tests.references import random_logits, soft_labels

# whole rows (3, 10; the other kernels' flat loop at 10), lane accumulators (16)
KS = (3, 10, 16)
COMPILERS = ("gcc", "clang")  # clang's OpenMP runtime is libomp (.ci/run: libomp-14-dev)


_BUILT: dict[tuple[int, str, str], CKernels] = {}


def openmp_kernels(generated, k: int, compiler: str, masked_rows: str = "nan") -> CKernels:
    """The emitted C built with the strict flags (warnings are errors) and -fopenmp."""
    if (k, compiler, masked_rows) not in _BUILT:
        g = generated(k, masked_rows)
        library = compile_shared(
            g.folder / f"softmax_k{k}.c",
            g.folder / f"libsoftmax_k{k}_openmp_{compiler}.so",
            compiler=require_tool(compiler),
            flags=(*STRICT_FLAGS, "-O3", "-fopenmp"),
        )
        _BUILT[k, compiler, masked_rows] = CKernels(load_library(library), k)
    return _BUILT[k, compiler, masked_rows]


def batch(k: int, dtype, storage: str | None = None):
    """Enough rows that a call is shared among threads (PARALLEL_FROM values), with NaN,
    infinite, masked rows and invalid labels among them; 16-bit storage as uint16 bits."""
    rows = 2 * PARALLEL_FROM // k + 5  # not a whole number of blocks
    rng = numpy.random.default_rng(k)
    z = random_logits(rng, rows, k)
    z[7, 0], z[rows // 2, k - 1], z[rows - 2] = numpy.nan, numpy.inf, -numpy.inf
    v = soft_labels(rng, rows, k, normalised=False)
    labels = rng.integers(0, k, rows)
    labels[[11, rows - 3]] = [-1, k]
    if storage == "f16":
        z, v = (a.astype(numpy.float16).view(numpy.uint16) for a in (z, v))
    elif storage == "bf16":  # any high half of a float is a bf16 value
        z, v = (
            (a.astype(numpy.float32).view(numpy.uint32) >> 16).astype(numpy.uint16) for a in (z, v)
        )
    else:
        z, v = z.astype(dtype), v.astype(dtype)
    return {
        "z": z,
        "y": v,
        "v": v,
        "g": v,
        "labels": labels,
        "z_student": z,
        "z_teacher": numpy.roll(z, 1, axis=0),
    }


def as_outputs(result) -> tuple[numpy.ndarray, ...]:
    return result if isinstance(result, tuple) else (result,)


def bits(array: numpy.ndarray) -> numpy.ndarray:
    return array.view(f"u{array.dtype.itemsize}")  # NaN payloads compared too


@pytest.mark.parametrize("compiler", COMPILERS)
@pytest.mark.parametrize("k", KS)
def test_threads_give_the_bits_of_one_thread(generated, compiler, k, monkeypatch):
    # the C's NaN rows for invalid labels, past the wrapper's IndexError (tests/test_edges.py)
    monkeypatch.setattr(CKernels, "_check_range", lambda self, labels, *_: labels)
    kernels = openmp_kernels(generated, k, compiler)
    assert kernels.openmp >= 201107, "built with -fopenmp: the library says so"
    cases = [(numpy.float64, None), (numpy.float32, None), (numpy.float16, None)]
    cases += [(None, "bf16"), (None, "f16")]
    for dtype, storage in cases:
        data = batch(k, dtype, storage)
        for member in MEMBERS:
            square = max(out.rank for out in member.outputs) == 2
            if (square or member.scalars) and (storage or dtype == numpy.float16):
                continue  # no 16-bit kernels for K x K values a row or a scalar parameter
            args = [data[name] for name in member.inputs]
            if square:
                args = [a[: PARALLEL_FROM // (k * k) + 3] for a in args]
            one = as_outputs(getattr(kernels, member.name)(*args, threads=1, storage=storage))
            for threads in (2, 3):
                many = getattr(kernels, member.name)(*args, threads=threads, storage=storage)
                for got, expected in zip(as_outputs(many), one, strict=True):
                    numpy.testing.assert_array_equal(
                        bits(got), bits(expected), err_msg=f"{member.name} {dtype} {storage}"
                    )


# one of each family of options (issue 17), each under the three reductions; ignore_index for
# the integer-label members only, temperature alone for softmax and log_softmax
OPTION_SETS = (
    {},
    {"weight": "zeros"},
    {"ignore_index": -100},
    {"weight": "zeros", "ignore_index": 1, "label_smoothing": 0.1},
    {"temperature": 0.7, "z_loss": 1e-3},
    {
        "weight": "zeros",
        "ignore_index": -100,
        "label_smoothing": 0.2,
        "temperature": 1.5,
        "z_loss": 1e-2,
    },
)
OPTION_MEMBERS = [member for member in MEMBERS if member.options]


def option_batch(k: int, rows: int, dtype) -> dict[str, numpy.ndarray]:
    """rows rows (not a whole number of blocks) with masked classes (-inf, y = 0 there), fully
    masked rows, and labels that are ignore_index (-100, or class 1) now and then."""
    rng = numpy.random.default_rng(rows + k)
    z = random_logits(rng, rows, k)
    y = soft_labels(rng, rows, k, normalised=True)
    masked = rng.random((rows, k)) < 0.1
    masked[:, 0] = False  # every such row keeps a class
    z[masked], y[masked] = -numpy.inf, 0.0
    z[[5, rows // 3, rows - 1]] = -numpy.inf  # fully masked rows
    labels = numpy.where(masked[:, 1], 0, rng.integers(0, k, rows))  # never a masked class
    labels[rng.random(rows) < 0.05] = -100
    return {"z": z.astype(dtype), "y": y.astype(dtype), "labels": labels}


def option_calls(kernels: CKernels, k: int, data, dtype):
    """(what, call(threads)) for every options member, option set and reduction."""
    weight = numpy.linspace(0.0, 2.0, k)  # class 0 weighs 0
    marked = data["labels"] == -100  # those rows' labels become ignore_index, or class 0
    for member in OPTION_MEMBERS:
        for options in OPTION_SETS:
            if not set(options) <= set(member.options):
                continue
            labels = numpy.where(marked, options.get("ignore_index", 0), data["labels"])
            args = [labels if name == "labels" else data[name] for name in member.inputs]
            reductions = ("none", "sum", "mean") if "reduction" in member.options else (None,)
            for reduction in reductions:
                given = {o: weight if v == "zeros" else v for o, v in options.items()}
                if reduction is not None:
                    given["reduction"] = reduction
                if not options and reduction in ("none", None):
                    given["temperature"] = 0.5  # not the plain kernel
                what = f"{member.name} {dtype.__name__} {options} {reduction}"
                function = getattr(kernels, member.name)
                yield what, lambda t, f=function, a=args, o=given: f(*a, **o, threads=t)


@pytest.mark.parametrize("masked_rows", ("nan", "zero"))
@pytest.mark.parametrize("compiler", COMPILERS)
@pytest.mark.parametrize("k", KS)
def test_options_on_threads_give_the_bits_of_one_thread(generated, compiler, k, masked_rows):
    """NAME_opt on 1 thread and on 2 and 3: the same bits for each row's loss and gradient and
    for the reductions (compensated sums per part of the rows, added in order), at a size
    shared among threads (PARALLEL_FROM values, a short last block)."""
    kernels = openmp_kernels(generated, k, compiler, masked_rows)
    rows = 2 * PARALLEL_FROM // k + 5
    for dtype in (numpy.float64, numpy.float32):
        data = option_batch(k, rows, dtype)
        for what, call in option_calls(kernels, k, data, dtype):
            one = as_outputs(call(1))
            for threads in (2, 3):
                for got, expected in zip(as_outputs(call(threads)), one, strict=True):
                    got, expected = numpy.asarray(got), numpy.asarray(expected)
                    numpy.testing.assert_array_equal(bits(got), bits(expected), err_msg=what)


@pytest.mark.parametrize("compiler", COMPILERS)
def test_options_on_threads_past_the_most_parts(generated, compiler):
    """More rows than OPTION_PARTS parts of the least size (the parts grow): still the bits of
    one thread, and the mean loss and its gradient those of F.cross_entropy."""
    import torch
    import torch.nn.functional as F

    from symsoft.emit.c import OPTION_PARTS, PARALLEL_CHUNK

    k = 3
    kernels = openmp_kernels(generated, k, compiler, "zero")
    rows = (OPTION_PARTS + 7) * PARALLEL_CHUNK // k + 11
    rng = numpy.random.default_rng(7)
    z = random_logits(rng, rows, k)
    labels = rng.integers(0, k, rows)
    labels[rng.random(rows) < 0.1] = -100
    weight = numpy.array([0.5, 1.0, 2.0])
    options = {"weight": weight, "ignore_index": -100, "label_smoothing": 0.1, "reduction": "mean"}
    one = kernels.cross_entropy_with_grad_index(z, labels, **options, threads=1)
    two = kernels.cross_entropy_with_grad_index(z, labels, **options, threads=2)
    for got, expected in zip(two, one, strict=True):
        numpy.testing.assert_array_equal(bits(numpy.asarray(got)), bits(numpy.asarray(expected)))
    zt = torch.tensor(z, requires_grad=True)
    reference = F.cross_entropy(
        zt,
        torch.tensor(labels),
        weight=torch.tensor(weight),
        ignore_index=-100,
        label_smoothing=0.1,
    )
    reference.backward()
    numpy.testing.assert_allclose(one[0], reference.item(), rtol=1e-13)
    numpy.testing.assert_allclose(one[1], zt.grad.numpy(), rtol=1e-12, atol=1e-20)


PROBE = """
import os, sys, numpy
from symsoft.runtime.build import load_library
from symsoft.runtime.ckernels import CKernels
kernels = CKernels(load_library(sys.argv[1]), int(sys.argv[2]))
z = numpy.zeros((int(sys.argv[3]), int(sys.argv[2])))
before = len(os.listdir("/proc/self/task"))
kernels.softmax(z[:8], threads=3)  # below PARALLEL_FROM: one thread
small = len(os.listdir("/proc/self/task"))
kernels.softmax(z, threads=3)
print(before, small, len(os.listdir("/proc/self/task")))
"""
# the options path (issue 17): the mean loss and gradient over integer labels, ignore_index
PROBE_OPTIONS = """
import os, sys, numpy
from symsoft.runtime.build import load_library
from symsoft.runtime.ckernels import CKernels
kernels = CKernels(load_library(sys.argv[1]), int(sys.argv[2]))
z = numpy.zeros((int(sys.argv[3]), int(sys.argv[2])))
labels = numpy.arange(len(z)) % 3
options = {"ignore_index": 1, "reduction": "mean"}
before = len(os.listdir("/proc/self/task"))
kernels.cross_entropy_with_grad_index(z[:8], labels[:8], **options, threads=3)
small = len(os.listdir("/proc/self/task"))
kernels.cross_entropy_with_grad_index(z, labels, **options, threads=3)
print(before, small, len(os.listdir("/proc/self/task")))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="Linux's /proc lists threads")
@pytest.mark.parametrize("probe", (PROBE, PROBE_OPTIONS), ids=("plain", "options"))
@pytest.mark.parametrize("compiler", COMPILERS)
def test_large_calls_start_threads_and_small_ones_do_not(generated, compiler, probe):
    """In a fresh process (no OpenMP threads yet): a small call starts none, a large one the
    two more that threads=3 asks for; the plain kernels and the options path alike."""
    kernels = openmp_kernels(generated, 10, compiler)
    library = kernels.library._name
    rows = str(2 * PARALLEL_FROM // 10)
    result = subprocess.run(
        [sys.executable, "-c", probe, library, "10", rows],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    before, small, large = (int(v) for v in result.stdout.split())
    assert small == before and large == before + 2, result.stdout


@pytest.mark.parametrize("compiler", COMPILERS)
def test_the_pragmas_leave_the_plain_build_clean(generated, compiler, tmp_path):
    """Without -fopenmp the pragmas are not even seen (#ifdef _OPENMP): -Wunknown-pragmas with
    -Werror passes, the library says it has no OpenMP, and its options path (serial) gives
    the bits of the OpenMP build's on 2 threads."""
    g = generated(3)
    library = compile_shared(
        g.folder / "softmax_k3.c",
        tmp_path / "plain.so",
        compiler=require_tool(compiler),
        flags=(*STRICT_FLAGS, "-O3", "-Wunknown-pragmas"),
    )
    kernels = CKernels(load_library(library), 3)
    assert kernels.openmp == 0
    z = numpy.zeros((PARALLEL_FROM, 3))
    numpy.testing.assert_array_equal(kernels.softmax(z, threads=2), numpy.full_like(z, 1 / 3))
    # the options path, serial here, gives the bits of the OpenMP build on 2 threads
    data = option_batch(3, 2 * PARALLEL_FROM // 3 + 5, numpy.float64)
    labels = numpy.where(data["labels"] == -100, 1, data["labels"])
    options = {"weight": [0.0, 1.0, 2.0], "ignore_index": 1, "label_smoothing": 0.1}
    for reduction in ("none", "sum", "mean"):
        serial = kernels.cross_entropy_with_grad_index(
            data["z"], labels, **options, reduction=reduction
        )
        shared = openmp_kernels(generated, 3, compiler).cross_entropy_with_grad_index(
            data["z"], labels, **options, reduction=reduction, threads=2
        )
        for got, expected in zip(shared, serial, strict=True):
            numpy.testing.assert_array_equal(bits(numpy.asarray(got)), bits(expected), reduction)


def test_load_builds_with_openmp_and_takes_threads(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMSOFT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", require_tool("gcc"))
    from symsoft.runtime.load import load

    kernels = load(3)
    assert kernels.openmp > 0 and kernels.threads == len(os.sched_getaffinity(0))
    two = load(3, threads=2)
    assert two.threads == 2 and two.library is kernels.library
    z = random_logits(numpy.random.default_rng(0), PARALLEL_FROM, 3)
    labels = numpy.arange(PARALLEL_FROM) % 3
    for got, expected in zip(
        two.cross_entropy_with_grad_index(z, labels),
        kernels.cross_entropy_with_grad_index(z, labels, threads=1),
        strict=True,
    ):
        numpy.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="at least 1"):
        load(3, threads=0)
    assert BY_NAME["cross_entropy_with_grad_index"].inputs == ("z", "labels")
