"""Messy export files: each gets the outcome a user would expect, and every file's rows
reconcile (read = loaded + quarantined + duplicates)."""

from __future__ import annotations

import pytest

from pipelines.errors import InputError
from tests.helpers import TX_COLUMNS, assert_reconciled, run_to_core

HEADER = b"InvoiceNo,CustomerID,InvoiceDate,Quantity,UnitPrice,Status\n"


def lines(con, sql):
    return con.execute(sql).fetchall()


def test_ids_stay_text_and_order_lines_sum_to_orders(tx_config):
    cfg = tx_config(
        {
            "tx.csv": HEADER + b"A1,00042,2024-01-05 10:00:00,2,5.50,completed\n"
            b"A1,00042,2024-01-05 10:00:00,1,3.00,completed\n"
        }
    )
    con = run_to_core(cfg)
    assert lines(
        con, "select customer_id, order_id, amount, line_count from core.transactions"
    ) == [("00042", "A1", 14.0, 2)]
    assert_reconciled(con)


def test_utf8_bom_and_crlf_load_with_the_header_mapped(tx_config):
    data = (
        "\ufeff".encode()
        + HEADER.replace(b"\n", b"\r\n")
        + b"A1,7,2024-01-05 10:00:00,1,5.00,completed\r\n"
    )
    con = run_to_core(tx_config({"tx.csv": data}))
    assert lines(con, "select customer_id, amount from core.transactions") == [("7", 5.0)]
    assert_reconciled(con)


def test_mixed_line_endings_load_every_row(tx_config):
    data = (
        HEADER + b"A1,7,2024-01-05 10:00:00,1,5.00,completed\r\n"
        b"A2,8,2024-01-06 10:00:00,1,6.00,completed\n"
        b"A3,9,2024-01-07 10:00:00,1,7.00,completed\r\n"
    )
    con = run_to_core(tx_config({"tx.csv": data}))
    assert lines(con, "select order_id from core.transactions order by 1") == [
        ("A1",),
        ("A2",),
        ("A3",),
    ]
    assert lines(con, "select _row_number from raw.transactions order by 1") == [(1,), (2,), (3,)]
    assert_reconciled(con)


def test_semicolon_delimiter_is_detected(tx_config):
    data = HEADER.replace(b",", b";") + b"A1;7;2024-01-05 10:00:00;2;5.00;completed\n"
    con = run_to_core(tx_config({"tx.csv": data}))
    assert lines(con, "select amount from core.transactions") == [(10.0,)]


def test_decimal_comma_needs_the_option_and_is_never_misread(tx_config, tmp_path):
    data = HEADER.replace(b",", b";") + (
        b"A1;7;2024-01-05 10:00:00;2;5,50;completed\nA2;7;2024-01-05 10:00:00;1;4;completed\n"
    )
    con = run_to_core(tx_config({"tx.csv": data}))
    # without decimal_comma, "5,50" is not silently read as 550
    assert lines(con, "select rules from quarantine.transactions") == [
        ("amount_numeric, unit_price_numeric",)
    ]
    con.close()
    for p in (tmp_path / "wh").glob("*"):
        p.unlink() if p.is_file() else None
    con = run_to_core(tx_config({"tx.csv": data}, extra='delimiter = ";"\ndecimal_comma = true'))
    assert lines(con, "select amount from core.transactions order by 1") == [(4.0,), (11.0,)]


def test_quoted_delimiters_and_newlines_inside_fields_survive(tmp_path, tx_config):
    data = (
        b"InvoiceNo,CustomerID,InvoiceDate,Quantity,UnitPrice,Status,Note\n"
        b'A1,7,2024-01-05 10:00:00,1,5.00,completed,"Li, ""Bo""\nsecond line"\n'
        b"A2,8,2024-01-06 10:00:00,1,6.00,completed,plain\n"
    )
    con = run_to_core(tx_config({"tx.csv": data}))
    assert lines(con, "select order_id, _row_number from core.transaction_lines order by 1") == [
        ("A1", 1),
        ("A2", 2),
    ]
    assert lines(con, "select columns_ignored from raw.files") == [(["Note"],)]


def test_latin1_declared_in_config_decodes_names(tmp_path):
    from tests.helpers import write_config

    (tmp_path / "cust.csv").write_bytes(
        "CustomerID;FullName;Email\n1;Jürgen Müller;j@x.de\n".encode("latin-1")
    )
    (tmp_path / "tx.csv").write_bytes(HEADER + b"A1,1,2024-01-05 10:00:00,1,5.00,completed\n")
    body = (
        '[sources.transactions]\npath = "tx.csv"\n[sources.transactions.columns]\n'
        'customer_id = "CustomerID"\norder_id = "InvoiceNo"\norder_ts = "InvoiceDate"\n'
        'quantity = "Quantity"\nunit_price = "UnitPrice"\n'
        '[sources.customers]\npath = "cust.csv"\ndelimiter = ";"\nencoding = "latin-1"\n'
        '[sources.customers.columns]\ncustomer_id = "CustomerID"\nfull_name = "FullName"\n'
        'email = "Email"\n'
    )
    con = run_to_core(write_config(tmp_path, body))
    assert lines(con, "select full_name from core.customers") == [("Jürgen Müller",)]


def test_latin1_not_declared_gives_an_error_naming_file_and_fix(tmp_path, tx_config):
    data = (
        HEADER
        + "A1,Müller,2024-01-05 10:00:00,1,5.00,completed\n".encode("latin-1")
        + b"A2,x,2024-01-05 10:00:00,1,5.00,completed\r\n"
    )  # mixed endings: exact reader
    with pytest.raises(InputError, match=r"tx\.csv.*encoding"):
        run_to_core(tx_config({"tx.csv": data}))


def test_chinese_and_other_non_ascii_ids_and_names_survive(tx_config):
    data = HEADER + "A1,客户-〇〇七,2024-01-05 10:00:00,1,5.00,completed\n".encode()
    con = run_to_core(tx_config({"tx.csv": data}))
    assert lines(con, "select customer_id from core.transactions") == [("客户-〇〇七",)]


def test_empty_and_header_only_files_are_reported_not_fatal(tx_config):
    cfg = tx_config(
        {
            "tx1.csv": b"",
            "tx2.csv": HEADER,
            "tx3.csv": HEADER + b"A1,7,2024-01-05 10:00:00,1,5.00,completed\n",
        }
    )
    con = run_to_core(cfg)
    assert lines(con, "select file_name, status, rows_read from raw.files order by 1") == [
        ("tx1.csv", "empty", 0),
        ("tx2.csv", "header_only", 0),
        ("tx3.csv", "loaded", 1),
    ]
    assert_reconciled(con)


def test_truncated_last_line_is_quarantined_with_the_readers_reason(tx_config):
    data = HEADER + b"A1,7,2024-01-05 10:00:00,1,5.00,completed\nA2,8,2024-01-0"
    con = run_to_core(tx_config({"tx.csv": data}))
    assert lines(con, "select order_id from core.transactions") == [("A1",)]
    rejected = lines(con, "select _row_number, line_number, reason from raw.rejected_rows")
    assert rejected == [(2, 3, "expected 6 fields, found 3")]
    assert_reconciled(con)


def test_unterminated_quote_is_quarantined_not_a_crash(tx_config):
    data = HEADER + b'A1,7,2024-01-05 10:00:00,1,5.00,completed\nA2,"8,2024-01-05,1,5,x\n'
    con = run_to_core(tx_config({"tx.csv": data}))
    assert lines(con, "select count(*) from core.transactions") == [(1,)]
    assert lines(con, "select count(*) from raw.rejected_rows") == [(1,)]
    assert_reconciled(con)


def test_missing_required_column_stops_with_file_column_and_fix(tx_config):
    data = b"InvoiceNo,InvoiceDate,Quantity,UnitPrice\nA1,2024-01-05,1,5\n"
    with pytest.raises(InputError) as err:
        run_to_core(tx_config({"tx.csv": data}))
    message = str(err.value)
    assert "tx.csv" in message and "'CustomerID'" in message and "customer_id" in message


def test_unparseable_dates_and_amounts_are_quarantined_with_rule_names(tx_config):
    data = HEADER + (
        b"A1,7,yesterday,1,5.00,completed\n"
        b"A2,7,2024-01-05 10:00:00,one,5.00,completed\n"
        b"A3,7,2024-01-05 10:00:00,1,5.00,completed\n"
    )
    con = run_to_core(tx_config({"tx.csv": data}))
    assert lines(
        con,
        "select InvoiceNo, rules from (select order_id as InvoiceNo, rules "
        "from quarantine.transactions) order by 1",
    ) == [("A1", "order_ts_parseable"), ("A2", "amount_numeric, quantity_numeric")]
    assert_reconciled(con)


def test_negative_amounts_are_returns_with_negative_revenue(tx_config):
    data = HEADER + (
        b"A1,7,2024-01-05 10:00:00,2,5.00,completed\nR1,7,2024-01-09 10:00:00,-1,5.00,\n"
    )
    con = run_to_core(tx_config({"tx.csv": data}))
    assert lines(
        con, "select order_id, status, amount, is_completed_order from core.transactions order by 1"
    ) == [("A1", "completed", 10.0, True), ("R1", "returned", -5.0, False)]


def test_future_timestamps_are_quarantined(tx_config):
    data = HEADER + (
        b"A1,7,2999-01-05 10:00:00,1,5.00,completed\nA2,7,2024-01-05 10:00:00,1,5.00,completed\n"
    )
    con = run_to_core(tx_config({"tx.csv": data}))
    assert lines(con, "select rules from quarantine.transactions") == [
        ("order_ts_not_after_ingestion",)
    ]


def test_too_many_failing_rows_stop_the_run_naming_file_and_field(tx_config):
    data = HEADER + b"A1,7,bad,1,5.00,completed\nA2,7,2024-01-05 10:00:00,1,5.00,completed\n"
    with pytest.raises(InputError) as err:
        run_to_core(tx_config({"tx.csv": data}, validation=""))
    assert "tx.csv" in str(err.value) and "order_ts" in str(err.value)
    assert "InvoiceDate" in str(err.value)


def test_same_file_delivered_twice_adds_nothing(tmp_path, tx_config):
    data = HEADER + b"A1,7,2024-01-05 10:00:00,1,5.00,completed\n"
    cfg = tx_config({"tx1.csv": data})
    con = run_to_core(cfg)
    con.close()
    (tmp_path / "tx2.csv").write_bytes(data)  # the same export, delivered again
    con = run_to_core(cfg, run_id="run-2")
    assert lines(con, "select count(*) from core.transactions") == [(1,)]
    assert lines(
        con, "select status from raw.deliveries where run_id = 'run-2' order by file_path"
    ) == [("already_ingested",), ("already_ingested",)]
    assert_reconciled(con)


def test_corrected_redelivery_replaces_the_order_and_counts_duplicates(tmp_path, tx_config):
    cfg = tx_config({"tx1.csv": HEADER + b"A1,7,2024-01-05 10:00:00,1,5.00,completed\n"})
    run_to_core(cfg).close()
    (tmp_path / "tx2.csv").write_bytes(HEADER + b"A1,7,2024-01-05 10:00:00,1,6.00,completed\n")
    con = run_to_core(cfg, run_id="run-2")
    assert lines(con, "select amount from core.transactions") == [(6.0,)]
    assert lines(
        con, "select rows_loaded, rows_duplicate from audit.file_reconciliation order by file_path"
    ) == [(0, 1), (1, 0)]
    assert_reconciled(con)


def test_redelivered_events_and_orderless_rows_are_kept_once(tmp_path):
    """Event ids seen again: the latest delivery wins. Rows without an order or event id:
    identical rows within one file are separate, and the k-th copy in a later file is the
    k-th copy re-sent."""
    from tests.helpers import write_config

    (tmp_path / "tx1.csv").write_text(
        "cid,ts,amt\n1,2024-01-05 10:00:00,5\n1,2024-01-05 10:00:00,5\n"
    )
    (tmp_path / "ev1.jsonl").write_text(
        '{"id": "E1", "user": "1", "ts": "2024-01-06T10:00:00Z", "event": "page_view"}\n'
        '{"id": "E2", "user": "1", "ts": "2024-01-06T11:00:00Z", "event": "page_view"}\n'
        '{"user": "1", "ts": "2024-01-07T10:00:00Z", "event": "email_open"}\n'
        '{"user": "1", "ts": "2024-01-07T10:00:00Z", "event": "email_open"}\n'
    )
    body = (
        '[sources.transactions]\npath = "tx*.csv"\n[sources.transactions.columns]\n'
        'customer_id = "cid"\norder_ts = "ts"\namount = "amt"\n'
        '[sources.events]\npath = "ev*.jsonl"\n[sources.events.columns]\n'
        'event_id = "id"\ncustomer_id = "user"\nevent_ts = "ts"\n'
        'event_type = "event"\n'
    )
    cfg = write_config(tmp_path, body)
    run_to_core(cfg).close()
    # a later export re-sends E1 (corrected), one of the two anonymous events and three
    # copies of the order-less row (so one is new)
    (tmp_path / "tx2.csv").write_text("cid,ts,amt\n" + "1,2024-01-05 10:00:00,5\n" * 3)
    (tmp_path / "ev2.jsonl").write_text(
        '{"id": "E1", "user": "1", "ts": "2024-01-06T10:00:00Z", "event": "email_click"}\n'
        '{"user": "1", "ts": "2024-01-07T10:00:00Z", "event": "email_open"}\n'
    )
    con = run_to_core(cfg, run_id="run-2")
    assert lines(con, "select count(*), sum(amount) from core.transactions") == [(3, 15.0)]
    assert lines(
        con,
        "select event_id, event_type from core.events where event_id in ('E1', 'E2') order by 1",
    ) == [("E1", "email_click"), ("E2", "page_view")]
    assert lines(con, "select count(*) from core.events where event_type = 'email_open'") == [(2,)]
    assert lines(con, "select source, count(*) from core.duplicate_rows group by 1 order by 1") == [
        ("events", 2),
        ("transactions", 2),
    ]
    assert_reconciled(con)


def test_jsonl_and_parquet_sources_load(tmp_path):
    import polars as pl

    from tests.helpers import write_config

    pl.DataFrame({"cid": ["001"], "ts": ["2024-01-05T10:00:00Z"], "amt": [12.5]}).write_parquet(
        tmp_path / "tx.parquet"
    )
    (tmp_path / "ev.jsonl").write_text(
        '{"user": "001", "timestamp": "2024-01-06T10:00:00+01:00", "event": "survey_response",'
        ' "score": 9, "props": {"survey": "nps"}}\n{"user": "001", "timestamp": "nope"}\n'
    )
    body = (
        '[sources.transactions]\npath = "tx.parquet"\n[sources.transactions.columns]\n'
        'customer_id = "cid"\norder_ts = "ts"\namount = "amt"\n'
        '[sources.events]\npath = "ev.jsonl"\n[sources.events.columns]\n'
        'customer_id = "user"\nevent_ts = "timestamp"\nevent_type = "event"\n'
        'value = "score"\nproperties = "props"\n'
    )
    con = run_to_core(write_config(tmp_path, body, "[validation]\nmax_failed_share = 1.0\n"))
    assert lines(con, "select customer_id, amount from core.transactions") == [("001", 12.5)]
    assert lines(con, "select event_at, value, properties from core.events") == [
        (__import__("datetime").datetime(2024, 1, 6, 9, 0), 9.0, '{"survey":"nps"}')
    ]
    assert lines(con, "select rules from quarantine.events") == [
        ("event_ts_parseable, event_type_present",)
    ]
    assert_reconciled(con)


def test_jsonl_key_that_first_appears_late_in_the_file_is_read(tmp_path):
    """DuckDB samples the first records for keys; a mapped key that shows up only later
    must still be read (and not reported missing)."""
    import json

    from tests.helpers import write_config

    (tmp_path / "tx.csv").write_text("cid,ts,amt\n1,2024-01-05 10:00:00,5\n")
    with open(tmp_path / "ev.jsonl", "w") as f:
        for i in range(30_000):
            record = {"user": "1", "ts": "2024-01-06T10:00:00Z", "event": "page_view"}
            if i == 29_999:
                record.update(event="survey_response", score=7, props={"survey": "nps"})
            f.write(json.dumps(record) + "\n")
    body = (
        '[sources.transactions]\npath = "tx.csv"\n[sources.transactions.columns]\n'
        'customer_id = "cid"\norder_ts = "ts"\namount = "amt"\n'
        '[sources.events]\npath = "ev.jsonl"\n[sources.events.columns]\n'
        'customer_id = "user"\nevent_ts = "ts"\nevent_type = "event"\n'
        'value = "score"\nproperties = "props"\n'
    )
    con = run_to_core(write_config(tmp_path, body))
    assert lines(
        con,
        "select event_type, value, properties, count(*) from core.events group by all order by 1",
    ) == [("page_view", None, None, 29_999), ("survey_response", 7.0, '{"survey":"nps"}', 1)]
    assert lines(con, "select columns_missing from raw.files where source = 'events'") == [([],)]
    assert_reconciled(con)


def test_whitespace_aligned_text_file_without_header_loads(tmp_path):
    from tests.helpers import write_config

    (tmp_path / "cdnow.txt").write_text(
        " 00001 19970101  1   11.77\r\n 00002 19970112  2   12.00\r\n"
    )
    body = (
        '[sources.transactions]\npath = "cdnow.txt"\nformat = "text"\nheader = false\n'
        'names = ["cust", "date", "qty", "dollars"]\ntimestamp_format = "%Y%m%d"\n'
        '[sources.transactions.columns]\ncustomer_id = "cust"\norder_ts = "date"\n'
        'quantity = "qty"\namount = "dollars"\n'
    )
    con = run_to_core(write_config(tmp_path, body, '[validation]\nearliest_date = "1990-01-01"\n'))
    assert lines(
        con, "select customer_id, order_date::varchar, amount from core.transactions order by 1"
    ) == [("00001", "1997-01-01", 11.77), ("00002", "1997-01-12", 12.0)]


def test_foreign_currencies_convert_to_the_base_or_are_quarantined(tx_config):
    header = b"InvoiceNo,CustomerID,InvoiceDate,Quantity,UnitPrice,Status,Currency\n"
    data = header + (
        b"A1,7,2024-01-05 10:00:00,1,8.50,completed,GBP\n"
        b"A2,7,2024-01-06 10:00:00,1,5.00,completed,EUR\n"
        b"A3,7,2024-01-07 10:00:00,1,5.00,completed,JPY\n"
    )
    cfg = tx_config({"tx.csv": data}, extra="")
    text = cfg.read_text().replace('status = "Status"', 'status = "Status"\ncurrency = "Currency"')
    cfg.write_text(text + '\n[currency]\nbase = "EUR"\n[currency.rates]\nGBP = 0.85\n')
    con = run_to_core(cfg)
    assert lines(con, "select order_id, amount, currency from core.transactions order by 1") == [
        ("A1", 10.0, "GBP"),
        ("A2", 5.0, "EUR"),
    ]
    assert lines(con, "select order_id, rules from quarantine.transactions") == [
        ("A3", "currency_convertible")
    ]
    assert_reconciled(con)


def test_mixed_currencies_without_rates_are_never_added_up(tx_config):
    header = b"InvoiceNo,CustomerID,InvoiceDate,Quantity,UnitPrice,Status,Currency\n"
    data = header + (
        b"A1,7,2024-01-05 10:00:00,1,8.50,completed,GBP\n"
        b"A2,7,2024-01-06 10:00:00,1,5.00,completed,EUR\n"
    )
    cfg = tx_config({"tx.csv": data})
    cfg.write_text(
        cfg.read_text().replace('status = "Status"', 'status = "Status"\ncurrency = "Currency"')
    )
    with pytest.raises(Exception, match="currency"):
        run_to_core(cfg)


def test_identical_rows_without_order_id_are_separate_within_a_file_and_resent_across(tmp_path):
    from tests.helpers import write_config

    header = b"cust,date,amount\n"
    row = b"9,2024-01-05,5.00\n"
    (tmp_path / "tx1.csv").write_bytes(header + row + row)
    body = (
        '[sources.transactions]\npath = "tx*.csv"\n[sources.transactions.columns]\n'
        'customer_id = "cust"\norder_ts = "date"\namount = "amount"\n'
    )
    config = write_config(tmp_path, body)
    con = run_to_core(config)
    assert lines(con, "select count(*), sum(amount) from core.transactions") == [(2, 10.0)]
    con.close()
    (tmp_path / "tx2.csv").write_bytes(header + row + row + b"9,2024-01-06,7.00\n")
    con = run_to_core(config, run_id="run-2")
    assert lines(con, "select count(*), sum(amount) from core.transactions") == [(3, 17.0)]
    assert lines(con, "select count(*) from core.duplicate_rows") == [(2,)]
    assert_reconciled(con)


def test_validation_in_chunks_gives_the_same_verdicts(tx_config, monkeypatch):
    from pipelines.load import quality

    data = HEADER + (
        b"A1,7,yesterday,1,5.00,completed\n"
        b"A2,7,2024-01-05 10:00:00,one,5.00,completed\n"
        b"A3,7,2024-01-05 10:00:00,1,5.00,completed\n"
        b"A4,,2024-01-05 10:00:00,1,5.00,completed\n"
        b"A5,8,2024-01-05 10:00:00,1,5.00,shipped\n"
    )
    monkeypatch.setattr(quality, "VALIDATION_CHUNK_ROWS", 2)
    sizes = []
    chunk = quality._chunk
    monkeypatch.setattr(
        quality, "_chunk", lambda table: sizes.append(table.num_rows) or chunk(table)
    )
    con = run_to_core(tx_config({"tx.csv": data}))
    assert sizes[:3] == [2, 2, 1]  # transactions (customers and events: one empty chunk)
    assert lines(con, "select order_id, rules from quarantine.transactions order by 1") == [
        ("A1", "order_ts_parseable"),
        ("A2", "amount_numeric, quantity_numeric"),
        ("A4", "customer_id_present"),
    ]
    assert lines(
        con,
        "select rule, element_count, unexpected_count "
        "from audit.validation_results where source = 'transactions' "
        "and rule in ('customer_id_present', 'amount_numeric') order by 1",
    ) == [("amount_numeric", 5, 1), ("customer_id_present", 5, 1)]
    assert_reconciled(con)


def test_prefetched_chunks_come_in_order_and_carry_the_producers_error():
    from pipelines.load.quality import _prefetched

    assert list(_prefetched(iter([(1,), (2,), (3,)]))) == [(1,), (2,), (3,)]

    def failing():
        yield (1,)
        raise ValueError("bad batch")

    chunks = _prefetched(failing())
    assert next(chunks) == (1,)
    with pytest.raises(ValueError, match="bad batch"):
        next(chunks)


def test_prefetching_is_finished_when_a_failing_consumer_closes_it():
    """validate_source closes the chunks on an error, so that no thread is still reading
    from DuckDB when the error reaches the flow (which then writes its run log)."""
    import contextlib
    import time

    from pipelines.load.quality import _prefetched

    state = {"fetching": False, "made": 0}

    def slow_source():
        for i in range(1000):
            state["fetching"] = True
            time.sleep(0.05)
            state["fetching"] = False
            state["made"] += 1
            yield (i,)

    with pytest.raises(RuntimeError, match="GX failed"):
        with contextlib.closing(_prefetched(slow_source())) as chunks:
            for _ in chunks:
                while not state["fetching"]:  # fail while the next item is being made
                    time.sleep(0.001)
                raise RuntimeError("GX failed")
    assert not state["fetching"]
    assert state["made"] <= 2  # the current item and at most one fetched ahead


def test_csv_values_are_trimmed_of_spaces_and_blank_ones_are_null(tx_config):
    data = (
        HEADER + b'A1 ,  7,2024-01-05 10:00:00, 2 ,5.00,"   "\n'
        b'A2,8,2024-01-06 10:00:00,1,"",completed\n'
        b'A3,"\tx ",2024-01-07 10:00:00,1,6.00,  \n'
    )
    con = run_to_core(tx_config({"tx.csv": data}))
    assert lines(
        con,
        "select order_id, customer_id, quantity, unit_price, status "
        "from raw.transactions order by _row_number",
    ) == [
        ("A1", "7", "2", "5.00", None),
        ("A2", "8", "1", None, "completed"),
        # trim strips spaces only: a tab is kept, as delivered
        ("A3", "\tx", "1", "6.00", None),
    ]
    assert_reconciled(con)


# --- issue 16: exact numbers from real exports -------------------------------------------


def _tx_lines(n: int) -> list[bytes]:
    return [f"A{i},{i},2024-01-05 10:00:00,1,5.00,completed\n".encode() for i in range(1, n + 1)]


def test_a_stray_quote_rejects_its_own_line_and_the_rest_of_the_file_loads(tx_config):
    rows = _tx_lines(200)
    rows[100] = b'A101,"101,2024-01-05 10:00:00,1,5.00,completed\n'  # row 101, line 102
    con = run_to_core(tx_config({"tx.csv": HEADER + b"".join(rows)}))
    assert lines(con, "select count(*) from raw.transactions") == [(199,)]
    assert lines(con, "select _row_number, line_number, reason from raw.rejected_rows") == [
        (
            101,
            102,
            "CSV reader: unexpected end of data (reading a quoted field opened on "
            "this line, at line 201)",
        )
    ]
    assert lines(
        con,
        "select rows_read, rows_loaded, rows_quarantined, is_balanced "
        "from audit.file_reconciliation",
    ) == [(200, 199, 1, True)]
    # the rows after the stray quote keep their own row numbers
    assert lines(
        con,
        "select min(_row_number), max(_row_number) from raw.transactions "
        "where order_id in ('A102', 'A200')",
    ) == [(102, 200)]


def test_a_stray_quote_closed_by_a_later_quote_costs_one_line(tx_config):
    """The csv module pairs a stray quote with the next quote, lines on. Followed by a
    delimiter, that makes a record with the wrong field count; followed by anything
    else, a reader error. Either way only the first line is rejected."""
    data = HEADER + (
        b'A1,"7,2024-01-05 10:00:00,1,5.00,completed\n'
        b'A2",8,2024-01-05 10:00:00,1,5.00,completed\n'  # a quote inside: kept
        b'A3,"9,2024-01-05 10:00:00,1,5.00,completed\n'
        b"A4,9,2024-01-05 10:00:00,1,5.00,completed\n"
        b'A5,9,2024-01-05 10:00:00,1,5.00,"completed"\n'
        b"A6,9,2024-01-05 10:00:00,1,5.00,completed\n"
    )
    con = run_to_core(tx_config({"tx.csv": data}))
    assert lines(con, "select order_id, _row_number, status from raw.transactions order by 2") == [
        ('A2"', 2, "completed"),
        ("A4", 4, "completed"),
        ("A5", 5, "completed"),
        ("A6", 6, "completed"),
    ]
    assert lines(
        con, "select _row_number, line_number, reason from raw.rejected_rows order by 1"
    ) == [
        (
            1,
            2,
            "CSV reader: a quoted field opened on this line runs over 2 lines and leaves "
            "7 fields, expected 6",
        ),
        (
            3,
            4,
            "CSV reader: ',' expected after '\"' (reading a quoted field opened on this "
            "line, at line 6)",
        ),
    ]
    assert lines(
        con,
        "select rows_read, rows_loaded, rows_quarantined, is_balanced "
        "from audit.file_reconciliation",
    ) == [(6, 4, 2, True)]


def test_a_well_formed_multi_line_field_with_crlf_stays_one_record(tmp_path, tx_config):
    data = (
        b"InvoiceNo,CustomerID,InvoiceDate,Quantity,UnitPrice,Status,Note\r\n"
        b'A1,7,2024-01-05 10:00:00,1,5.00,completed,"one\r\ntwo\rthree"\r\n'
        b'A2,8,2024-01-06 10:00:00,1,6.00,completed,"x"y\r\n'  # bad: one line
        b"A3,9,2024-01-06 10:00:00,1,6.00,completed,plain\n"
    )
    con = run_to_core(tx_config({"tx.csv": data}))
    assert lines(con, "select order_id, _row_number from raw.transactions order by 1") == [
        ("A1", 1),
        ("A3", 3),
    ]
    assert lines(con, "select _row_number, line_number, reason from raw.rejected_rows") == [
        (2, 5, "CSV reader: ',' expected after '\"'")
    ]
    assert_reconciled(con)


def test_a_200_kib_field_is_loaded_intact(tx_config):
    status = "x" * (200 * 1024)
    data = HEADER + (
        f'A1,7,2024-01-05 10:00:00,1,5.00,"{status}"\n'.encode()
        + b"A2,8,2024-01-05 10:00:00,1,5.00,completed\r\n"
    )  # exact reader
    con = run_to_core(tx_config({"tx.csv": data}))
    assert lines(
        con,
        "select order_id, length(status), status = ? from raw.transactions order by 1".replace(
            "?", f"'{status}'"
        ),
    ) == [("A1", 200 * 1024, True), ("A2", 9, False)]
    assert lines(con, "select count(*) from raw.rejected_rows") == [(0,)]


def test_a_file_mostly_unreadable_stops_the_run_naming_the_file(tx_config):
    data = (
        HEADER + b"".join(b'A%d,"7,2024-01-05,1,5\n' % i for i in range(8)) + b"".join(_tx_lines(2))
    )
    with pytest.raises(InputError) as err:
        run_to_core(tx_config({"tx.csv": data}, validation=""))
    message = str(err.value)
    assert "tx.csv" in message and "8 of 10 rows" in message
    assert "8 of them could not be read" in message and "raw.rejected_rows" in message


@pytest.mark.parametrize("copy", [False, True], ids=["same_path", "identical_copy"])
def test_a_file_that_feeds_two_sources_loads_for_both(tmp_path, copy):
    """Order lines that carry the customer's attributes, mapped as transactions and as
    customers (the same path, or a byte-identical copy): each source loads every row."""
    from tests.helpers import write_config

    data = (
        b"InvoiceNo,CustomerID,InvoiceDate,Quantity,UnitPrice,Status,Email\n"
        b"A1,7,2024-01-05 10:00:00,1,5.00,completed,a@x.de\n"
        b"A2,7,2024-01-06 10:00:00,2,5.00,completed,a@x.de\n"
        b"A3,8,2024-01-07 10:00:00,1,6.00,completed,b@x.de\n"
        b"A4,9,2024-01\n"
    )  # one line neither reader can split
    (tmp_path / "orders.csv").write_bytes(data)
    if copy:
        (tmp_path / "customers.csv").write_bytes(data)
    body = (
        '[sources.transactions]\npath = "orders.csv"\n'
        + TX_COLUMNS
        + f'[sources.customers]\npath = "{"customers.csv" if copy else "orders.csv"}"\n'
        '[sources.customers.columns]\ncustomer_id = "CustomerID"\nemail = "Email"\n'
    )
    cfg = write_config(tmp_path, body, "[validation]\nmax_failed_share = 1.0\n")
    con = run_to_core(cfg)
    assert lines(con, "select count(*) from raw.transactions") == [(3,)]
    assert lines(con, "select count(*) from raw.customers") == [(3,)]
    assert lines(con, "select source, count(*) from raw.rejected_rows group by 1 order by 1") == [
        ("customers", 1),
        ("transactions", 1),
    ]
    assert lines(con, "select count(*) from core.transaction_lines") == [(3,)]
    assert lines(
        con,
        "select source, rows_read, rows_loaded, rows_quarantined, rows_duplicate,"
        " is_balanced from audit.file_reconciliation order by 1",
    ) == [("customers", 4, 2, 1, 1, True), ("transactions", 4, 3, 1, 0, True)]
    con.close()
    con = run_to_core(cfg, run_id="run-2")
    assert lines(con, "select count(*) from raw.transactions") == [(3,)]
    assert lines(con, "select count(*) from raw.customers") == [(3,)]
    assert lines(
        con, "select source, status from raw.deliveries where run_id = 'run-2' order by 1"
    ) == [("customers", "already_ingested"), ("transactions", "already_ingested")]
    assert lines(con, "select count(*) from core.transaction_lines") == [(3,)]
    assert_reconciled(con)


def test_raw_files_keyed_by_sha256_alone_is_rekeyed_by_source_keeping_its_rows(tmp_path):
    import duckdb

    from pipelines.load.ingest import ensure_raw_tables

    con = duckdb.connect(str(tmp_path / "old.duckdb"))
    con.execute("create schema raw")
    con.execute("""
        create table raw.files (
            file_sha256 varchar primary key, source varchar, file_path varchar,
            file_name varchar, size_bytes bigint, status varchar, rows_read bigint,
            rows_rejected bigint, reader varchar, columns_ignored varchar[],
            columns_missing varchar[], ingested_at timestamp, run_id varchar)""")
    con.execute(
        "insert into raw.files values ('abc', 'transactions', '/d/tx.csv', 'tx.csv', "
        "10, 'loaded', 2, 0, 'duckdb', [], [], '2024-01-01', 'run-0')"
    )
    ensure_raw_tables(con)
    ensure_raw_tables(con)  # the second time, nothing to do
    assert lines(
        con,
        "select constraint_column_names from duckdb_constraints() "
        "where schema_name = 'raw' and table_name = 'files' "
        "and constraint_type = 'PRIMARY KEY'",
    ) == [(["source", "file_sha256"],)]
    assert lines(
        con, "select file_sha256, source, file_name, rows_read, run_id from raw.files"
    ) == [("abc", "transactions", "tx.csv", 2, "run-0")]
    # the same content may now be recorded for a second source, not twice for one
    con.execute("insert into raw.files (file_sha256, source) values ('abc', 'customers')")
    with pytest.raises(duckdb.ConstraintException):
        con.execute("insert into raw.files (file_sha256, source) values ('abc', 'customers')")


def test_integral_floats_from_parquet_read_as_the_integer_they_are(tmp_path):
    """pandas writes an id column with nulls as float64: 17850.0 must be customer
    "17850", as in the CSV export of the same data."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.helpers import write_config

    pq.write_table(
        pa.table(
            {
                "CustomerID": pa.array(
                    [17850.0, None, -0.0, 1e20, 12.5, float("nan")], pa.float64()
                ),
                "InvoiceDate": ["2024-01-05 10:00:00"] * 6,
                "Amount": pa.array([5.0, 6.0, 7.0, 8.0, 9.0, 2.5], pa.float32()),
                "Price": pa.array([1, 2, 3, 4, 5, 6], pa.decimal128(5, 2)),
                "InvoiceNo": pa.array([1, 2, 3, 4, 5, 6], pa.int64()),
                "StockCode": ["17850.0", "a", "b", "c", "d", "e"],
            }
        ),
        tmp_path / "tx.parquet",
    )
    body = (
        '[sources.transactions]\npath = "tx.parquet"\nformat = "parquet"\n'
        '[sources.transactions.columns]\ncustomer_id = "CustomerID"\n'
        'order_ts = "InvoiceDate"\namount = "Amount"\nunit_price = "Price"\n'
        'order_id = "InvoiceNo"\nproduct_id = "StockCode"\n'
    )
    cfg = write_config(tmp_path, body, "[validation]\nmax_failed_share = 1.0\n")
    con = run_to_core(cfg)
    assert lines(
        con,
        "select customer_id, amount, unit_price, order_id, product_id "
        "from raw.transactions order by _row_number",
    ) == [
        ("17850", "5", "1.00", "1", "17850.0"),  # strings and decimals as they are
        (None, "6", "2.00", "2", "a"),
        ("0", "7", "3.00", "3", "b"),
        ("100000000000000000000", "8", "4.00", "4", "c"),
        ("12.5", "9", "5.00", "5", "d"),
        (None, "2.5", "6.00", "6", "e"),
    ]  # NaN is missing
    assert_reconciled(con)


def _jsonl_config(tmp_path, data: bytes):
    from tests.helpers import write_config

    (tmp_path / "tx.jsonl").write_bytes(data)
    body = (
        '[sources.transactions]\npath = "tx.jsonl"\nformat = "jsonl"\n'
        '[sources.transactions.columns]\ncustomer_id = "cid"\norder_ts = "ts"\n'
        'amount = "amt"\norder_id = "id"\nproduct_id = "item"\n'
    )
    return write_config(tmp_path, body, "[validation]\nmax_failed_share = 1.0\n")


_GOOD_JSON = b"".join(
    b'{"id": "A%d", "cid": "7", "ts": "2024-01-05 10:00:00", "amt": 5, "item": "P1"}\n' % i
    for i in (1, 2, 3)
)


def test_a_json_record_nested_too_deep_is_rejected_and_the_rest_loads(tmp_path):
    deep = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    good = _GOOD_JSON.splitlines(keepends=True)
    data = good[0] + good[1] + deep + good[2]  # the deep record is line 3
    con = run_to_core(_jsonl_config(tmp_path, data))
    assert lines(con, "select order_id, _row_number from raw.transactions order by 1") == [
        ("A1", 1),
        ("A2", 2),
        ("A3", 4),
    ]
    assert lines(con, "select _row_number, line_number, reason from raw.rejected_rows") == [
        (3, 3, "JSON nested too deep to read")
    ]
    assert lines(
        con,
        "select rows_read, rows_loaded, rows_quarantined, is_balanced "
        "from audit.file_reconciliation",
    ) == [(4, 3, 1, True)]


def test_a_json_value_too_deep_to_write_as_text_rejects_its_record(tmp_path, monkeypatch):
    """json.dumps recurses as json.loads does; a value it cannot write (here: made to
    fail) rejects its record, not the run."""
    from pipelines.load import exact_reader

    json_text = exact_reader._json_text

    def failing(value):
        if value == ["deep"]:
            raise RecursionError("maximum recursion depth exceeded")
        return json_text(value)

    monkeypatch.setattr(exact_reader, "_json_text", failing)
    data = (
        _GOOD_JSON + b'{"id": "A4", "cid": "7", "ts": "2024-01-05 10:00:00", "amt": 5, '
        b'"item": ["deep"]}\n{"x": 1' + b"\n"
    )  # line 5: the exact reader
    con = run_to_core(_jsonl_config(tmp_path, data))
    assert lines(con, "select count(*) from raw.transactions") == [(3,)]
    assert lines(
        con, "select line_number, split_part(reason, ':', 1) from raw.rejected_rows order by 1"
    ) == [(4, "JSON nested too deep to write as text"), (5, "not valid JSON")]
    assert_reconciled(con)


def test_a_json_key_first_seen_in_a_later_record_is_read_by_the_exact_reader(tmp_path):
    data = (
        b'{"id": "A1", "cid": "7", "ts": "2024-01-05 10:00:00", "amt": 5}\n'
        b'{"id": "A2", "cid": "7", "ts": "2024-01-05 10:00:00", "amt": 5, "item": "P2"}\n'
        b'{"id": "A3", "cid": "7", "ts": "2024-01-05 10:00:00", "amt": 5, "item": ["x"]}\n'
        b"not json\n"
    )  # the fast path gives up: the line-by-line reader
    con = run_to_core(_jsonl_config(tmp_path, data))
    assert lines(
        con,
        "select order_id, product_id, reader from raw.transactions "
        "join raw.files on file_sha256 = _file_sha256 order by 1",
    ) == [("A1", None, "python"), ("A2", "P2", "python"), ("A3", '["x"]', "python")]
    assert lines(con, "select columns_missing from raw.files") == [([],)]
    assert_reconciled(con)


def test_an_unreadable_header_stops_the_run_naming_file_and_line(tx_config):
    data = (
        b'"InvoiceNo,CustomerID,InvoiceDate,Quantity,UnitPrice,Status\r\n'
        + b"A1,7,2024-01-05 10:00:00,1,5.00,completed\n"
    )
    with pytest.raises(
        InputError,
        match=r"tx\.csv .*the header row \(line 1\) cannot be "
        r"read \(CSV reader: unexpected end of data",
    ):
        run_to_core(tx_config({"tx.csv": data}))
