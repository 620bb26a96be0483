"""The README's Python examples run, and the results they show in comments are right."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import require_tool

ROOT = Path(__file__).parent.parent
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
# names the README's snippets take as given: a user's gradient, and a smaller Dask array
PRELUDE = textwrap.dedent(
    """
    import sys, numpy
    sys.path.insert(0, {examples!r})
    from correct import cross_entropy_grad as ce_grad
    """
)
SHRINK = {"10_000_000": "20_000", "1_000_000": "5_000"}


def with_checked_comments(code: str) -> str:
    """`expr  # array([...])` becomes an assertion that expr equals the shown array."""
    lines = []
    for line in code.splitlines():
        match = re.match(r"^(\S.*?)\s+# (array\(.*\))\s*$", line)
        if match:
            expr, shown = match.groups()
            line = f"numpy.testing.assert_allclose({expr}, numpy.{shown}, rtol=1e-7)"
        lines.append(line)
    return "\n".join(lines)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path):
    """Each block runs as a script file, as a user pastes it: worker processes (Dask's)
    import the main module again, which `python -c` would hide."""
    code = BLOCKS[index]
    for big, small in SHRINK.items():
        code = code.replace(big, small)
    script = tmp_path / f"readme_block_{index}.py"
    script.write_text(
        PRELUDE.format(examples=str(ROOT / "tests" / "gradcheck_examples"))
        + with_checked_comments(code)
    )
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SYMSOFT_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert result.returncode == 0, f"README block {index}:\n{code}\n{result.stderr}"


def test_readme_has_the_examples():
    assert len(BLOCKS) >= 4
    assert any("symsoft.load" in block for block in BLOCKS)


APP = """
#include <stdio.h>
#include "softmax_k3.h"
int main(void) {
    const double z[3] = {2.0, 1.0, 0.1};
    double loss;
    const int64_t label[1] = {0};
    cross_entropy_index_k3_f64(z, label, &loss, 1);
    printf("%.6f\\n", loss);
    return 0;
}
"""


def test_readme_compile_line_builds_and_links_a_program(tmp_path):
    """The README's compile line, run as written on a program calling a kernel (which calls
    libm's log): it must link, so it must say -lm."""
    require_tool("cc")
    sh = "\n".join(re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S))
    lines = [line for line in sh.splitlines() if line.startswith("cc ") and "app.c" in line]
    assert len(lines) == 1, "the README shows one line that builds app.c"
    shutil.copytree(ROOT / "generated" / "k3", tmp_path / "generated" / "k3")
    (tmp_path / "app.c").write_text(APP)
    built = subprocess.run(lines[0], shell=True, cwd=tmp_path, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    ran = subprocess.run([str(tmp_path / "app")], capture_output=True, text=True, check=True)
    assert ran.stdout == "0.417030\n"  # -log(0.659001...): the worked example's loss


def test_readme_says_how_to_get_what_skipped_tests_need():
    """A test that skips names what to install; the README must say the same."""
    text = (ROOT / "README.md").read_text()
    conftest = (ROOT / "tests" / "test_document.py").read_text()
    command = re.search(r"\((npm install [^)]*)\)", conftest)
    assert command is not None
    assert f"`{command.group(1)}`" in text
    assert "symsoft generate --force" not in text  # the first command needs no --force


def test_readme_states_the_subnormal_floor_of_the_softmax_bound():
    """The floor below the normal range, as accuracy.py adds it: four subnormal steps."""
    import numpy

    text = " ".join((ROOT / "README.md").read_text().split())
    for dtype in (numpy.float64, numpy.float32):
        finfo = numpy.finfo(dtype)
        floor = 4 * float(finfo.tiny) * float(finfo.eps)
        assert f"+ {floor:.1e} in {finfo.dtype}" in text
    source = (ROOT / "symsoft" / "runtime" / "accuracy.py").read_text()
    assert "floor = float(finfo.tiny) * float(finfo.eps) * 4" in source


def test_readme_adds_the_worked_example_as_the_tutorial_does():
    """The tutorial sums the rounded exponentials (11.212); the exact sum rounds to 11.213."""
    rounded = [round(math.exp(v), 3) for v in (2.0, 1.0, 0.1)]
    shown = " + ".join(f"{r:.3f}" for r in rounded) + f" = {sum(rounded):.3f}"
    assert shown in " ".join((ROOT / "README.md").read_text().split())
    exact = sum(math.exp(v) for v in (2.0, 1.0, 0.1))
    assert f"the exact sum is {str(exact)[:7]}…" in (ROOT / "README.md").read_text()
