"""The benchmark harness: its stages call what flows.py calls, and the notebook baseline
it compares against computes the same customer summary and BG/NBD fit as our value step."""

from __future__ import annotations

import ast
import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
PIPELINE_MODULES = {
    "ingest",
    "erasure",
    "clean",
    "quality",
    "build",
    "runlog",
    "value",
    "churn",
    "segments",
    "marts",
    "exports",
    "serving",
    "report",
}


def _load(name: str, path: Path):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load("bench_run", BENCH / "run.py")


def _aliases(node: ast.AST) -> dict[str, str]:
    """Local name -> module name of every ``from pipelines... import module as name``
    inside ``node`` (``serving as publish`` counts as ``serving``)."""
    return {
        a.asname: a.name
        for n in ast.walk(node)
        if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("pipelines")
        for a in n.names
        if a.asname
    }


def _pipeline_calls(fn: ast.FunctionDef, aliases: dict[str, str]) -> set[str]:
    """``module.function`` of every call of a pipelines module inside ``fn``, each module
    under its own name whatever it was imported as (``aliases`` from the module, plus the
    imports inside ``fn``)."""
    names = {**aliases, **_aliases(fn)}
    return {
        f"{names.get(node.func.value.id, node.func.value.id)}.{node.func.attr}"
        for node in ast.walk(fn)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and names.get(node.func.value.id, node.func.value.id) in PIPELINE_MODULES
    }


def test_stages_call_what_the_steps_call_in_run_order(bench):
    from pipelines import steps

    source = ast.parse((ROOT / "pipelines" / "steps.py").read_text(encoding="utf-8"))
    step_functions = {n.name: n for n in source.body if isinstance(n, ast.FunctionDef)}
    flow_steps = [
        (name, _pipeline_calls(step_functions[fn.__name__], _aliases(source)))
        for name, fn in steps.STEPS.items()
    ]

    source = ast.parse((BENCH / "run.py").read_text(encoding="utf-8"))
    functions = {n.name: n for n in source.body if isinstance(n, ast.FunctionDef)}
    bench_aliases = {
        a.asname: a.name
        for n in source.body
        if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("pipelines")
        for a in n.names
        if a.asname
    }
    # the step name per bench stage: 'publish' is split into three stages
    task_of = {
        "value": "customer value",
        "export": "publish",
        "serving": "publish",
        "report": "publish",
    }
    bench_steps: dict[str, set[str]] = {}
    for st in bench.STAGES:
        calls = _pipeline_calls(functions[st.run.__name__], bench_aliases)
        bench_steps.setdefault(task_of.get(st.name, st.name), set()).update(calls)
    assert list(bench_steps) == [name for name, _ in flow_steps]
    for name, calls in flow_steps:
        assert calls, name  # the AST walk found the step's calls at all
        assert bench_steps[name] == calls, name


def test_resolve_stages_adds_prerequisites_and_skips_what_the_warehouse_has(bench):
    stages, added = bench.resolve_stages(["report"])
    assert [s.name for s in stages] == [
        "ingest",
        "clean",
        "validate",
        "core",
        "value",
        "churn",
        "segments",
        "marts",
        "report",
    ]
    assert added == sorted(
        ["ingest", "clean", "validate", "core", "value", "churn", "segments", "marts"]
    )
    stages, added = bench.resolve_stages(["churn"], done=bench.CORE_STAGES)
    assert [s.name for s in stages] == ["value", "churn"] and added == ["value"]
    stages, _ = bench.resolve_stages(None, done=bench.CORE_STAGES)
    assert [s.name for s in stages][0] == "value" and "core" not in [s.name for s in stages]
    with pytest.raises(SystemExit, match="already built"):
        bench.resolve_stages(["core", "value"], done=bench.CORE_STAGES)


def test_config_keeps_only_the_sources_asked_for(bench, tmp_path):
    import tomllib

    from pipelines.config import load_settings

    data = tmp_path / "data"
    path = bench.write_config(tmp_path, data, ("transactions",), "2GB", None)
    config = tomllib.loads(path.read_text(encoding="utf-8"))
    assert list(config["sources"]) == ["transactions"]
    assert config["sources"]["transactions"]["path"].startswith(str(data))
    assert config["warehouse"]["memory_limit"] == "2GB"
    assert list(load_settings(path).sources) == ["transactions"]
    path = bench.write_config(tmp_path, data, bench.ALL_SOURCES, None, None)
    assert list(load_settings(path).sources) == list(bench.ALL_SOURCES)


def test_notebook_baseline_matches_our_summary_and_bgnbd_fit(tmp_path):
    """On generated data, the notebook's lifetimes summary (freq='D') equals our
    'periods' summary customer for customer, and both BG/NBD fits (penalizer 0; ours on
    compressed patterns) land on the same parameters: the comparison is like for like.
    (With timestamps our default resolution is 'exact', which lifetimes has no
    equivalent of; the test asks for 'periods'.)"""
    from pipelines import runlog
    from pipelines.config import load_settings
    from pipelines.sample import generate_sample
    from pipelines.scoring import value
    from tests.helpers import run_to_core

    generate_sample(tmp_path / "data", customers=400, seed=7, progress=False)
    sample = (ROOT / "data" / "sample" / "crm.toml").read_text(encoding="utf-8")
    tx = sample.split("[sources.transactions]", 1)[1].split("[sources.customers]", 1)[0]
    rates = "[currency]" + sample.split("[currency]", 1)[1].split("[validation]", 1)[0]
    config = tmp_path / "crm.toml"
    config.write_text(
        '[warehouse]\npath = "wh/crm.duckdb"\nserving_path = "serving/crm.duckdb"\n'
        'memory_limit = "1GB"\n[sources.transactions]'
        + tx.replace('"transactions*.csv"', '"data/transactions.csv"')
        + rates
        + '[models]\nsummary_resolution = "periods"\n',
        encoding="utf-8",
    )
    settings = load_settings(config)
    con = run_to_core(config)
    try:
        as_of = runlog.resolve_as_of(con, None)
        report = value.score_customer_value(con, settings, as_of, "run-1")
        assert report.resolution == "periods" and report.clv_status == "fitted"
        ours = {
            r[0]: r[1:]
            for r in con.execute(
                'select customer_id, frequency, recency, "T", monetary_value '
                "from models.clv_summary where resolution = 'periods'"
            ).fetchall()
        }
        params = {p: v for m, p, v, _ in report.parameters.iter_rows() if m == "bgnbd"}
    finally:
        con.close()

    notebook = _load("bench_notebook", BENCH / "notebook.py")
    out = tmp_path / "notebook.json"
    assert (
        notebook.main(
            [
                "--transactions",
                str(tmp_path / "data" / "transactions.csv"),
                "--as-of",
                as_of.isoformat(),
                "--out-dir",
                str(tmp_path / "nb"),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["status"] == "succeeded", [s["error"] for s in result["stages"]]
    with open(tmp_path / "nb" / "customer_value.csv", newline="") as fh:
        theirs = {r["CustomerID"]: r for r in csv.DictReader(fh)}

    # Without a customers source there is no identity resolution: same customer ids.
    assert set(theirs) == set(ours)
    differ = [
        c
        for c, (f, r, t, m) in ours.items()
        if (float(theirs[c]["frequency"]), float(theirs[c]["recency"]), float(theirs[c]["T"]))
        != (f, r, t)
        # staging rounds each converted line to 4 decimals; the notebook does not
        or abs(float(theirs[c]["monetary_value"]) - float(m)) > 1e-3
    ]
    assert differ == []

    fitted = next(s for s in result["stages"] if s["stage"] == "fits")["detail"]["bgnbd"]
    for name in ("r", "alpha", "a", "b"):
        assert fitted[name] == pytest.approx(params[name], rel=1e-3), name


def test_an_export_of_no_rows_is_not_compared_with_the_notebooks_csv(bench):
    def stage(name, wall, rows_out=1):
        return {
            "stage": name,
            "wall_s": wall,
            "cpu_s": wall,
            "error": None,
            "substeps": [],
            "sql": [],
            "rows_out": rows_out,
        }

    notebook = {
        "stages": [{"stage": "write", "wall_s": 20.0, "cpu_s": 20.0, "rows_out": 1000}],
        "totals": {},
    }
    result = {
        "stages": [stage("export", 0.2, rows_out=0)],
        "notebook": notebook,
        "totals": {"wall_s": 0.2, "cpu_s": 0.2, "peak_rss_bytes": 1},
    }
    write = next(r for r in bench.build_comparison(result)["rows"] if r["stage"] == "write")
    assert write["not_comparable"] and write["wall_ratio_notebook_over_ours"] is None
    result["stages"] = [stage("export", 0.2, rows_out=500)]
    write = next(r for r in bench.build_comparison(result)["rows"] if r["stage"] == "write")
    assert write["not_comparable"] is None and write["wall_ratio_notebook_over_ours"] == 100.0
