"""`tdro eval` end to end on the tiny fixture, the embedding cache, and order-preserving sorted encoding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tdro.enums import EosHandling, Pooling, PromptStyle
from tdro.retrieval.beir import load_beir
from tdro.retrieval.cache import EmbeddingCache, model_identity
from tdro.retrieval.cli import app
from tdro.retrieval.encode import encode_texts
from tdro.retrieval.evaluator import Evaluator, SearchSettings
from tdro.retrieval.metrics import parse_metrics
from tdro.retrieval.model_folder import resolve_folder
from tdro.spec.retriever import RetrieverConfig

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_beir"
METRICS = "ndcg@1,ndcg@10,mrr@10,recall@10"


def _eval(*args: str) -> dict:
    result = CliRunner().invoke(app, [*args, "--format", "json", "--metrics", METRICS, "--no-progress"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_minilm_folder_cache_identical_ids_and_tdro_folder(tmp_path: Path, minilm_dir: Path) -> None:
    cache = str(tmp_path / "cache")
    first = _eval(str(minilm_dir), str(FIXTURE), "--cache-dir", cache, "--output", str(tmp_path / "r.json"))
    assert first["model_config_from"] == "sentence-transformers files"
    assert (first["num_queries"], first["num_docs"], first["ignore_identical_ids"]) == (10, 26, False)
    assert first["encoded"] == {"query": 10, "passage": 26}
    # The fixture pairs each query with one clearly matching passage: a real encoder ranks them first,
    # except the ArguAna-style query, whose own text is in the corpus and comes first unless ignored.
    assert first["metrics"]["ndcg@10"] > 0.9 and first["metrics"]["recall@10"] == 1.0
    assert json.loads((tmp_path / "r.json").read_text())["metrics"] == first["metrics"]

    second = _eval(
        str(minilm_dir), str(FIXTURE), "--cache-dir", cache, "--ignore-identical-ids", "--per-query"
    )
    assert second["encoded"] == {"query": 0, "passage": 0}  # same model, same texts: nothing encoded
    assert second["ignore_identical_ids"] is True
    assert second["per_query"]["arg-homework"]["mrr@10"] == 1.0
    # Without the option the query retrieves itself at rank 1 and its counter-argument at rank 2.
    arg_ndcg1_without = 10 * first["metrics"]["ndcg@1"] - sum(
        v["ndcg@1"] for q, v in second["per_query"].items() if q != "arg-homework"
    )
    assert arg_ndcg1_without == pytest.approx(0.0, abs=1e-9)
    assert second["metrics"]["ndcg@10"] > first["metrics"]["ndcg@10"]

    # The same weights saved by tdro (config in tdro_retriever.json) give the same scores.
    from tdro.modeling.encoder import Encoder

    config = RetrieverConfig(
        pooling=Pooling.mean, normalize=True, query_max_length=256, passage_max_length=256
    )
    Encoder.from_pretrained(minilm_dir, config).save_pretrained(tmp_path / "saved")
    saved = _eval(str(tmp_path / "saved"), str(FIXTURE), "--ignore-identical-ids", "--per-query")
    assert saved["model_config_from"] == "tdro_retriever.json"
    assert saved["encoded"] == {"query": 10, "passage": 26}
    assert saved["metrics"] == pytest.approx(second["metrics"])
    for query, values in second["per_query"].items():
        assert saved["per_query"][query] == pytest.approx(values)


def test_cli_user_errors_exit_2(tmp_path: Path, minilm_dir: Path, tiny_bert_dir: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, [str(minilm_dir), str(tmp_path / "nope")])
    assert missing.exit_code == 2
    assert missing.stderr.strip() == f"error: {tmp_path / 'nope'}: no such benchmark folder"
    no_pooling = runner.invoke(app, [str(tiny_bert_dir), str(FIXTURE)])
    assert no_pooling.exit_code == 2 and len(no_pooling.stderr.strip().splitlines()) == 1
    assert "--pooling" in no_pooling.stderr
    bad_metric = runner.invoke(app, [str(minilm_dir), str(FIXTURE), "--metrics", "ndcg@10,f1"])
    assert bad_metric.exit_code == 2 and "--metrics: unknown metric(s) 'f1'" in bad_metric.stderr


def test_sorted_encoding_keeps_input_order(tiny_decoder_dir: Path) -> None:
    from tdro.modeling.encoder import Encoder

    # Last-token pooling on a tokenizer that adds no EOS: the collator's EOS append is used.
    config = RetrieverConfig(pooling=Pooling.last_token, eos=EosHandling.append, normalize=True)
    encoder = Encoder.from_pretrained(tiny_decoder_dir, config).eval()
    texts = ["river", "the city of music and science history", "a", "bird ocean forest planet", "game film"]
    batched = encode_texts(encoder, texts, max_length=16, batch_size=2, show_progress=False)
    singles = [encode_texts(encoder, [t], max_length=16, show_progress=False) for t in texts]
    one_by_one = np.concatenate(singles)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    assert not np.allclose(batched[0], batched[1])


def test_cache_keys_on_texts_and_model(tmp_path: Path, tiny_decoder_dir: Path) -> None:
    from tdro.modeling.encoder import Encoder

    config = RetrieverConfig(pooling=Pooling.last_token, eos=EosHandling.append, prompt_style=PromptStyle.e5,
                             query_max_length=32, passage_max_length=48)
    folder = Encoder.from_pretrained(tiny_decoder_dir, config).save_pretrained(tmp_path / "decoder")
    bench = load_beir(FIXTURE, "test")
    cache = EmbeddingCache(tmp_path / "cache")
    settings = SearchSettings(parse_metrics(["ndcg@10"]), top_k=10, chunk_size=5)
    evaluator = Evaluator.load(resolve_folder(folder), settings, cache=cache, show_progress=False)
    first = evaluator.evaluate(bench, "Given a question, find the passage")
    again = evaluator.evaluate(bench, "Given a question, find the passage")
    other = evaluator.evaluate(bench, "Another instruction")
    assert first.encoded == {"query": 10, "passage": 26}
    assert again.encoded == {"query": 0, "passage": 0} and again.per_query == first.per_query
    assert other.encoded == {"query": 10, "passage": 0}  # e5 instruction changes queries only
    # Encoding and searching the corpus in 6 chunks of 5 gives the same ranking as in one piece.
    whole = Evaluator(evaluator.encoder, evaluator.model, SearchSettings(settings.metrics, top_k=10))
    unchunked = whole.evaluate(bench, "Given a question, find the passage")
    for query, values in first.per_query.items():
        assert unchunked.per_query[query] == pytest.approx(values)
    key = model_identity(folder, config, "float32", cache)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x01")  # any change of the weights file
    assert model_identity(folder, config, "float32", cache) != key
    assert model_identity(folder, config.model_copy(update={"normalize": False}), "float32", cache) != key
    assert model_identity(folder, config, "bfloat16", cache) != key


def test_a_card_turns_ignore_identical_ids_on(tmp_path: Path, minilm_dir: Path, monkeypatch) -> None:
    """ArguAna's and Quora's cards carry ignore_identical_ids: true; `tdro eval` on a card follows it."""
    registry = tmp_path / "registry"
    (registry / "benchmarks").mkdir(parents=True)
    (registry / "benchmarks" / "tiny-arg.yaml").write_text(
        f"name: tiny-arg\npath: {FIXTURE}\nignore_identical_ids: true\n"
    )
    monkeypatch.setenv("TDRO_REGISTRY", str(registry))
    result = _eval(str(minilm_dir), "tiny-arg", "--per-query")
    assert result["ignore_identical_ids"] is True
    assert result["per_query"]["arg-homework"]["mrr@10"] == 1.0  # it no longer retrieves itself first
