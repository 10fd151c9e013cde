"""Errors about a file quote no more of its content than a short, marked excerpt: a glob
that matches a file never meant to be a source must not copy its lines into the message,
the run log or Prefect's log table."""

from __future__ import annotations

import pytest

from pipelines.errors import InputError
from tests.helpers import TX_COLUMNS, run_to_core, write_config

SECRET_LINE = "root:x:0:0:root:/root:/bin/bash-and-a-password-hash-$6$abcdefghijkl"


def test_a_file_that_is_no_export_is_named_with_an_excerpt_of_its_first_line_only(tmp_path):
    (tmp_path / "transactions_passwd.csv").write_text(
        SECRET_LINE + "\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n", encoding="utf-8"
    )
    config = write_config(
        tmp_path,
        '[sources.transactions]\npath = "transactions*.csv"\nformat = "csv"\n' + TX_COLUMNS,
    )
    with pytest.raises(InputError) as info:
        run_to_core(config).close()
    message = str(info.value)
    # the message still says which file, which line and which column is wrong
    assert "transactions_passwd.csv" in message and "line 1" in message
    assert "'CustomerID'" in message
    # ... but quotes only the first 20 characters of the line, marked as an excerpt
    assert "«root:x:0:0:root:/roo…»" in message
    assert SECRET_LINE not in message and "/bin/bash" not in message and "daemon" not in message
