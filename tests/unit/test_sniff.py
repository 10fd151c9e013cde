"""What crm init reads from values (pipelines/onboarding/sniff.py): timestamp formats with
the day/month order decided from the values, two-digit years, several formats in one
column, decimal commas, e-mails and phones."""

from __future__ import annotations

from datetime import datetime

from pipelines.onboarding import sniff


def test_iso_timestamps_need_no_format():
    found = sniff.timestamp_formats(["2024-01-05 10:00:00", "2024-12-31T23:59:59Z", None])
    assert found.formats == [] and found.parsed == 1.0


def test_a_day_above_12_in_first_place_decides_day_first():
    found = sniff.timestamp_formats(["01.02.2024 10:00", "31.12.2024 14:30", "05.06.2024 08:15"])
    assert found.formats == ["%d.%m.%Y %H:%M"] and found.order == "dmy"
    assert "day-first" in found.order_note and "'31.12.2024 14:30'" in found.order_note
    assert datetime(2024, 2, 1, 10, 0) in found.datetimes


def test_a_day_above_12_in_second_place_decides_month_first_with_two_digit_years():
    found = sniff.timestamp_formats(["01/02/24", "12/31/24", "03/04/97"])
    assert found.formats == ["%m/%d/%y"] and found.order == "mdy"
    assert datetime(1997, 3, 4) in found.datetimes and datetime(2024, 12, 31) in found.datetimes


def test_no_day_above_12_is_ambiguous_and_says_so():
    found = sniff.timestamp_formats(["01/02/2024", "03/04/2024"])
    assert found.formats == ["%d/%m/%Y"] and "ambiguous" in found.order_note


def test_several_formats_in_one_column_give_a_list_most_values_first():
    values = ["2024-01-05", "2024-01-06", "2024-01-07", "31/01/2024 10:00", "Jan 4th"]
    found = sniff.timestamp_formats(values)
    assert found.formats == ["%Y-%m-%d", "%d/%m/%Y %H:%M"]
    assert found.parsed == 4 / 5


def test_number_styles_emails_and_phones():
    assert sniff.number_style(["12,50", "1.234,00", "3"]) == "comma"
    assert sniff.number_style(["12.50", "1,234.00", "3"]) == "dot"
    assert sniff.number_style(["12.50", "abc", "x", "y"]) is None
    assert sniff.is_email(["a@b.de", "c@d.com", None])
    assert not sniff.is_email(["a@b.de", "nope", "no", "never"])
    assert sniff.is_phone(["+49 30 1234567", "030/1234567", "0664 1234567"])
    assert not sniff.is_phone(["2024-01-05", "2024-01-06"])


def test_encodings_are_told_apart():
    assert sniff._encoding("Müller".encode())[0] == "utf-8"
    assert sniff._encoding("Müller €".encode("cp1252"))[0] == "cp1252"
    assert sniff._encoding("Müller".encode("latin-1"))[0] == "latin-1"
    assert sniff._encoding("Müller".encode("utf-16"))[0] == "utf-16"
