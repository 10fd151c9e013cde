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


# How much of a file's content an error message may quote: enough to recognise a header or
# a value, too little to leak a line of a file that was never meant to be a source (a
# misconfigured glob matching /etc/passwd, a key file).
EXCERPT_CHARS = 20
EXCERPT_ITEMS = 8


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``text`` quoted for an error message as a short, clearly marked excerpt: at most
    ``limit`` characters between « and », with "…" where it was cut."""
    text = str(text).replace("\n", " ").replace("\r", " ")
    cut = text[:limit] + ("…" if len(text) > limit else "")
    return f"«{cut}»"


def excerpt_list(items: list[str], limit: int = EXCERPT_ITEMS) -> str:
    """Up to ``limit`` items as excerpts, comma-separated, with how many were left out."""
    shown = ", ".join(excerpt(item) for item in items[:limit])
    rest = len(items) - limit
    return shown + (f" and {rest} more" if rest > 0 else "")
