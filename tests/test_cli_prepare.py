"""`tdro data mine` and `tdro data dedup` on files, without a spec."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tdro.cli import main
from tdro.errors import USER_ERROR_EXIT_CODE

TINY_BEIR = Path(__file__).parent / "fixtures" / "tiny_beir"


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    words = ["bees", "rain", "ocean", "stars", "bread", "trains", "music", "snow"]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"query": f"about {w}", "positive": f"{w} facts"}) + "\n"
                            for w in words))
    return path


def test_dedup_removes_a_copied_test_query(tmp_path: Path, capsys) -> None:
    test_query = json.loads((TINY_BEIR / "queries.jsonl").open().readline())["text"]
    groups = tmp_path / "g.jsonl"
    groups.write_text("".join(json.dumps({"query": q, "positive_passages": [{"text": "p"}]}) + "\n"
                              for q in ("an unrelated question", test_query)))
    argv = ["data", "dedup", str(groups), "--benchmark", str(TINY_BEIR), "--out", str(tmp_path / "o.jsonl")]
    assert main(argv) == 0
    assert [json.loads(line)["query"] for line in (tmp_path / "o.jsonl").open()] == ["an unrelated question"]
    (removed,) = [json.loads(line) for line in (tmp_path / "o.removed.jsonl").open()]
    assert removed["query_id"] == "q1" and removed["test_query"] == test_query and removed["distance"] == 0


def test_mine_a_bad_pairs_line_is_one_error_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q"}\n')
    code = main(["data", "mine", str(bad), "--retriever", str(tmp_path), "--out", str(tmp_path / "o.jsonl")])
    assert code == USER_ERROR_EXIT_CODE
    assert capsys.readouterr().err.strip() == f"error: {bad}:1: missing field `positive` (or `pos`)"


@pytest.mark.slow
def test_mine_writes_groups_and_candidates(tmp_path: Path, pairs: Path, tiny_bert_dir: Path) -> None:
    out = tmp_path / "mined.jsonl"
    argv = ["data", "mine", str(pairs), "--retriever", str(tiny_bert_dir), "--out", str(out),
            "--negatives", "2", "--depth-start", "1", "--depth-end", "5", "--top-k", "5", "--pooling", "mean"]
    assert main(argv) == 0
    groups = [json.loads(line) for line in out.open()]
    assert len(groups) == 8 and all(len(g["negative_passages"]) == 2 for g in groups)
    assert pq.read_table(tmp_path / "mined.candidates.parquet").num_rows == 8
