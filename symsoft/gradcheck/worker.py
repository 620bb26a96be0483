"""Run the user's function in a child process that the check survives.

One long-lived child runs the calls one after the other (a process per call would cost more
than the check); it is forked, so it inherits the function, closures and lambdas included,
and restarted after anything that ends or spoils it. A call that exits, crashes, hangs past
its timeout, forks, registers an atexit hook or closes stdout becomes an error outcome with
`escaped` set, never the end of the check. Once this process has run JAX, JAX hangs in the
child (XLA's threads stay behind): a JAX function is refused, and a hang says JAX may be why.
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import multiprocessing
import os
import signal
import sys
import sysconfig
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from symsoft.gradcheck.arrays import convert_output, input_converter
from symsoft.gradcheck.errors import CheckUsageError

# what JAX warns at every fork once it has run (jax/_src/xla_bridge.py)
JAX_FORK_WARNING = r"os\.fork\(\) was called\. os\.fork\(\) is incompatible with multithreaded"
JAX_HANGS = "JAX has already run in this process, and JAX hangs in the forked process fn runs in"
# symsoft check imports the file in its own process: a JAX computation at import runs there
FRESH = (
    "check from a process that has not run JAX (symsoft check, with no JAX computation when "
    "the file is imported)"
)


def jax_has_run() -> bool:
    """Has this process run a JAX computation? Its XLA threads then exist here but not in a
    forked child, where JAX work waits for them forever; importing JAX alone starts none."""
    bridge = sys.modules.get("jax._src.xla_bridge")
    if bridge is None:
        return False
    initialized = getattr(bridge, "backends_are_initialized", None)
    return True if initialized is None else bool(initialized())  # unknown JAX: assume so


@dataclass(frozen=True)
class Answer:
    out: tuple | None  # convert_output's tuple; None if the call did not return
    error: str | None = None  # "ValueError: ... (at file.py:12)", "crashed with SIGSEGV", ...
    escaped: bool = False  # the call ended, hung or changed the process, not just raised


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    here = str(Path(__file__).resolve().parent)
    user = [f for f in frames if not str(Path(f.filename).resolve()).startswith(here)]
    if not user:
        return ""
    last = user[-1]
    return f" (at {Path(last.filename).name}:{last.lineno})"


def _describe(exc: BaseException) -> tuple[str, bool]:
    where = _where(exc)
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r}){where}", True
    if isinstance(exc, KeyboardInterrupt):
        return f"raised KeyboardInterrupt{where}", True
    message = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {message}{where}", not isinstance(exc, Exception)


def _stdout_closed() -> bool:
    try:
        os.fstat(1)
    except OSError:
        return True
    return sys.stdout is None or sys.stdout.closed


# installed code (the standard library, site-packages) may register atexit hooks: JAX does
LIBRARIES = tuple(
    str(Path(p).resolve())
    for p in {sysconfig.get_paths()[k] for k in ("stdlib", "purelib", "platlib")}
)


def _watch_atexit(hooks: list[str]) -> None:
    """Record atexit hooks registered by the user's code (they would never run here: the
    worker ends with os._exit, but a hook is not what a gradient may leave behind)."""
    register = atexit.register

    def watched(func: Callable, *args: object, **kwargs: object) -> Callable:
        caller = sys._getframe(1).f_code.co_filename
        if not str(Path(caller).resolve()).startswith(LIBRARIES):
            hooks.append(f"{Path(caller).name}")
        return register(func, *args, **kwargs)

    atexit.register = watched


def _serve(fn: Callable, conn: object, array: str, dtype: np.dtype) -> None:
    """The child's loop: receive arguments, call, send back NumPy results."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the checker, not fn
    faulthandler.disable()  # a crash is reported by the checker, not dumped (pytest enables it)
    os.dup2(2, 1)  # whatever fn prints goes to stderr: stdout carries only the report
    torch = sys.modules.get("torch")
    if torch is not None:
        # torch's thread pool does not survive a fork: a parent that already ran parallel
        # torch code left pool threads the child does not have, and the child's first
        # parallel op waited for them forever (seen in the full test suite)
        torch.set_num_threads(1)
    me = os.getpid()
    forks: list[int] = []
    os.register_at_fork(after_in_parent=lambda: forks.append(1))
    hooks: list[str] = []
    _watch_atexit(hooks)
    try:
        convert = input_converter(array, dtype)
    except Exception as exc:
        conn.send(Answer(None, f"importing {array} failed: {exc}", True))
        os._exit(0)
    while True:
        try:
            args = conn.recv()
        except (EOFError, OSError):
            os._exit(0)
        hooks.clear()
        forks.clear()
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # overflow warnings are part of what is judged
            try:
                answer = Answer(convert_output(fn(*(convert(a) for a in args))))
            except BaseException as exc:  # SystemExit and KeyboardInterrupt included
                answer = Answer(None, *_describe(exc))
        if os.getpid() != me:  # a process fn forked: it must not answer
            os._exit(0)
        events = []
        if forks:
            events.append("forked a child process (os.fork)")
        if hooks:
            events.append(f"registered an atexit hook (in {hooks[0]})")
        if _stdout_closed():
            events.append("closed stdout")
        if events:
            answer = Answer(None, " and ".join(events), True)
        with contextlib.suppress(Exception):  # fn's prints, before the answer
            sys.stdout.flush()
        conn.send(answer)
        if events:  # the process is no longer clean: the parent starts a new one
            os._exit(0)


def _exit_text(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        extra = " (segmentation fault)" if name == "SIGSEGV" else ""
        return f"crashed with {name}{extra}"
    return f"ended the process with exit code {code} (os._exit, or exit() in C)"


class Worker:
    """The child process, with a timeout per call and a deadline for the whole check."""

    def __init__(
        self, fn: Callable, array: str, dtype: np.dtype, timeout: float, check_timeout: float
    ) -> None:
        self.fn, self.array, self.dtype = fn, array, dtype
        self.timeout, self.check_timeout = timeout, check_timeout
        self.deadline = time.monotonic() + check_timeout
        self.proc: multiprocessing.process.BaseProcess | None = None
        self.conn = None
        self.restarts = 0
        self.after_jax = jax_has_run()  # when the process is forked
        jax_fn = type(fn).__module__.partition(".")[0] in {"jax", "jaxlib"}  # jax.jit(...)
        if self.after_jax and (array == "jax" or jax_fn):  # every call would hang
            raise CheckUsageError(f"cannot check a JAX function here: {JAX_HANGS}; {FRESH}")

    def _start(self) -> None:
        context = multiprocessing.get_context("fork")
        ours, theirs = context.Pipe()
        for stream in (sys.stdout, sys.stderr):  # or the child repeats buffered output
            stream.flush()
        self.after_jax = jax_has_run()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: on purpose
            # JAX's warning at this fork is about the child using JAX: a JAX function was
            # refused in __init__, and a call that hangs says JAX may be why
            warnings.filterwarnings("ignore", JAX_FORK_WARNING, RuntimeWarning)
            proc = context.Process(
                target=_serve, args=(self.fn, theirs, self.array, self.dtype), daemon=True
            )
            proc.start()
        theirs.close()
        self.proc, self.conn = proc, ours

    def _stop(self) -> None:
        if self.proc is not None:
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join(5)
            self.conn.close()
        self.proc, self.conn = None, None

    def close(self) -> None:
        self._stop()

    def call(self, args: tuple) -> Answer:
        left = self.deadline - time.monotonic()
        if left <= 0:
            limit = f"{self.check_timeout:g} s"
            return Answer(None, f"not run: the check's time limit ({limit}) ran out", True)
        if self.proc is None:
            self._start()
        limit = min(self.timeout, left)
        try:
            self.conn.send(args)
            ready = self.conn.poll(limit)
        except (BrokenPipeError, EOFError, OSError):
            ready = True  # died between calls: recv reports how
        if not ready:
            self._stop()
            self.restarts += 1
            what = "--timeout" if limit == self.timeout else "the check's time limit"
            why = f"; {JAX_HANGS}: if fn uses JAX, {FRESH}" if self.after_jax else ""
            return Answer(None, f"did not return within {limit:.3g} s ({what}){why}", True)
        try:
            answer = self.conn.recv()
        except (EOFError, OSError):
            self.proc.join(5)
            code = self.proc.exitcode
            self._stop()
            self.restarts += 1
            return Answer(None, _exit_text(code), True)
        if answer.escaped:
            self._stop()  # the child exits after such a call; the next call starts a new one
            self.restarts += 1
        return answer

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
