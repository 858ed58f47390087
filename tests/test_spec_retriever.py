"""RetrieverConfig: the one list of retriever settings, its EOS rule, its saved file, the import arrow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from tdro.enums import EosHandling, PaddingSide, Pooling, PromptStyle, Score
from tdro.errors import UserError
from tdro.spec.cards import ModelCard
from tdro.spec.retriever import RETRIEVER_CONFIG_FILE, LoadSettings, RetrieverConfig

REPO = Path(__file__).resolve().parents[1]
EOS_RULE = "last_token pooling needs eos: append or tokenizer, not none"


@pytest.fixture
def card_fields() -> dict:
    return {"name": "m", "source": {"path": "/models/m"}}


@pytest.fixture
def saved_config() -> RetrieverConfig:
    return RetrieverConfig(pooling=Pooling.last_token, eos=EosHandling.tokenizer, query_max_length=64,
                           padding_side=PaddingSide.left, prompt_style=PromptStyle.none,
                           query_prefix="query: ")


@pytest.fixture
def saved_folder(tmp_path: Path, saved_config: RetrieverConfig) -> Path:
    saved_config.save(tmp_path)
    return tmp_path


def test_card_refuses_last_token_with_eos_none(card_fields: dict) -> None:
    with pytest.raises(ValidationError, match=EOS_RULE):
        ModelCard(**card_fields, pooling="last_token", eos="none")


def test_saved_folder_refuses_last_token_with_eos_none(tmp_path: Path) -> None:
    (tmp_path / RETRIEVER_CONFIG_FILE).write_text(json.dumps({"pooling": "last_token", "eos": "none"}))
    with pytest.raises(UserError, match=EOS_RULE) as err:
        RetrieverConfig.load(tmp_path)
    assert str(tmp_path / RETRIEVER_CONFIG_FILE) in err.value.problems[0]


@pytest.mark.parametrize(
    ("pooling", "eos"),
    [
        pytest.param("last_token", EosHandling.append, id="last_token-appends"),
        pytest.param("mean", EosHandling.none, id="mean-none"),
        pytest.param("cls", EosHandling.none, id="cls-none"),
    ],
)
def test_unstated_eos_follows_pooling(pooling: str, eos: EosHandling) -> None:
    assert RetrieverConfig(pooling=pooling).eos is eos


def test_overriding_pooling_rederives_an_unstated_eos() -> None:
    config = RetrieverConfig(pooling=Pooling.mean).with_overrides({"pooling": Pooling.last_token})
    assert config.eos is EosHandling.append


def test_overriding_a_stated_eos_none_to_last_token_is_refused() -> None:
    config = RetrieverConfig(pooling=Pooling.mean, eos=EosHandling.none)
    with pytest.raises(ValidationError, match=EOS_RULE):
        config.with_overrides({"pooling": Pooling.last_token})


def test_override_changes_exactly_that_field() -> None:
    config = RetrieverConfig(pooling=Pooling.mean, query_prefix="q: ")
    changed = config.with_overrides({"passage_max_length": 77})
    assert changed.model_dump() == {**config.model_dump(), "passage_max_length": 77}


def test_override_is_validated() -> None:
    with pytest.raises(ValidationError, match="greater than 0"):
        RetrieverConfig(pooling=Pooling.mean).with_overrides({"query_max_length": 0})


def test_override_of_an_unknown_field_is_a_bug() -> None:
    with pytest.raises(ValueError, match="no field dtype"):
        RetrieverConfig(pooling=Pooling.mean).with_overrides({"dtype": "float16"})


def test_saved_config_round_trips(saved_folder: Path, saved_config: RetrieverConfig) -> None:
    assert RetrieverConfig.load(saved_folder) == saved_config


def test_saved_file_is_the_config_dump(saved_folder: Path, saved_config: RetrieverConfig) -> None:
    written = json.loads((saved_folder / RETRIEVER_CONFIG_FILE).read_text())
    assert written == saved_config.model_dump(mode="json")


def test_card_saves_only_its_retriever_settings(tmp_path: Path, card_fields: dict) -> None:
    card = ModelCard(**card_fields, pooling="mean", dtype="bfloat16", gradient_checkpointing=True)
    card.retriever_config().save(tmp_path)
    written = json.loads((tmp_path / RETRIEVER_CONFIG_FILE).read_text())
    assert set(written) == set(RetrieverConfig.model_fields)


def test_card_fields_are_the_retriever_and_load_fields() -> None:
    own = {"name", "source", "gradient_checkpointing"}
    shared = set(RetrieverConfig.model_fields) | set(LoadSettings.model_fields)
    assert set(ModelCard.model_fields) == own | shared


@pytest.mark.parametrize(
    ("normalize", "score"),
    [pytest.param(True, Score.cos, id="normalized-cos"), pytest.param(False, Score.dot, id="raw-dot")],
)
def test_score_follows_normalisation(normalize: bool, score: Score) -> None:
    assert RetrieverConfig(pooling=Pooling.mean, normalize=normalize).score is score


def test_shipped_model_cards_still_validate() -> None:
    from tdro.spec.registry import Registry

    registry = Registry.load(REPO / "registry")
    cards = [registry.model(name) for name in registry.names("models")]
    last_token = [card for card in cards if card.pooling is Pooling.last_token]
    assert last_token and all(card.eos is EosHandling.append for card in last_token)


def test_spec_cards_import_neither_torch_nor_modeling() -> None:
    code = (
        "import sys, tdro.spec.cards, tdro.spec.experiment, tdro.spec.retriever; "
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('tdro.modeling')); "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == ""
