"""The notebook baseline: customer value the way an analyst would compute it in a notebook.

    .venv/bin/python benchmarks/notebook.py --transactions benchmarks/data/S/transactions.csv \\
        --as-of 2025-12-31 --out-dir /tmp/nb --json /tmp/nb/result.json

``benchmarks/run.py`` runs this file in a subprocess after its own stages (so this
process's memory is measured apart from the pipeline's) and stores the JSON it writes in
its own results file. The steps are what an analyst plausibly writes, on the same
``transactions.csv`` as the pipeline:

read         ``pandas.read_csv`` (ids as text, the order timestamp parsed)
prepare      completed order lines only; net amount = quantity x unit price, converted to
             the base currency with the config's rates; lines summed per order
summary      ``lifetimes.utils.summary_data_from_transaction_data`` with monetary value,
             ``freq='D'`` and the pipeline's as-of date as ``observation_period_end``
fits         ``BetaGeoFitter(penalizer_coef=0)`` on every customer and
             ``GammaGammaFitter(penalizer_coef=0)`` on repeat buyers (no compression to
             unique patterns, no penalizer ladder)
predictions  p_alive, expected purchases over each horizon, expected order value and
             ``customer_lifetime_value`` (12 months of 30 days, the annual discount rate
             as a monthly one)
rfm          quintile R, F and M scores with ``pd.qcut`` on ranks
write        ``DataFrame.to_csv`` of one row per customer

Everything stays in memory from step to step, as in a notebook. Each step's wall time,
CPU time and peak RSS are recorded the way run.py does it: the kernel's high-water mark
(``VmHWM``) is reset before the step (``echo 5 > /proc/self/clear_refs``) and read after
it, with a 50 ms RSS sampler as a cross-check. A step that fails (e.g. lifetimes'
``ConvergenceError``) is recorded with its error; the steps that need its output are
recorded as skipped; the script itself does not fail.

Only the standard library (and probes.py, which uses nothing else) is imported before the
first measurement; pandas and lifetimes are imported in the timed ``setup``.
``lifetimes.datasets`` is never imported (it needs pkg_resources).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probes import (  # noqa: E402
    Sampler,
    cpu_seconds,
    current_rss,
    machine_busy_seconds,
    peak_rss,
    reset_peak_rss,
)

# Units of each currency per 1 unit of the base currency (EUR), as data/sample/crm.toml;
# run.py passes the rates of the config it runs with.
DEFAULT_RATES = {"GBP": 0.85, "CHF": 0.95, "USD": 1.08}

STEPS = ("read", "prepare", "summary", "fits", "predictions", "rfm", "write")


class Skipped(Exception):
    """A step that cannot run because a step before it failed."""


# --- the notebook ------------------------------------------------------------------------


class Notebook:
    """The analyst's cells, one method per step; ``ns`` is the notebook's namespace (every
    frame stays alive, as in a notebook)."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.ns: dict[str, Any] = {}
        self.substeps: list[dict] = []

    def substep(self, name: str, fn: Callable[[], Any]) -> Any:
        t0, c0 = time.perf_counter(), cpu_seconds()
        error = None
        try:
            return fn()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.substeps.append(
                {
                    "name": name,
                    "wall_s": round(time.perf_counter() - t0, 3),
                    "cpu_s": round(cpu_seconds() - c0, 3),
                    "error": error,
                }
            )

    def need(self, *names: str) -> list[Any]:
        missing = [n for n in names if self.ns.get(n) is None]
        if missing:
            raise Skipped(f"skipped: needs {', '.join(missing)} from a step that failed")
        return [self.ns[n] for n in names]

    # Each step returns (rows_in, rows_out, detail).

    def read(self):
        tx = pd.read_csv(
            self.args.transactions,
            dtype={"InvoiceNo": str, "CustomerID": str, "StockCode": str},
            parse_dates=["InvoiceDate"],
        )
        self.ns["tx"] = tx
        return len(tx), len(tx), {"columns": list(tx.columns)}

    def prepare(self):
        (tx,) = self.need("tx")
        as_of_end = pd.Timestamp(self.args.as_of) + pd.Timedelta(days=1)
        rates = {self.args.base_currency: 1.0, **self.args.rates}
        df = tx[(tx["Status"] == "completed") & (tx["InvoiceDate"] < as_of_end)]
        df = df.assign(
            amount=df["Quantity"] * df["UnitPrice"] / df["Currency"].map(rates).fillna(1.0)
        )
        orders = df.groupby(["CustomerID", "InvoiceNo"], as_index=False).agg(
            InvoiceDate=("InvoiceDate", "min"), amount=("amount", "sum")
        )
        self.ns["orders"] = orders
        return (
            len(tx),
            len(orders),
            {
                "completed_lines": len(df),
                "unknown_currencies": sorted(set(df["Currency"].dropna()) - set(rates)),
            },
        )

    def summary(self):
        (orders,) = self.need("orders")
        summary = summary_data_from_transaction_data(
            orders,
            "CustomerID",
            "InvoiceDate",
            monetary_value_col="amount",
            observation_period_end=pd.Timestamp(self.args.as_of),
            freq="D",
        )
        self.ns["summary"] = summary
        return len(orders), len(summary), {"repeat_buyers": int((summary["frequency"] > 0).sum())}

    def fits(self):
        (summary,) = self.need("summary")
        errors, detail = [], {}

        def fit_bgnbd():
            bgf = BetaGeoFitter(penalizer_coef=0.0)
            bgf.fit(summary["frequency"], summary["recency"], summary["T"])
            return bgf

        def fit_gamma_gamma():
            repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
            ggf = GammaGammaFitter(penalizer_coef=0.0)
            ggf.fit(repeat["frequency"], repeat["monetary_value"])
            return ggf

        for key, name, fit in (
            ("bgf", "bgnbd", fit_bgnbd),
            ("ggf", "gamma_gamma", fit_gamma_gamma),
        ):
            try:
                fitter = self.substep(f"{name}_fit", fit)
            except Exception as exc:  # ConvergenceError and the optimiser's other failures
                errors.append(f"{name}: {type(exc).__name__}: {' '.join(str(exc).split())}")
                self.ns[key] = None
                continue
            self.ns[key] = fitter
            detail[name] = {k: float(v) for k, v in fitter.params_.items()}
        if errors:
            self.ns["fit_errors"] = errors
        return len(summary), len(summary), detail

    def predictions(self):
        summary, bgf = self.need("summary", "bgf")
        f, r, t = summary["frequency"], summary["recency"], summary["T"]
        out = summary.copy()
        out["p_alive"] = self.substep("p_alive", lambda: bgf.conditional_probability_alive(f, r, t))
        for h in self.args.horizons:
            out[f"expected_purchases_{h}d"] = self.substep(
                f"expected_purchases_{h}d",
                lambda h=h: bgf.conditional_expected_number_of_purchases_up_to_time(h, f, r, t),
            )
        ggf = self.ns.get("ggf")
        if ggf is not None:
            m = summary["monetary_value"]
            monthly = (1 + self.args.annual_discount_rate) ** (1 / 12) - 1
            out["expected_order_value"] = self.substep(
                "expected_order_value", lambda: ggf.conditional_expected_average_profit(f, m)
            )
            out["predicted_clv"] = self.substep(
                "customer_lifetime_value",
                lambda: ggf.customer_lifetime_value(
                    bgf, f, r, t, m, time=self.args.clv_months, discount_rate=monthly, freq="D"
                ),
            )
        self.ns["predictions"] = out
        return len(summary), len(out), {"clv": ggf is not None}

    def rfm(self):
        (orders,) = self.need("orders")
        as_of = pd.Timestamp(self.args.as_of)
        rfm = orders.groupby("CustomerID").agg(
            last_order=("InvoiceDate", "max"),
            orders=("InvoiceNo", "nunique"),
            revenue=("amount", "sum"),
        )
        rfm["recency_days"] = (as_of - rfm["last_order"].dt.normalize()).dt.days
        rfm["R"] = pd.qcut(
            rfm["recency_days"].rank(method="first"), 5, labels=[5, 4, 3, 2, 1]
        ).astype(int)
        rfm["F"] = pd.qcut(rfm["orders"].rank(method="first"), 5, labels=[1, 2, 3, 4, 5]).astype(
            int
        )
        rfm["M"] = pd.qcut(rfm["revenue"].rank(method="first"), 5, labels=[1, 2, 3, 4, 5]).astype(
            int
        )
        rfm["RFM"] = rfm["R"].astype(str) + rfm["F"].astype(str) + rfm["M"].astype(str)
        self.ns["rfm"] = rfm
        return len(orders), len(rfm), {}

    def write(self):
        base = self.ns.get("predictions")
        if base is None:
            base = self.ns.get("summary")
        parts = [x for x in (base, self.ns.get("rfm")) if x is not None]
        if not parts:
            raise Skipped("skipped: nothing to write")
        result = parts[0].join(parts[1:], how="outer") if len(parts) > 1 else parts[0]
        path = Path(self.args.out_dir) / "customer_value.csv"
        result.to_csv(path)
        return (
            len(result),
            len(result),
            {"file": str(path), "bytes": path.stat().st_size, "columns": len(result.columns) + 1},
        )


def run_step(nb: Notebook, name: str, sampler: Sampler) -> dict:
    nb.substeps = []
    rss_before = current_rss()
    hwm_reset = reset_peak_rss()
    sampler.reset()
    busy0 = machine_busy_seconds()
    t0, c0 = time.perf_counter(), cpu_seconds()
    error, skipped, result = None, False, None
    try:
        result = getattr(nb, name)()
    except Skipped as exc:
        error, skipped = str(exc), True
    except Exception as exc:
        error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        traceback.print_exc(file=sys.stderr)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    others = max(0.0, machine_busy_seconds() - busy0 - cpu)
    if name == "fits" and nb.ns.get("fit_errors"):
        error = "; ".join(nb.ns["fit_errors"])
    rows_in, rows_out, detail = result if result else (None, None, {})
    return {
        "stage": name,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "other_processes_cores": round(others / wall, 2) if wall else None,
        "rows_in": rows_in,
        "rows_out": rows_out,
        "rows_per_s": round(rows_in / wall) if rows_in and wall else None,
        "rss_before_bytes": rss_before,
        "peak_rss_bytes": peak_rss() if hwm_reset else None,
        "peak_rss_sampled_bytes": max(sampler.max_rss, current_rss()),
        "rss_after_bytes": current_rss(),
        "substeps": nb.substeps,
        "detail": detail,
        "error": error,
        "skipped": skipped,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", required=True, type=Path)
    parser.add_argument(
        "--as-of",
        type=date.fromisoformat,
        default=None,
        help="observation date (default: the date of the latest completed "
        "order, as the pipeline's default)",
    )
    parser.add_argument("--out-dir", required=True, type=Path)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--base-currency", default="EUR")
    parser.add_argument(
        "--rates",
        type=json.loads,
        default=DEFAULT_RATES,
        help='JSON: units of each currency per base unit, e.g. {"GBP": 0.85}',
    )
    parser.add_argument(
        "--horizons", type=lambda s: [int(x) for x in s.split(",")], default=[30, 90, 365]
    )
    parser.add_argument("--clv-months", type=int, default=12)
    parser.add_argument("--annual-discount-rate", type=float, default=0.10)
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)

    sampler = Sampler()
    sampler.start()
    rss_start = current_rss()
    reset_peak_rss()
    t0, c0 = time.perf_counter(), cpu_seconds()
    global pd, BetaGeoFitter, GammaGammaFitter, summary_data_from_transaction_data
    with warnings.catch_warnings():
        # lifetimes sets a pandas option pandas 3 deprecates (harmless here)
        warnings.simplefilter("ignore")
        import pandas as pd
        from lifetimes import BetaGeoFitter, GammaGammaFitter
        from lifetimes.utils import summary_data_from_transaction_data
    setup = {
        "wall_s": round(time.perf_counter() - t0, 3),
        "cpu_s": round(cpu_seconds() - c0, 3),
        "rss_bytes": current_rss(),
        "peak_rss_bytes": peak_rss(),
        "rss_at_start_bytes": rss_start,
    }

    as_of_source = "given"
    if args.as_of is None:
        # not timed: the pipeline gets it from core.transactions (resolve_as_of)
        dates = pd.read_csv(
            args.transactions, usecols=["InvoiceDate", "Status"], parse_dates=["InvoiceDate"]
        )
        args.as_of = dates.loc[dates["Status"] == "completed", "InvoiceDate"].max().date()
        del dates
        as_of_source = "latest completed order"

    nb = Notebook(args)
    records = []
    # the optimiser's overflow warnings would only clutter the output, as in a notebook
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in STEPS:
            print(f"[notebook] {name} ...", file=sys.stderr, flush=True)
            rec = run_step(nb, name, sampler)
            records.append(rec)
            print(
                f"[notebook] {name}: {rec['wall_s']:.2f} s"
                + (f" ({rec['error']})" if rec["error"] else ""),
                file=sys.stderr,
                flush=True,
            )
    sampler.stop()
    peaks = [r["peak_rss_bytes"] or r["peak_rss_sampled_bytes"] for r in records]
    result = {
        "schema": 1,
        "transactions": str(args.transactions),
        "as_of": args.as_of.isoformat(),
        "as_of_source": as_of_source,
        "base_currency": args.base_currency,
        "rates": args.rates,
        "horizons_days": args.horizons,
        "clv_months": args.clv_months,
        "annual_discount_rate": args.annual_discount_rate,
        "pid": os.getpid(),
        "setup": setup,
        "stages": records,
        "totals": {
            "wall_s": round(sum(r["wall_s"] for r in records), 3),
            "cpu_s": round(sum(r["cpu_s"] for r in records), 3),
            "peak_rss_bytes": max(peaks) if peaks else None,
        },
        # clear_refs also resets ru_maxrss: the process peak is the largest measured peak
        "process_peak_rss_bytes": max([setup["peak_rss_bytes"], *[p for p in peaks if p]]),
        "status": "succeeded" if not any(r["error"] for r in records) else "failed",
    }
    text = json.dumps(result, indent=2, default=str) + "\n"
    if args.json:
        args.json.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
