"""The only code that writes generated files: checked before any work, staged, then swapped in.

What a run guarantees, also when it is killed (kill -9, power loss) or the disk fills:

- no output file is ever torn: each is renamed into place whole;
- a run writes every file into a hidden staging folder inside OUT (`.symsoft-staging-*`),
  syncs them to disk, then marks the staging complete and renames the files into place. A
  run stopped before the mark has changed no output file; a failed run (full disk, an error)
  removes its staging folder before it reports the error;
- a run killed after the mark, in the instant of the renames, leaves OUT mixed until the next
  run into OUT, which first completes the renames (a staging folder still present in OUT
  means that), and deletes staging folders that were never completed. So once any run into
  OUT has finished, OUT holds the files of exactly one run.

Existing files are replaced only if symsoft wrote them and they are unchanged since (their
stamp, see symsoft.stamp, matches their content), or with force. Symbolic links, folders and
anything else at an output's name are refused without force.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from symsoft.errors import OutputError, WriteError
from symsoft.stamp import is_unchanged_output

STAGING_PREFIX = ".symsoft-staging-"
_COMPLETE = ".complete"  # written last into a staging folder: its files may be swapped in
_LOCK = ".lock"  # held by the writing process, so a concurrent run leaves its staging alone

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; stale staging folders are then left alone
    fcntl = None  # type: ignore[assignment]


def check_writable(out: Path, names: list[str], force: bool) -> None:
    """Refuse before any work is done: an impossible or unwritable OUT, or an existing path at
    an output's name that symsoft may not replace."""
    if out.is_symlink() and not out.exists():
        raise OutputError(f"output folder {out} is a dangling symbolic link")
    if out.exists() and not out.is_dir():
        raise OutputError(f"output path {out} exists and is not a folder")
    _probe(out)
    refused = sorted(name for name in names if not _replaceable(out / name, force))
    if refused:
        raise OutputError(
            f"{out} already holds {', '.join(refused)}, which symsoft did not write or which "
            "changed since; pass --force to overwrite"
        )


def _probe(out: Path) -> None:
    """Create and remove a file in OUT, or in its nearest existing parent when OUT is still
    to be made: the only test that works for read-only file systems, and for root too."""
    folder = out
    while not folder.exists():
        if folder.is_symlink():
            raise OutputError(f"cannot create {out}: {folder} is a dangling symbolic link")
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"cannot create {out}: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".symsoft-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise OutputError(f"cannot write into {folder}: {error.strerror or error}") from None


def _replaceable(path: Path, force: bool) -> bool:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return True
    if stat.S_ISDIR(mode):
        return False  # never replaced, not even with force: it may hold anything
    if force:
        return True
    if not stat.S_ISREG(mode):  # a symbolic link, dangling or not, a FIFO, ...
        return False
    try:
        return is_unchanged_output(path.read_bytes())
    except OSError:
        return False


def write_files(out: Path, files: Mapping[str, str | bytes], force: bool) -> list[Path]:
    """Write every file, all or nothing (see the module's docstring). Raises OutputError when
    OUT cannot be used, WriteError when writing fails part way (no output changed then)."""
    names = sorted(files)
    check_writable(out, names, force)  # again: files may have changed during the work
    try:
        out.mkdir(parents=True, exist_ok=True)
        recover(out)
        with _staging(out) as staging:
            for name in names:
                content = files[name]
                _write_synced(
                    staging / name, content if isinstance(content, bytes) else content.encode()
                )
            _write_synced(staging / _COMPLETE, "\n".join(names).encode() + b"\n")
            _sync_folder(staging)
            _swap_in(staging, out)
    except OSError as error:
        raise WriteError(f"writing into {out} failed: {error.strerror or error}") from None
    return [out / name for name in names]


def recover(out: Path) -> None:
    """Finish what killed runs left in OUT: swap in completed staging folders, delete others.
    Staging folders of runs still writing (their lock is held) are left alone."""
    for staging in sorted(out.glob(f"{STAGING_PREFIX}*")):
        if not staging.is_dir() or staging.is_symlink():
            continue
        with _try_lock(staging) as locked:
            if not locked:
                continue
            if (staging / _COMPLETE).is_file():
                _swap_in(staging, out)
            else:
                shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """A fresh staging folder in OUT, locked while in use, removed afterwards."""
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
    try:
        with _try_lock(staging):
            yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def _try_lock(staging: Path) -> Iterator[bool]:
    """An exclusive lock on staging's lock file, or False if another process holds it."""
    if fcntl is None:
        yield False
        return
    fd = os.open(staging / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock


def _swap_in(staging: Path, out: Path) -> None:
    """Rename staging's files into OUT (the list in its completion mark), then remove it."""
    names = (staging / _COMPLETE).read_text().split()
    for name in names:
        if (staging / name).exists():  # gone if an earlier, killed swap moved it already
            os.replace(staging / name, out / name)
    _sync_folder(out)
    shutil.rmtree(staging, ignore_errors=True)


def _write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_folder(folder: Path) -> None:
    """Make renames in folder durable (POSIX; Windows cannot open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
