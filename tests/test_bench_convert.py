"""`tdro bench convert miracl`: the official layout (topics, qrels, docs-*.jsonl.gz) to a BEIR folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tdro.errors import UserError
from tdro.retrieval.beir import load_beir
from tdro.retrieval.miracl import convert_miracl

FIXTURE = Path(__file__).parent / "fixtures" / "miracl_official"
REPO = Path(__file__).resolve().parents[1]
QRELS = "miracl-v1.0-sw/qrels/qrels.miracl-v1.0-sw-dev.tsv"


@pytest.fixture
def converted(tmp_path: Path) -> Path:
    out = tmp_path / "beir"
    convert_miracl(FIXTURE, out, "dev")
    return out


def test_the_converted_folder_is_a_beir_benchmark(converted: Path) -> None:
    bench = load_beir(converted, "dev")
    assert bench.doc_ids == ["10#0", "10#1", "20#0", "30#0"]  # docs-0 then docs-1, all documents
    assert bench.doc_texts[0] == "Nairobi Nairobi ni mji mkuu wa Kenya."
    assert bench.query_ids == ["q1", "q2"]
    assert bench.query_texts[1] == "Mlima Kilimanjaro uko wapi?"
    assert bench.qrels == {"q1": {"10#0": 1, "10#1": 0}, "q2": {"20#0": 1}}


def test_the_qrels_file_has_beirs_header(converted: Path) -> None:
    assert (converted / "qrels" / "dev.tsv").read_text().splitlines()[0] == "query-id\tcorpus-id\tscore"


def test_a_judged_document_missing_from_the_corpus_names_the_qrels_line(tmp_path: Path) -> None:
    src = Path(shutil.copytree(FIXTURE, tmp_path / "src"))
    with (src / QRELS).open("a") as handle:
        handle.write("q2\tQ0\t99#9\t1\n")
    with pytest.raises(UserError) as caught:
        convert_miracl(src, tmp_path / "out", "dev")
    assert caught.value.problems == [f"{src / QRELS}:4: doc-id '99#9' is not in the corpus "
                                     f"({src / 'miracl-corpus-v1.0-sw'})"]


def test_a_split_with_no_topics_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"expected one topics file topics\.\*-testA\.tsv, found 0"):
        convert_miracl(FIXTURE, tmp_path / "out", "testA")


def _tdro(*argv: str) -> subprocess.CompletedProcess:
    code = ("import sys; from tdro.cli import main; rc = main(sys.argv[1:]); "
            "print('imported:', sorted(m for m in ('torch', 'transformers', 'faiss') if m in sys.modules)); "
            "sys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_the_command_converts_without_torch(tmp_path: Path) -> None:
    done = _tdro("bench", "convert", "miracl", str(FIXTURE), str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert "4 documents, 2 queries, 3 judgments (dev)" in done.stdout
    assert "imported: []" in done.stdout
    first = json.loads((tmp_path / "out" / "corpus.jsonl").read_text().splitlines()[0])
    assert first == {"_id": "10#0", "title": "Nairobi", "text": "Nairobi ni mji mkuu wa Kenya."}


def test_the_command_exits_2_with_one_line_on_bad_input(tmp_path: Path) -> None:
    done = _tdro("bench", "convert", "miracl", str(tmp_path / "nowhere"), str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {tmp_path / 'nowhere'}: no such folder"]
