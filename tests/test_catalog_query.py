"""`tdro sql`: read-only, reads the catalog and no other file, and refuses an empty query in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdro.catalog.connection import transaction
from tdro.cli import main


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    """An empty catalog at the current schema."""
    path = tmp_path / "catalog.duckdb"
    with transaction(path):
        pass
    return path


def _error(capsys: pytest.CaptureFixture[str], catalog: Path, sql: str) -> str:
    assert main(["sql", sql, "--catalog", str(catalog)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_query_reads_the_catalog(catalog: Path, capsys) -> None:
    sql = "SELECT count(*) AS n FROM stages"
    assert main(["sql", sql, "--catalog", str(catalog), "--format", "csv"]) == 0
    assert capsys.readouterr().out.split() == ["n", "0"]


def test_an_empty_query_is_one_line(catalog: Path, capsys) -> None:
    assert _error(capsys, catalog, "  ") == "error: sql: the query is empty"


def test_copy_to_a_file_is_refused(catalog: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "out.csv"
    assert "disabled by configuration" in _error(capsys, catalog, f"COPY (SELECT 1) TO '{target}'")
    assert not target.exists()


def test_reading_another_file_is_refused(catalog: Path, tmp_path: Path, capsys) -> None:
    other = tmp_path / "other.csv"
    other.write_text("a\n1\n")
    assert "disabled by configuration" in _error(capsys, catalog, f"SELECT * FROM read_csv('{other}')")


@pytest.mark.parametrize(("code", "reason"), [
    pytest.param(-9, "killed by signal 9 (SIGKILL)", id="sigkill"),
    pytest.param(-15, "killed by signal 15 (SIGTERM)", id="sigterm"),
    pytest.param(2, "exit code 2", id="user_error"),
])
def test_a_failed_job_says_how_it_ended(code: int, reason: str) -> None:
    from tdro.plan.runner import _exit_reason

    assert _exit_reason(code) == reason
