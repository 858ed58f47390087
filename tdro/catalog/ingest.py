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

from tdro.spec.stage_file import RESULT_FILE

STAGE_TABLES = ("mixture_weights", "trajectory_rows", "train_metrics", "eval_metrics")
TRAJECTORY_COLUMNS = (
    "step", "dataset", "alpha", "alpha_mean", "alpha_ema", "group_measure", "proxy_loss", "ref_loss",
    "samples",
)
TRAIN_COLUMNS = ("step", "loss", "lr", "dataset", "grad_norm", "seconds")
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


def _insert_stage_row(con: duckdb.DuckDBPyConnection, record: StageRecord, status: str, result: Any) -> None:
    seconds = None
    if isinstance(result, dict) and isinstance(result.get("wall_seconds"), int | float):
        seconds = float(result["wall_seconds"])
    elif record.started and record.finished:
        seconds = (record.finished - record.started).total_seconds()
    con.execute(
        "INSERT INTO stages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
        [record.stage_id, record.kind, status, record.started, record.finished, seconds, record.git_commit,
         str(record.folder), json.dumps(record.inputs), json.dumps(record.identity),
         json.dumps(result) if result is not None else None],
    )


def _insert_parquet(
    con: duckdb.DuckDBPyConnection, table: str, stage_id: str, path: Path, columns: tuple[str, ...]
) -> None:
    """Rows of a stage's parquet file; a column the job did not write is NULL."""
    present = {d[0] for d in con.execute("SELECT * FROM read_parquet(?) LIMIT 0", [str(path)]).description}
    select = ", ".join(_ident(c) if c in present else f"NULL AS {_ident(c)}" for c in columns)
    con.execute(
        f"INSERT INTO {table} (stage_id, {', '.join(map(_ident, columns))}) "
        f"SELECT ?, {select} FROM read_parquet(?)",
        [stage_id, str(path)],
    )


def ingest_stage(con: duckdb.DuckDBPyConnection, record: StageRecord) -> dict[str, Any]:
    """Replace everything the catalog holds about this stage with what its complete folder holds."""
    folder = record.folder
    result = json.loads((folder / RESULT_FILE).read_text())
    if result.get("status") != "complete":
        raise ValueError(f"{folder / RESULT_FILE}: status is {result.get('status')!r}, not 'complete'")
    _delete_stage(con, record.stage_id)
    _insert_stage_row(con, record, "complete", result)
    kind = record.kind
    for ds in result.get("datasets") or []:
        fingerprint = record.dataset_fingerprints.get(ds.get("name"))
        if fingerprint and ds.get("rows") is not None:
            con.execute(
                "UPDATE datasets SET rows = ? WHERE name = ? AND fingerprint = ?",
                [int(ds["rows"]), ds["name"], fingerprint],
            )
    if kind in ("reference", "train"):
        mixture = result.get("mixture") or {}
        if mixture:
            con.executemany(
                "INSERT INTO mixture_weights VALUES (?, 'mixture', ?, ?)",
                [[record.stage_id, name, float(w)] for name, w in mixture.items()],
            )
        metrics = folder / "metrics.parquet"
        if metrics.exists():
            _insert_parquet(con, "train_metrics", record.stage_id, metrics, TRAIN_COLUMNS)
    elif kind == "optimize":
        weights = json.loads((folder / result.get("weights_file", "weights.json")).read_text())
        rows = [
            [record.stage_id, source, name, float(w)]
            for source in ("initial", "curr", "mean", "ema")
            for name, w in (weights.get(source) or {}).items()
        ]
        if rows:
            con.executemany("INSERT INTO mixture_weights VALUES (?, ?, ?, ?)", rows)
        trajectory = folder / "trajectory.parquet"
        if trajectory.exists():
            _insert_parquet(con, "trajectory_rows", record.stage_id, trajectory, TRAJECTORY_COLUMNS)
    elif kind == "evaluate":
        rows = [
            [record.stage_id, b["benchmark"], b.get("split"), metric, float(value), b.get("num_queries"),
             b.get("num_docs"), b.get("top_k"), b.get("ignore_identical_ids")]
            for b in result.get("benchmarks") or []
            for metric, value in (b.get("metrics") or {}).items()
        ]
        if rows:
            con.executemany("INSERT INTO eval_metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return result


def record_failure(con: duckdb.DuckDBPyConnection, record: StageRecord) -> None:
    """A failed stage is listed (for `tdro status`) with no data; a later success replaces it."""
    _delete_stage(con, record.stage_id)
    _insert_stage_row(con, record, "failed", None)
