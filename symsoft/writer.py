"""The only code that touches the file system: all-or-nothing, atomic writes."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from symsoft.errors import SymsoftError


def check_writable(out: Path, names: list[str], force: bool) -> None:
    """Refuse before any work is done: never overwrite silently, never write half."""
    if out.exists() and not out.is_dir():
        raise SymsoftError(f"output path {out} exists and is not a folder")
    existing = sorted(name for name in names if (out / name).exists())
    if existing and not force:
        raise SymsoftError(f"{out} already holds {', '.join(existing)}; pass --force to overwrite")


def write_files(out: Path, files: Mapping[str, str | bytes], force: bool) -> list[Path]:
    """Write every file to a temporary name first, then rename them all into place."""
    check_writable(out, sorted(files), force)
    out.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[str, Path]] = []
    try:
        for name in sorted(files):
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out)
            os.fchmod(fd, 0o644)  # mkstemp's 0600 would make generated files private
            content = files[name]
            data = content if isinstance(content, bytes) else content.encode("utf-8")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            staged.append((name, Path(tmp)))
        for name, tmp in staged:
            os.replace(tmp, out / name)
    finally:
        for _, tmp in staged:
            tmp.unlink(missing_ok=True)
    return [out / name for name in sorted(files)]
