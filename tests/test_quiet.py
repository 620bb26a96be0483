"""The test session keeps to itself: no cache in the user's home, no stray warnings."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from symsoft.runtime.cache import user_cache_dir

ROOT = Path(__file__).resolve().parent.parent


def test_every_process_of_the_session_caches_in_a_temporary_folder():
    code = "from symsoft.runtime.cache import cache_root; print(cache_root())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    root = Path(done.stdout.strip())
    assert root.is_relative_to(tempfile.gettempdir()), root
    assert not root.is_relative_to(user_cache_dir())
    assert Path(os.environ["SYMSOFT_CACHE_DIR"]) == root


def test_a_new_warning_fails_the_test_that_raises_it(tmp_path):
    """The suite's own settings, on tests that warn: a regression cannot hide in a summary."""
    (tmp_path / "test_new.py").write_text(
        "import os, warnings\n"
        "def test_user_warning():\n"
        "    warnings.warn('something new')\n"
        "def test_deprecation():\n"
        "    warnings.warn('an old API', DeprecationWarning)\n"
        "def test_resource_warning():\n"
        "    open(os.devnull).__del__()  # an unclosed file, as garbage collection finds it\n"
        "def test_quiet():\n"
        "    pass\n"
    )
    settings = ["-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *settings, "test_new.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "3 failed, 1 passed" in done.stdout, done.stdout
    for name in ("test_user_warning", "test_deprecation", "test_resource_warning"):
        assert f"FAILED test_new.py::{name}" in done.stdout, done.stdout


def test_the_only_warnings_let_through_are_named_by_their_message():
    """Every exception to "error" names one exact message (and says why, in a comment)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    first, *exceptions = config["tool"]["pytest"]["ini_options"]["filterwarnings"]
    assert first == "error"
    for entry in exceptions:
        action, message, category, *_ = entry.split(":")
        assert action == "ignore" and len(message) > 30 and category.endswith("Warning"), entry
