"""The installed version, on its own so that every stage can print it without importing the
package's __init__ (which imports the runtime loader)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("symsoft")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
