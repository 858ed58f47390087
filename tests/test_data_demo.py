"""The demo collection: deterministic, idempotent, valid, and built the way demo.py documents."""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml
from typer.testing import CliRunner

from tdro.cli.data import app
from tdro.data.demo import (
    DEMO_BENCHMARKS,
    DEMO_DATASETS,
    DOMAINS,
    TEST_NAMES,
    TRAIN_NAMES,
    benchmark_card,
    dataset_card,
    write_demo_collection,
)
from tdro.data.reader import JsonlReader
from tdro.data.words import FILLERS, SYNONYMS, TOPICS
from tdro.spec.cards import BenchmarkCard, DatasetCard

REPO = Path(__file__).resolve().parents[1]
WORD_TOPIC = {w: t for t, words in TOPICS.items() for w in words}


def lines(demo: Path, name: str) -> list[dict]:
    return [json.loads(x) for x in (demo / "train" / f"{name}.jsonl").read_text().splitlines()]


def topics_of(text: str) -> set[str]:
    return {WORD_TOPIC[w] for w in text.split() if w in WORD_TOPIC}


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_cli_writes_identical_bytes_and_a_rewrite_touches_nothing(demo_data_dir, tmp_path):
    folder = tmp_path / "again"
    result = CliRunner().invoke(app, ["demo", str(folder)])
    assert result.exit_code == 0, result.output
    assert "demo_noise" in result.output and "TDRO_DEMO_DATA" in result.output
    assert files_of(folder) == files_of(demo_data_dir)  # deterministic
    mtimes = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    write_demo_collection(folder)
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == mtimes  # idempotent
    assert not list(folder.rglob(".*.tmp"))
    # a damaged file is noticed (the manifest keeps each file's hash) and written again
    damaged = folder / "train" / "demo_noise.jsonl"
    damaged.write_bytes(damaged.read_bytes()[:-100])
    write_demo_collection(folder)
    assert files_of(folder) == files_of(demo_data_dir)


def test_training_files_are_valid_with_seven_hard_negatives(demo_data_dir, tmp_path):
    sizes = set()
    for d in DOMAINS:
        reader = JsonlReader(demo_data_dir / "train" / f"{d.name}.jsonl", cache_dir=tmp_path)
        assert len(reader) == d.size and reader.skipped == []
        g = reader[d.size // 2]
        assert len(g.positives) == 1 and len(g.negatives) == 7
        assert all(len(p.full_text.split()) <= 32 for p in (*g.positives, *g.negatives))
        assert len(g.query.split()) <= 32
        sizes.add(d.size)
    assert len(sizes) == len(DOMAINS) and min(sizes) >= 300 and max(sizes) <= 3000
    assert DEMO_DATASETS == DEMO_BENCHMARKS == [d.name for d in DOMAINS]


def test_lexical_positives_contain_the_query_words(demo_data_dir):
    for g in lines(demo_data_dir, "demo_lexical"):
        pos = g["positive_passages"][0]
        body = set((pos["title"] + " " + pos["text"]).split())
        topic_words = [w for w in g["query"].split() if w in WORD_TOPIC]
        assert topic_words and set(topic_words) <= body


def test_hidden_mapping_relevance_and_hard_negatives(demo_data_dir):
    small = next(d for d in DOMAINS if d.name == "demo_map_small")
    mapping = dict(zip(small.query_topics, small.passage_topics, strict=True))  # kitchen -> astronomy, ...
    for g in lines(demo_data_dir, "demo_map_small"):
        (q_topic,) = topics_of(g["query"])
        name = next(w for w in g["query"].split() if w in TRAIN_NAMES)
        pos = g["positive_passages"][0]["text"]
        assert topics_of(pos) == {mapping[q_topic]} and pos.split()[0] == name
        assert not topics_of(g["query"]) & topics_of(pos)  # no shared topic words: zero-shot cannot link
        negs = [n["text"] for n in g["negative_passages"]]
        same_name = [n for n in negs if n.split()[0] == name]
        assert len(same_name) == 2 and all(topics_of(n) != {mapping[q_topic]} for n in same_name)


def test_noisy_domain_has_about_30_percent_random_positives(demo_data_dir):
    d = next(d for d in DOMAINS if d.name == "demo_map_noisy")
    mapping = dict(zip(d.query_topics, d.passage_topics, strict=True))
    groups = lines(demo_data_dir, d.name)
    wrong = 0
    for g in groups:
        (q_topic,) = topics_of(g["query"])
        pos = g["positive_passages"][0]["text"]
        name = next(w for w in g["query"].split() if w in TRAIN_NAMES)
        wrong += not (pos.split()[0] == name and topics_of(pos) == {mapping[q_topic]})
    # a random positive can match by chance (same name 1/100 and same topic 1/4), so p is a little under 0.3
    p, n = 0.3 * (1 - 0.01 * 0.25), len(groups)
    assert abs(wrong - n * p) <= 5 * math.sqrt(n * p * (1 - p))


def test_noise_domain_positives_ignore_the_query(demo_data_dir):
    groups = lines(demo_data_dir, "demo_noise")
    same_name = 0
    for g in groups:
        name = next(w for w in g["query"].split() if w in TRAIN_NAMES)
        same_name += g["positive_passages"][0]["text"].split()[0] == name
        negs_same_name = [n for n in g["negative_passages"] if n["text"].split()[0] == name]
        assert len(negs_same_name) >= 2  # what the mappings call relevant is served as a negative
    assert same_name <= 0.01 * len(groups) + 5 * math.sqrt(0.01 * len(groups))


def test_cyrillic_domain_has_no_latin_letters(demo_data_dir):
    for g in lines(demo_data_dir, "demo_cyrillic")[:200]:
        texts = [g["query"], *(p["text"] for p in g["positive_passages"] + g["negative_passages"])]
        assert not any(c.isascii() and c.isalpha() for t in texts for c in t)


def test_paraphrase_positive_swaps_each_word_for_its_synonym(demo_data_dir):
    assert not {w for pair in SYNONYMS for w in pair} & (set(FILLERS) | set(WORD_TOPIC))
    partner = {a: b for a, b in SYNONYMS} | {b: a for a, b in SYNONYMS}
    for g in lines(demo_data_dir, "demo_paraphrase")[:200]:
        q = [w for w in g["query"].split() if w in partner]
        p = [w for w in g["positive_passages"][0]["text"].split() if w in partner]
        assert len(q) == 5 and p == [partner[w] for w in q]


def test_test_sets_are_beir_folders_with_held_out_names(demo_data_dir):
    assert not set(TRAIN_NAMES) & set(TEST_NAMES)
    for d in DOMAINS:
        folder = demo_data_dir / "test" / d.name
        corpus = {r["_id"]: r for r in map(json.loads, (folder / "corpus.jsonl").read_text().splitlines())}
        queries = {r["_id"]: r for r in map(json.loads, (folder / "queries.jsonl").read_text().splitlines())}
        qrels = (folder / "qrels" / "test.tsv").read_text().splitlines()
        assert qrels[0] == "query-id\tcorpus-id\tscore" and len(qrels) - 1 == len(queries) == 80
        assert 300 <= len(corpus) <= 1000
        for row in qrels[1:]:
            q, doc, score = row.split("\t")
            assert q in queries and doc in corpus and score == "1"
        if not d.cyrillic:
            words = {w for r in queries.values() for w in r["text"].split()}
            assert not words & set(TRAIN_NAMES) and words & set(TEST_NAMES)


def test_registry_cards_are_the_generated_ones():
    for d in DOMAINS:
        ds = yaml.safe_load((REPO / "registry" / "datasets" / f"{d.name}.yaml").read_text())
        bm = yaml.safe_load((REPO / "registry" / "benchmarks" / f"{d.name}.yaml").read_text())
        assert ds == dataset_card(d) and bm == benchmark_card(d)
        assert DatasetCard.model_validate(ds).symmetric is d.symmetric
        BenchmarkCard.model_validate(bm)
    assert next(d for d in DOMAINS if d.symmetric).name == "demo_paraphrase"
