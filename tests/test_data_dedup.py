"""SimHash dedup decisions (hand-derived), and the dedup stage on a file with copied test queries."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tdro.data.dedup import BenchmarkQuery, QueryIndex, fingerprint, fingerprints, hamming, normalize
from tdro.retrieval.beir import load_beir
from tdro.spec.cards import BenchmarkCard, DatasetCard
from tdro.spec.experiment import DedupSpec
from tdro.spec.stage_file import DedupStageFile
from tdro.spec.stage_result import DedupMatch, DedupResult
from tdro.stages.dedup import run

TINY_BEIR = Path(__file__).parent / "fixtures" / "tiny_beir"
SCIFACT = Path("/work/shared/data/beir/scifact")


def md5_tail(feature: str) -> int:
    return int.from_bytes(hashlib.md5(feature.encode()).digest()[-8:], "big")


@pytest.mark.parametrize(("text", "feature"), [
    pytest.param("abc", "abc", id="plain"),
    pytest.param("Ab_C!", "abc", id="case-underscore-punctuation"),
    pytest.param("a b  c", "abc", id="spaces"),
    pytest.param("Wxyz", "wxyz", id="one-4-gram"),
])
def test_a_single_shingle_fingerprint_is_its_md5_tail(text: str, feature: str) -> None:
    # one feature of weight 1: every bit of its hash is above half the count, so the fingerprint is the hash
    assert fingerprint(text) == md5_tail(feature)


def test_normalisation_leaves_the_fingerprint_of_a_copy_unchanged() -> None:
    query = "How do honeybees tell each other where flowers are?"
    assert fingerprint("HOW DO honey_bees tell each other, where flowers are") == fingerprint(query)


@pytest.fixture
def index() -> QueryIndex:
    return QueryIndex([BenchmarkQuery("b", "t1", "abc"), BenchmarkQuery("b", "t2", "wxyz")], max_distance=2)


@pytest.mark.parametrize(("flip", "matched"), [
    pytest.param(0b0, True, id="distance-0"),
    pytest.param(0b1, True, id="distance-1"),
    pytest.param(0b101, True, id="distance-2"),
    pytest.param(0b10101, False, id="distance-3"),
])
def test_a_query_matches_within_the_hamming_distance(index: QueryIndex, flip: int, matched: bool) -> None:
    match = index.match_fingerprint(md5_tail("abc") ^ flip)
    assert (match is not None) is matched
    if match is not None:
        assert (match.item.query_id, match.distance) == ("t1", bin(flip).count("1"))


def test_the_nearest_test_query_is_recorded() -> None:
    items = [BenchmarkQuery("b", "far", "wxyz"), BenchmarkQuery("b", "near", "abc")]
    index = QueryIndex(items, max_distance=64)
    assert index.match("abc").item.query_id == "near"


@pytest.mark.parametrize("max_distance", [0, 1, 2, 3, 5])
def test_blocked_search_finds_what_comparing_with_every_test_query_finds(max_distance: int) -> None:
    # Queries are test fingerprints with 0-6 random bits flipped; ten test fingerprints repeat (ties go to
    # the first in input order). The index (blocked for k <= 3, exhaustive beyond) against brute force.
    import numpy as np

    rng = np.random.default_rng(3)
    tests = [int(v) for v in rng.integers(0, 2**64, size=300, dtype=np.uint64)]
    tests[100:110] = tests[:10]
    flips = [sum(1 << int(b) for b in rng.choice(64, size=int(rng.integers(0, 7)), replace=False))
             for _ in range(500)]
    values = [tests[i % 300] ^ flip for i, flip in enumerate(flips)]
    index = QueryIndex([BenchmarkQuery("b", str(i), "") for i in range(300)], max_distance=max_distance,
                       values=np.array(tests, dtype=np.uint64))
    found = index.match_many(np.array(values, dtype=np.uint64), block=64)
    for value, match in zip(values, found, strict=True):
        distance, position = min((hamming(value, t), i) for i, t in enumerate(tests))
        if distance > max_distance:
            assert match is None
        else:
            assert match is not None and (match.distance, match.item_position) == (distance, position)
    assert sum(m is not None for m in found) > 50  # not vacuous (58 at distance 0)


def group_line(query: str, qid: str) -> str:
    return json.dumps({"query_id": qid, "query": query, "positive_passages": [{"text": "p"}],
                       "negative_passages": [{"text": "n"}]})


@pytest.fixture
def copied(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Tiny-BEIR test queries copied into training groups: exact, normalisation variants, unrelated rows."""
    bench = load_beir(TINY_BEIR, "test")
    a, b = bench.query_texts[0], bench.query_texts[1]
    removed = {"copy": bench.query_ids[0], "variant": bench.query_ids[1]}
    lines = [group_line("an unrelated question about tax law", "keep1"), group_line(a, "copy"),
             group_line(b.upper().replace("?", "") + " ", "variant"),
             group_line("another unrelated training query", "keep2")]
    path = tmp_path / "groups.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path, removed


def test_dedup_stage_removes_exactly_the_copies(tmp_path: Path, copied: tuple[Path, dict[str, str]]) -> None:
    path, removed = copied
    card = DatasetCard(name="mine", path=str(path), instructions=["find"])
    stage = DedupStageFile(
        experiment="t", seed=0, output_dir=str(tmp_path / "out"), dataset=card, dataset_fingerprint="x",
        benchmarks=[BenchmarkCard(name="tiny", path=str(TINY_BEIR))], dedup=DedupSpec(),
    )
    result = run(stage)
    kept = [json.loads(line)["query_id"] for line in (tmp_path / "out" / DedupResult.DATA_FILE).open()]
    removed_file = tmp_path / "out" / DedupResult.REMOVED_FILE
    matches = [DedupMatch.model_validate_json(line) for line in removed_file.open()]
    assert kept == ["keep1", "keep2"]
    assert {m.query_id: m.test_query_id for m in matches} == removed
    assert (result.rows_in, result.rows_out, result.removed) == (4, 2, 2)


@pytest.mark.skipif(not SCIFACT.is_dir(), reason="shared SciFact not on this machine")
def test_scifact_copies_with_char_edits_within_distance_2_are_found() -> None:
    bench = load_beir(SCIFACT, "test")
    index = QueryIndex([BenchmarkQuery("scifact", q, t) for q, t in zip(bench.query_ids, bench.query_texts,
                                                                         strict=True)])
    query = bench.query_texts[4]
    edited = query[:27] + "#" + query[28:37] + query[38:]  # one substitution, one deletion
    assert hamming(fingerprint(edited), fingerprint(query)) <= 2  # precondition: a near copy by SimHash
    assert index.match(edited).item.query_id == bench.query_ids[4]
    assert index.match("what is the boiling point of water in the mountains") is None


def varied_texts() -> list[str]:
    import random

    rng = random.Random(7)
    alphabet = "abcdefghij klmnop_QRS,.!?0123 éü中文"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120))) for _ in range(300)]
    # code points beyond U+FFFF (a CJK extension-B letter kept, an emoji dropped) take the per-gram path
    astral = ["𠀀𠀁 abc 𠀂 defg", "emoji 😀 only dropped", "𠀀𠀁𠀂𠀃𠀄"]
    return [*texts, *astral, "", "a", "ab_c", "!!!", "x" * 40, "q_" * 70, "abcd", "abc"]


def test_fingerprints_equal_the_simhash_package_bit_for_bit() -> None:
    from simhash import Simhash

    texts = varied_texts()
    expected = [Simhash(normalize(t)).value for t in texts]
    assert [int(v) for v in fingerprints(texts, batch=64)] == expected
    assert [int(v) for v in fingerprints(texts)] == expected  # one batch, both paths in it
