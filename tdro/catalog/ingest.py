"""Writing to the catalog: an experiment's arms and stage links, and each finished stage's files.

Only the runner calls these, each inside one `connection.transaction(...)`: a stage is ingested whole
or not at all. Ingesting a stage again replaces its rows (idempotent). Registering an experiment
replaces its arms and links: the experiment is what its spec says now (compare variants with a sweep).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from tdro.spec.stage_result import (
    RESULT_FILE,
    DedupMatch,
    DedupResult,
    EvaluateResult,
    HoldoutResult,
    MineResult,
    OptimizeResult,
    TrainResult,
    read_result,
)
from tdro.weights_file import WeightsFile

STAGE_TABLES = ("mixture_weights", "trajectory_rows", "train_metrics", "eval_metrics", "prepare_rows",
                "duplicates", "remining_rows")
# Each stage table holds `stage_id` plus the columns of the file it comes from (checked by a test).
TABLE_COLUMNS = {
    "train_metrics": TrainResult.METRIC_COLUMNS,
    "remining_rows": TrainResult.REMINING_COLUMNS,
    "trajectory_rows": OptimizeResult.TRAJECTORY_COLUMNS,
    "duplicates": tuple(DedupMatch.model_fields),
}
PrepareResult = HoldoutResult | MineResult | DedupResult
AnyResult = TrainResult | OptimizeResult | EvaluateResult | PrepareResult
WEIGHT_SOURCES = ("initial", "curr", "mean", "ema")
_FIXED_ARM_COLUMNS = {"experiment", "arm", "assignments", "spec", "base_model"}


@dataclass(frozen=True)
class ArmRecord:
    name: str
    assignments: dict[str, Any]
    spec: dict[str, Any]  # the arm's resolved spec as plain JSON data
    base_model: str


@dataclass(frozen=True)
class StageLink:
    stage_id: str
    arm: str
    measure: str | None
    transfer: str | None  # baseline | a transfer label | None (stage 1)


@dataclass(frozen=True)
class DatasetRecord:
    name: str
    fingerprint: str
    path: str
    language: str
    category: str
    symmetric: bool


@dataclass
class StageRecord:
    stage_id: str
    kind: str
    folder: Path  # the complete stage folder (or the partial one, for a failure)
    inputs: list[str] = field(default_factory=list)
    identity: dict[str, Any] = field(default_factory=dict)
    started: datetime | None = None
    finished: datetime | None = None
    git_commit: str | None = None
    dataset_fingerprints: dict[str, str] = field(default_factory=dict)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalar leaves keyed by path joined with `_`; lists become JSON text."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}_"))
        elif isinstance(value, list):
            out[name] = json.dumps(value, sort_keys=True)
        else:
            out[name] = value
    return out


def _sql_type(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int):
        return "BIGINT"
    if isinstance(value, float):
        return "DOUBLE"
    return "VARCHAR"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def record_experiment(
    con: duckdb.DuckDBPyConnection,
    *,
    name: str,
    spec_path: str,
    spec: dict[str, Any],
    arms: list[ArmRecord],
    links: list[StageLink],
    datasets: list[DatasetRecord],
) -> None:
    """Replace the experiment's row, arms and stage links; add datasets not seen before."""
    con.execute("DELETE FROM experiments WHERE name = ?", [name])
    con.execute("INSERT INTO experiments VALUES (?, ?, ?, now())", [name, spec_path, json.dumps(spec)])
    con.execute("DELETE FROM arms WHERE experiment = ?", [name])
    existing = {row[0] for row in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'arms'"
    ).fetchall()}
    for arm in arms:
        flat = {k: v for k, v in flatten(arm.spec).items() if k not in _FIXED_ARM_COLUMNS}
        flat = {k: v for k, v in flat.items() if not k.startswith("sweep")}
        for column, value in flat.items():
            if column not in existing and value is not None:
                con.execute(f"ALTER TABLE arms ADD COLUMN IF NOT EXISTS {_ident(column)} {_sql_type(value)}")
                existing.add(column)
        columns = ["experiment", "arm", "assignments", "spec", "base_model"]
        columns += [c for c in flat if c in existing]
        values = [name, arm.name, json.dumps(arm.assignments), json.dumps(arm.spec), arm.base_model]
        values += [flat[c] for c in columns[5:]]
        marks = ", ".join("?" for _ in columns)
        con.execute(f"INSERT INTO arms ({', '.join(map(_ident, columns))}) VALUES ({marks})", values)
    con.execute("DELETE FROM stage_arms WHERE experiment = ?", [name])
    unique = sorted(set(links), key=lambda link: (link.stage_id, link.arm, link.transfer or ""))
    if unique:
        con.executemany(
            "INSERT INTO stage_arms VALUES (?, ?, ?, ?, ?)",
            [[link.stage_id, name, link.arm, link.measure, link.transfer] for link in unique],
        )
    for ds in datasets:
        seen = con.execute(
            "SELECT count(*) FROM datasets WHERE name = ? AND fingerprint = ?", [ds.name, ds.fingerprint]
        ).fetchone()
        if not seen or not seen[0]:
            con.execute(
                "INSERT INTO datasets VALUES (?, ?, ?, NULL, ?, ?, ?)",
                [ds.name, ds.fingerprint, ds.path, ds.language, ds.category, ds.symmetric],
            )


def stage_is_ingested(con: duckdb.DuckDBPyConnection, stage_id: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM stages WHERE stage_id = ? AND status = 'complete'", [stage_id]
    ).fetchone()
    return bool(row and row[0])


def complete_stage_ids(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute("SELECT stage_id FROM stages WHERE status = 'complete'").fetchall()}


def _delete_stage(con: duckdb.DuckDBPyConnection, stage_id: str) -> None:
    con.execute("DELETE FROM stages WHERE stage_id = ?", [stage_id])
    for table in STAGE_TABLES:
        con.execute(f"DELETE FROM {table} WHERE stage_id = ?", [stage_id])


def _insert_stage_row(
    con: duckdb.DuckDBPyConnection, record: StageRecord, status: str,
    result: AnyResult | None,
) -> None:
    if result is not None:
        seconds: float | None = result.wall_seconds
    elif record.started and record.finished:
        seconds = (record.finished - record.started).total_seconds()
    else:
        seconds = None
    con.execute(
        "INSERT INTO stages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
        [record.stage_id, record.kind, status, record.started, record.finished, seconds, record.git_commit,
         str(record.folder), json.dumps(record.inputs), json.dumps(record.identity),
         result.model_dump_json() if result is not None else None],
    )


def _insert_parquet(con: duckdb.DuckDBPyConnection, table: str, stage_id: str, path: Path) -> None:
    """Rows of a stage's parquet file, in the columns its result model states."""
    columns = TABLE_COLUMNS[table]
    con.execute(
        f"INSERT INTO {table} (stage_id, {', '.join(map(_ident, columns))}) "
        f"SELECT ?, {', '.join(map(_ident, columns))} FROM read_parquet(?)",
        [stage_id, str(path)],
    )


def _insert_train(con: duckdb.DuckDBPyConnection, stage_id: str, folder: Path, result: TrainResult) -> None:
    rows = [[stage_id, name, w] for name, w in result.mixture.items()]
    if rows:
        con.executemany("INSERT INTO mixture_weights VALUES (?, 'mixture', ?, ?)", rows)
    _insert_parquet(con, "train_metrics", stage_id, folder / result.metrics_file)
    if result.remining_file is not None:
        _insert_parquet(con, "remining_rows", stage_id, folder / result.remining_file)


def _insert_optimize(
    con: duckdb.DuckDBPyConnection, stage_id: str, folder: Path, result: OptimizeResult
) -> None:
    weights = WeightsFile.model_validate_json((folder / result.weights_file).read_text())
    rows = [
        [stage_id, source, name, w]
        for source in WEIGHT_SOURCES
        for name, w in (getattr(weights, source) or {}).items()
    ]
    if rows:
        con.executemany("INSERT INTO mixture_weights VALUES (?, ?, ?, ?)", rows)
    _insert_parquet(con, "trajectory_rows", stage_id, folder / result.trajectory_file)


def _insert_prepare(
    con: duckdb.DuckDBPyConnection, record: StageRecord, folder: Path, result: PrepareResult
) -> None:
    """One `prepare_rows` row; a dedup stage's removed rows into `duplicates`."""
    params: dict[str, Any] | None
    if isinstance(result, HoldoutResult):
        counts = [result.empty_dropped, None, None, None, None, None]
        retriever = None
        params = {**record.identity.get("holdout", {}), "benchmark": result.benchmark,
                  "test_queries": result.test_queries, "test_qrels": result.test_qrels,
                  "test_corpus": result.test_corpus, "train_queries": result.train_queries,
                  "unused_queries": result.unused_queries}
    elif isinstance(result, MineResult):
        counts = [result.empty_dropped, result.no_candidates_dropped, result.short_groups,
                  result.negatives_total, result.false_negatives_removed, None]
        retriever, params = record.identity.get("model_weights"), record.identity.get("mine")
    else:
        counts = [None, None, None, None, None, result.removed]
        retriever, params = None, {**record.identity.get("dedup", {}), "benchmarks": result.benchmarks}
    con.execute(
        "INSERT INTO prepare_rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [record.stage_id, result.kind, result.dataset, result.rows_in, result.rows_out, *counts, retriever,
         json.dumps(params)],
    )
    if isinstance(result, DedupResult):
        columns = TABLE_COLUMNS["duplicates"]
        with (folder / result.removed_file).open() as handle:
            rows = [[record.stage_id, *DedupMatch.model_validate_json(line).model_dump().values()]
                    for line in handle if line.strip()]
        if rows:
            con.executemany(f"INSERT INTO duplicates (stage_id, {', '.join(columns)}) "
                            f"VALUES ({', '.join('?' for _ in range(len(columns) + 1))})", rows)


def _insert_evaluate(con: duckdb.DuckDBPyConnection, stage_id: str, result: EvaluateResult) -> None:
    """One row per metric of each benchmark (language: the record's), and for answer_recall one per
    language and metric as well."""
    rows = [
        [stage_id, b.benchmark, b.split, metric, value, b.num_queries, b.num_docs, b.top_k,
         b.ignore_identical_ids, b.kind.value, b.benchmark_group, language]
        for b in result.benchmarks
        for language, metrics in [(b.language, b.metrics), *b.per_language.items()]
        for metric, value in metrics.items()
    ]
    if rows:
        con.executemany(
            "INSERT INTO eval_metrics (stage_id, benchmark, split, metric, value, num_queries, num_docs, "
            "top_k, ignore_identical_ids, kind, benchmark_group, language) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def ingest_stage(con: duckdb.DuckDBPyConnection, record: StageRecord) -> AnyResult:
    """Replace everything the catalog holds about this stage with what its complete folder holds."""
    folder = record.folder
    try:
        result = read_result(folder)
    except ValueError as exc:
        raise ValueError(f"{folder / RESULT_FILE}: not a complete stage result ({exc})") from None
    if result.kind != record.kind:
        raise ValueError(f"{folder / RESULT_FILE}: kind {result.kind}, but the stage is {record.kind}")
    _delete_stage(con, record.stage_id)
    _insert_stage_row(con, record, "complete", result)
    if isinstance(result, TrainResult | OptimizeResult):
        for ds in result.datasets:
            fingerprint = record.dataset_fingerprints.get(ds.name)
            if fingerprint:
                con.execute(
                    "UPDATE datasets SET rows = ? WHERE name = ? AND fingerprint = ?",
                    [ds.rows, ds.name, fingerprint],
                )
    if isinstance(result, TrainResult):
        _insert_train(con, record.stage_id, folder, result)
    elif isinstance(result, OptimizeResult):
        _insert_optimize(con, record.stage_id, folder, result)
    elif isinstance(result, EvaluateResult):
        _insert_evaluate(con, record.stage_id, result)
    else:
        _insert_prepare(con, record, folder, result)
    return result


def record_failure(con: duckdb.DuckDBPyConnection, record: StageRecord) -> None:
    """A failed stage is listed (for `tdro status`) with no data; a later success replaces it."""
    _delete_stage(con, record.stage_id)
    _insert_stage_row(con, record, "failed", None)
