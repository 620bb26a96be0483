"""The test session keeps to itself: no cache in the user's home, no stray warnings."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from symsoft.runtime.cache import user_cache_dir


def test_every_process_of_the_session_caches_in_a_temporary_folder():
    code = "from symsoft.runtime.cache import cache_root; print(cache_root())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    root = Path(done.stdout.strip())
    assert root.is_relative_to(tempfile.gettempdir()), root
    assert not root.is_relative_to(user_cache_dir())
    assert Path(os.environ["SYMSOFT_CACHE_DIR"]) == root
