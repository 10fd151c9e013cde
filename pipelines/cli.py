"""The ``crm`` command: run, serve, status, forget, generate-sample (exit codes in errors.py)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import date
from pathlib import Path

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


def _date(text: str) -> str:
    try:
        date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"a date like 2025-12-31 is needed, got {text!r}") from exc
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crm", description="Analytical CRM batch pipeline.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the whole pipeline once")
    run.add_argument(
        "--config",
        type=Path,
        default=None,
        help="crm.toml (default: the bundled sample in data/sample)",
    )
    run.add_argument(
        "--as-of",
        type=_date,
        default=None,
        help="observation date YYYY-MM-DD (default: latest completed order)",
    )
    run.add_argument(
        "--full-refresh",
        action="store_true",
        help="process every delivered file again and retrain the churn model "
        "(default: only what is new since the last run)",
    )
    backfill = sub.add_parser(
        "backfill", help="run the pipeline as of each date of a range, in order"
    )
    backfill.add_argument("--from", dest="start", type=_date, required=True, metavar="DATE")
    backfill.add_argument("--to", dest="end", type=_date, required=True, metavar="DATE")
    backfill.add_argument(
        "--every", type=int, default=1, metavar="N", help="days between runs (default 1)"
    )
    backfill.add_argument(
        "--config",
        type=Path,
        default=None,
        help="crm.toml (default: the bundled sample in data/sample)",
    )
    serve = sub.add_parser("serve", help="serve the flow on the config's [schedule]")
    serve.add_argument(
        "--config",
        type=Path,
        default=None,
        help="crm.toml (default: the bundled sample in data/sample)",
    )
    status = sub.add_parser("status", help="print the latest run from the run log")
    status.add_argument(
        "--config",
        type=Path,
        default=None,
        help="crm.toml (default: the bundled sample in data/sample)",
    )
    forget = sub.add_parser("forget", help="erase customers everywhere (right to be forgotten)")
    forget.add_argument("customer_ids", nargs="+", metavar="CUSTOMER_ID")
    forget.add_argument(
        "--config",
        type=Path,
        default=None,
        help="crm.toml (default: the bundled sample in data/sample)",
    )
    gen = sub.add_parser("generate-sample", help="write realistic synthetic exports")
    gen.add_argument("--customers", type=int, required=True)
    gen.add_argument("--out", type=Path, required=True)
    gen.add_argument("--seed", type=int, default=42)
    return parser


def main(argv: list[str] | None = None) -> int:
    # No telemetry: this machine (and many of our users') has no route to it.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    # Prefect's temporary server gets 20 s to start by default; a busy 2-core machine
    # needs more, and a timeout there is not the user's fault.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            from pipelines.config import load_settings

            # a config error exits 2 here, before Prefect's server starts (10-20 s)
            load_settings(str(args.config) if args.config else None)
            _quiet_prefect()
            from flows import crm_pipeline

            print(
                crm_pipeline(
                    config_path=str(args.config) if args.config else None,
                    as_of=args.as_of,
                    full_refresh=args.full_refresh,
                )
            )
            return 0
        if args.command == "backfill":
            from pipelines.config import load_settings
            from pipelines.steps import backfill_dates

            load_settings(str(args.config) if args.config else None)
            try:
                days = backfill_dates(
                    date.fromisoformat(args.start), date.fromisoformat(args.end), args.every
                )
            except ValueError as exc:
                raise CrmError(str(exc)) from exc
            _quiet_prefect()
            from flows import crm_backfill

            summaries = crm_backfill(
                config_path=str(args.config) if args.config else None,
                start=str(days[0]),
                end=str(days[-1]),
                every_days=args.every,
            )
            print("\n\n".join(summaries))
            print(f"\nBackfilled {len(days)} run(s), as of {days[0]} to {days[-1]}.")
            return 0
        if args.command == "serve":
            _quiet_prefect()
            from prefect import serve as prefect_serve

            from flows import build_deployment

            deployment = build_deployment(str(args.config) if args.config else None)
            prefect_serve(deployment)
            return 0
        if args.command == "status":
            from pipelines.runlog import format_latest_run

            print(format_latest_run(str(args.config) if args.config else None))
            return 0
        if args.command == "forget":
            from pipelines.config import load_settings
            from pipelines.erasure import forget

            result = forget(load_settings(args.config), list(args.customer_ids))
            print(
                f"Forgot {result.source_ids} source customer id(s): "
                f"{sum(result.rows_deleted.values())} rows deleted, "
                f"{result.tombstones} tombstone(s) kept (hashes, not ids); database "
                f"compacted: {result.compacted}; serving database republished: "
                f"{result.serving_published is not None}."
            )
            if result.not_found:
                print(f"Not found anywhere: {', '.join(result.not_found)}")
            return 0
        if args.command == "generate-sample":
            from pipelines.sample import generate_sample

            if args.customers < 1:
                raise CrmError("--customers must be at least 1.")
            report = generate_sample(args.out, customers=args.customers, seed=args.seed)
            print(report)
            return 0
    except CrmError as exc:
        print(f"crm {args.command} failed: {exc}", file=sys.stderr)
        release_failure(exc)
        return exc.exit_code
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        return 0
    except KeyboardInterrupt:
        print(
            f"crm {args.command} interrupted; nothing was published by this run.", file=sys.stderr
        )
        return 130
    except Exception as exc:  # a bug or an environment problem: still one paragraph
        if os.environ.get("CRM_DEBUG"):
            raise
        where = type(exc).__name__
        print(
            f"crm {args.command} failed unexpectedly ({where}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no message'}). Nothing was "
            "published by this run; the last good outputs stay in place. Run again with "
            "CRM_DEBUG=1 for the full traceback, and report it if it persists.",
            file=sys.stderr,
        )
        release_failure(exc)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
