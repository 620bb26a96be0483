"""Several builds of one K in one program: --prefix names the C symbols, files, header guard
and Python module, and each file says which masked-row policy it implements."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

import symsoft
from symsoft import pipeline
from symsoft.errors import SpecError
from symsoft.family.members import MEMBERS
from symsoft.spec import make_spec
from tests.conftest import require_tool

K = 4
PROGRAM = """
#include <math.h>
#include <stdio.h>
#include "padded_softmax_k4.h"
#include "strict_softmax_k4.h"
int main(void) {
    const float z[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, 1.0F, 2.0F, 3.0F, 4.0F};
    float zero[8], nan[8];
    padded_softmax_k4_f32(z, zero, 2);
    strict_softmax_k4_f32(z, nan, 2);
    printf("%g %g %d %d\\n", zero[0], zero[7], isnan(nan[0]) != 0, zero[7] == nan[7]);
    return PADDED_SOFTMAX_K4_K + STRICT_SOFTMAX_K4_K == 8 ? 0 : 1;
}
"""


def generate(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "symsoft", "generate", "-k", str(K), "-q", "-o", str(out), *args],
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> Path:
    """The nan and zero policies of K = 4 in one folder, under two prefixes."""
    out = tmp_path_factory.mktemp("both")
    for prefix, policy in (("padded", "zero"), ("strict", "nan")):
        spec = make_spec(K, masked_rows=policy, prefix=prefix)
        pipeline.generate(spec, out, targets=["c", "numpy", "vectors"])
    return out


def test_both_policies_link_into_one_program(both):
    require_tool("cc")
    (both / "main.c").write_text(PROGRAM)
    sources = [
        str(both / name) for name in ("main.c", "padded_softmax_k4.c", "strict_softmax_k4.c")
    ]
    flags = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic"]
    built = subprocess.run(
        ["cc", *flags, "-o", str(both / "main"), *sources, "-lm"], capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr
    ran = subprocess.run([str(both / "main")], capture_output=True, text=True)
    assert ran.returncode == 0
    zero_row, last, nan_row, same = ran.stdout.split()
    assert (zero_row, nan_row, same) == ("0", "1", "1") and 0.6 < float(last) < 0.7


def test_files_guard_and_module_take_the_prefix(both):
    assert sorted(p.name for p in both.iterdir() if not p.name.startswith("main")) == [
        "padded_softmax_k4.c",
        "padded_softmax_k4.h",
        "padded_softmax_k4.py",
        "padded_vectors_k4.json",
        "strict_softmax_k4.c",
        "strict_softmax_k4.h",
        "strict_softmax_k4.py",
        "strict_vectors_k4.json",
    ]
    header = (both / "padded_softmax_k4.h").read_text()
    assert "#ifndef SYMSOFT_PADDED_SOFTMAX_K4_H" in header
    assert "void padded_cross_entropy_index_k4_f64(" in header
    spec = importlib.util.spec_from_file_location(
        "padded_softmax_k4", both / "padded_softmax_k4.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.softmax(numpy.full(K, -numpy.inf)).tolist() == [0.0] * K


@pytest.mark.parametrize(
    "prefix, policy, says",
    [("padded", "zero", "is ignored: "), ("strict", "nan", "gives NaN")],
)
def test_every_file_and_function_says_its_masked_row_policy(both, prefix, policy, says):
    header = (both / f"{prefix}_softmax_k4.h").read_text()
    kernels = re.compile(rf"void {prefix}_\w+_k4_f(32|64)\(")
    declarations = [line for line in header.splitlines() if kernels.match(line)]
    lines = header.splitlines()
    with_options = [member for member in MEMBERS if member.options]  # and their NAME_opt
    assert len(declarations) == 2 * (len(MEMBERS) + len(with_options))  # float and double
    for line in declarations:
        comment = lines[lines.index(line) - 1]
        assert f"--masked-rows {policy}" in comment and says in comment, comment
    assert f"Masked rows: a fully masked row (every z_i = -inf) {says}" in header
    source = (both / f"{prefix}_softmax_k4.c").read_text()
    assert source.count(f"(--masked-rows {policy})") == 2 * len(MEMBERS)
    module = (both / f"{prefix}_softmax_k4.py").read_text()
    # the docstring and every function
    assert module.count(f"(--masked-rows {policy})") == 1 + len(MEMBERS)


@pytest.mark.parametrize("name", ["9lives", "for", "a-b", "x y", "__x", "é", "a\n"])
def test_a_bad_prefix_is_refused(name):
    with pytest.raises(SpecError, match="prefix"):
        make_spec(K, prefix=name)


def test_a_bad_prefix_is_one_line_exit_2(tmp_path):
    done = generate(tmp_path / "out", "--prefix", "9lives")
    assert done.returncode == 2
    assert "prefix '9lives'" in done.stderr and len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("backend", ["c", "numpy", "array-api"])
def test_load_takes_prefix_and_masked_rows(backend):
    if backend == "c":
        require_tool("cc")
    kernels = symsoft.load(K, backend, masked_rows="zero", prefix="padded")
    assert kernels.softmax(numpy.full(K, -numpy.inf)).tolist() == [0.0] * K
    if backend == "c":
        assert "padded_softmax_k4_f32/f64" in kernels.softmax.__doc__
    else:
        assert kernels.__name__ == "padded_softmax_k4"
