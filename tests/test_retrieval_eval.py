"""`tdro eval` end to end on the tiny fixture, the embedding cache, and order-preserving sorted encoding."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tdro.cli import main
from tdro.cli.eval import app
from tdro.enums import EosHandling, Pooling, PromptStyle
from tdro.retrieval.beir import load_beir
from tdro.retrieval.cache import EmbeddingCache, model_identity
from tdro.retrieval.encode import encode_texts, length_order, process_share
from tdro.retrieval.evaluator import Evaluator, SearchSettings
from tdro.retrieval.metrics import parse_metrics
from tdro.retrieval.model_folder import resolve_folder
from tdro.spec.retriever import LoadSettings, RetrieverConfig
from tdro.spec.search import SearchConfig

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_beir"
METRICS = "ndcg@1,ndcg@10,mrr@10,recall@10"


def _eval(*args: str) -> dict:
    result = CliRunner().invoke(app, [*args, "--format", "json", "--metrics", METRICS, "--no-progress"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@dataclass(frozen=True)
class MiniLMRuns:
    """`tdro eval` of the MiniLM sentence-transformers folder: a first run (writing the cache and an output
    file), the same again from the cache with --ignore-identical-ids, and the weights saved by tdro."""

    first: dict
    cached: dict
    saved: dict
    output: Path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> MiniLMRuns:
    from tdro.modeling.encoder import Encoder

    tmp = tmp_path_factory.mktemp("minilm_eval")
    cache = str(tmp / "cache")
    first = _eval(str(minilm_dir), str(FIXTURE), "--cache-dir", cache, "--output", str(tmp / "r.json"))
    cached = _eval(
        str(minilm_dir), str(FIXTURE), "--cache-dir", cache, "--ignore-identical-ids", "--per-query"
    )
    config = RetrieverConfig(pooling=Pooling.mean, normalize=True, query_max_length=256,
                             passage_max_length=256, prompt_style=PromptStyle.none)
    Encoder.from_pretrained(minilm_dir, config).save_pretrained(tmp / "saved")
    saved = _eval(str(tmp / "saved"), str(FIXTURE), "--ignore-identical-ids", "--per-query")
    return MiniLMRuns(first=first, cached=cached, saved=saved, output=tmp / "r.json")


def test_st_folder_config_comes_from_its_files(runs: MiniLMRuns) -> None:
    assert runs.first["model_config_from"] == "sentence-transformers files"


def test_result_counts_queries_and_documents(runs: MiniLMRuns) -> None:
    assert (runs.first["num_queries"], runs.first["num_docs"]) == (10, 26)


def test_identical_ids_are_kept_by_default(runs: MiniLMRuns) -> None:
    assert runs.first["ignore_identical_ids"] is False


def test_first_run_encodes_every_text(runs: MiniLMRuns) -> None:
    assert runs.first["encoded"] == {"query": 10, "passage": 26}


def test_real_encoder_ranks_matching_passages_first(runs: MiniLMRuns) -> None:
    # The fixture pairs each query with one clearly matching passage.
    assert runs.first["metrics"]["ndcg@10"] > 0.9 and runs.first["metrics"]["recall@10"] == 1.0


def test_output_file_holds_the_printed_metrics(runs: MiniLMRuns) -> None:
    assert json.loads(runs.output.read_text())["metrics"] == runs.first["metrics"]


def test_cached_run_encodes_nothing(runs: MiniLMRuns) -> None:
    assert runs.cached["encoded"] == {"query": 0, "passage": 0}  # same model, same texts


def test_ignore_identical_ids_flag_is_recorded(runs: MiniLMRuns) -> None:
    assert runs.cached["ignore_identical_ids"] is True


def test_ignored_own_id_lets_the_counter_argument_rank_first(runs: MiniLMRuns) -> None:
    assert runs.cached["per_query"]["arg-homework"]["mrr@10"] == 1.0


def test_without_ignoring_the_query_retrieves_itself_first(runs: MiniLMRuns) -> None:
    # The ArguAna-style query's own text is in the corpus: its nDCG@1 is 0 unless identical ids are ignored.
    others = sum(v["ndcg@1"] for q, v in runs.cached["per_query"].items() if q != "arg-homework")
    assert 10 * runs.first["metrics"]["ndcg@1"] - others == pytest.approx(0.0, abs=1e-9)


def test_ignoring_identical_ids_raises_ndcg(runs: MiniLMRuns) -> None:
    assert runs.cached["metrics"]["ndcg@10"] > runs.first["metrics"]["ndcg@10"]


def test_tdro_folder_config_comes_from_its_json(runs: MiniLMRuns) -> None:
    assert runs.saved["model_config_from"] == "tdro_retriever.json"


def test_tdro_folder_of_the_same_weights_is_encoded_afresh(runs: MiniLMRuns) -> None:
    assert runs.saved["encoded"] == {"query": 10, "passage": 26}


def test_tdro_folder_of_the_same_weights_gives_the_same_scores(runs: MiniLMRuns) -> None:
    assert runs.saved["metrics"] == pytest.approx(runs.cached["metrics"])
    for query, values in runs.cached["per_query"].items():
        assert runs.saved["per_query"][query] == pytest.approx(values)


@pytest.mark.parametrize(
    ("flags", "field", "value"),
    [
        pytest.param(["--query-max-length", "64"], "query_max_length", 64, id="query-max-length"),
        pytest.param(["--no-normalize"], "normalize", False, id="no-normalize"),
        pytest.param(["--passage-prefix", "p: "], "passage_prefix", "p: ", id="passage-prefix"),
    ],
)
def test_model_flag_overrides_exactly_that_field(
    runs: MiniLMRuns, minilm_dir: Path, flags: list[str], field: str, value
) -> None:
    overridden = _eval(str(minilm_dir), str(FIXTURE), *flags)["model_config"]
    assert overridden == {**runs.first["model_config"], field: value}


def test_model_and_search_flags_carry_the_field_names() -> None:
    import typer.main

    command = typer.main.get_command(app)
    flags = {param.name for param in command.params}
    fields = {*RetrieverConfig.model_fields, *LoadSettings.model_fields, *SearchConfig.model_fields}
    assert fields <= flags


def _user_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """The one error line of `tdro eval ARGS`, which must exit with code 2."""
    assert main(["eval", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_missing_benchmark_folder_is_one_line(tmp_path: Path, minilm_dir: Path, capsys) -> None:
    line = _user_error(capsys, str(minilm_dir), str(tmp_path / "nope"))
    assert line == f"error: {tmp_path / 'nope'}: no such benchmark folder"


def test_plain_folder_without_pooling_asks_for_it(tiny_bert_dir: Path, capsys) -> None:
    assert "--pooling" in _user_error(capsys, str(tiny_bert_dir), str(FIXTURE))


def test_unknown_metric_is_named(minilm_dir: Path, capsys) -> None:
    line = _user_error(capsys, str(minilm_dir), str(FIXTURE), "--metrics", "ndcg@10,f1")
    assert "--metrics: unknown metric(s) 'f1'" in line


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


@pytest.mark.parametrize("world", [2, 3])
def test_processes_encode_the_batches_one_process_encodes(world: int) -> None:
    # Regression (issue 15): processes took every N-th *text*, so a text's batch neighbours and padding
    # depended on N; on SciFact 1 and 2 processes mined 1 of 809 groups differently (a 4e-7 near-tie).
    texts = [chr(97 + i % 26) * (1 + (i * 7) % 23) for i in range(23)]
    order = length_order(texts)

    def batches(share: list[int]) -> list[tuple[int, ...]]:
        return [tuple(share[s : s + 4]) for s in range(0, len(share), 4)]

    alone = batches(process_share(order, 4, 1, 0))
    shares = [process_share(order, 4, world, r) for r in range(world)]
    assert sorted(b for share in shares for b in batches(share)) == sorted(alone)
    assert sorted(i for share in shares for i in share) == list(range(23))
    assert max(map(len, shares)) - min(map(len, shares)) <= 4  # balanced to within a batch


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


def test_mining_a_corpus_fills_the_cache_its_evaluation_reads(tmp_path: Path, minilm_dir: Path) -> None:
    """The real experiment mines the SciFact and NFCorpus train splits over the corpora their test sets
    search: the base model's zero-shot evaluation then encodes only its queries."""
    from tdro.data.miner import mine
    from tdro.data.sources import read_beir_split
    from tdro.spec.experiment import MineSpec

    cache = EmbeddingCache(tmp_path / "cache")
    settings = SearchSettings(parse_metrics(["ndcg@10"]), top_k=10)
    evaluator = Evaluator.load(resolve_folder(minilm_dir), settings, cache=cache, show_progress=False)
    mined = mine(read_beir_split(FIXTURE, "dev"), evaluator, MineSpec(negatives=2, depth=(1, 6), top_k=6))
    assert mined is not None and mined.passages_encoded == 26
    assert evaluator.evaluate(load_beir(FIXTURE, "test")).encoded == {"query": 10, "passage": 0}


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
