"""User-facing errors: each carries a one-paragraph message (what, where, how to fix).

The CLI prints the message and exits non-zero; it never shows a traceback for these.
:func:`is_transient` decides which failures Prefect retries.
"""

from __future__ import annotations

import errno


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


class WarehouseBusyError(CrmError):
    """Another process holds the working database; this command changed nothing."""

    exit_code = 5


# OSError numbers that a retry a few seconds later cannot fix: a full disk or quota, a
# read-only file system, missing rights, a missing or wrong kind of file.
_PERMANENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "ENOENT", "EISDIR", "ENOTDIR")
    if hasattr(errno, name)
)
_PERMANENT_DUCKDB_TEXT = ("no space left", "disk is full", "permission denied", "set lock on file")


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the step that raised ``exc`` may succeed: True only for I/O
    failures that can pass (a network file system's timeout, EIO, EAGAIN, ...). Input,
    config and user errors (:class:`CrmError`), a full disk, missing rights and bugs are
    not transient: Prefect does not retry them."""
    if isinstance(exc, CrmError):
        return False
    if isinstance(exc, OSError):
        return exc.errno not in _PERMANENT_ERRNOS
    import duckdb

    if isinstance(exc, duckdb.IOException):
        text = str(exc).lower()
        return not any(word in text for word in _PERMANENT_DUCKDB_TEXT)
    return False
