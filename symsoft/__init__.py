"""symsoft: derive the softmax family symbolically, prove the closed forms, emit code."""

from symsoft.runtime.load import load
from symsoft.spec import K_MAX, Spec, make_spec
from symsoft.version import __version__

__all__ = ["K_MAX", "Spec", "__version__", "check_gradient", "load", "make_spec"]


def __getattr__(name: str) -> object:
    # imported on first use: the checker pulls in mpmath and its own machinery
    if name == "check_gradient":
        from symsoft.gradcheck import check_gradient

        return check_gradient
    raise AttributeError(f"module 'symsoft' has no attribute {name!r}")
