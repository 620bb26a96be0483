"""The one error the checker raises itself."""

from symsoft.errors import SpecError


class CheckUsageError(SpecError):
    """The check cannot run as asked (CLI exit code 2).

    Bad K or option, no such file or function, a signature that cannot take the inputs, an
    output of the wrong shape or type. Distinct from a wrong gradient, which is a verdict.
    """
