"""The churn step's labelled frames, held in DuckDB and read a few columns or rows at a time.

A labelled frame is one validation cutoff's churn features, the BG/NBD columns and
``is_churned``: one row per customer with a completed order by the cutoff, in customer_id
order. At 1M customers it is 48 columns, about 0.4 GB as a polars frame, and the step
needs two of them. Yet the step reads little of either at once: the labels, one baseline
column, the model's stratified sample of 200k rows, the test set in chunks. So the frame
stays a temporary table on the flow's connection, where DuckDB's memory limit bounds it
(spilling to its temp directory), and each read fetches just what it needs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from models.churn import LABEL_COLUMN

ROW = "_row"  # the row's position in customer_id order, from 0


class LabelledFrame:
    """One labelled frame as the DuckDB temporary table ``temp.main.<name>``.

    Build it with :meth:`create`; read it with :meth:`select`, :meth:`chunks`,
    :meth:`labels`; free it with :meth:`drop`. Every read gives rows in customer_id order,
    so positions (``rows``) mean the same in every read.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, name: str):
        self.con = con
        self.name = name
        self.table = f'temp.main."{name}"'
        [(self.height,)] = con.execute(f"select count(*) from {self.table}").fetchall()
        self._empty = con.sql(f"select * exclude ({ROW}) from {self.table} limit 0").pl()
        self.columns = self._empty.columns

    @classmethod
    def create(
        cls, con: duckdb.DuckDBPyConnection, name: str, query: str, params: dict | None = None
    ) -> LabelledFrame:
        """Store the rows of ``query`` (one per customer_id) as the frame ``name``,
        replacing a frame of that name."""
        con.execute(
            f'create or replace temp table "{name}" as '
            f"select (row_number() over (order by customer_id) - 1)::bigint as {ROW}, * "
            f"from ({query}) order by customer_id",
            params or {},
        )
        return cls(con, name)

    def with_columns(self, frame: pl.DataFrame | None) -> LabelledFrame:
        """The frame with ``frame``'s other columns joined on customer_id (null for a
        customer it lacks), after the frame's own columns; itself when ``frame`` is None."""
        if frame is None:
            return self
        added = ", ".join(f'j."{c}"' for c in frame.columns if c != "customer_id")
        self.con.register("_labelled_join", frame)
        try:
            self.con.execute(
                f'create temp table "{self.name}_joined" as select t.*, {added} from {self.table} t '
                f"left join _labelled_join j on j.customer_id = t.customer_id order by t.{ROW}"
            )
        finally:
            self.con.unregister("_labelled_join")
        self.drop()
        self.con.execute(f'alter table temp.main."{self.name}_joined" rename to "{self.name}"')
        return LabelledFrame(self.con, self.name)

    def select(
        self, columns: Sequence[str] | None = None, rows: np.ndarray | None = None
    ) -> pl.DataFrame:
        """The ``columns`` (default: all) of the rows at the sorted positions ``rows``
        (default: all), in customer_id order."""
        names = ", ".join(f'"{c}"' for c in (self.columns if columns is None else columns))
        if rows is None:
            return self.con.sql(f"select {names} from {self.table} order by {ROW}").pl()
        self.con.register("_labelled_rows", pa.table({ROW: np.asarray(rows, dtype=np.int64)}))
        try:
            return self.con.sql(
                f"select {names} from {self.table} t semi join _labelled_rows r "
                f"on r.{ROW} = t.{ROW} order by t.{ROW}"
            ).pl()
        finally:
            self.con.unregister("_labelled_rows")

    def chunks(self, columns: Sequence[str], size: int) -> Iterator[pl.DataFrame]:
        """The ``columns`` of every row, ``size`` rows at a time, in customer_id order."""
        names = ", ".join(f'"{c}"' for c in columns)
        for start in range(0, self.height, size):
            yield self.con.sql(
                f"select {names} from {self.table} where {ROW} >= $start and {ROW} < $stop "
                f"order by {ROW}",
                params={"start": start, "stop": start + size},
            ).pl()

    def empty(self) -> pl.DataFrame:
        """The frame's columns and their types, without rows."""
        return self._empty

    def labels(self) -> pl.Series:
        """``is_churned`` of every row, in customer_id order."""
        return self.select([LABEL_COLUMN])[LABEL_COLUMN]

    def covers(self, column: str) -> bool:
        """Whether ``column`` is known (not null) for any customer."""
        if column not in self.columns:
            return False
        [(found,)] = self.con.execute(
            f'select bool_or("{column}" is not null) from {self.table}'
        ).fetchall()
        return bool(found)

    def drop(self) -> None:
        """Free the table (the frame is unusable afterwards)."""
        self.con.execute(f"drop table if exists {self.table}")
