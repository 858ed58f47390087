"""The answer_recall kind: its files checked line by line, and the evaluate stage per language with resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tdro.errors import UserError
from tdro.retrieval.answer_recall import load_answer_benchmark
from tdro.spec.cards import BenchmarkCard, ModelCard, ModelSource
from tdro.spec.experiment import EvaluateSpec
from tdro.spec.stage_file import EvaluateStageFile, Upstream
from tdro.stages import evaluate as evaluate_stage

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_answers"
CARD = dict(name="tiny_answers", kind="answer_recall", corpus="corpus.jsonl",
            queries="queries/{language}.jsonl", languages=["en", "de"], k=[1, 3], group="MKQA")


@pytest.fixture
def answers_root(tmp_path: Path) -> Path:
    """A writable copy of the fixture, for tests that break a file."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "tiny_answers"))


def _card(root: Path, **changes) -> BenchmarkCard:
    return BenchmarkCard(path=str(root), **{**CARD, **changes})


def test_the_fixture_loads_every_language() -> None:
    bench = load_answer_benchmark(_card(FIXTURE))
    assert [q.language for q in bench.languages] == ["en", "de"]
    assert bench.doc_ids == ["d1", "d2", "d3", "d4"] and bench.num_queries == 6
    assert bench.languages[1].answers[1] == ["8,849 metres", "8849 m"]


@pytest.mark.parametrize(("answers", "problem"), [
    pytest.param([], "answers missing or empty", id="empty-list"),
    pytest.param(None, "answers missing or empty", id="missing"),
    pytest.param(["Paris", " "], "answers[1] ' ' has no word (it would match no passage)", id="blank-answer"),
])
def test_bad_answers_are_one_line_naming_file_and_line(answers_root: Path, answers, problem: str) -> None:
    path = answers_root / "queries" / "de.jsonl"
    lines = path.read_text().splitlines()
    row = {"id": "q9", "question": "Wo?"} | ({} if answers is None else {"answers": answers})
    path.write_text("\n".join([*lines, json.dumps(row)]) + "\n")
    with pytest.raises(UserError) as caught:
        load_answer_benchmark(_card(answers_root))
    assert caught.value.problems == [f"{path}:4: {problem}"]


def test_a_language_without_a_file_names_the_card_field() -> None:
    card = _card(FIXTURE, languages=["en", "fr"])
    with pytest.raises(UserError) as caught:
        load_answer_benchmark(card)
    assert caught.value.problems == [
        f"benchmark tiny_answers: languages: fr: no file {FIXTURE / 'queries' / 'fr.jsonl'}"]


def _stage(tmp_path: Path, minilm_dir: Path, card: BenchmarkCard) -> Path:
    model = ModelCard(name="all-minilm-l6-v2", source=ModelSource(path=str(minilm_dir)), pooling="mean",
                      normalize=True, query_max_length=64, passage_max_length=64, prompt_style="none")
    stage = EvaluateStageFile(
        stage_id="eval-answers", experiment="test", seed=0, output_dir=str(tmp_path / "stage"), model=model,
        model_under_test=Upstream(stage_id="minilm", path=str(minilm_dir)), benchmarks=[card],
        evaluate=EvaluateSpec(metrics=["ndcg@10"], top_k=10, batch_size=8),
    )
    return stage.write()


@pytest.fixture
def evaluated(tmp_path: Path, minilm_dir: Path) -> Path:
    """The stage folder after one complete evaluation of the fixture."""
    stage_file = _stage(tmp_path, minilm_dir, _card(FIXTURE))
    assert evaluate_stage.main([str(stage_file)]) == 0
    return stage_file.parent


def _record(folder: Path) -> dict:
    [record] = json.loads((folder / "result.json").read_text())["benchmarks"]
    return record


def test_the_stage_scores_each_language_and_their_mean(evaluated: Path) -> None:
    record = _record(evaluated)
    assert (record["kind"], record["language"], record["benchmark_group"]) == ("answer_recall", None, "MKQA")
    assert list(record["per_language"]) == ["en", "de"]
    # four passages, every query's answer is in one of them: all found within the top 3
    assert all(m["accuracy@3"] == 1.0 for m in record["per_language"].values())
    for name in ("accuracy@1", "accuracy@3"):
        mean = sum(m[name] for m in record["per_language"].values()) / 2
        assert record["metrics"][name] == pytest.approx(mean)
    assert (record["num_queries"], record["num_docs"], record["top_k"]) == (6, 4, 3)


def test_a_stopped_stage_resumes_at_the_next_language(evaluated: Path) -> None:
    first = _record(evaluated)
    # As if the job had stopped after English: its record is kept, German's and the result are not.
    (evaluated / "result.json").unlink()
    progress = evaluated / evaluate_stage.PROGRESS_FOLDER / "tiny_answers"
    (progress / "de.json").unlink()
    kept = json.loads((progress / "en.json").read_text())
    kept["metrics"] = {"accuracy@1": 0.25, "accuracy@3": 0.5}  # a marker: recomputing would overwrite it
    (progress / "en.json").write_text(json.dumps(kept))
    assert evaluate_stage.main([str(evaluated / "stage.json")]) == 0
    again = _record(evaluated)
    assert again["per_language"]["en"] == {"accuracy@1": 0.25, "accuracy@3": 0.5}  # not evaluated again
    assert again["per_language"]["de"] == first["per_language"]["de"]  # evaluated, as before
    assert (progress / "de.json").is_file()


def test_the_stage_refuses_a_missing_language_file_with_one_line(tmp_path: Path, minilm_dir: Path,
                                                                  capsys) -> None:
    stage_file = _stage(tmp_path, minilm_dir, _card(FIXTURE, languages=["en", "xx"]))
    assert evaluate_stage.main([str(stage_file)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: benchmark tiny_answers: languages: xx: no file {FIXTURE / 'queries' / 'xx.jsonl'}"]
