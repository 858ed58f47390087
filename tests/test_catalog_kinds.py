"""Benchmark kinds in the catalog: rows carry kind, language and group; group averages; migration 1 -> 2."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tdro.catalog import ingest as cat
from tdro.catalog.connection import open_catalog, transaction
from tdro.catalog.query import run_sql
from tdro.catalog.schema import MIGRATIONS
from tdro.spec.stage_result import BenchmarkRecord, EvaluateResult

STAGE = "e" * 64


def _record(name: str, kind: str, group: str, metrics: dict[str, float], **more) -> BenchmarkRecord:
    return BenchmarkRecord(benchmark=name, kind=kind, benchmark_group=group, split="test", num_queries=3,
                           num_docs=4, top_k=10, ignore_identical_ids=False, metrics=metrics, **more)


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    """A catalog with one arm whose baseline evaluation holds a benchmark of every kind."""
    folder = tmp_path / "evaluate"
    folder.mkdir()
    EvaluateResult(stage_id=STAGE, wall_seconds=1.0, model_dir="m", benchmarks=[
        _record("beir-a", "retrieval", "BEIR", {"ndcg@10": 0.4}, language="en"),
        _record("beir-b", "retrieval", "BEIR", {"ndcg@10": 0.6}, language="en"),
        _record("mkqa", "answer_recall", "MKQA", {"accuracy@1": 0.5},
                per_language={"ar": {"accuracy@1": 0.4}, "de": {"accuracy@1": 0.6}}),
        _record("sts-stsb", "sts", "STS", {"cosine_spearman": 0.82}, language="en"),
    ]).write(folder)
    path = tmp_path / "c.duckdb"
    with transaction(path) as con:
        cat.record_experiment(con, name="x", spec_path="x.yaml", spec={}, datasets=[],
                              arms=[cat.ArmRecord("a", {}, {}, "minilm")],
                              links=[cat.StageLink(STAGE, "a", None, "baseline")])
        cat.ingest_stage(con, cat.StageRecord(stage_id=STAGE, kind="evaluate", folder=folder))
    return path


def test_results_rows_carry_kind_language_and_group(catalog: Path) -> None:
    rows = run_sql(catalog, "SELECT benchmark, kind, language, benchmark_group, metric, value FROM results "
                            "ORDER BY benchmark, language NULLS FIRST").rows
    assert rows == [
        ("beir-a", "retrieval", "en", "BEIR", "ndcg@10", 0.4),
        ("beir-b", "retrieval", "en", "BEIR", "ndcg@10", 0.6),
        ("mkqa", "answer_recall", None, "MKQA", "accuracy@1", 0.5),  # the mean over languages
        ("mkqa", "answer_recall", "ar", "MKQA", "accuracy@1", 0.4),
        ("mkqa", "answer_recall", "de", "MKQA", "accuracy@1", 0.6),
        ("sts-stsb", "sts", "en", "STS", "cosine_spearman", 0.82),
    ]


def test_group_results_average_each_benchmarks_score(catalog: Path) -> None:
    rows = run_sql(catalog, "SELECT benchmark_group, metric, value, benchmarks FROM group_results "
                            "ORDER BY benchmark_group").rows
    assert rows == [("BEIR", "ndcg@10", pytest.approx(0.5), 2), ("MKQA", "accuracy@1", 0.5, 1),
                    ("STS", "cosine_spearman", 0.82, 1)]


def test_a_version_1_catalog_migrates_and_its_rows_become_retrieval(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER, applied TIMESTAMP)")
    MIGRATIONS[0](con)
    con.execute("INSERT INTO schema_version VALUES (1, now())")
    con.execute("INSERT INTO eval_metrics VALUES (?, 'old', 'test', 'ndcg@10', 0.3, 1, 2, 10, false)",
                [STAGE])
    con.close()
    with open_catalog(path) as migrated:
        row = migrated.execute("SELECT benchmark, kind, language, benchmark_group FROM eval_metrics")
        row = row.fetchone()
    assert row == ("old", "retrieval", None, None)
