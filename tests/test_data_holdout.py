"""The held-out split of a pairs dataset (tdro.data.holdout): which queries, which rows, which corpus.

The oracle for the order is blake2b itself (16-byte digest of "<seed>\\0<text>"), as the contract states.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tdro.data.holdout import benchmark_lines, hold_out, train_lines
from tdro.data.sources import read_pairs
from tdro.errors import UserError
from tdro.retrieval.beir import load_beir
from tdro.spec.experiment import HoldoutSpec

# q0..q5; "shared" has two rows (two positives); "crowd" has three positives
ROWS = [
    ("alpha?", "the alpha passage"),
    ("beta?", "the beta passage"),
    ("shared", "first shared positive"),
    ("gamma?", "the gamma passage"),
    ("shared", "second shared positive"),
    ("delta?", "the delta passage"),
    ("crowd", "crowd one"),
    ("crowd", "crowd two"),
    ("crowd", "crowd three"),
]


def order(seed: int, texts: list[str]) -> list[str]:
    return sorted(texts, key=lambda t: hashlib.blake2b(f"{seed}\0{t}".encode(), digest_size=16).digest())


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"query": q, "positive": p}) + "\n" for q, p in ROWS))
    return path


def test_the_first_queries_in_hash_order_are_held_out_with_all_their_rows(pairs: Path) -> None:
    data = read_pairs(pairs)
    queries = ["alpha?", "beta?", "shared", "gamma?", "delta?", "crowd"]
    held = hold_out(data, HoldoutSpec(queries=2, seed=3))
    expected = order(3, queries)[:2]
    assert [text for _, text in held.test_queries] == expected
    trained = [group.query for group in held.train]
    assert not set(expected) & set(trained)
    assert sorted(set(trained)) == sorted(set(queries) - set(expected))
    # kept rows stay in file order
    assert trained == [q for q, _ in ROWS if q not in expected]


def test_a_held_out_query_has_every_positive_of_its_rows(pairs: Path) -> None:
    data = read_pairs(pairs)
    held = hold_out(data, HoldoutSpec(queries=5, seed=0, max_positives=2))  # "crowd" (3) is not eligible
    texts = {text: qid for qid, text in held.test_queries}
    assert "crowd" not in texts and set(texts) == {"alpha?", "beta?", "shared", "gamma?", "delta?"}
    shared = [data.passages[i].text for i in held.qrels[texts["shared"]]]
    assert shared == ["first shared positive", "second shared positive"]
    assert [g.query for g in held.train] == ["crowd"] * 3


def test_the_corpus_is_the_positives_then_other_passages_up_to_its_size(pairs: Path) -> None:
    data = read_pairs(pairs)
    held = hold_out(data, HoldoutSpec(queries=1, seed=5, corpus=4))
    (query_id, _), = held.test_queries
    positives = held.qrels[query_id]
    assert held.corpus[: len(positives)] == positives and len(held.corpus) == 4
    others = [i for i in range(len(data.passages)) if i not in positives]
    assert held.corpus[len(positives):] == [
        i for t in order(5, [data.passages[i].full_text for i in others])
        for i in others if data.passages[i].full_text == t
    ][: 4 - len(positives)]


def test_train_queries_cuts_the_training_part_in_hash_order(pairs: Path) -> None:
    data = read_pairs(pairs)
    held = hold_out(data, HoldoutSpec(queries=1, seed=0, train_queries=2))
    rest = [t for t in order(0, ["alpha?", "beta?", "shared", "gamma?", "delta?", "crowd"])
            if t != held.test_queries[0][1]]
    assert {g.query for g in held.train} == set(rest[:2]) and held.unused_queries == len(rest) - 2


def test_asking_for_too_many_queries_is_one_line(pairs: Path) -> None:
    with pytest.raises(UserError, match=r"holdout.queries: 6 held-out queries asked, but 6 of the 6"):
        hold_out(read_pairs(pairs), HoldoutSpec(queries=6))
    with pytest.raises(UserError, match=r"but 5 of the 6 distinct queries"):
        hold_out(read_pairs(pairs), HoldoutSpec(queries=6, max_positives=2))


def test_written_parts_read_back_as_pairs_and_as_a_beir_folder(pairs: Path, tmp_path: Path) -> None:
    data = read_pairs(pairs)
    held = hold_out(data, HoldoutSpec(queries=2, seed=1))
    train = tmp_path / "train.jsonl"
    train.write_bytes(b"".join(line + b"\n" for line in train_lines(held)))
    again = read_pairs(train)
    assert [(g.query, [again.passages[i].text for i in g.positives]) for g in again.groups] == [
        (g.query, [data.passages[i].text for i in g.positives]) for g in held.train]
    for name, lines in benchmark_lines(held, "test").items():
        (tmp_path / "test" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "test" / name).write_bytes(b"".join(line + b"\n" for line in lines))
    bench = load_beir(tmp_path / "test", "test")
    assert list(bench.query_texts) == [text for _, text in held.test_queries]
    assert len(bench.doc_ids) == len(data.passages)  # corpus None: every passage
    for query_id, _ in held.test_queries:
        assert set(bench.qrels[query_id]) == {data.doc_ids[i] for i in held.qrels[query_id]}


def holdout_stage(pairs: Path, out: Path, fingerprint: str):  # type: ignore[no-untyped-def]
    from tdro.spec.cards import DatasetCard
    from tdro.spec.stage_file import HoldoutStageFile

    card = DatasetCard(name="toy", path=str(pairs), source="pairs", instructions=["Find it"])
    return HoldoutStageFile(stage_id="test-holdout", experiment="tests", seed=0, output_dir=str(out),
                            dataset=card, dataset_fingerprint=fingerprint, holdout=HoldoutSpec(queries=2))


def test_the_holdout_stage_writes_both_parts_and_refuses_changed_data(pairs: Path, tmp_path: Path) -> None:
    from tdro.data.files import FingerprintCache
    from tdro.stages import holdout

    planned = FingerprintCache(None).dataset_fingerprint(pairs)
    result = holdout.run(holdout_stage(pairs, tmp_path / "out", planned))
    assert (result.rows_in, result.rows_out, result.test_queries) == (9, len(read_pairs(
        tmp_path / "out" / "train.jsonl").groups), 2)
    assert result.benchmark == "heldout-toy" and (tmp_path / "out" / "test" / "qrels" / "test.tsv").is_file()
    with pytest.raises(UserError, match="the data changed since the stage was planned"):
        holdout.run(holdout_stage(pairs, tmp_path / "again", "0" * 64))
