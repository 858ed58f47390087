"""Reading the catalog: any SQL on a read-only connection, rows out as table data, CSV or JSON.

Read-only means a statement that would write is refused by DuckDB itself; every DuckDB error becomes a
one-line `UserError`.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb

from tdro.catalog.connection import DEFAULT_LOCK_TIMEOUT, open_catalog
from tdro.errors import UserError


@dataclass(frozen=True)
class Rows:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def run_sql(
    catalog: str | Path, sql: str, params: list[Any] | None = None, *, timeout: float = DEFAULT_LOCK_TIMEOUT,
    sandboxed: bool = False,
) -> Rows:
    """Rows of `sql` on a read-only connection; `sandboxed` (the user's `tdro sql`) also keeps it from reading
    or writing any file but the catalog (no `COPY ... TO`, no `read_csv`)."""
    if not sql.strip():
        raise UserError("sql: the query is empty")
    with open_catalog(catalog, read_only=True, timeout=timeout, sandboxed=sandboxed) as con:
        try:
            cursor = con.execute(sql, params or [])
            columns = [d[0] for d in cursor.description] if cursor is not None and cursor.description else []
            rows = cursor.fetchall() if columns else []
        except duckdb.Error as error:
            raise UserError("sql: " + " ".join(str(error).split())) from None
    return Rows(columns, rows)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return str(value)


def to_csv(rows: Rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(rows.columns)
    writer.writerows([[_plain(v) for v in row] for row in rows.rows])
    return buffer.getvalue()


def to_json(rows: Rows) -> str:
    return json.dumps([{k: _plain(v) for k, v in r.items()} for r in rows.records()], indent=2)


def cell(value: Any) -> str:
    """How a value reads in a text table: floats with 4 decimals, NULL as empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(_plain(value))
