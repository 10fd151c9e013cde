"""User-facing errors: each carries a one-paragraph message (what, where, how to fix).

The CLI prints the message and exits non-zero; it never shows a traceback for these.
"""


class CrmError(Exception):
    """Base class of errors a user can act on."""

    exit_code = 1


class ConfigError(CrmError):
    """The config file is missing, malformed, or has a bad key or value."""

    exit_code = 2


class InputError(CrmError):
    """An input file cannot be used as delivered (batch-level failure)."""

    exit_code = 3


class StepError(CrmError):
    """A pipeline step failed; nothing was published."""

    exit_code = 4
