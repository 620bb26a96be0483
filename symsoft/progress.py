"""Progress of long generation steps, shown only on a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """A one-line bar on stderr, redrawn per step: `[=====     ] 3/6 proving (2.1 s)`.

    Silent when the stream is not a terminal (logs, CI, pipes) or when quiet is set.
    """

    WIDTH = 24

    def __init__(self, total: int, *, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = not quiet and self.stream.isatty()
        self.total = total
        self.done = 0
        self.start = time.monotonic()

    def __call__(self, label: str) -> None:
        """Start the next step."""
        self.done += 1
        if self.enabled:
            filled = self.WIDTH * (self.done - 1) // self.total
            bar = "=" * filled + " " * (self.WIDTH - filled)
            elapsed = time.monotonic() - self.start
            line = f"[{bar}] {self.done}/{self.total} {label} ({elapsed:.1f} s)"
            self.stream.write(f"\r\x1b[K{line}")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
