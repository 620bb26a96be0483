"""Functions that try to end, hang or take over the checker, each on masked inputs only."""

import atexit
import ctypes
import os
import sys
import time

import numpy as np


def _grad(z, y):
    e = np.exp(z - np.max(z))
    return e / np.sum(e) * np.sum(y) - y


def exits(z, y):
    if np.isneginf(z).any():
        sys.exit(0)
    return _grad(z, y)


def os_exits(z, y):
    if np.isneginf(z).any():
        os._exit(3)
    return _grad(z, y)


def interrupts(z, y):
    if np.isneginf(z).any():
        raise KeyboardInterrupt
    return _grad(z, y)


def segfaults(z, y):
    if np.isneginf(z).any():
        ctypes.string_at(0)
    return _grad(z, y)


def forks(z, y):
    if np.isneginf(z).any():
        os.fork()  # both processes go on and return
    return _grad(z, y)


def hooks(z, y):
    if np.isneginf(z).any():
        atexit.register(print, "bye")
    return _grad(z, y)


def closes(z, y):
    if np.isneginf(z).any():
        sys.stdout.close()
    return _grad(z, y)


def sleeps(z, y):
    if np.isneginf(z).sum() == len(z) - 1:
        time.sleep(100)
    return _grad(z, y)


def slow(z, y):
    time.sleep(0.05)
    return _grad(z, y)


def prints(z, y):
    print("debug output", z[0])
    os.write(1, b"raw write to fd 1\n")
    return _grad(z, y)
