"""The Great Expectations Data Docs of a run: a static site beside the report,
``<report dir>/data_docs/index.html``, with one page per validation run (one per source
whose rows the run validated) and one per suite.

The validate step runs each suite over 250k-row chunks in an ephemeral context, so there is
no single GX result per source to render. The pages are built from what the run recorded
per rule in ``audit.validation_results`` (rows checked, rows failing), with the suite the
rules build (:func:`pipelines.load.quality.build_suite`), in a throw-away file context whose
``build_data_docs`` writes the site; the site is then copied beside the report.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import duckdb

from pipelines.config import Settings
from pipelines.files import publish_directory, safe_token

DATA_DOCS_DIR = "data_docs"
# the run whose site a folder holds, so that a publish completed after a crash never swaps
# an older site back in
RUN_MARKER = ".crm-run-id"


def write_data_docs(
    con: duckdb.DuckDBPyConnection, settings: Settings, run_id: str, site_dir: Path
) -> Path | None:
    """Build the Data Docs of run ``run_id`` into the new folder ``site_dir``; returns its
    ``index.html``, or None (and writes nothing) when the run validated no rows (every
    file was processed before). The publish step builds it under a staged name beside
    ``<report dir>/data_docs/`` and swaps it in with the report (``publish.journal``)."""
    rows = con.execute(
        "select source, rule, success, element_count, unexpected_count "
        "from audit.validation_results where run_id = ? order by source, rule",
        [run_id],
    ).fetchall()
    target = Path(site_dir)
    if not rows:
        return None
    from great_expectations.core import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    from pipelines.load.quality import _gx, build_suite

    gx, _ = _gx()
    by_source: dict[str, dict[str, tuple]] = {}
    for source, rule, success, elements, unexpected in rows:
        by_source.setdefault(source, {})[rule] = (success, elements, unexpected)
    with tempfile.TemporaryDirectory(prefix="crm-data-docs-") as tmp:
        context = gx.get_context(mode="file", project_root_dir=tmp)
        run = RunIdentifier(run_name=run_id)
        for source, recorded in by_source.items():
            suite = context.suites.add(build_suite(gx, source, settings))
            results = []
            for expectation in suite.expectations:
                if expectation.meta["rule"] not in recorded:
                    continue  # the canary: checked on every chunk, not recorded per run
                success, elements, unexpected = recorded[expectation.meta["rule"]]
                results.append(
                    ExpectationValidationResult(
                        success=bool(success),
                        expectation_config=expectation.configuration,
                        result={
                            "element_count": int(elements),
                            "unexpected_count": int(unexpected),
                            "unexpected_percent": 100.0 * unexpected / elements if elements else 0,
                            "partial_unexpected_list": [],
                        },
                    )
                )
            passed = sum(r.success for r in results)
            result = ExpectationSuiteValidationResult(
                success=passed == len(results),
                results=results,
                suite_name=suite.name,
                statistics={
                    "evaluated_expectations": len(results),
                    "successful_expectations": passed,
                    "unsuccessful_expectations": len(results) - passed,
                    "success_percent": 100.0 * passed / len(results) if results else 100.0,
                },
                meta={
                    "run_id": run,
                    "active_batch_definition": {
                        "datasource_name": "crm_batches",
                        "data_asset_name": f"staging_{source}",
                        "batch_definition_name": f"rows staged by run {run_id}",
                    },
                    "batch_spec": {},
                    "batch_markers": {},
                },
            )
            context.validation_results_store.set(
                ValidationResultIdentifier(
                    expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite.name),
                    run_id=run,
                    batch_identifier=f"staging_{source}",
                ),
                result,
            )
        context.build_data_docs()
        site = Path(tmp) / "gx" / "uncommitted" / "data_docs" / "local_site"
        shutil.copytree(site, target)
    (target / RUN_MARKER).write_text(run_id, encoding="utf-8")
    return target / "index.html"


def staged_site_dir(final: Path, run_id: str) -> Path:
    """Where the publish step builds run ``run_id``'s site before it is swapped in at
    ``final``: a hidden sibling that :func:`pipelines.publish.journal` recognises."""
    return final.parent / f".{final.name}.tmp-{safe_token(run_id)}"


def swap_data_docs(staged: Path, final: Path, run_id: str) -> bool:
    """Put the staged site of ``run_id`` in place of ``final``; returns whether it swapped.

    Safe to call again after a crash: once the directories were exchanged, ``staged``
    holds the older site (another run's marker), which is then only removed."""
    if not staged.exists():
        return False
    marker = staged / RUN_MARKER
    if not marker.is_file() or marker.read_text(encoding="utf-8") != run_id:
        shutil.rmtree(staged, ignore_errors=True)
        return False
    publish_directory(staged, final)
    return True
