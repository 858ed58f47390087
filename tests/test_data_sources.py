"""Dataset sources: pairs files in every accepted shape, BEIR splits, bad lines, empty texts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tdro.data.sources import read_beir_split, read_pairs
from tdro.errors import UserError

SHARED = Path("/work/shared/data")
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="shared data not on this machine")


@pytest.fixture
def pairs_file(tmp_path: Path) -> Path:
    rows = [
        {"query": "q0", "positive": "p0", "title": "t0"},
        ["q1", "p1"],
        {"query": "q2", "pos": ["p2a", "p2b"]},
        {"set": ["q3", "p0"]},
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    return path


def write_lines(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "p.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_every_shape_is_read(pairs_file: Path) -> None:
    data = read_pairs(pairs_file)
    assert [g.query for g in data.groups] == ["q0", "q1", "q2", "q3"]
    assert [p.full_text for p in data.passages] == ["t0 p0", "p1", "p2a", "p2b", "p0"]
    assert [g.positives for g in data.groups] == [(0,), (1,), (2, 3), (4,)]


def test_distinct_passages_are_shared(tmp_path: Path) -> None:
    data = read_pairs(write_lines(tmp_path, '["a", "same"]', '["b", "same"]'))
    assert len(data.passages) == 1 and [g.positives for g in data.groups] == [(0,), (0,)]


@pytest.mark.parametrize(("line", "reason"), [
    pytest.param("{oops", "malformed JSON", id="json"),
    pytest.param('{"query": "q"}', "missing field `positive`", id="no-positive"),
    pytest.param('{"positive": "p"}', "missing field `query`", id="no-query"),
    pytest.param('["only"]', "needs a query and at least one positive", id="short-list"),
    pytest.param('{"set": ["q", 3]}', "set must be a list of strings", id="set-type"),
    pytest.param("7", "a JSON object or a list", id="scalar"),
])
def test_bad_line_is_named_by_file_and_line(tmp_path: Path, line: str, reason: str) -> None:
    path = write_lines(tmp_path, '["fine", "row"]', line)
    with pytest.raises(UserError) as err:
        read_pairs(path)
    assert err.value.problems[0].startswith(f"{path}:2: ")
    assert reason in err.value.problems[0]


def test_empty_texts_are_dropped_and_counted(tmp_path: Path) -> None:
    data = read_pairs(write_lines(tmp_path, '["  ", "p"]', '["q", ""]', '{"query": "q", "pos": ["", "p"]}'))
    assert (data.rows_in, len(data.groups), data.empty_dropped, data.empty_positives) == (3, 1, 2, 1)


@needs_shared
def test_shared_pairs_files_read_whole() -> None:
    for path in sorted((SHARED / "train").glob("*/pairs.jsonl")):
        data = read_pairs(path)
        lines = sum(1 for line in path.open() if line.strip())
        assert data.rows_in == lines and len(data.groups) + data.empty_dropped == lines, path


@needs_shared
def test_scifact_train_split_has_809_queries_with_qrels_positives() -> None:
    data = read_beir_split(SHARED / "beir" / "scifact", "train")
    assert len(data.groups) == 809 and len(data.passages) == 5183
    first = data.groups[0]
    assert first.query_id == "0" and [data.doc_ids[i] for i in first.positives] == ["31715818"]
