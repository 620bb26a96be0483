"""The README's `symsoft check` examples, run as a user runs them: each shell line from
tests/gradcheck_examples/ (copied to a temporary folder), and the Python block as a script."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from symsoft.gradcheck.cli import add_check_arguments

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "tests" / "gradcheck_examples"
SECTION = re.search(
    r"## Checking a hand-written gradient\n(.*?)\n## ", (ROOT / "README.md").read_text(), re.S
).group(1)
SHELL = re.search(r"```sh\n(.*?)```", SECTION, re.S).group(1).strip().splitlines()
PYTHON = re.search(r"```python\n(.*?)```", SECTION, re.S).group(1)


def _split(line: str) -> tuple[str, int]:
    """The command and the exit code its comment announces (0 unless "# exit N")."""
    command, _, comment = line.partition("  #")
    match = re.match(r"\s*exit (\d)", comment)
    return command.strip(), int(match.group(1)) if match else 0


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("examples") / "gradcheck_examples"
    shutil.copytree(EXAMPLES, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def _env() -> dict[str, str]:
    # `symsoft` and `python` of this environment come first on PATH, as after activating it
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}


def test_readme_documents_every_check_option():
    parser = argparse.ArgumentParser()
    add_check_arguments(parser)
    options = {s for a in parser._actions for s in a.option_strings if s.startswith("--")}
    table = {m for m in re.findall(r"`(--[a-z-]+)", SECTION)}
    examples = {m for line in SHELL for m in re.findall(r"(--[a-z-]+)", line)}
    assert options - {"--help"} <= table, options - table
    assert options - {"--help"} <= examples, options - examples


@pytest.mark.parametrize("line", SHELL, ids=range(len(SHELL)))
def test_readme_check_line_runs(line, folder):
    command, code = _split(line)
    run = subprocess.run(
        ["bash", "-c", command],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    assert run.returncode == code, f"{command}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    if "--json" not in command:
        assert run.stdout.startswith("symsoft check: ") and "verdict: " in run.stdout


def test_readme_python_block_runs_as_a_script(folder):
    script = folder / "readme_check.py"
    script.write_text(PYTHON)
    run = subprocess.run(
        [sys.executable, str(script)], cwd=folder, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
