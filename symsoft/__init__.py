"""symsoft: derive the softmax family symbolically, prove the closed forms, emit code."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("symsoft")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

from symsoft.spec import K_MAX, Spec, make_spec

__all__ = ["K_MAX", "Spec", "__version__", "make_spec"]
