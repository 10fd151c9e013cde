"""Marketing exports: consenting customers only, minimal columns, reproducible bytes,
private files, and an atomic swap of the whole directory."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import stat
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import files
from pipelines.config import load_settings
from pipelines.errors import ConfigError
from pipelines.publish import exports
from tests.helpers import TX_COLUMNS, write_config

AS_OF = date(2025, 6, 15)
COLUMNS = [
    "customer_id",
    "email",
    "full_name",
    "segment",
    "recommended_action",
    "predicted_clv",
    "churn_band",
    "churn_reasons",
    "expected_next_order_date",
]


def customer(customer_id: str, **values) -> dict:
    row = {
        "customer_id": customer_id,
        "email": f"{customer_id.lower()}@example.com",
        "phone": "+41790000000",
        "full_name": f"Name {customer_id}",
        "birth_date": date(1980, 1, 1),
        "city": "Bern",
        "marketing_consent": True,
        "rfm_segment": "loyal",
        "value_tier": "general",
        "lifecycle_stage": "active",
        "recommended_action": "nurture",
        "predicted_clv": 123.456,
        "churn_band": "low",
        "churn_reasons": None,
        "expected_next_order_date": None,
        "churn_probability": 0.1,
    }
    row.update(values)
    return row


CUSTOMERS = [
    customer("C01", rfm_segment="champions", value_tier="strategic", recommended_action="vip_care"),
    customer(
        "C02",
        marketing_consent=False,
        rfm_segment="champions",
        value_tier="strategic",
        lifecycle_stage="lapsed",
        birth_date=date(1970, 6, 1),
        expected_next_order_date=AS_OF + timedelta(days=1),
    ),
    customer(
        "C03",
        marketing_consent=None,
        rfm_segment="lost",
        lifecycle_stage="lapsed",
        birth_date=date(1971, 6, 2),
    ),
    customer(
        "C04",
        rfm_segment="lost",
        lifecycle_stage="lapsed",
        recommended_action="win_back_offer",
        churn_band="high",
    ),
    customer("C05", expected_next_order_date=AS_OF + timedelta(days=7)),
    customer("C06", expected_next_order_date=AS_OF + timedelta(days=8)),
    customer("C07", expected_next_order_date=AS_OF),
    customer("C08", expected_next_order_date=AS_OF - timedelta(days=1)),
    customer("C09", birth_date=date(1990, 6, 30)),
    customer("C10", birth_date=date(1990, 7, 1)),
    customer("C11", birth_date=date(1990, 5, 31)),
    customer(
        "C12", lifecycle_stage="new", rfm_segment="new_customers", recommended_action="onboarding"
    ),
    # follow-up candidates (value tiers strategic / key)
    customer("K01", value_tier="key"),  # contacted by phone 10 days ago -> not listed
    customer("K02", value_tier="key"),  # last contact 40 days ago -> listed (window 30)
    customer("K03", value_tier="strategic"),  # only page views -> listed
    customer("K04", value_tier="key"),  # contacted after as_of only -> listed
    customer("K05", value_tier="key"),  # survey on the window's first day -> not listed
    customer("K06", value_tier="key", marketing_consent=False),  # no consent -> never
    customer("G01", value_tier="general"),  # general tier -> never on follow-up
    customer("X01", full_name='=HYPERLINK("http://evil")', email=None),  # no e-mail
    customer("X02", full_name="-Dash, Danny", predicted_clv=None, churn_band=None),
]

EVENTS = [
    ("K01", "call", datetime(2025, 6, 5, 9)),
    ("K02", "support_ticket", datetime(2025, 5, 6, 9)),
    ("K03", "page_view", datetime(2025, 6, 10, 9)),
    ("K04", "survey_response", datetime(2025, 6, 16, 9)),
    ("K05", "survey_response", datetime(2025, 5, 16, 0)),
    ("G01", "call", datetime(2025, 6, 14, 9)),
]


@pytest.fixture
def make_settings(tmp_path):
    def make(
        exports_table: str = "[exports]\nreorder_within_days = 7\nfollow_up_after_days = 30\n",
        sub: str = "",
    ) -> object:
        base = tmp_path / sub if sub else tmp_path
        base.mkdir(parents=True, exist_ok=True)
        body = f'[sources.transactions]\npath = "tx*.csv"\n{TX_COLUMNS}\n' + exports_table
        return load_settings(write_config(base, body))

    return make


@pytest.fixture
def con():
    connection = duckdb.connect(":memory:")
    connection.execute("create schema marts")
    connection.execute("create schema core")
    table = pa.Table.from_pylist(CUSTOMERS)
    connection.register("_c", table)
    connection.execute("create table marts.customer_360 as select * from _c")
    connection.execute(
        "create table core.events (customer_id varchar, event_type varchar, event_at timestamp)"
    )
    connection.executemany("insert into core.events values (?, ?, ?)", [list(e) for e in EVENTS])
    yield connection
    connection.close()


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def ids(directory: Path, stem: str) -> list[str]:
    csv_ids = [r["customer_id"] for r in read_csv(directory / f"{stem}.csv")]
    parquet_ids = pq.read_table(directory / f"{stem}.parquet").column("customer_id").to_pylist()
    assert csv_ids == parquet_ids
    return csv_ids


def test_only_consenting_customers_with_an_email_are_exported(tmp_path, make_settings, con):
    report = exports.write_exports(con, make_settings(), AS_OF, "run-1", tmp_path / "out")
    everyone = set()
    for f in report.files:
        path = report.directory / f.name
        rows = read_csv(path) if f.name.endswith(".csv") else pq.read_table(path).to_pylist()
        everyone |= {r["customer_id"] for r in rows}
    assert everyone, "the lists must not all be empty"
    assert not everyone & {"C02", "C03", "K06", "X01"}
    consenting = {c["customer_id"] for c in CUSTOMERS if c["marketing_consent"] and c["email"]}
    assert everyone <= consenting


def test_files_have_exactly_the_listed_columns(tmp_path, make_settings, con):
    report = exports.write_exports(con, make_settings(), AS_OF, "run-1", tmp_path / "out")
    assert report.files
    for f in report.files:
        path = report.directory / f.name
        if f.name.endswith(".csv"):
            with path.open(encoding="utf-8") as fh:
                assert fh.readline().rstrip("\n").split(",") == COLUMNS
        else:
            assert pq.read_schema(path).names == COLUMNS
        assert list(f.columns) == COLUMNS
    vip = pq.read_table(report.directory / "list_vip_care.parquet").to_pylist()
    assert [r["customer_id"] for r in vip] == ["C01", "K03"]  # champions or strategic
    assert vip[:1] == [
        {
            "customer_id": "C01",
            "email": "c01@example.com",
            "full_name": "Name C01",
            "segment": "vip_care",
            "recommended_action": "vip_care",
            "predicted_clv": 123.46,
            "churn_band": "low",
            "churn_reasons": None,
            "expected_next_order_date": None,
        }
    ]
    assert read_csv(report.directory / "list_vip_care.csv")[0]["predicted_clv"] == "123.46"


def test_one_csv_and_one_parquet_per_segment_and_list(tmp_path, make_settings, con):
    settings = make_settings()
    report = exports.write_exports(con, settings, AS_OF, "run-1", tmp_path / "out")
    stems = {f"segment_{s}" for s in settings.rules.rfm_grid.segments} | {
        f"list_{name}" for name in exports.ACTION_LISTS
    }
    names = sorted(p.name for p in report.directory.iterdir() if p.is_file())
    assert names == sorted(
        [f"{s}.csv" for s in stems] + [f"{s}.parquet" for s in stems] + ["manifest.json"]
    )
    assert ids(report.directory, "segment_lost") == ["C04"]
    assert [r["segment"] for r in read_csv(report.directory / "segment_lost.csv")] == ["lost"]
    assert ids(report.directory, "list_win_back") == ["C04"]
    assert ids(report.directory, "list_onboarding") == ["C12"]
    assert ids(report.directory, "segment_at_risk") == []  # empty lists still have a header


def test_manifest_lists_every_file_with_rows_and_sha256(tmp_path, make_settings, con):
    report = exports.write_exports(con, make_settings(), AS_OF, "run-1", tmp_path / "out")
    manifest = json.loads((report.directory / "manifest.json").read_text())
    assert manifest["as_of"] == "2025-06-15" and manifest["run_id"] == "run-1"
    listed = {f["name"]: f for f in manifest["files"]}
    on_disk = {p.name for p in report.directory.iterdir() if p.is_file()} - {"manifest.json"}
    assert set(listed) == on_disk
    for name, entry in listed.items():
        path = report.directory / name
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        rows = len(read_csv(path)) if name.endswith(".csv") else pq.read_metadata(path).num_rows
        assert entry["rows"] == rows
        assert entry["columns"] == COLUMNS


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_files_are_private_to_the_pipeline_user(tmp_path, make_settings, con, umask):
    old = os.umask(umask)
    try:
        report = exports.write_exports(con, make_settings(), AS_OF, "run-1", tmp_path / "out")
    finally:
        os.umask(old)
    assert stat.S_IMODE(report.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o700
    for path in report.directory.rglob("*"):
        mode = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.stat().st_mode) == mode, path.name


def test_rerun_writes_byte_identical_files(tmp_path, make_settings, con):
    settings = make_settings()
    first = exports.write_exports(con, settings, AS_OF, "run-1", tmp_path / "out")
    before = {p.name: p.read_bytes() for p in first.directory.iterdir() if p.is_file()}
    # shuffle the physical row order: the files must not depend on it
    con.execute(
        "create or replace table marts.customer_360 as "
        "select * from marts.customer_360 order by hash(customer_id)"
    )
    second = exports.write_exports(con, settings, AS_OF, "run-2", tmp_path / "out")
    after = {p.name: p.read_bytes() for p in second.directory.iterdir() if p.is_file()}
    assert before.keys() == after.keys()
    changed = [name for name in before if before[name] != after[name]]
    assert changed == ["manifest.json"]  # it names the run; every data file is identical
    assert [f.sha256 for f in first.files] == [f.sha256 for f in second.files]


def test_reorder_list_uses_the_configured_window(tmp_path, make_settings, con):
    seven = exports.write_exports(con, make_settings(), AS_OF, "run-1", tmp_path / "a")
    assert ids(seven.directory, "list_reorder_reminder") == ["C05", "C07"]
    thirty = make_settings("[exports]\nreorder_within_days = 30\n", sub="b")
    report = exports.write_exports(con, thirty, AS_OF, "run-1", tmp_path / "b" / "out")
    assert ids(report.directory, "list_reorder_reminder") == ["C05", "C06", "C07"]


def test_birthdays_are_those_of_the_as_of_month_only(tmp_path, make_settings, con):
    report = exports.write_exports(con, make_settings(), AS_OF, "run-1", tmp_path / "out")
    assert ids(report.directory, "list_birthdays") == ["C09"]
    july = exports.write_exports(con, make_settings(), date(2026, 7, 1), "run-1", tmp_path / "out")
    assert ids(july.directory, "list_birthdays") == ["C10"]


def test_follow_up_lists_strategic_and_key_customers_without_recent_contact(
    tmp_path, make_settings, con
):
    report = exports.write_exports(con, make_settings(), AS_OF, "run-1", tmp_path / "out")
    assert ids(report.directory, "list_follow_up") == ["C01", "K02", "K03", "K04"]
    # with calls not counted as contact, K01 needs a follow-up too
    no_calls = make_settings(
        "[exports]\nfollow_up_after_days = 30\n"
        'contact_event_types = ["support_ticket", "Survey Response"]\n',
        sub="b",
    )
    report = exports.write_exports(con, no_calls, AS_OF, "run-1", tmp_path / "b" / "out")
    assert ids(report.directory, "list_follow_up") == ["C01", "K01", "K02", "K03", "K04"]
    # a longer window counts K02's ticket of 40 days ago
    longer = make_settings("[exports]\nfollow_up_after_days = 45\n", sub="c")
    report = exports.write_exports(con, longer, AS_OF, "run-1", tmp_path / "c" / "out")
    assert ids(report.directory, "list_follow_up") == ["C01", "K03", "K04"]


def test_csv_cells_cannot_run_as_spreadsheet_formulas(tmp_path, make_settings, con):
    report = exports.write_exports(con, make_settings(), AS_OF, "run-1", tmp_path / "out")
    rows = {r["customer_id"]: r for r in read_csv(report.directory / "segment_loyal.csv")}
    assert rows["X02"]["full_name"] == "'-Dash, Danny"
    assert rows["X02"]["predicted_clv"] == "" and rows["X02"]["churn_band"] == ""
    parquet = pq.read_table(report.directory / "segment_loyal.parquet").to_pylist()
    assert [r["full_name"] for r in parquet if r["customer_id"] == "X02"] == ["-Dash, Danny"]


def test_default_path_is_exports_beside_the_config(tmp_path, make_settings, con):
    settings = make_settings("")
    cfg = settings.exports
    assert cfg.path == tmp_path / "exports"
    assert (cfg.reorder_within_days, cfg.follow_up_after_days) == (14, 90)
    assert cfg.contact_event_types == ("call", "support_ticket", "survey_response")
    report = exports.write_exports(con, settings, AS_OF, "run-1")
    assert report.directory == tmp_path / "exports" / "2025-06-15"


@pytest.mark.parametrize(
    "table, key",
    [
        ('reorder_within_days = "two weeks"', "exports.reorder_within_days"),
        ("follow_up_after_days = -1", "exports.follow_up_after_days"),
        ("reorder_within_days = true", "exports.reorder_within_days"),
        ("contact_event_types = []", "exports.contact_event_types"),
        ('contact_event_types = "call"', "exports.contact_event_types"),
        ("path = 3", "exports.path"),
        ("reorder_days = 3", "exports.reorder_days"),
    ],
)
def test_config_errors_name_the_key(make_settings, table, key):
    # [exports] is validated on load, before any step runs
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        make_settings(f"[exports]\n{table}\n")


# --- the directory swap -------------------------------------------------------------------


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_a_rerun_replaces_the_whole_directory(tmp_path, make_settings, con, monkeypatch, exchange):
    calls = []
    real = files._exchange

    def spy(a, b):
        calls.append(a)
        return real(a, b) if exchange else False

    monkeypatch.setattr(files, "_exchange", spy)
    root = tmp_path / "out"
    exports.write_exports(con, make_settings(), AS_OF, "run-1", root)
    (root / "2025-06-15" / "stray.csv").write_text("from an older version")
    report = exports.write_exports(con, make_settings(), AS_OF, "run-2", root)
    assert not (report.directory / "stray.csv").exists()
    assert json.loads((report.directory / "manifest.json").read_text())["run_id"] == "run-2"
    assert sorted(p.name for p in root.iterdir()) == ["2025-06-15"]
    assert len(calls) == 1  # the first run renamed; the rerun swapped


def test_a_crash_while_writing_leaves_the_old_export_whole(
    tmp_path, make_settings, con, monkeypatch
):
    root = tmp_path / "out"
    first = exports.write_exports(con, make_settings(), AS_OF, "run-1", root)
    before = {p.name: p.read_bytes() for p in first.directory.iterdir() if p.is_file()}
    calls = []
    real = exports.write_parquet

    def failing(table, path):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        real(table, path)

    monkeypatch.setattr(exports, "write_parquet", failing)
    with pytest.raises(OSError, match="disk full"):
        exports.write_exports(con, make_settings(), AS_OF, "run-2", root)
    assert {p.name: p.read_bytes() for p in first.directory.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in root.iterdir()) == ["2025-06-15"]


def test_the_next_run_cleans_up_after_a_crash_at_any_point(tmp_path):
    root = tmp_path / "out"
    root.mkdir()

    def directory(name: str, content: str) -> Path:
        path = root / name
        path.mkdir()
        (path / "manifest.json").write_text(content)
        return path

    # crash while writing: a half-written tmp beside the good export
    directory("2025-06-15", "good")
    directory(".2025-06-15.tmp-run-2", "half")
    # crash between the fallback's two renames: only the old copy and the new tmp exist
    directory(".2025-06-16.old-run-3", "previous")
    directory(".2025-06-16.tmp-run-3", "new, not trusted")
    # crash after the swap, before the old copy was deleted
    directory("2025-06-17", "new")
    directory(".2025-06-17.old-run-4", "old")
    # not ours: left alone
    directory(".keep-me", "user data")
    actions = exports.recover_export_dirs(root)
    assert len(actions) == 4
    assert sorted(p.name for p in root.iterdir()) == [
        ".keep-me",
        "2025-06-15",
        "2025-06-16",
        "2025-06-17",
    ]
    assert (root / "2025-06-15" / "manifest.json").read_text() == "good"
    assert (root / "2025-06-16" / "manifest.json").read_text() == "previous"
    assert (root / "2025-06-17" / "manifest.json").read_text() == "new"
    assert exports.recover_export_dirs(root) == []


def test_erased_customers_are_removed_from_written_exports(tmp_path, make_settings, con):
    root = tmp_path / "out"
    report = exports.write_exports(con, make_settings(), AS_OF, "run-1", root)
    assert "K02" in ids(report.directory, "list_follow_up")
    removed = exports.remove_customers_from_exports(root, ["K02"], ["c01@example.com"], "forget-1")
    # K02: follow_up, segment_loyal; C01: segment_champions, vip_care, follow_up
    assert removed == {"2025-06-15": 5}
    assert ids(report.directory, "list_follow_up") == ["K03", "K04"]
    manifest = json.loads((report.directory / "manifest.json").read_text())
    assert manifest["run_id"] == "run-1" and manifest["amended_by_erasure"] == "forget-1"
    for entry in manifest["files"]:
        path = report.directory / entry["name"]
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for path in report.directory.iterdir():
        assert b"K02" not in path.read_bytes() and b"c01@example.com" not in path.read_bytes()
    # the amended files equal what a run without these customers writes
    con.execute("delete from marts.customer_360 where customer_id in ('K02', 'C01')")
    fresh = exports.write_exports(con, make_settings(), AS_OF, "run-1", tmp_path / "fresh")
    # the marketing folder goes with the rewrite (the next run writes it again)
    assert not (report.directory / "marketing").exists()
    for path in fresh.directory.iterdir():
        if path.is_file() and path.name != "manifest.json":
            assert path.read_bytes() == (report.directory / path.name).read_bytes(), path.name


def test_each_list_has_a_tool_ready_profile_file_and_non_consenting_are_suppressed(
    tmp_path, make_settings, con
):
    report = exports.write_exports(con, make_settings(), AS_OF, "run-1", tmp_path / "out")
    folder = report.directory / "marketing"
    list_stems = {p.stem for p in report.directory.glob("*.csv")}
    assert {p.name for p in folder.iterdir()} == {f"{s}_profiles.csv" for s in list_stems} | {
        "suppression.csv"
    }
    header = (folder / "list_win_back_profiles.csv").read_text(encoding="utf-8").splitlines()[0]
    # Klaviyo wants the e-mail first; the names are the ones the tools map by themselves
    assert header == "Email,First Name,Last Name,Phone Number,Email Marketing Consent,Tags"
    rows = read_csv(folder / "list_win_back_profiles.csv")
    # the same people, in the same order, as the list itself (C02, C03 did not consent)
    assert [r["Email"] for r in rows] == [
        r["email"] for r in read_csv(report.directory / "list_win_back.csv")
    ]
    assert rows[0] == {
        "Email": "c04@example.com",
        "First Name": "Name",
        "Last Name": "C04",
        "Phone Number": "+41790000000",
        "Email Marketing Consent": "yes",
        "Tags": "list_win_back, general, churn high",
    }
    # a name like "-Dash, Danny" stays text, not a spreadsheet formula
    x02 = next(
        r
        for r in read_csv(folder / "segment_loyal_profiles.csv")
        if r["Email"] == "x02@example.com"
    )
    assert x02["First Name"] == "'-Dash,"
    suppressed = read_csv(folder / "suppression.csv")
    assert suppressed == [
        {"Email": "c02@example.com", "Reason": "no_marketing_consent"},
        {"Email": "c03@example.com", "Reason": "no_marketing_consent"},
        {"Email": "k06@example.com", "Reason": "no_marketing_consent"},
    ]
