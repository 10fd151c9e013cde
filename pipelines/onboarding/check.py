"""``crm check``: read, map and validate every source of a config and say what a run would
quarantine and why, without models or publishing.

It runs the flow's own ingest, clean and validate steps (pipelines/steps.py) on a
temporary warehouse that is deleted afterwards, so the real working database, the serving
database, the exports and the report are never opened. Every delivered file is read, as
a first run or ``crm run --full-refresh`` reads them.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from pipelines.errors import CrmError, InputError

EXAMPLE_ROWS = 3


@dataclass
class CheckResult:
    """The text ``crm check`` prints and its exit code (0 a run would pass this stage, 3 a
    run would stop on the inputs, or the stopping error's own code)."""

    text: str
    exit_code: int


def check_config(config_path: str | Path | None) -> CheckResult:
    """Ingest, clean and validate every source of the config on a throw-away warehouse.

    Returns the report (files read, rows that would load, rows quarantined per rule with
    example rows, fields blanked per rule) and the exit code. Raises
    :class:`~pipelines.errors.ConfigError` for a bad config.
    """
    from pipelines import steps
    from pipelines.config import load_settings
    from pipelines.warehouse import connect_warehouse

    settings = load_settings(config_path)
    with tempfile.TemporaryDirectory(prefix="crm-check-") as tmp:
        scratch = Path(tmp)
        check_settings = replace(
            settings,
            warehouse=replace(
                settings.warehouse,
                path=scratch / "check.duckdb",
                serving_path=scratch / "serving.duckdb",
                temp_directory=scratch / "spill",
            ),
            exports=replace(settings.exports, path=scratch / "exports"),
            report=replace(settings.report, path=scratch / "reports"),
        )
        con = connect_warehouse(check_settings)
        stopped: CrmError | None = None
        try:
            ctx = steps.RunContext(
                settings=check_settings,
                con=con,
                run_id="crm-check",
                started_at=datetime.now(),
                full_refresh=True,
            )
            for name in ("ingest", "clean", "validate"):
                try:
                    steps.STEPS[name](ctx)
                except CrmError as exc:
                    stopped = exc
                    break
            lines = _report(con, settings)
        finally:
            con.close()
    header = (
        f"Checked {settings.config_path} on a temporary warehouse (the working database "
        f"{settings.warehouse.path} was not opened): every delivered file read, mapped and "
        "validated, as a first run or --full-refresh would; no models, nothing published."
    )
    if stopped is not None:
        first = str(stopped).splitlines()[0]
        lines.append(f"A run would stop here: {first}")
        code = stopped.exit_code if not isinstance(stopped, InputError) else 3
        return CheckResult("\n".join([header, *lines]), code)
    lines.append("A run would get past ingest, clean and validate with these inputs.")
    return CheckResult("\n".join([header, *lines]), 0)


def _report(con, settings) -> list[str]:
    from pipelines.sqlrun import has_table

    lines: list[str] = []
    for source in settings.sources:
        files = con.execute(
            "select file_name, status, rows_read, rows_rejected, columns_ignored, "
            "columns_missing from raw.files where source = ? order by file_path",
            [source],
        ).fetchall()
        if not files:
            lines.append(
                f"{source}: no file matches {settings.sources[source].path}; a run "
                "would have nothing to read for it."
            )
            continue
        read = sum(f[2] or 0 for f in files)
        quarantined = 0
        rules: list[tuple[str, int, list]] = []
        if has_table(con, "quarantine", source):
            quarantined = con.execute(f"select count(*) from quarantine.{source}").fetchall()[0][0]
            rules = con.execute(
                f"""select rule, count(*), list(_row_number order by _row_number)[1:{EXAMPLE_ROWS}]
                    from (select unnest(string_split(rules, ', ')) as rule, _row_number
                          from quarantine.{source})
                    group by rule order by count(*) desc, rule"""
            ).fetchall()
        rejected = con.execute(
            "select reason, count(*) from raw.rejected_rows where source = ? "
            "group by reason order by 2 desc",
            [source],
        ).fetchall()
        blanked = con.execute(
            "select rule, field, count(*) from quarantine.field_issues where source = ? "
            "group by all order by 3 desc",
            [source],
        ).fetchall()
        lines.append(
            f"{source}: {len(files)} file(s), {read} row(s) read; {quarantined} would be "
            f"quarantined, {read - quarantined} would load."
        )
        for name, status, _, _, ignored, missing in files:
            extra = []
            if ignored:
                extra.append("columns not mapped: " + ", ".join(ignored))
            if missing:
                extra.append("mapped columns absent: " + ", ".join(missing))
            lines.append(f"  {name}: {status}" + (f" ({'; '.join(extra)})" if extra else ""))
        for rule, count, examples in rules:
            rows = ", ".join(str(r) for r in examples)
            lines.append(f"  quarantined by {rule}: {count} row(s), e.g. row(s) {rows}")
        for reason, count in rejected:
            lines.append(f"  unreadable records: {count} ({reason})")
        for rule, field, count in blanked:
            lines.append(f"  field {field} blanked by {rule}: {count} row(s) (the rows load)")
    return lines
