"""Turn "path/to/file.py:function" (or a C target) into the callable, with usage errors that
say what is wrong."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path

from symsoft.gradcheck.cfunction import C_SUFFIXES, CFunction, load_c_function, split_cflags
from symsoft.gradcheck.errors import CheckUsageError
from symsoft.gradcheck.settings import Settings


def load_function(
    target: str, settings: Settings | None = None, cflags: str | tuple[str, ...] = ()
) -> tuple[Callable, str]:
    """The function and a display name; rpartition keeps Windows drive colons in the path.

    FILE.c:FUNCTION and LIB.so:FUNCTION are C functions (settings give their signature)."""
    path_text, sep, attr = target.rpartition(":")
    if not sep or not path_text or not attr:
        raise CheckUsageError(f"expected path/to/file.py:function, got {target!r}")
    path = Path(path_text)
    if path.suffix in C_SUFFIXES:
        if settings is None:
            raise CheckUsageError(f"{path.name} is C: its signature needs the check's options")
        return load_c_function(target, settings, split_cflags(cflags)), f"{path.name}:{attr}"
    if cflags:
        raise CheckUsageError("--cflags is for a .c file")
    if not path.is_file():
        raise CheckUsageError(f"no such file: {path}")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"_symsoft_check_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CheckUsageError(f"cannot import {path} as Python source")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.resolve().parent))  # so the file can import its neighbours
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        raise CheckUsageError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(str(path.resolve().parent))
    obj: object = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            defined = sorted(
                n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
            )
            raise CheckUsageError(
                f"{path} has no function {attr!r}; it defines: {', '.join(defined) or 'nothing'}"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise CheckUsageError(f"{path}:{attr} is not callable ({type(obj).__name__})")
    return obj, f"{path.name}:{attr}"


def check_signature(fn: Callable, settings: Settings, name: str) -> None:
    """Refuse a function that cannot be called the way this check will call it."""
    if isinstance(fn, CFunction):
        return
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have none: let the call decide
        return
    n = 2 if settings.two_args else 1
    try:
        signature.bind(*range(n))
    except TypeError as exc:
        raise CheckUsageError(
            f"{name}{signature} cannot be called as {settings.call} for --of {settings.of}: {exc}"
        ) from exc
