"""benchmarks/bench_fused.py runs end to end at a small K and prints, for each type, the four
kernels' times and ratios that are the quotients of those times. Speed itself is not
asserted here (benchmarks/RESULTS.md has the measurements)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_fused.py"


def test_fused_and_alone_are_timed() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--ks", "3", "--values", "3000", "--rounds", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in done.stdout.splitlines()
        if line.startswith("| 3 |")
    ]
    assert [row[1] for row in rows] == ["float32", "float64"]
    for row in rows:
        grad, with_grad, ratio, grad_index, with_grad_index, ratio_index = map(float, row[2:])
        assert min(grad, with_grad, grad_index, with_grad_index) > 0
        assert abs(ratio - with_grad / grad) <= 0.006 * ratio
        assert abs(ratio_index - with_grad_index / grad_index) <= 0.006 * ratio_index
