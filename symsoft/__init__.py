"""symsoft: derive the softmax family symbolically, prove the closed forms, emit code."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("symsoft")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

from symsoft.load import load
from symsoft.spec import K_MAX, Spec, make_spec

__all__ = ["K_MAX", "Spec", "__version__", "check_gradient", "load", "make_spec"]


def __getattr__(name: str) -> object:
    # imported on first use: the checker pulls in mpmath and its own machinery
    if name == "check_gradient":
        from symsoft.gradcheck import check_gradient

        return check_gradient
    raise AttributeError(f"module 'symsoft' has no attribute {name!r}")
