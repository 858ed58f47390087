"""Opening the catalog file: short-lived connections that wait for the lock instead of failing.

DuckDB lets one process open a file for writing, and while it does, no other process may open it at all
(not even read-only). Runners therefore open the catalog only for one short transaction, and every
opener retries with exponential backoff while another process holds the lock.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

from tdro.errors import UserError

# How long an opener waits for another process's lock before giving up (seconds).
DEFAULT_LOCK_TIMEOUT = 120.0


def _is_lock_error(error: Exception) -> bool:
    text = str(error)
    return "Could not set lock" in text or "Conflicting lock" in text


def _connect(path: Path, read_only: bool, timeout: float, config: dict[str, Any] | None = None
             ) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only, config=config or {})
        except duckdb.IOException as error:
            if not _is_lock_error(error) or time.monotonic() >= deadline:
                raise UserError(f"catalog {path}: cannot open: {_one_line(error)}") from None
        except duckdb.Error as error:
            raise UserError(f"catalog {path}: cannot open: {_one_line(error)}") from None
        # Jitter so that two waiting runners do not wake up in lockstep.
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 1.0)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


@contextlib.contextmanager
def open_catalog(
    path: str | Path, *, read_only: bool = False, timeout: float = DEFAULT_LOCK_TIMEOUT,
    sandboxed: bool = False,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the catalog, migrated to the current schema when opened for writing. `sandboxed`
    turns DuckDB's external access off: the connection reads the catalog and no other file, writes none."""
    path = Path(path)
    if read_only and not path.exists():
        raise UserError(f"catalog {path}: no such file (run an experiment first, or pass --catalog)")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = _connect(path, read_only, timeout, {"enable_external_access": False} if sandboxed else None)
    try:
        if not read_only:
            from tdro.catalog.schema import migrate

            migrate(con)
        yield con
    finally:
        con.close()


@contextlib.contextmanager
def transaction(
    path: str | Path, *, timeout: float = DEFAULT_LOCK_TIMEOUT
) -> Iterator[duckdb.DuckDBPyConnection]:
    """One write transaction: committed when the block ends, rolled back (nothing kept) on any error."""
    with open_catalog(path, timeout=timeout) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
