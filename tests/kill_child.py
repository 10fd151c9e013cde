"""Child process of tests/integration/test_kill.py: run some steps of a run and stop at a named point.

    python tests/kill_child.py CONFIG AS_OF STEPS PAUSE_AT MARKER

STEPS is a comma-separated list of step names of ``tests/pipeline_steps.STEPS`` (run in
the flow's order). At PAUSE_AT the child writes MARKER and sleeps, so the parent can
SIGKILL it at exactly that point. The hooks live here, in test code: they wrap product
functions and never change what those write.

Pause points:

- ``ingest-fast``: the fast (DuckDB) reader has inserted one file's rows into raw.<source>;
  the file is not yet recorded in raw.files.
- ``ingest-chunk``: the row-by-row reader has flushed its first chunk (chunks of 50 rows
  here) of a file into raw.<source>; the rest of the file is not read yet.
- ``serving``: every marts table is copied into the new serving database under its
  hidden temporary name; it is not yet checkpointed, closed or renamed.
- ``exports``: three files are written in the hidden temporary export directory; the
  rest and the manifest are not.
- ``swap-serving``: the new serving database is complete under its temporary name and
  about to be renamed into place; the run's exports are already swapped in.
- ``before:<step>``: the steps before ``<step>`` are done, ``<step>`` has not started
  (a step boundary).
"""

from __future__ import annotations

import os
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import pipeline_steps  # noqa: E402


def main(config: str, as_of: str, steps: str, pause_at: str, marker: str) -> None:
    def pause() -> None:
        Path(marker).write_text(pause_at, encoding="utf-8")
        time.sleep(600)  # the parent kills us long before this ends
        raise SystemExit(f"kill_child: nobody killed the child paused at {pause_at}")

    if pause_at == "ingest-fast":
        from pipelines.load import readers

        insert = readers._insert_staged

        def insert_then_pause(*args, **kwargs):
            insert(*args, **kwargs)
            pause()

        readers._insert_staged = insert_then_pause
    elif pause_at == "ingest-chunk":
        from pipelines import warehouse
        from pipelines.load import exact_reader

        exact_reader._CHUNK_ROWS = 50
        connect = warehouse.connect_warehouse

        class PausingConnection:
            """The warehouse connection; pauses once a chunk has been inserted."""

            def __init__(self, con):
                self._con = con

            def __getattr__(self, name):
                return getattr(self._con, name)

            def unregister(self, name):
                result = self._con.unregister(name)
                if name == "_ingest_batch":
                    pause()
                return result

        warehouse.connect_warehouse = lambda settings, *args: PausingConnection(
            connect(settings, *args)
        )
    elif pause_at == "serving":
        from pipelines.publish import serving as publish

        copy = publish._copy_schema

        def copy_then_pause(*args, **kwargs):
            copy(*args, **kwargs)
            pause()

        publish._copy_schema = copy_then_pause
    elif pause_at == "exports":
        from pipelines.publish import exports

        write, written = exports.write_parquet, []

        def write_then_pause(table, path):
            write(table, path)
            written.append(path)
            if len(written) == 3:
                pause()

        exports.write_parquet = write_then_pause
    elif pause_at == "swap-serving":
        from pipelines.publish import serving as publish

        class PausingOs:
            """``os`` for the serving module: pauses before the serving file is renamed
            into place (the exports of the run are swapped in by then)."""

            def __getattr__(self, name):
                return getattr(os, name)

            @staticmethod
            def replace(src, dst):
                pause()

        publish.os = PausingOs()
    elif pause_at.startswith("before:"):
        from pipelines import steps as run_steps

        name = pause_at.split(":", 1)[1]
        step = run_steps.STEPS[name]

        def pause_then_step(ctx):
            pause()
            return step(ctx)

        run_steps.STEPS[name] = pause_then_step
    elif pause_at != "none":
        raise SystemExit(f"kill_child: unknown pause point {pause_at!r}")
    pipeline_steps.run_pipeline(config, date.fromisoformat(as_of), steps.split(","))


if __name__ == "__main__":
    main(*sys.argv[1:])
