"""Shared fixtures: tiny models built once per session, offline environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    from tests.tiny_models import tiny_bert

    return tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def tiny_decoder_dir(tmp_path_factory) -> Path:
    from tests.tiny_models import tiny_decoder

    return tiny_decoder(tmp_path_factory.mktemp("tiny_decoder"))


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory) -> Path:
    from tests.tiny_models import tiny_t5

    return tiny_t5(tmp_path_factory.mktemp("tiny_t5"))


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from tests.tiny_models import minilm_path

    return minilm_path()


@pytest.fixture(scope="session")
def demo_data_dir(tmp_path_factory) -> Path:
    """The generated demo collection (tdro.data.demo), written once per session."""
    from tdro.data.demo import write_demo_collection

    folder = tmp_path_factory.mktemp("demo_data")
    write_demo_collection(folder)
    return folder
