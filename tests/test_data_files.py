"""One rule for a dataset's files and fingerprint (tdro.data.files), shared by the plan and the reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdro.data.files import FingerprintCache, dataset_files
from tdro.errors import UserError


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A dataset folder `d/` of two files, a.jsonl ("1") and b.jsonl ("2")."""
    data = tmp_path / "d"
    data.mkdir()
    (data / "a.jsonl").write_text("1\n")
    (data / "b.jsonl").write_text("2\n")
    return data


def fp(path: Path) -> str:
    return FingerprintCache(None).dataset_fingerprint(path)


def test_folder_files_are_its_jsonl_files_in_name_order(folder: Path) -> None:
    (folder / "a.jsonl.bak").write_text("x\n")
    (folder / "old").mkdir()
    (folder / "old" / "c.jsonl").write_text("x\n")
    assert [p.name for p in dataset_files(folder)] == ["a.jsonl", "b.jsonl"]


def test_renaming_a_single_file_keeps_the_fingerprint(tmp_path: Path) -> None:
    one = tmp_path / "one.jsonl"
    one.write_text("1\n")
    before = fp(one)
    assert fp(one.rename(tmp_path / "two.jsonl")) == before


def test_renaming_without_reordering_keeps_the_fingerprint(folder: Path) -> None:
    before = fp(folder)
    (folder / "b.jsonl").rename(folder / "c.jsonl")
    assert fp(folder) == before


def test_reordering_files_changes_the_fingerprint(folder: Path) -> None:
    before = fp(folder)
    (folder / "a.jsonl").rename(folder / "z.jsonl")  # rows are now read as 2, 1
    assert fp(folder) != before


def test_an_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no \\*.jsonl files"):
        dataset_files(tmp_path)
