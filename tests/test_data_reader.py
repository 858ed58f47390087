"""The JSONL reader: each bad-line case named file:line, cached index, random access, folders, data check."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tdro.cli import main
from tdro.cli.data import app
from tdro.data.reader import JsonlReader
from tdro.errors import USER_ERROR_EXIT_CODE, UserError


def group(q: str, pos: list, neg: list | None = None) -> dict:
    out = {"query": q, "positive_passages": pos}
    if neg is not None:
        out["negative_passages"] = neg
    return out


GOOD = [
    group("first query", [{"docid": "p1", "title": "T", "text": "pos one"}],
          [{"text": "neg a"}, {"text": "neg b"}]),
    group("second query", [{"text": "pos two"}], [{"title": "", "text": "neg c"}]),
    group("third query", [{"text": "pos three"}, {"text": "pos four"}]),
]

BAD_CASES = {
    "invalid JSON": '{"query": "x", "positive_passages": [',
    "missing field `query`": json.dumps({"positive_passages": [{"text": "p"}]}),
    "missing field `positive_passages`": json.dumps({"query": "x"}),
    "no positive passages": json.dumps(group("x", [])),
    "empty query": json.dumps(group("   ", [{"text": "p"}])),
    "Expected `str`, got `int` - at `$.query`": json.dumps(group(7, [{"text": "p"}])),
    "Expected `str`, got `int` - at `$.positive_passages[0].text`": json.dumps(group("x", [{"text": 5}])),
    "Expected `array`, got `str` - at `$.negative_passages`": json.dumps(group("x", [{"text": "p"}], "n")),
    "missing field `text` - at `$.negative_passages[0]`": json.dumps(group("x", [{"text": "p"}], [{"t": 1}])),
    "Expected `object`, got `array`": json.dumps([1, 2]),
}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_reads_rows_randomly_with_titles_and_blank_lines(tmp_path):
    lines = [json.dumps(g) for g in GOOD]
    # a blank line in the middle and no newline at the end: neither is a row nor an error
    path = tmp_path / "d.jsonl"
    path.write_text(lines[0] + "\n\n" + lines[1] + "\n" + lines[2])
    reader = JsonlReader(path, cache_dir=tmp_path / "idx")
    assert len(reader) == 3
    assert reader[2].query == "third query"
    assert [p.text for p in reader[2].positives] == ["pos three", "pos four"]
    assert reader[2].negatives == []  # absent negative_passages reads as empty
    first = reader[0]
    assert first.positives[0].docid == "p1"
    assert first.positives[0].full_text == "T pos one"  # title + " " + text
    assert first.negatives[0].full_text == "neg a"  # no title key: the text alone
    assert reader[1].negatives[0].full_text == " neg c"  # empty title keeps its space (no strip)
    assert reader[-1].query == "third query"
    with pytest.raises(IndexError):
        reader[3]
    assert [g.query for g in reader] == ["first query", "second query", "third query"]


@pytest.mark.parametrize("reason", list(BAD_CASES))
def test_each_bad_line_is_named_by_file_and_line(tmp_path, reason):
    path = write_lines(tmp_path / "bad.jsonl", [json.dumps(GOOD[0]), json.dumps(GOOD[1]), BAD_CASES[reason]])
    with pytest.raises(UserError) as err:
        JsonlReader(path, cache_dir=tmp_path / "idx")
    first = err.value.problems[0]
    assert first.startswith(f"{path}:3: ")
    if reason == "invalid JSON":
        assert first.startswith(f"{path}:3: invalid JSON")
    else:
        assert first == f"{path}:3: {reason}"


def test_skip_bad_lines_keeps_the_good_rows_and_lists_the_rest(tmp_path):
    lines = [json.dumps(GOOD[0]), BAD_CASES["empty query"], json.dumps(GOOD[1]), BAD_CASES["invalid JSON"]]
    path = write_lines(tmp_path / "mixed.jsonl", lines)
    with pytest.raises(UserError) as err:
        JsonlReader(path, cache_dir=tmp_path / "idx")
    assert err.value.problems[0] == f"{path}:2: empty query"
    assert "1 more bad line" in err.value.problems[1]
    reader = JsonlReader(path, skip_bad_lines=True, cache_dir=tmp_path / "idx")
    assert [g.query for g in reader] == ["first query", "second query"]
    assert reader.skipped[0] == f"{path}:2: empty query"
    assert reader.skipped[1].startswith(f"{path}:4: invalid JSON")
    assert len(reader.skipped) == 2


def test_index_is_built_once_and_invalidated_by_a_change(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [json.dumps(g) for g in GOOD])
    idx = tmp_path / "idx"
    first = JsonlReader(path, cache_dir=idx)
    assert first.built_files == [path]
    assert len(list(idx.glob("*.npz"))) == 1
    second = JsonlReader(path, cache_dir=idx)
    assert second.built_files == []  # read from the cache, not rebuilt
    assert second.fingerprint == first.fingerprint and second[1] == first[1]
    # a change of content (size and mtime) gives a new key: rebuilt, new fingerprint
    write_lines(path, [json.dumps(g) for g in GOOD[:2]])
    os.utime(path, ns=(1, 1))
    third = JsonlReader(path, cache_dir=idx)
    assert third.built_files == [path] and len(third) == 2 and third.fingerprint != first.fingerprint


def test_default_index_dir_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TDRO_INDEX_DIR", str(tmp_path / "env_idx"))
    path = write_lines(tmp_path / "d.jsonl", [json.dumps(GOOD[0])])
    JsonlReader(path)
    assert len(list((tmp_path / "env_idx").glob("*.npz"))) == 1


def test_a_folder_is_one_dataset_in_name_order(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    write_lines(folder / "b.jsonl", [json.dumps(GOOD[2])])
    write_lines(folder / "a.jsonl", [json.dumps(GOOD[0]), json.dumps(GOOD[1])])
    (folder / "notes.txt").write_text("not data")
    reader = JsonlReader(folder, cache_dir=tmp_path / "idx")
    assert [g.query for g in reader] == ["first query", "second query", "third query"]
    # the fingerprint hashes content and names inside the folder, not where the folder is
    moved = tmp_path / "moved"
    folder.rename(moved)
    assert JsonlReader(moved, cache_dir=tmp_path / "idx").fingerprint == reader.fingerprint
    with pytest.raises(UserError, match="no such file or folder"):
        JsonlReader(tmp_path / "missing.jsonl", cache_dir=tmp_path / "idx")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no \\*.jsonl files"):
        JsonlReader(tmp_path / "empty", cache_dir=tmp_path / "idx")


def test_reader_survives_pickling(tmp_path):
    import pickle

    path = write_lines(tmp_path / "d.jsonl", [json.dumps(g) for g in GOOD])
    reader = JsonlReader(path, cache_dir=tmp_path / "idx")
    reader[0]
    clone = pickle.loads(pickle.dumps(reader))
    assert clone[1] == reader[1]


def test_data_check_command_reports_rows_lengths_and_problems(tmp_path, monkeypatch):
    monkeypatch.setenv("TDRO_INDEX_DIR", str(tmp_path / "idx"))
    good = write_lines(tmp_path / "good.jsonl", [json.dumps(g) for g in GOOD])
    result = CliRunner().invoke(app, ["check", str(good), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["rows"] == 3 and summary["bad_lines"] == 0
    assert summary["mean_positives"] == round(4 / 3, 2)
    assert summary["mean_negatives"] == 1.0  # (2 + 1 + 0) / 3
    assert summary["mean_query_words"] == 2.0
    assert summary["min_negatives"] == 0

    bad = write_lines(tmp_path / "bad.jsonl", [json.dumps(GOOD[0]), BAD_CASES["no positive passages"]])
    result = CliRunner().invoke(app, ["check", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:2: no positive passages" in result.output
    assert "rows" in result.output


def test_data_check_of_a_missing_path_is_one_line_with_exit_code_2(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "nope.jsonl")]) == USER_ERROR_EXIT_CODE
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no such file or folder" in lines[0], lines


def test_reader_refuses_data_that_differs_from_its_stage_file(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"query": "q", "positive_passages": [{"text": "p"}]}\n')
    planned = JsonlReader(path, cache_dir=tmp_path / "idx").fingerprint
    path.write_text('{"query": "q2", "positive_passages": [{"text": "p"}]}\n')
    with pytest.raises(UserError, match="changed since the stage was planned"):
        JsonlReader(path, cache_dir=tmp_path / "idx", expected_fingerprint=planned)


def test_reader_and_plan_share_one_fingerprint(tmp_path: Path) -> None:
    from tdro.data.files import FingerprintCache

    folder = tmp_path / "d"
    folder.mkdir()
    for k in range(2):
        line = json.dumps({"query": f"q{k}", "positive_passages": [{"text": "p"}]})
        (folder / f"part-{k}.jsonl").write_text(line + "\n")
    (folder / "part-0.jsonl.bak").write_text("stray\n")
    reader = JsonlReader(folder, cache_dir=tmp_path / "idx")
    assert len(reader) == 2
    assert reader.fingerprint == FingerprintCache(None).dataset_fingerprint(folder)
