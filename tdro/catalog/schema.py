"""The catalog schema, versioned: `schema_version` holds the applied version; migrations are functions.

Tables (one concept each; `stage_id` is the full 64-hex stage id):
- `experiments(name, spec_path, spec, updated)` — the resolved spec as JSON.
- `arms(experiment, arm, assignments, spec, base_model, <flattened spec columns>)` — one row per arm; each
  scalar leaf of the arm's spec becomes a column named by its path joined with `_` (`dro_measure`,
  `dro_eta`, `train_steps`, ...; lists are JSON text). New spec fields add columns on ingest.
- `stages(stage_id, kind, status, started, finished, seconds, git_commit, output_dir, inputs, identity,
  result, ingested)` — status is `complete` or `failed`.
- `stage_arms(stage_id, experiment, arm, measure, transfer)` — which arm uses which stage in which role:
  `transfer` is `zero_shot` for the base model's evaluation, `baseline` for the reference model and its
  evaluation, a transfer label (`top_percent_70`,
  `reweight`, `uniform`) for a stage-2 model and its evaluation, NULL for stage 1.
- `datasets(name, fingerprint, path, rows, language, category, is_symmetric)`.
- `mixture_weights(stage_id, source, dataset, weight)` — source `initial|curr|mean|ema` for stage 1,
  `mixture` for the sampling weights a training stage used.
- `trajectory_rows(stage_id, <OptimizeResult.TRAJECTORY_COLUMNS>)`, `train_metrics(stage_id,
  <TrainResult.METRIC_COLUMNS>)`: a stage's parquet file as `tdro.spec.stage_result` states it (a test
  checks the DDL below against those tuples); `eval_metrics(stage_id, benchmark, split, metric, value,
  num_queries, num_docs, top_k, ignore_identical_ids, kind, benchmark_group, language)`: one row per
  `BenchmarkRecord` metric, and for answer_recall also per language (version 2 added the last three).
- `prepare_rows(stage_id, kind, dataset, rows_in, rows_out, empty_dropped, no_candidates_dropped,
  short_groups, negatives_total, false_negatives_removed, duplicates_removed, retriever, params)`: one
  row per holdout, mine or dedup stage (`HoldoutResult`, `MineResult`, `DedupResult`; a count a kind does
  not make is NULL, a holdout's test-set sizes are in `params`; v3, holdout first in the view: v4);
  `duplicates(stage_id, <DedupMatch's fields>)`: each training row dedup removed, with its test query.
- `remining_rows(stage_id, <TrainResult.REMINING_COLUMNS>)`: each re-mining check of a training stage
  and dataset (`train.remine`; v5).
Views (the public surface): `results`, `group_results`, `weights`, `trajectory`, `preparation`,
`remining` — see `VIEWS`.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb

from tdro.errors import UserError

Migration = Callable[[duckdb.DuckDBPyConnection], None]

# `stage_arms.transfer` of the models every arm shares: the base model itself and the stage-0 model
ZERO_SHOT = "zero_shot"
BASELINE = "baseline"
SHARED_TRANSFERS = (ZERO_SHOT, BASELINE)
# results in model order: zero-shot, baseline, then the transfers
MODEL_ORDER = f"transfer = '{ZERO_SHOT}' DESC, transfer = '{BASELINE}' DESC, transfer"


def _v1(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("""
        CREATE TABLE experiments (
            name VARCHAR NOT NULL, spec_path VARCHAR, spec JSON, updated TIMESTAMP
        );
        CREATE TABLE arms (
            experiment VARCHAR NOT NULL, arm VARCHAR NOT NULL, assignments JSON, spec JSON,
            base_model VARCHAR
        );
        CREATE TABLE stages (
            stage_id VARCHAR NOT NULL, kind VARCHAR NOT NULL, status VARCHAR NOT NULL,
            started TIMESTAMP, finished TIMESTAMP, seconds DOUBLE, git_commit VARCHAR,
            output_dir VARCHAR, inputs JSON, identity JSON, result JSON, ingested TIMESTAMP
        );
        CREATE TABLE stage_arms (
            stage_id VARCHAR NOT NULL, experiment VARCHAR NOT NULL, arm VARCHAR NOT NULL,
            measure VARCHAR, transfer VARCHAR
        );
        CREATE TABLE datasets (
            name VARCHAR NOT NULL, fingerprint VARCHAR NOT NULL, path VARCHAR, rows BIGINT,
            language VARCHAR, category VARCHAR, is_symmetric BOOLEAN
        );
        CREATE TABLE mixture_weights (
            stage_id VARCHAR NOT NULL, source VARCHAR NOT NULL, dataset VARCHAR NOT NULL, weight DOUBLE
        );
        CREATE TABLE trajectory_rows (
            stage_id VARCHAR NOT NULL, step BIGINT, dataset VARCHAR, alpha DOUBLE, alpha_mean DOUBLE,
            alpha_ema DOUBLE, group_measure DOUBLE, proxy_loss DOUBLE, ref_loss DOUBLE, samples BIGINT
        );
        CREATE TABLE train_metrics (
            stage_id VARCHAR NOT NULL, step BIGINT, loss DOUBLE, lr DOUBLE, dataset VARCHAR,
            grad_norm DOUBLE, seconds DOUBLE
        );
        CREATE TABLE eval_metrics (
            stage_id VARCHAR NOT NULL, benchmark VARCHAR NOT NULL, split VARCHAR, metric VARCHAR NOT NULL,
            value DOUBLE, num_queries BIGINT, num_docs BIGINT, top_k BIGINT, ignore_identical_ids BOOLEAN
        );
    """)
    for sql in _V1_VIEWS.values():
        con.execute(sql)


def _v2(con: duckdb.DuckDBPyConnection) -> None:
    """Benchmark kinds: each eval_metrics row says its kind, group and language; `group_results` view."""
    con.execute("""
        ALTER TABLE eval_metrics ADD COLUMN kind VARCHAR DEFAULT 'retrieval';
        ALTER TABLE eval_metrics ADD COLUMN benchmark_group VARCHAR;
        ALTER TABLE eval_metrics ADD COLUMN language VARCHAR;
    """)
    for view in ("results", "group_results"):  # the views version 2 changed or added
        con.execute(VIEWS[view])


def _v3(con: duckdb.DuckDBPyConnection) -> None:
    """Data preparation: what each mine and dedup stage did (`prepare_rows`, `duplicates`, `preparation`)."""
    con.execute("""
        CREATE TABLE prepare_rows (
            stage_id VARCHAR NOT NULL, kind VARCHAR NOT NULL, dataset VARCHAR NOT NULL, rows_in BIGINT,
            rows_out BIGINT, empty_dropped BIGINT, no_candidates_dropped BIGINT, short_groups BIGINT,
            negatives_total BIGINT, false_negatives_removed BIGINT, duplicates_removed BIGINT,
            retriever VARCHAR, params JSON
        );
        CREATE TABLE duplicates (
            stage_id VARCHAR NOT NULL, query_id VARCHAR, query VARCHAR, benchmark VARCHAR,
            test_query_id VARCHAR, test_query VARCHAR, distance BIGINT
        );
    """)
    con.execute(VIEWS["preparation"])


# The views as version 1 made them (a released migration never changes; `VIEWS` is the current set).
_V1_VIEWS: dict[str, str] = {
    "results": """
        CREATE OR REPLACE VIEW results AS
        SELECT sa.experiment, sa.arm, sa.measure, sa.transfer, a.base_model,
               m.benchmark, m.metric, m.value, m.stage_id
        FROM eval_metrics m
        JOIN stage_arms sa ON sa.stage_id = m.stage_id
        JOIN arms a ON a.experiment = sa.experiment AND a.arm = sa.arm
    """,
}

VIEWS: dict[str, str] = {
    # A stage shared by several arms appears once per arm; the reference model's evaluation is the
    # `baseline` (measure NULL), a stage-2 model's carries its transfer label and its stage 1's measure.
    # An answer_recall benchmark has one row per language and metric, and its mean over languages with
    # language NULL; retrieval and sts rows carry the card's language.
    "results": """
        CREATE OR REPLACE VIEW results AS
        SELECT sa.experiment, sa.arm, sa.measure, sa.transfer, a.base_model,
               m.benchmark, m.metric, m.value, m.stage_id, m.kind, m.language, m.benchmark_group
        FROM eval_metrics m
        JOIN stage_arms sa ON sa.stage_id = m.stage_id
        JOIN arms a ON a.experiment = sa.experiment AND a.arm = sa.arm
    """,
    # The average per benchmark group (BEIR, CQADupstack, MIRACL, MKQA, ...) of each benchmark's score
    # (for answer_recall its mean over languages), per arm, transfer and metric.
    "group_results": """
        CREATE OR REPLACE VIEW group_results AS
        SELECT experiment, arm, measure, transfer, base_model, benchmark_group, metric,
               avg(value) AS value, count(DISTINCT benchmark) AS benchmarks
        FROM results
        WHERE benchmark_group IS NOT NULL AND NOT (kind = 'answer_recall' AND language IS NOT NULL)
        GROUP BY ALL
    """,
    "weights": """
        CREATE OR REPLACE VIEW weights AS
        SELECT sa.experiment, sa.arm, sa.measure, w.source, w.dataset, w.weight, w.stage_id
        FROM mixture_weights w
        JOIN stage_arms sa ON sa.stage_id = w.stage_id
        WHERE w.source IN ('curr', 'mean', 'ema')
    """,
    "trajectory": """
        CREATE OR REPLACE VIEW trajectory AS
        SELECT sa.experiment, sa.arm, sa.measure, t.step, t.dataset, t.alpha, t.group_measure,
               t.proxy_loss, t.ref_loss
        FROM trajectory_rows t
        JOIN stage_arms sa ON sa.stage_id = t.stage_id
    """,
    # How many groups re-mining gave new negatives, per check: one row per arm, model, step and dataset.
    "remining": """
        CREATE OR REPLACE VIEW remining AS
        SELECT sa.experiment, sa.arm, sa.measure, sa.transfer, r.step, r.dataset, r.groups_checked,
               r.groups_remined, r.exhausted, r.stage_id
        FROM remining_rows r
        JOIN stage_arms sa ON sa.stage_id = r.stage_id
    """,
    # "What did preparation do to my data": one row per arm, dataset and prepare stage, in graph order.
    "preparation": """
        CREATE OR REPLACE VIEW preparation AS
        SELECT sa.experiment, sa.arm, p.dataset, p.kind, p.rows_in, p.rows_out, p.empty_dropped,
               p.no_candidates_dropped, p.short_groups,
               CASE WHEN p.rows_out > 0 THEN p.negatives_total / p.rows_out END AS negatives_per_group,
               p.false_negatives_removed, p.duplicates_removed, p.retriever, p.params, p.stage_id
        FROM prepare_rows p
        JOIN stage_arms sa ON sa.stage_id = p.stage_id
        ORDER BY sa.experiment, sa.arm, p.dataset,
                 CASE p.kind WHEN 'holdout' THEN 0 WHEN 'mine' THEN 1 ELSE 2 END
    """,
}
_V1_VIEWS["weights"], _V1_VIEWS["trajectory"] = VIEWS["weights"], VIEWS["trajectory"]


def _v4(con: duckdb.DuckDBPyConnection) -> None:
    """Holdout stages (`prepare_rows` kind `holdout`, its counts in `params`) come first in `preparation`."""
    con.execute(VIEWS["preparation"])


def _v5(con: duckdb.DuckDBPyConnection) -> None:
    """Dynamic re-mining: each check's counts (`remining_rows`, `remining`)."""
    con.execute("""
        CREATE TABLE remining_rows (
            stage_id VARCHAR NOT NULL, step BIGINT, dataset VARCHAR, groups_checked BIGINT,
            groups_remined BIGINT, exhausted BIGINT
        );
    """)
    con.execute(VIEWS["remining"])


# Append-only: version i+1 is MIGRATIONS[i]. Never edit a released migration; add one.
MIGRATIONS: list[Migration] = [_v1, _v2, _v3, _v4, _v5]
SCHEMA_VERSION = len(MIGRATIONS)


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
    ).fetchone()
    if not exists or not exists[0]:
        return 0
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Bring the catalog to SCHEMA_VERSION, each migration in its own transaction. Returns the version."""
    version = current_version(con)
    if version > SCHEMA_VERSION:
        raise UserError(f"catalog schema version {version} is newer than this tdro ({SCHEMA_VERSION})")
    while version < SCHEMA_VERSION:
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER, applied TIMESTAMP)")
            MIGRATIONS[version](con)
            version += 1
            con.execute("INSERT INTO schema_version VALUES (?, now())", [version])
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
    return version
