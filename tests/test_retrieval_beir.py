"""BEIR loading (the fixture, every bad-input case named with file and line) and model-folder resolution."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tdro.enums import EosHandling, Pooling, PromptStyle
from tdro.errors import UserError
from tdro.retrieval.beir import load_beir
from tdro.retrieval.model_folder import resolve_folder, resolve_model
from tdro.spec.retriever import RetrieverConfig

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_beir"


def test_fixture_loads() -> None:
    bench = load_beir(FIXTURE, "test")
    assert (bench.name, bench.num_docs, bench.num_queries) == ("tiny_beir", 26, 10)
    assert bench.query_ids[:2] == ["q-bees", "q-seasons"] and "q-unjudged" not in bench.query_ids
    assert bench.qrels["q-seasons"] == {"seasons": 2, "perihelion": 1}
    assert bench.qrels["q-sourdough"]["baguette"] == 0
    texts = dict(zip(bench.doc_ids, bench.doc_texts, strict=True))
    assert texts["sky"].startswith("The sky looks blue")  # empty title: no leading space
    assert texts["boiling"].startswith("At high altitude")  # no title key at all
    assert texts["mona"].startswith("Mona Lisa The Mona Lisa is")  # title + " " + text
    assert "café" in texts
    dev = load_beir(FIXTURE, "dev", name="tiny")
    assert dev.name == "tiny" and dev.query_ids == ["q-tides", "q-chess"]


def _corrupt(tmp_path: Path, file: str, edit) -> Path:
    root = tmp_path / "bench"
    shutil.copytree(FIXTURE, root)
    path = root / file
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(edit(lines)), encoding="utf-8")
    return root


def _replace(number: int, text: str):
    return lambda lines: [text if i == number - 1 else line for i, line in enumerate(lines)]


CASES = {
    "malformed corpus json": ("corpus.jsonl", _replace(3, '{"_id": "perihelion", "text": oops}\n'),
                              "corpus.jsonl:3: malformed JSON"),
    "corpus without text": ("corpus.jsonl", _replace(4, '{"_id": "fridge", "title": "t"}\n'),
                            "corpus.jsonl:4: missing or non-text field text"),
    "duplicate corpus id": ("corpus.jsonl", lambda ls: [*ls, '{"_id": "bees", "text": "again"}\n'],
                            "corpus.jsonl:27: duplicate _id 'bees' (first on line 1)"),
    "query without _id": ("queries.jsonl", _replace(2, '{"text": "What causes the seasons?"}\n'),
                          "queries.jsonl:2: missing or non-text field _id"),
    "query not a json object": ("queries.jsonl", _replace(5, '["q-sky"]\n'),
                                "queries.jsonl:5: expected a JSON object"),
    "qrels corpus id missing": ("qrels/test.tsv", _replace(4, "q-seasons\tnowhere\t1\n"),
                                "qrels/test.tsv:4: corpus-id 'nowhere' is not in corpus.jsonl"),
    "qrels query id missing": ("qrels/test.tsv", _replace(6, "q-ghost\tmona\t1\n"),
                               "qrels/test.tsv:6: query-id 'q-ghost' is not in queries.jsonl"),
    "qrels line with two fields": ("qrels/test.tsv", _replace(7, "q-sky sky 1\n"),
                                   "qrels/test.tsv:7: expected query-id<TAB>corpus-id<TAB>score"),
    "qrels score not integer": ("qrels/test.tsv", _replace(8, "q-vaccine\tvaccine\thigh\n"),
                                "qrels/test.tsv:8: score 'high' is not an integer"),
    "empty split": ("qrels/test.tsv", lambda ls: ls[:1], "qrels/test.tsv: split 'test' has no judgments"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_named_with_file_and_line(tmp_path: Path, case: str) -> None:
    file, edit, message = CASES[case]
    root = _corrupt(tmp_path, file, edit)
    with pytest.raises(UserError) as err:
        load_beir(root, "test")
    assert err.value.problems[0].startswith(f"{root}/{message}"), err.value.problems
    assert len(err.value.problems) == 1


@pytest.mark.parametrize("file", ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"])
def test_non_utf8_bytes_are_named_with_file_and_line(tmp_path: Path, file: str) -> None:
    root = tmp_path / "bench"
    shutil.copytree(FIXTURE, root)
    path = root / file
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([*lines[:2], lines[2][:5] + b"\xff" + lines[2][5:], *lines[3:]]))
    with pytest.raises(UserError) as err:
        load_beir(root, "test")
    assert err.value.problems == [f"{path}:3: not valid UTF-8 (byte 0xff)"]


def test_missing_split_lists_the_splits(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        load_beir(FIXTURE, "train")
    assert err.value.problems == [f"{FIXTURE}/qrels/train.tsv: no such file (splits here: dev, test)"]
    with pytest.raises(UserError, match="no such benchmark folder"):
        load_beir(tmp_path / "nothing")


# ---- model folders -------------------------------------------------------------------------------


def test_sentence_transformers_folder(minilm_dir: Path) -> None:
    model = resolve_folder(minilm_dir)
    assert model.origin == "sentence-transformers files"
    config = model.config
    assert (config.pooling, config.normalize) == (Pooling.mean, True)
    assert (config.query_max_length, config.passage_max_length) == (256, 256)
    assert config.prompt_style is PromptStyle.none and config.query_prefix == ""
    overrides = {"query_max_length": 64, "passage_max_length": 64, "normalize": False, "query_prefix": "q: "}
    overridden = resolve_folder(minilm_dir, overrides)
    assert (overridden.config.passage_max_length, overridden.config.normalize) == (64, False)
    assert overridden.config.query_prefix == "q: "


def _copy_without_st_files(source: Path, target: Path) -> Path:
    target.mkdir()
    for f in source.iterdir():
        if f.is_file() and f.name not in {"modules.json", "sentence_bert_config.json"}:
            shutil.copy(f, target / f.name)
    return target


def test_plain_folder_needs_pooling(tmp_path: Path, tiny_bert_dir: Path) -> None:
    with pytest.raises(UserError) as err:
        resolve_model(str(tiny_bert_dir))
    assert len(err.value.problems) == 1 and "pass --pooling" in err.value.problems[0]
    assert str(tiny_bert_dir) in err.value.problems[0]
    given = resolve_model(str(tiny_bert_dir), {"pooling": Pooling.cls})
    assert given.origin == "options" and given.config.pooling is Pooling.cls
    last = resolve_model(str(tiny_bert_dir), {"pooling": Pooling.last_token})
    assert last.config.eos is EosHandling.append


def test_unsupported_st_pooling_and_tdro_folder(tmp_path: Path, minilm_dir: Path) -> None:
    folder = _copy_without_st_files(minilm_dir, tmp_path / "m")
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_max_tokens": True}))
    with pytest.raises(UserError, match=r"1_Pooling/config.json: pooling mode not supported"):
        resolve_folder(folder)
    assert resolve_folder(folder, {"pooling": Pooling.mean}).config.pooling is Pooling.mean
    saved = RetrieverConfig(
        pooling=Pooling.cls, normalize=False, query_max_length=32, prompt_style=PromptStyle.e5
    )
    saved.save(folder)
    model = resolve_folder(folder)
    assert model.origin == "tdro_retriever.json" and model.config == saved


def test_unknown_model_name(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a folder, not a model card name"):
        resolve_model("no-such-model", registry_root=tmp_path)


def test_model_card_name(minilm_dir: Path) -> None:
    registry = Path(__file__).resolve().parents[1] / "registry"
    model = resolve_model("all-minilm-l6-v2", registry_root=registry)
    assert model.origin == "model card all-minilm-l6-v2"  # the card wins over the folder's ST files
    assert Path(model.path) == minilm_dir.resolve() and model.config.pooling is Pooling.mean
