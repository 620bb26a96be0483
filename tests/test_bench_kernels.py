"""benchmarks/bench_kernels.py runs end to end on a small batch: it prints its tables with a figure
for the emitted C and each library, and it measures on one core (it once compared against JAX
running on both cores of the machine without saying so). Speed itself is not asserted here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_kernels.py"


@pytest.fixture(scope="module")
def report() -> str:
    command = [sys.executable, str(SCRIPT), "--ks", "3", "--dtypes", "float64", "--quick"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def after(text: str, *markers: str) -> str:
    """text from past the first marker, then from past the next one, and so on."""
    for marker in markers:
        text = text.split(marker, 1)[1]
    return text


def row(text: str, name: str) -> list[float]:
    """The figures of the first table row in text called name."""
    line = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
    return [float(cell) for cell in line.strip("|").split("|")[1:]]


@pytest.mark.parametrize("section", ["Softmax", "Cross-entropy gradient"])
@pytest.mark.parametrize("name", ["emitted C", "emitted NumPy", "scipy.special.softmax"])
def test_every_contender_has_a_time(report: str, section: str, name: str) -> None:
    (nanoseconds,) = row(after(report, f"## {section}\n"), name)
    assert 0 < nanoseconds < 1e4


def test_ratios_are_the_times_over_the_emitted_c(report: str) -> None:
    times = after(report, "## Softmax\n")
    (ours,) = row(times, "emitted C")
    (scipy,) = row(times, "scipy.special.softmax")
    (ratio,) = row(after(times, "Times slower than the emitted C"), "scipy.special.softmax")
    assert ratio == pytest.approx(scipy / ours, abs=0.01 + 0.01 * ratio)


def test_measured_on_one_core(report: str) -> None:
    found = re.search(r"one core \(CPUs the process may use: \[(\d+)\]\); CPU time / wall", report)
    assert found, report.splitlines()[:10]
    assert int(found.group(1)) in os.sched_getaffinity(0)
