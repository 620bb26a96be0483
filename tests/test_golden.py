"""generated/ holds committed outputs; regenerating them must give the same bytes.

To update them after an intended change: SYMSOFT_UPDATE_GOLDEN=1 pytest tests/test_golden.py
(or `symsoft generate --force` for each folder).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest
import sympy

from symsoft.pipeline import prove, render_all
from symsoft.spec import make_spec
from symsoft.writer import write_files

GOLDEN = Path(__file__).parent.parent / "generated"
GOLDEN_SYMPY = "1.14"  # the golden files were printed by this SymPy minor version


@pytest.mark.parametrize("k", [3])
def test_generated_files_have_not_drifted(k):
    folder = GOLDEN / f"k{k}"
    files = render_all(prove(make_spec(k)))
    if os.environ.get("SYMSOFT_UPDATE_GOLDEN"):
        write_files(folder, files, force=True)
    diffs = []
    for name, content in sorted(files.items()):
        path = folder / name
        if isinstance(content, bytes):  # the figures as PDF: compared byte for byte
            if not path.exists() or path.read_bytes() != content:
                diffs.append(f"generated/k{k}/{name}: the bytes differ\n")
            continue
        old = path.read_text() if path.exists() else ""
        if old != content:
            diffs.extend(
                difflib.unified_diff(
                    old.splitlines(keepends=True),
                    content.splitlines(keepends=True),
                    f"generated/k{k}/{name} (committed)",
                    f"generated/k{k}/{name} (regenerated)",
                )
            )
    assert not diffs, (
        f"generated/k{k} drifted (SymPy {sympy.__version__}; golden files made with "
        f"{GOLDEN_SYMPY}). If intended, run SYMSOFT_UPDATE_GOLDEN=1 pytest tests/test_golden.py\n"
        + "".join(diffs[:200])
    )
