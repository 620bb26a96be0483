"""symsoft.load: generated, compiled and cached once; the C kernels take any sensible array."""

from __future__ import annotations

import inspect
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy
import pytest

import symsoft
from symsoft.errors import SpecError, SymsoftError
from symsoft.family.members import INPUT_KINDS, MEMBERS, Member, Output
from symsoft.runtime.cache import cache_root, user_cache_dir
from symsoft.runtime.load import C_FLAGS, TARGET_FLAGS, compile_flags, library_key, load, source_key
from symsoft.spec import make_spec
from tests.conftest import require_tool

K = 3
SIGNATURES = {member.name: member for member in MEMBERS}
REPO = Path(symsoft.__file__).parent.parent


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory):
    """Every load() in this module caches under a temporary folder, never the user's."""
    root = tmp_path_factory.mktemp("symsoft-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SYMSOFT_CACHE_DIR", str(root))
        yield root


@pytest.fixture(scope="module")
def c(cache_dir):
    require_tool("cc")
    return load(K, backend="c")


@pytest.fixture(scope="module")
def py(cache_dir):
    return load(K, backend="numpy")


def kind(name: str) -> str:
    """How a test makes an input: class indices ("label") or floats of z's shape."""
    return "label" if INPUT_KINDS[name] == "labels" else "float"


def arguments(sig: Member, z: numpy.ndarray, rng: numpy.random.Generator) -> list:
    """z, then valid values for the kernel's other inputs (soft labels, class indices)."""
    args: list = [z]
    for name in sig.inputs[1:]:
        if kind(name) == "label":
            args.append(rng.integers(0, z.shape[-1], size=z.shape[:-1]))
        else:
            args.append(rng.dirichlet(numpy.ones(z.shape[-1]), size=z.shape[:-1]).astype(z.dtype))
    return args


def run_python(code: str, env: dict[str, str], *args: str) -> subprocess.Popen:
    env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# --- the kernels ------------------------------------------------------------------------------


def outputs(result: object) -> tuple:
    """A kernel's outputs as a tuple: cross_entropy_with_grad returns (loss, grad)."""
    return result if isinstance(result, tuple) else (result,)


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
@pytest.mark.parametrize("name", list(SIGNATURES))
def test_every_kernel_agrees_with_the_numpy_backend(c, py, name, dtype):
    rng = numpy.random.default_rng(len(name))
    tol = {numpy.float64: 1e-12, numpy.float32: 2e-5}[dtype]
    for shape in [(K,), (2, 3, K), (0, K)]:
        args = arguments(SIGNATURES[name], (rng.normal(size=shape) * 4).astype(dtype), rng)
        results = zip(
            outputs(getattr(c, name)(*args)), outputs(getattr(py, name)(*args)), strict=True
        )
        for got, expected in results:
            assert numpy.shape(got) == numpy.shape(expected), (name, shape)
            assert got.dtype == expected.dtype == dtype
            numpy.testing.assert_allclose(got, expected, rtol=tol, atol=tol)


def test_c_kernels_have_the_numpy_backends_parameter_names(c, py):
    assert c.names == tuple(SIGNATURES)
    rng = numpy.random.default_rng(0)
    for name, sig in SIGNATURES.items():
        c_params = list(inspect.signature(getattr(c, name)).parameters)
        assert c_params == list(inspect.signature(getattr(py, name)).parameters)
        args = arguments(sig, rng.normal(size=(4, K)), rng)
        positional = c_params[: len(args)]  # then the keyword-only options (issue 17)
        by_name = getattr(c, name)(**dict(zip(positional, args, strict=True)))
        for a, b in zip(outputs(by_name), outputs(getattr(c, name)(*args)), strict=True):
            numpy.testing.assert_array_equal(a, b)


def test_worked_example(c):
    s = c.softmax([2.0, 1.0, 0.1])
    numpy.testing.assert_allclose(s, [0.65900114, 0.24243297, 0.09856589], rtol=1e-7)
    assert isinstance(c.cross_entropy([2.0, 1.0, 0.1], [1, 0, 0]), numpy.float64)  # as NumPy's


# --- inputs: converted, or refused with a clear error -------------------------------------------


def odd_inputs(rng: numpy.random.Generator) -> dict[str, object]:
    """Logits of shape (..., K) that C must not read as they are."""
    wide = rng.normal(size=(5, 2 * K))
    unaligned = numpy.frombuffer(bytearray(8 * 5 * K + 1), dtype=numpy.float64, offset=1)
    unaligned = unaligned.reshape(5, K)
    unaligned[...] = wide[:, :K]
    read_only = wide[:, :K].copy()
    read_only.flags.writeable = False
    return {
        "rows 2..4 of a bigger array (contiguous, offset)": rng.normal(size=(9, K))[2:5],
        "strided slice": wide[:, ::2],
        "transposed": rng.normal(size=(K, 5)).T,
        "Fortran order": numpy.asfortranarray(wide[:, :K]),
        "big-endian float64": wide[:, :K].astype(">f8"),
        "big-endian float32": wide[:, :K].astype(">f4"),
        "int": numpy.arange(5 * K).reshape(5, K) - 7,
        "bool": wide[:, :K] > 0,
        "unaligned": unaligned,
        "read-only": read_only,
        "nested list": wide[:, :K].tolist(),
        "3-d strided": rng.normal(size=(2, 2, 2 * K))[:, :, 1::2],
    }


def odd_layout(value: numpy.ndarray) -> numpy.ndarray:
    """The same values, not C-contiguous: floats transposed in memory, labels int32 strided."""
    if value.dtype.kind == "f":
        return numpy.asfortranarray(value)
    return numpy.stack([value, value], axis=-1).astype(numpy.int32)[..., 0]


@pytest.mark.parametrize("case", list(odd_inputs(numpy.random.default_rng(0))))
def test_odd_layouts_and_dtypes_are_converted_not_misread(c, py, case):
    z = odd_inputs(numpy.random.default_rng(1))[case]
    before = numpy.array(z)
    native = before.astype(before.dtype.newbyteorder("=") if before.dtype.kind == "f" else float)
    rng = numpy.random.default_rng(2)
    for name, sig in SIGNATURES.items():
        args = arguments(sig, native, rng)
        results = zip(
            outputs(getattr(c, name)(z, *map(odd_layout, args[1:]))),
            outputs(getattr(py, name)(*args)),
            strict=True,
        )
        for got, expected in results:
            assert got.dtype == expected.dtype and got.dtype.isnative, (name, got.dtype)
            numpy.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7, err_msg=name)
    numpy.testing.assert_array_equal(numpy.array(z), before)  # inputs are never written


@pytest.mark.parametrize(
    ("z", "error", "match"),
    [
        (numpy.zeros((2, K), dtype=complex), TypeError, "complex"),
        (numpy.zeros((2, K), dtype=numpy.float16), TypeError, "float16"),
        (numpy.zeros((2, K), dtype=numpy.longdouble), TypeError, "float32 or float64"),
        (numpy.array([["a", "b", "c"]]), TypeError, "float32 or float64"),
        (numpy.zeros((2, K), dtype=object), TypeError, "object"),
        (numpy.zeros((2, K + 1)), ValueError, f"K={K}"),
        (numpy.zeros((K, 2)), ValueError, f"K={K}"),
        (numpy.float64(1.0), ValueError, f"K={K}"),
    ],
    ids=["complex", "float16", "longdouble", "str", "object", "K+1", "transposed", "scalar"],
)
def test_bad_logits_are_refused(c, z, error, match):
    rng = numpy.random.default_rng(0)
    for name, sig in SIGNATURES.items():
        others = arguments(sig, numpy.zeros((2, K)), rng)[1:]
        with pytest.raises(error, match=match):
            getattr(c, name)(z, *others)


BAD_SECOND_INPUTS = {
    "float": [
        (numpy.zeros((2, K), dtype=complex), TypeError, "complex"),
        (numpy.zeros((2, K + 1)), ValueError, f"K={K}"),
        (numpy.zeros((1, K)), ValueError, "shape of z"),
    ],
    "label": [
        (numpy.zeros(2), TypeError, "integer"),
        (numpy.zeros(2, dtype=bool), TypeError, "integer"),
        (numpy.zeros(3, dtype=int), ValueError, r"shape \(2,\)"),
    ],
}


def test_bad_second_inputs_are_refused(c):
    z = numpy.zeros((2, K))
    for name, sig in SIGNATURES.items():
        for param in sig.inputs[1:]:
            for value, error, match in BAD_SECOND_INPUTS[kind(param)]:
                with pytest.raises(error, match=match):
                    getattr(c, name)(z, **{param: value})


def test_signatures_follow_the_family_declarations():
    member = Member("f", ("z", "labels"), (Output("out", 2),), "out, n*K*K values", (), ("p",))
    assert (
        member.c_params("double") == "const double *z, const int64_t *labels, double *out, size_t n"
    )
    bad = [
        (("y", "z"), (Output("out", 1),), "n*K values"),  # z must come first
        (("z", "mask"), (Output("out", 1),), "n*K values"),  # an input no binding knows
        (("z",), (Output("out", 2),), "n*K values"),  # the doc must say what to allocate
    ]
    for inputs, outs, doc in bad:
        with pytest.raises(ValueError):
            Member("f", inputs, outs, doc, (), ("p",))


# --- loading and the cache ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "backend", "options", "match"),
    [
        (0, "c", {}, "between 1 and"),
        (4097, "numpy", {}, "between 1 and"),
        (2.5, "c", {}, "integer"),
        ("3", "c", {}, "integer"),
        (True, "numpy", {}, "integer"),
        (3, "fortran", {}, "backend must be one of c, numpy"),
        (3, "C", {}, "backend"),
        (3, "c", {"masked_rows": "drop"}, "masked-rows"),
    ],
)
def test_bad_k_backend_or_option_is_a_spec_error_before_any_work(
    tmp_path, monkeypatch, k, backend, options, match
):
    monkeypatch.setenv("SYMSOFT_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(SpecError, match=match):
        load(k, backend, **options)
    assert not (tmp_path / "cache").exists()


def test_no_compiler_is_a_clear_error_and_numpy_backend_still_works(cache_dir, monkeypatch):
    monkeypatch.setenv("CC", str(cache_dir / "no-such-compiler"))
    with pytest.raises(SymsoftError, match=r"no C compiler found.*install"):
        load(K, backend="c")
    module = load(K, backend="numpy")
    numpy.testing.assert_allclose(module.softmax([0.0] * K), [1 / K] * K)


def test_libraries_are_built_for_this_cpu_unless_the_compiler_refuses(tmp_path, monkeypatch):
    cc = require_tool("cc")
    if platform.machine() in ("x86_64", "AMD64"):  # gcc and clang take both flags there
        assert compile_flags(cc) == (*C_FLAGS, *TARGET_FLAGS[0])
    # a native library is cached apart from a baseline one
    assert library_key(b"", b"", cc, C_FLAGS) != library_key(b"", b"", cc, compile_flags(cc))
    # a compiler that refuses -march=native (as some do on some platforms) builds without it;
    # one that refuses only the x86 vector-width flag keeps -march=native
    picky = tmp_path / "picky-cc"
    picky.write_text(
        f'#!/bin/sh\nfor a in "$@"; do [ "$a" = -march=native ] && exit 1; done\nexec {cc} "$@"\n'
    )
    picky.chmod(0o755)
    assert compile_flags(str(picky)) == C_FLAGS
    no_width = tmp_path / "no-width-cc"
    no_width.write_text(
        f'#!/bin/sh\nfor a in "$@"; do case "$a" in -mprefer-*) exit 1;; esac; done\n'
        f'exec {cc} "$@"\n'
    )
    no_width.chmod(0o755)
    assert compile_flags(str(no_width)) == (*C_FLAGS, "-march=native")
    monkeypatch.setenv("CC", str(picky))
    monkeypatch.setenv("SYMSOFT_CACHE_DIR", str(tmp_path / "cache"))
    kernels = load(2)
    numpy.testing.assert_allclose(kernels.softmax([0.0, 0.0]), [0.5, 0.5])


def test_the_cache_key_holds_the_target_the_compiler_resolves(tmp_path, monkeypatch):
    """The same compiler path and flags on another kind of CPU (here a wrapper whose
    predefined macros follow an environment variable) must give another library."""
    cc = require_tool("cc")
    wrapper = tmp_path / "cpu-cc"
    wrapper.write_text(f'#!/bin/sh\nexec {cc} "-DSIMULATED_CPU_$CPU_KIND" "$@"\n')
    wrapper.chmod(0o755)
    identity = sys.modules["symsoft.runtime.load"]._compiler_identity  # cached per process
    keys = []
    for kind in ("a", "b", "a"):
        monkeypatch.setenv("CPU_KIND", kind)
        identity.cache_clear()
        keys.append(library_key(b"int x;", b"", str(wrapper), C_FLAGS))
    identity.cache_clear()
    assert keys[0] != keys[1] and keys[0] == keys[2]


def test_cache_layout(c, py, cache_dir):
    assert cache_root() == cache_dir
    files = sorted(str(p.relative_to(cache_dir)) for p in cache_dir.rglob("*") if p.is_file())
    key = source_key(make_spec(K, numpy_only=True))[:32]
    assert f"src/k{K}-{key}/softmax_k{K}.c" in files
    assert f"src/k{K}-{key}/softmax_k{K}.py" in files
    libraries = [f for f in files if f.startswith(f"lib/softmax_k{K}-")]
    assert len(libraries) == 1, files
    assert not [f for f in files if f.endswith(".tmp")]
    assert load(K, backend="c") is c and load(K, backend="numpy") is py


def test_keys_change_with_what_the_output_depends_on():
    base = source_key(make_spec(K))
    assert base == source_key(make_spec(K))
    assert base != source_key(make_spec(K + 1))
    assert base != source_key(make_spec(K, masked_rows="zero"))
    cc = require_tool("cc")
    lib = library_key(b"int x;", b"", cc, C_FLAGS)
    assert lib == library_key(b"int x;", b"", cc, C_FLAGS)
    assert lib != library_key(b"int y;", b"", cc, C_FLAGS)
    assert lib != library_key(b"int x;", b"/* h */", cc, C_FLAGS)
    assert lib != library_key(b"int x;", b"", cc, (*C_FLAGS, "-g"))
    assert "-ffast-math" not in C_FLAGS and "-O3" in C_FLAGS


def test_a_second_process_neither_generates_nor_compiles(c, cache_dir):
    before = {p: p.stat().st_mtime_ns for p in cache_dir.rglob("*")}
    child = run_python(
        f"""
        import sys
        from symsoft.runtime.load import load
        kernels = load({K})
        print(kernels.softmax([2.0, 1.0, 0.1])[0])
        print(sorted(m for m in ("sympy", "jinja2", "symsoft.pipeline") if m in sys.modules))
        """,
        {"SYMSOFT_CACHE_DIR": str(cache_dir)},
    )
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    probability, heavy_modules = out.splitlines()
    assert abs(float(probability) - 0.659001139) < 1e-9
    assert heavy_modules == "[]"
    assert {p: p.stat().st_mtime_ns for p in cache_dir.rglob("*")} == before


# Each child waits for the other before load() and again after compiling, before publishing
# its library: both build the same library into one folder at the same time, and both rename.
RACE = """
    import os, sys, time
    from pathlib import Path
    import symsoft.runtime.load

    loader = sys.modules["symsoft.runtime.load"]
    meeting = Path(sys.argv[1])

    def wait_for_the_other(step):
        (meeting / f"{step}-{os.getpid()}").touch()
        deadline = time.monotonic() + 120
        while len(list(meeting.glob(f"{step}-*"))) < 2:
            if time.monotonic() > deadline:
                sys.exit(f"the other process never reached {step}")
            time.sleep(0.002)

    compile_shared = loader.compile_shared

    def compile_then_wait(*args, **kwargs):
        library = compile_shared(*args, **kwargs)
        wait_for_the_other("compiled")
        return library

    loader.compile_shared = compile_then_wait
    wait_for_the_other("start")
    print(loader.load(2).softmax([1.0, 1.0]).tolist())
"""


def test_two_processes_filling_an_empty_cache_at_once(tmp_path):
    require_tool("cc")
    root, meeting = tmp_path / "cache", tmp_path / "meeting"
    meeting.mkdir()
    env = {"SYMSOFT_CACHE_DIR": str(root)}
    children = [run_python(RACE, env, str(meeting)) for _ in range(2)]
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
        assert out.strip() == "[0.5, 0.5]"
    assert len(list(meeting.glob("compiled-*"))) == 2  # both really compiled
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert len([f for f in files if f.startswith("lib/")]) == 1, files
    assert len([f for f in files if f.startswith("src/")]) == 3, files  # .c, .h, .py
    assert not [f for f in files if f.endswith(".tmp") or "/." in f], files


def test_masked_rows_option_reaches_the_kernels(cache_dir):
    require_tool("cc")
    z = numpy.array([[-numpy.inf] * K, [0.0] * K])
    for backend in ("c", "numpy"):
        assert numpy.isnan(load(K, backend).softmax(z)[0]).all()
        ignored = load(K, backend, masked_rows="zero")
        numpy.testing.assert_array_equal(ignored.softmax(z), [[0.0] * K, [1 / K] * K])


def test_cache_folder_follows_the_platform_and_the_environment(tmp_path):
    home = Path("/home/ada")
    assert user_cache_dir("linux", {}, home) == home / ".cache" / "symsoft"
    assert user_cache_dir("linux", {"XDG_CACHE_HOME": "/xdg"}, home) == Path("/xdg/symsoft")
    assert user_cache_dir("linux", {"XDG_CACHE_HOME": "rel"}, home) == home / ".cache" / "symsoft"
    assert user_cache_dir("darwin", {}, home) == home / "Library" / "Caches" / "symsoft"
    windows = user_cache_dir("win32", {"LOCALAPPDATA": "C:/Users/ada/AppData/Local"}, home)
    assert windows == Path("C:/Users/ada/AppData/Local/symsoft/Cache")
    assert cache_root({"SYMSOFT_CACHE_DIR": str(tmp_path)}) == tmp_path
    assert cache_root({"SYMSOFT_CACHE_DIR": "", "XDG_CACHE_HOME": "/xdg"}) == Path("/xdg/symsoft")


def test_array_api_backend_takes_other_libraries_and_numpy_backend_needs_only_numpy(py):
    import torch

    module = load(K, backend="array-api")
    z = numpy.random.default_rng(3).normal(size=(6, K))
    s = module.softmax(torch.from_numpy(z))
    assert isinstance(s, torch.Tensor)
    numpy.testing.assert_allclose(s.numpy(), py.softmax(z), rtol=1e-14)
    assert "array_api_compat" not in Path(py.__file__).read_text()
