"""Exceptions that carry a message meant for the user."""


class SymsoftError(Exception):
    """Base class: the CLI prints the message and exits non-zero."""


class SpecError(SymsoftError, ValueError):
    """The requested generation is invalid (bad K, bad names, bad example)."""


class ProofError(SymsoftError):
    """A closed form could not be proved equal to its definition: generation stops."""


class OutputError(SymsoftError):
    """The output folder cannot be used: an impossible path, or files symsoft may not replace."""


class WriteError(SymsoftError):
    """Writing failed part way (a full disk, an I/O error); no output file was changed."""
