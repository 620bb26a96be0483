"""benchmarks/bench_generation.py --stages runs end to end at a small K (it broke unnoticed
when the emitters came to take the proved document): every stage has a time and the total
is their sum. Speed itself is not asserted here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_generation.py"


def test_stages_are_timed() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--stages", "3"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    rows = {
        cells[0]: float(cells[1])
        for line in done.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| stage")
        for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
    }
    stages = {name for name in rows if name != "total"}
    assert {"derive and prove (Bundle)", "build and check the document"} <= stages
    assert {f"emit {target}" for target in ("numpy", "c", "latex", "markdown", "vectors")} <= stages
    assert all(seconds >= 0 for seconds in rows.values())
    assert abs(rows["total"] - sum(rows[name] for name in stages)) < 0.05 + 0.01 * rows["total"]
