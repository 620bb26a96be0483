"""The README's Python examples run, and the results they show in comments are right."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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
    code = BLOCKS[index]
    for big, small in SHRINK.items():
        code = code.replace(big, small)
    script = PRELUDE.format(examples=str(ROOT / "tests" / "gradcheck_examples"))
    script += with_checked_comments(code)
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "SYMSOFT_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert result.returncode == 0, f"README block {index}:\n{code}\n{result.stderr}"


def test_readme_has_the_examples():
    assert len(BLOCKS) >= 4
    assert any("symsoft.load" in block for block in BLOCKS)
