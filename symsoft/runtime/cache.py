"""Where symsoft caches generated and compiled kernels, and how entries are named and published."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

ENV_VAR = "SYMSOFT_CACHE_DIR"
APP = "symsoft"


def user_cache_dir(
    platform: str = sys.platform, environ: Mapping[str, str] = os.environ, home: Path | None = None
) -> Path:
    """The platform's per-user cache folder for symsoft (no dependency: three conventions)."""
    home = Path.home() if home is None else home
    if platform == "win32":
        base = environ.get("LOCALAPPDATA") or str(home / "AppData" / "Local")
        return Path(base) / APP / "Cache"
    if platform == "darwin":
        return home / "Library" / "Caches" / APP
    # XDG: a relative $XDG_CACHE_HOME is invalid and must be ignored
    xdg = environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else home / ".cache") / APP


def cache_root(environ: Mapping[str, str] = os.environ) -> Path:
    """$SYMSOFT_CACHE_DIR if set and non-empty, else the user cache folder."""
    override = environ.get(ENV_VAR, "")
    return Path(override).expanduser() if override else user_cache_dir(environ=environ)


def digest(*parts: str | bytes) -> str:
    """SHA-256 over the parts, each length-prefixed so that ("ab", "c") != ("a", "bc")."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def staging_path(final: Path) -> Path:
    """A fresh, uniquely named file beside final, for a writer to fill before publish()."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    return Path(name)


def publish(staged: Path, final: Path) -> Path:
    """Atomically move staged into place: readers see no file or a whole one, never a torn one.

    Two processes publishing the same key race harmlessly (same content, last rename wins).
    Windows refuses to replace a DLL that another process has loaded; then the one already in
    place is as good as ours.
    """
    try:
        os.replace(staged, final)
    except PermissionError:
        if not final.exists():
            raise
    finally:
        staged.unlink(missing_ok=True)
    return final


# Each published library has a record beside it: its key, size and SHA-256, taken after the
# library was synced to disk. A library is loaded only if it matches its record: a truncated
# or zeroed file (a crash, a full disk, a damaged disk) would kill the process in dlopen or
# at its first call (SIGBUS, SIGSEGV), and one of another K or policy at this name would
# compute the wrong thing.


def record_path(final: Path) -> Path:
    return final.with_name(final.name + ".json")


def _measure(path: Path, key: str) -> dict[str, object]:
    data = path.read_bytes()
    return {"key": key, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def is_intact(final: Path, key: str) -> bool:
    """Whether final exists and matches the record published with it for key."""
    try:
        record = json.loads(record_path(final).read_text(encoding="utf-8"))
        if record.get("key") != key or final.stat().st_size != record.get("size"):
            return False  # the size first: no need to read a truncated file
        return record == _measure(final, key)
    except (OSError, ValueError, AttributeError):  # missing, unreadable, not a JSON object
        return False


def publish_recorded(staged: Path, final: Path, key: str) -> Path:
    """publish() staged as final, then the record of what was published: its size and hash,
    taken once staged is on disk (fsync), so that a crash cannot leave a record of bytes
    that never reached the disk. Until the record is in place, final counts as damaged."""
    _sync(staged)
    record = _measure(staged, key)
    publish(staged, final)
    staged_record = staging_path(record_path(final))
    try:
        staged_record.write_text(json.dumps(record, sort_keys=True) + "\n", encoding="utf-8")
        _sync(staged_record)
    except BaseException:
        staged_record.unlink(missing_ok=True)
        raise
    publish(staged_record, record_path(final))
    return final


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
