"""The ``crm`` command (typer): run, backfill, serve, status, forget, generate-sample.

Exit codes (pipelines/errors.py): 0 success, 1 unexpected or a bad value a command checks
itself, 2 a config error (one paragraph starting "crm COMMAND failed:"), 3 input data, 4 a
failed step, 64 a usage error (click's "Usage: ... Error: ..." text), 130 interrupted.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines.errors import CrmError
from pipelines.failure import release_failure


class _NoTracebackForUserErrors(logging.Filter):
    """Prefect logs a task's exception with its traceback; for errors a user can act on,
    the one-paragraph message is the whole story."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], CrmError):
            record.exc_info = None
            record.exc_text = None
            record.msg = record.getMessage().splitlines()[0]
            record.args = ()
        return True


def _quiet_prefect() -> None:
    for name in ("prefect.flow_runs", "prefect.task_runs", "prefect.engine", "prefect"):
        logging.getLogger(name).addFilter(_NoTracebackForUserErrors())
    # a killed crm run must not leave Prefect's temporary server behind (issue 17, item 9)
    from pipelines.prefect_server import guard_temporary_server

    guard_temporary_server()


def _date(text: str | None) -> str | None:
    """Checks a YYYY-MM-DD option; a bad one is a usage error (exit 2)."""
    if text is None:
        return None
    try:
        date.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"a date like 2025-12-31 is needed, got {text!r}") from exc
    return text


def _version(value: bool) -> None:
    if not value:
        return
    from pipelines.runlog import package_versions

    try:
        from importlib import metadata

        own = metadata.version("crm-pipeline")
    except Exception:  # run from a checkout that was never installed
        own = "unknown"
    others = ", ".join(f"{name} {version}" for name, version in package_versions().items())
    typer.echo(f"crm {own} ({others})")
    raise typer.Exit(0)


app = typer.Typer(
    name="crm",
    help="Analytical CRM batch pipeline: ingest, validate, deduplicate, RFM, CLV, churn "
    "risk, publish. Exit codes: 0 success, 2 config error, 3 input data, "
    "4 failed step, 64 usage error, 1 anything else, 130 interrupted.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Print the version of crm and of the libraries it runs on, then exit.",
        ),
    ] = False,
) -> None:
    """Analytical CRM batch pipeline."""


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="The crm.toml to use (default: $CRM_CONFIG, else ./crm.toml, else the bundled "
        "sample with its outputs under the current folder).",
        dir_okay=False,
        show_default=False,
    ),
]


def _guarded(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Turns what a command raises into one paragraph on stderr and its exit code."""

    def wrap(body: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(body)
        def run(*args: Any, **kwargs: Any) -> None:
            try:
                body(*args, **kwargs)
            except CrmError as exc:
                print(f"crm {name} failed: {exc}", file=sys.stderr)
                release_failure(exc)
                raise typer.Exit(exc.exit_code) from None
            except BrokenPipeError:  # output piped into `head` and the like: not an error
                raise typer.Exit(0) from None
            except KeyboardInterrupt:
                print(
                    f"crm {name} interrupted; nothing was published by this run.",
                    file=sys.stderr,
                )
                raise typer.Exit(130) from None
            except (typer.Exit, typer.TyperException):
                raise
            except Exception as exc:  # a bug or an environment problem: still one paragraph
                if os.environ.get("CRM_DEBUG"):
                    raise
                where = type(exc).__name__
                print(
                    f"crm {name} failed unexpectedly ({where}: "
                    f"{str(exc).splitlines()[0] if str(exc) else 'no message'}). Nothing was "
                    "published by this run; the last good outputs stay in place. Run again "
                    "with CRM_DEBUG=1 for the full traceback, and report it if it persists.",
                    file=sys.stderr,
                )
                release_failure(exc)
                raise typer.Exit(1) from None

        return run

    return wrap


def _config(config: Path | None, announce: bool = True) -> str | None:
    """The config path to pass on: ``--config``, else ``$CRM_CONFIG`` or ``./crm.toml``,
    else ``None`` (the bundled sample). Without ``--config`` it prints which one it is."""
    from pipelines.config import describe_config, find_config

    found, _ = find_config(config)
    if config is None and announce:
        print(describe_config(None), flush=True)
    return str(found) if found is not None else None


@app.command("run")
@_guarded("run")
def run_command(
    config: ConfigOption = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            callback=_date,
            metavar="DATE",
            help="Observation date YYYY-MM-DD (default: the latest completed order).",
        ),
    ] = None,
    full_refresh: Annotated[
        bool,
        typer.Option(
            "--full-refresh",
            help="Process every delivered file again and retrain the churn model "
            "(default: only what is new since the last run).",
        ),
    ] = False,
) -> None:
    """Run the whole pipeline once and print its summary.

    Example: crm run --config crm.toml --as-of 2025-12-31
    """
    from pipelines.config import load_settings
    from pipelines.warehouse import raise_if_busy

    path = _config(config)
    # a config error (2) or a busy warehouse exits here, before Prefect's server starts
    raise_if_busy(load_settings(path))
    _quiet_prefect()
    from flows import crm_pipeline

    print(crm_pipeline(config_path=path, as_of=as_of, full_refresh=full_refresh))


@app.command("backfill")
@_guarded("backfill")
def backfill_command(
    start: Annotated[
        str,
        typer.Option(
            "--from", callback=_date, metavar="DATE", help="First as-of date, YYYY-MM-DD."
        ),
    ],
    end: Annotated[
        str,
        typer.Option("--to", callback=_date, metavar="DATE", help="Last as-of date, YYYY-MM-DD."),
    ],
    every: Annotated[int, typer.Option("--every", metavar="N", help="Days between runs.")] = 1,
    config: ConfigOption = None,
) -> None:
    """Run the pipeline as of each date of a range, in order.

    Example: crm backfill --from 2025-01-01 --to 2025-03-31 --every 7
    """
    from pipelines.config import load_settings
    from pipelines.steps import backfill_dates
    from pipelines.warehouse import raise_if_busy

    path = _config(config)
    raise_if_busy(load_settings(path))
    try:
        days = backfill_dates(date.fromisoformat(start), date.fromisoformat(end), every)
    except ValueError as exc:
        raise CrmError(str(exc)) from exc
    _quiet_prefect()
    from flows import crm_backfill

    summaries = crm_backfill(
        config_path=path, start=str(days[0]), end=str(days[-1]), every_days=every
    )
    print("\n\n".join(summaries))
    print(f"\nBackfilled {len(days)} run(s), as of {days[0]} to {days[-1]}.")


@app.command("serve")
@_guarded("serve")
def serve_command(config: ConfigOption = None) -> None:
    """Serve the flow on the config's \\[schedule] table (cron and time zone) until stopped."""
    _quiet_prefect()
    from prefect import serve as prefect_serve

    from flows import build_deployment

    prefect_serve(build_deployment(_config(config)))


@app.command("status")
@_guarded("status")
def status_command(
    config: ConfigOption = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the latest run as one JSON object (null when there has been no run).",
        ),
    ] = False,
) -> None:
    """Print the latest run from the run log (read-only)."""
    from pipelines import runlog

    if as_json:
        print(json.dumps(runlog.latest_run(_config(config, announce=False)), indent=2))
    else:
        print(runlog.format_latest_run(_config(config)))


@app.command("forget")
@_guarded("forget")
def forget_command(
    customer_ids: Annotated[
        list[str],
        typer.Argument(metavar="CUSTOMER_ID...", help="Source customer ids to erase."),
    ],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Also tombstone ids found nowhere (never seen); without it such an id, "
            "often a typo, is refused.",
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Erase customers everywhere (right to be forgotten) and republish.

    Example: crm forget C001 C002 --config crm.toml
    """
    from pipelines.config import load_settings
    from pipelines.erasure import forget

    result = forget(load_settings(_config(config)), list(customer_ids), force)
    print(
        f"Forgot {result.source_ids} source customer id(s): "
        f"{sum(result.rows_deleted.values())} rows deleted, "
        f"{result.tombstones} tombstone(s) kept (hashes, not ids); database "
        f"compacted: {result.compacted}; serving database republished: "
        f"{result.serving_published is not None}."
    )
    if result.not_found:
        print(f"Not found anywhere: {', '.join(result.not_found)}")


@app.command("generate-sample")
@_guarded("generate-sample")
def generate_sample_command(
    customers: Annotated[
        int, typer.Option("--customers", help="How many customers to generate (at least 1).")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Folder to write the exports and the truth files to.")
    ],
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same files).")] = 42,
) -> None:
    """Write realistic synthetic exports (transactions, customers, events) and their truth.

    Example: crm generate-sample --customers 5000 --out data/mine
    """
    from pipelines.sample import generate_sample

    if customers < 1:
        raise CrmError("--customers must be at least 1.")
    print(generate_sample(out, customers=customers, seed=seed))


@app.command("init")
@_guarded("init")
def init_command(
    export_files: Annotated[
        list[Path],
        typer.Argument(
            metavar="EXPORT_FILE...",
            help="Export files (CSV, Parquet, JSON Lines, Excel) to write a config for.",
            dir_okay=False,
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Where to write the config.", dir_okay=False)
    ] = Path("crm.toml"),
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists.")] = False,
) -> None:
    """Write a commented crm.toml for exports the tool has never seen.

    It maps columns by header name and by content, finds the delimiter, encoding, decimal
    comma and timestamp formats, sets the validation limits the data needs and says which
    sources each file can feed.

    Example: crm init orders.csv customers.xlsx --out crm.toml
    """
    from pipelines.onboarding.init import init_config

    print(init_config(list(export_files), out, force=force))


@app.command("check")
@_guarded("check")
def check_command(config: ConfigOption = None) -> None:
    """Read, map and validate every source and print what a run would quarantine and why.

    Runs ingest, clean and validate on a temporary warehouse: the real one is not opened,
    no models run, nothing is published. Exit code 3 when a run would stop on the inputs.
    """
    from pipelines.onboarding.check import check_config

    result = check_config(_config(config))
    print(result.text)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


# click's own code for a usage error is 2, which crm's config errors have had since the
# first release; the usage error takes sysexits' EX_USAGE instead.
USAGE_EXIT_CODE = 64


def main(argv: list[str] | None = None) -> int:
    """Runs ``crm`` with ``argv`` (default: the process's arguments); returns the exit code.

    A usage error (unknown option, bad date, missing argument) raises
    ``SystemExit(USAGE_EXIT_CODE)`` after click's usage message: 64 (sysexits' EX_USAGE),
    so a script can tell a mistyped command from a bad config (2).
    """
    # No telemetry: this machine (and many of our users') has no route to it.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    # Prefect's temporary server gets 20 s to start by default; a busy 2-core machine
    # needs more, and a timeout there is not the user's fault.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="crm", standalone_mode=False)
    except typer.TyperException as exc:  # a usage error (typer vendors click's)
        # click's plain text, unwrapped, rather than a rich box: scripts and tests read it
        exc.show()
        raise SystemExit(USAGE_EXIT_CODE) from None
    except typer.Abort:
        print("crm interrupted.", file=sys.stderr)
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
