"""Release what a failed run left alive, so that its message is the last thing it prints.

An exception keeps every frame it passed through alive, and with them their locals: the
run's DuckDB connection, its relations and Arrow readers. DuckDB's binding (nanobind)
reports every such object still alive when the interpreter exits, as ~40 lines of
"nanobind: leaked ..." after the error message.
"""

from __future__ import annotations

import gc
import traceback


def release_failure(exc: BaseException) -> None:
    """Clear the locals of every finished frame in ``exc``'s traceback and in those of the
    exceptions it chains (``__cause__``, ``__context__``), then collect the garbage: the
    connection and results those frames held are freed now, not at interpreter exit."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        traceback.clear_frames(error.__traceback__)
        pending += [error.__cause__, error.__context__, *getattr(error, "exceptions", ())]
    gc.collect()
