"""Compile emitted C into a shared library and load its kernels with ctypes."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

from symsoft.errors import SymsoftError

# Strict ISO C99 with every warning an error: what the tests and `symsoft load` use.
STRICT_FLAGS = (
    "-std=c99",
    "-O2",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
    "-Wconversion",
    "-Wdouble-promotion",
)


def find_compiler() -> str:
    """$CC if set, else cc/gcc/clang from PATH."""
    candidates = [os.environ["CC"]] if os.environ.get("CC") else ["cc", "gcc", "clang"]
    for name in candidates:
        path = shutil.which(name)
        if path:
            return path
    raise SymsoftError(
        "no C compiler found (tried " + ", ".join(candidates) + "); install one, "
        "e.g. `apt-get install gcc`, or set CC"
    )


def compile_shared(
    source: Path,
    output: Path,
    *,
    compiler: str | None = None,
    flags: tuple[str, ...] = STRICT_FLAGS,
    extra: tuple[str, ...] = (),
) -> Path:
    """Build source into the shared library output; raise with the compiler's message."""
    command = [compiler or find_compiler(), *flags, *extra, "-fPIC", "-shared", str(source)]
    command += ["-o", str(output), "-lm"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SymsoftError(f"compiling {source.name} failed:\n{result.stderr.strip()}")
    return output


def load_library(path: Path) -> ctypes.CDLL:
    return ctypes.CDLL(str(path))
