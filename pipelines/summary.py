"""The short text summary printed at the end of ``crm run``."""

from __future__ import annotations

from collections import Counter

import duckdb

from models.clv.next_order import describe_next_order_verdict
from pipelines.load.freshness import describe_staleness
from pipelines.publish.exports import empty_exports_reason

# A source's files from earlier runs are listed one by one up to this many, else counted.
EARLIER_FILES_LISTED = 10


def format_summary(con: duckdb.DuckDBPyConnection, run_id: str, as_of) -> str:
    """Rows per source, quarantined by rule, duplicates, customers unified; per file the
    reconciliation rows read = loaded + quarantined + duplicates."""
    lines = [f"Run {run_id}, as of {as_of}"]
    lines.append("")
    lines.append("Files (rows read = loaded + quarantined + duplicates + erased):")
    # Each file once: its status says whether this run loaded it or an earlier one did (a
    # rerun after a failed run, a daily run over the same folder). After years of daily
    # deliveries, a source's many files that this run neither loaded nor processed are one
    # line.
    files = con.execute(
        """
            select r.source, r.file_path,
                   case when f.run_id is distinct from $run_id and r.status = 'loaded'
                        then 'earlier run' else r.status end,
                   r.rows_read, r.rows_loaded, r.rows_quarantined, r.rows_duplicate,
                   r.rows_erased, r.is_balanced,
                   f.run_id is not distinct from $run_id or p.run_id is not distinct from $run_id
            from audit.file_reconciliation r
            left join raw.files f on f.file_sha256 = r.file_sha256 and f.source = r.source
            left join audit.file_processing p
              on p.file_sha256 = r.file_sha256 and p.source = r.source
            order by r.source, r.file_path""",
        {"run_id": run_id},
    ).fetchall()
    untouched = Counter(f[0] for f in files if f[8] and not f[9])
    earlier: dict[str, list[int]] = {}
    for source, path, status, read, loaded, quarantined, dup, erased, ok, this_run in files:
        if ok and not this_run and untouched[source] > EARLIER_FILES_LISTED:
            files_rows = earlier.setdefault(source, [0, 0])
            files_rows[0] += 1
            files_rows[1] += read
            continue
        name = path.rsplit("/", 1)[-1]
        mark = "ok" if ok else "UNBALANCED"
        lines.append(
            f"  {source:<12} {name:<28} {status:<12} {read:>9} = {loaded:>9} + "
            f"{quarantined:>6} + {dup:>6} + {erased:>4}  {mark}"
        )
    for source, (files, read) in earlier.items():
        lines.append(
            f"  {source:<12} {files} file(s) of earlier runs, {read} rows, all balanced "
            "(kept as processed then)"
        )
    # Only a copy under another name needs a line of its own: the file itself is above.
    redelivered = con.execute(
        """
        select d.source, d.file_path, f.file_path from raw.deliveries d
        join raw.files f on f.file_sha256 = d.file_sha256 and f.source = d.source
        where d.run_id = $run_id and d.status = 'already_ingested'
          and d.file_path <> f.file_path
        order by d.source, d.file_path""",
        {"run_id": run_id},
    ).fetchall()
    for source, path, original in redelivered:
        lines.append(
            f"  {source:<12} {path.rsplit('/', 1)[-1]:<28} same content as "
            f"{original.rsplit('/', 1)[-1]}, already ingested: nothing added"
        )
    rules = con.execute("""
        select source, rule, count(*) from (
            select 'transactions' as source, unnest(string_split(rules, ', ')) as rule
            from quarantine.transactions
            union all select 'customers', unnest(string_split(rules, ', ')) from quarantine.customers
            union all select 'events', unnest(string_split(rules, ', ')) from quarantine.events
            union all select source, 'reader: ' || split_part(reason, ':', 1) from raw.rejected_rows
        ) group by all order by 1, 3 desc""").fetchall()
    lines.append("")
    lines.append("Quarantined rows by rule:" if rules else "Quarantined rows: none")
    for source, rule, n in rules:
        lines.append(f"  {source:<12} {rule:<40} {n:>8}")
    fields = con.execute(
        "select source, rule, count(*) from quarantine.field_issues group by all order by 1, 3 desc"
    ).fetchall()
    if fields:
        lines.append("Fields blanked (row kept):")
        for source, rule, n in fields:
            lines.append(f"  {source:<12} {rule:<40} {n:>8}")
    dups = con.execute(
        "select source, reason, count(*) from core.duplicate_rows group by all order by 1"
    ).fetchall()
    lines.append("Duplicates removed:" if dups else "Duplicates removed: none")
    for source, reason, n in dups:
        lines.append(f"  {source:<12} {reason:<40} {n:>8}")
    ids, people, merged = con.execute("""
        select count(*), count(distinct customer_id), count(*) filter (where match_rule <> 'self')
        from core.customer_map""").fetchall()[0]
    # One definition of each count, the same as marts.data_quality, kpi_monthly and the
    # report: customers = rows of marts.customer_360 (known as of the run); orders =
    # completed orders (cancellations and returns are order rows, not orders).
    customers = _customers_as_of(con)
    orders, other_rows, events = con.execute(
        """
        select count(*) filter (where is_completed_order), count(*) filter (where not is_completed_order),
               (select count(*) from core.events)
        from core.transactions where order_date <= $as_of""",
        {"as_of": as_of},
    ).fetchall()[0]
    lines.append("")
    lines.append(
        f"Customers: {customers if customers is not None else people} as of {as_of} "
        f"({ids} source ids, {merged} duplicate records unified)"
    )
    if customers is not None and customers != people:
        lines.append(
            f"  core.customers holds {people} people; {people - customers} of them are no "
            "customers yet as of this date (known only from events, or from later records)"
        )
    lines.append(
        f"Orders: {orders} completed ({other_rows} cancelled, refunded or returned "
        f"order rows besides)   Events: {events}"
    )
    return "\n".join(lines)


def format_run_summary(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    as_of,
    results: dict,
    step_seconds: dict | None = None,
) -> str:
    """The whole end-of-run text: data summary, customer value, churn risk, what was
    published, and what the run processed and reused. ``results`` maps a step name to
    its result (``pipelines.steps``), ``step_seconds`` a step name to its wall seconds."""
    parts = [format_summary(con, run_id, as_of)]
    freshness = format_freshness_summary(con, run_id)
    if freshness:
        parts.append(freshness)
    if "customer value" in results and "segments" in results:
        parts.append(format_value_summary(results["customer value"], results["segments"]))
    if "churn" in results:
        parts.append(format_churn_summary(results["churn"]))
    if "publish" in results:
        parts.append(
            "Published:\n"
            + "\n".join(f"  {k:<8} {v}" for k, v in results["publish"].items())
            + format_exports_note(con)
        )
    parts.append(format_work_summary(results, step_seconds or {}) + format_where_ran(con, run_id))
    return "\n\n".join(parts)


def format_where_ran(con: duckdb.DuckDBPyConnection, run_id: str) -> str:
    """The line saying where the per-customer stages ran (``audit.runs.runner`` and
    ``buckets``, from ``[execution]``), under "This run:"."""
    row = con.execute(
        "select runner, buckets from audit.runs where run_id = $r", {"r": run_id}
    ).fetchone()
    if row is None or row[0] is None:
        return ""
    runner, buckets = row
    if runner == "dask":
        return (
            f"\n  ran on      Dask workers (prefect-dask): the per-customer SQL in {buckets} "
            "customer buckets; everything else in this process"
        )
    return "\n  ran on      this process (runner local)"


def format_work_summary(results: dict, step_seconds: dict) -> str:
    """What this run processed and what it reused from earlier runs, and the seconds per
    step (the same as audit.runs.rows_per_step and step_seconds)."""
    lines = ["This run:"]
    staging = results.get("clean")
    if staging is not None:
        for name, files in staging.files.items():
            if not (files.pending or files.reused):
                continue
            line = (
                f"  {name:<12} {len(files.pending)} file(s) processed, "
                f"{files.reused} reused as processed by earlier runs"
            )
            if files.changed:
                line += (
                    f"; {len(files.changed)} processed again because the source's settings "
                    "or rules changed"
                )
            lines.append(line)
    churn = results.get("churn")
    if churn is not None and churn.model is not None:
        how = (
            "the scorer saved by an earlier run on the same training data"
            if churn.reused
            else "trained this run"
        )
        lines.append(f"  churn model  trained as of {churn.training_date}: {how}")
    if step_seconds:
        lines.append(
            "  seconds      "
            + ", ".join(
                f"{name} {sec:.1f}" for name, sec in step_seconds.items() if sec is not None
            )
        )
    return "\n".join(lines)


def format_freshness_summary(con: duckdb.DuckDBPyConnection, run_id: str) -> str:
    """One line per source the run found stale (``audit.source_freshness``, status warn or
    error), e.g. "Freshness: events is 9 days old (warn after 7 days)"; '' if none."""
    rows = con.execute(
        """
        select source, age_days, status, warn_after_days, error_after_days
        from audit.source_freshness
        where run_id = $run_id and status in ('warn', 'error')
        order by status = 'warn', source""",
        {"run_id": run_id},
    ).fetchall()
    return "\n".join(f"Freshness: {describe_staleness(*row)}" for row in rows)


def format_exports_note(con: duckdb.DuckDBPyConnection) -> str:
    """A line under "Published:" when every marketing list is empty, saying why."""
    reason = empty_exports_reason(con)
    return f"\n  {reason}" if reason else ""


def _customers_as_of(con: duckdb.DuckDBPyConnection) -> int | None:
    """Rows of marts.customer_360, or None before the marts step has run."""
    exists = con.execute(
        "select count(*) from information_schema.tables "
        "where table_schema = 'marts' and table_name = 'customer_360'"
    ).fetchall()[0][0]
    if not exists:
        return None
    return con.execute("select count(*) from marts.customer_360").fetchall()[0][0]


def format_value_summary(report, segment_counts: dict[str, dict[str, int]]) -> str:
    """Fitted CLV parameters, holdout error against the naive baseline, segment counts."""
    lines = [
        f"Customer value ({report.customers} buyers, {report.repeat_buyers} repeat buyers, "
        f"{report.resolution} resolution)"
    ]
    if report.clv_message:
        lines.append(f"  {report.clv_message}")
    if getattr(report, "clv_choice", None):
        lines.append(f"  Model choice: {report.clv_choice}")
    if report.parameters.height:
        for model, parameter, value, se in report.parameters.select(
            "model", "parameter", "value", "std_error"
        ).iter_rows():
            se_text = f" ± {se:.3g}" if se is not None else ""
            lines.append(f"  {model:<12} {parameter:<10} {value:>10.4g}{se_text}")
    metrics = {(m, k): (v, b) for m, k, v, b in report.metrics.iter_rows()}
    chosen = getattr(report, "clv_model", None) or "bgnbd"
    for key, label in (
        (("bgnbd", "holdout_mae_repeat_purchases"), "holdout MAE, BG/NBD"),
        (("mbgnbd", "holdout_mae_repeat_purchases"), "holdout MAE, MBG/NBD"),
        (("pareto_nbd", "holdout_mae_repeat_purchases"), "holdout MAE, Pareto/NBD"),
        (
            (chosen, "holdout_total_purchases_relative_error"),
            "holdout error of total repeat purchases",
        ),
        (("next_order_date", "mae_days"), "next-order date MAE, days"),
        (("next_order_date", "harrell_c"), "next-order date Harrell's C"),
    ):
        if key in metrics and None not in metrics[key]:
            v, b = metrics[key]
            lines.append(f"  {label:<44} model {v:>8.3f}   baseline {b:>8.3f}")
    lines.extend(f"  {line}" for line in describe_next_order_verdict(report.metrics))
    verdict = {k: v for (m, k), (v, _) in metrics.items() if m == "clv_verdict"}
    if "mae_difference" in verdict:
        lines.append(
            f"  verdict: holdout MAE margin over the naive rate {verdict['mae_difference']:+.3f} "
            f"(95% paired bootstrap interval {verdict['mae_difference_ci_low']:+.3f} to "
            f"{verdict['mae_difference_ci_high']:+.3f}), significant "
            f"{'yes' if verdict['significant'] else 'no'}"
        )
    lines.append("RFM segments: " + ", ".join(f"{k} {v}" for k, v in report.segment_counts.items()))
    for column, title in (
        ("value_tier", "Value tiers"),
        ("lifecycle_stage", "Lifecycle stages"),
        ("recommended_action", "Recommended actions"),
    ):
        counts = segment_counts.get(column, {})
        lines.append(f"{title}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return "\n".join(lines)


def format_churn_summary(result) -> str:
    """The churn model's test metrics next to the baselines, and what was published."""
    lines = [
        f"Churn risk (trained at {result.train_cutoff}, tested at {result.test_cutoff}, "
        f"horizon {result.horizon_days} days)"
    ]
    lines.append(f"  {result.message}")
    wanted = ("roc_auc", "pr_auc", "brier_score", "log_loss", "top_decile_lift")
    if result.metrics.height:
        # value = the churn model, baseline = the rule named in `model`, on one test set
        cells = {
            (m, k): (v, b)
            for m, k, v, b in result.metrics.select(
                "model", "metric", "value", "baseline"
            ).iter_rows()
        }
        lines.append(f"  {'metric':<18}{'model':>10}{'recency':>10}{'P(no buy)':>10}")
        for metric in wanted:
            model_value = next((v for (m, k), (v, _) in cells.items() if k == metric), None)
            if model_value is None:
                continue
            recency = cells.get(("churn_vs_recency", metric), (None, None))[1]
            bgnbd = cells.get(("churn_vs_p_no_purchase", metric), (None, None))[1]
            lines.append(
                f"  {metric:<18}"
                + "".join(
                    f"{v:>10.3f}" if v is not None else f"{'-':>10}"
                    for v in (model_value, recency, bgnbd)
                )
            )
        verdict = {k: v for (m, k), (v, _) in cells.items() if m == "churn_verdict"}
        if verdict:
            lines.append(
                f"  verdict: ROC AUC margin over the best baseline "
                f"{verdict['roc_auc_difference']:+.3f} (95% interval "
                f"{verdict['roc_auc_difference_ci_low']:+.3f} to "
                f"{verdict['roc_auc_difference_ci_high']:+.3f}), significant "
                f"{'yes' if verdict['significant'] else 'no'}, published "
                f"{'the model' if verdict['model_published'] else 'the baseline'}"
            )
    bands = (
        result.scores.group_by("churn_band").len().sort("churn_band")
        if result.scores.height
        else None
    )
    if bands is not None:
        lines.append("  bands: " + ", ".join(f"{b} {n}" for b, n in bands.iter_rows()))
    return "\n".join(lines)
