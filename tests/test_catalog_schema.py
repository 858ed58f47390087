"""The catalog schema: versioned migrations, the public views' exact columns, read-only SQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdro.catalog.connection import open_catalog, transaction
from tdro.catalog.ingest import TABLE_COLUMNS
from tdro.catalog.query import run_sql, to_csv, to_json
from tdro.catalog.schema import SCHEMA_VERSION, current_version
from tdro.errors import UserError
from tdro.spec.stage_result import BenchmarkRecord

VIEW_COLUMNS = {
    "results": ["experiment", "arm", "measure", "transfer", "base_model", "benchmark", "metric", "value",
                "stage_id", "kind", "language", "benchmark_group"],
    "group_results": ["experiment", "arm", "measure", "transfer", "base_model", "benchmark_group", "metric",
                      "value", "benchmarks"],
    "weights": ["experiment", "arm", "measure", "source", "dataset", "weight", "stage_id"],
    "trajectory": ["experiment", "arm", "measure", "step", "dataset", "alpha", "group_measure", "proxy_loss",
                   "ref_loss"],
    "preparation": ["experiment", "arm", "dataset", "kind", "rows_in", "rows_out", "empty_dropped",
                    "no_candidates_dropped", "short_groups", "negatives_per_group", "false_negatives_removed",
                    "duplicates_removed", "retriever", "params", "stage_id"],
}


def test_migrations_and_views(tmp_path: Path) -> None:
    path = tmp_path / "c.duckdb"
    with open_catalog(path) as con:
        assert current_version(con) == SCHEMA_VERSION == 5
    with open_catalog(path) as con:  # opening again applies nothing twice
        assert con.execute("SELECT count(*) FROM schema_version").fetchone() == (SCHEMA_VERSION,)
    for view, columns in VIEW_COLUMNS.items():
        assert run_sql(path, f"SELECT * FROM {view}").columns == columns


def test_sql_is_read_only_and_errors_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.duckdb"
    with pytest.raises(UserError, match="no such file"):
        run_sql(path, "SELECT 1")
    with transaction(path) as con:
        con.execute("INSERT INTO experiments VALUES ('e', 'e.yaml', '{}', now())")
    with pytest.raises(UserError) as bad:
        run_sql(path, "DELETE FROM experiments")
    assert "read-only" in str(bad.value) and "\n" not in str(bad.value)
    with pytest.raises(UserError, match="^sql: ") as syntax:
        run_sql(path, "SELEC nonsense")
    assert "\n" not in str(syntax.value)
    rows = run_sql(path, "SELECT name, 0.5 AS x FROM experiments")
    assert to_csv(rows) == "name,x\ne,0.5\n"
    assert '"name": "e"' in to_json(rows)


def test_a_failing_transaction_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "c.duckdb"
    with pytest.raises(RuntimeError), transaction(path) as con:
        con.execute("INSERT INTO experiments VALUES ('e', 'e.yaml', '{}', now())")
        raise RuntimeError("mid-ingest failure")
    assert run_sql(path, "SELECT count(*) FROM experiments").rows == [(0,)]


@pytest.mark.parametrize("table", [pytest.param(t, id=t) for t in TABLE_COLUMNS])
def test_stage_table_ddl_matches_the_result_model_columns(tmp_path: Path, table: str) -> None:
    with open_catalog(tmp_path / "c.duckdb") as con:
        columns = [r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
            "ORDER BY ordinal_position", [table],
        ).fetchall()]
    assert columns == ["stage_id", *TABLE_COLUMNS[table]]


def test_eval_metrics_ddl_holds_every_benchmark_result_field(tmp_path: Path) -> None:
    with open_catalog(tmp_path / "c.duckdb") as con:
        columns = {r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'eval_metrics'"
        ).fetchall()}
    # a benchmark's `metrics` mapping becomes one (metric, value) row per entry; `per_language` one per
    # language and entry
    fields = set(BenchmarkRecord.model_fields) - {"metrics", "per_language"}
    assert columns == {"stage_id", "metric", "value", *fields}
