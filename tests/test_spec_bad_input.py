"""Bad spec input gets one line naming the field and exit code 2 before anything runs (one test per case,
each a regression of the hostile-user review)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdro.cli import main
from tests.runner_project import write_project_with_model_folder


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny project of `tests.runner_project` (datasets alpha, beta, gamma) with its registry in use."""
    path = write_project_with_model_folder(tmp_path)
    monkeypatch.setenv("TDRO_REGISTRY", str(tmp_path / "registry"))
    return path


def _one_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(("override", "expected"), [
    pytest.param("train.learning_rate=.inf", "train.learning_rate: Input should be a finite number",
                 id="inf"),
    pytest.param("dro.eta=.nan", "dro.eta: Input should be a finite number", id="nan"),
    pytest.param("train.loss.temperature=-.inf", "train.loss.temperature: Input should be a finite number",
                 id="minus_inf"),
    pytest.param("train.steps=[1,", "override 'train.steps=[1,': not valid YAML", id="malformed_yaml"),
])
def test_bad_override_is_one_line(spec: Path, capsys, override: str, expected: str) -> None:
    assert expected in _one_error(capsys, "validate", str(spec), override)


def test_an_override_replaces_a_mapping(spec: Path, capsys) -> None:
    grid = "sweep.grid={dro.measure: [loss, loss_over_ref]}"
    assert main(["plan", str(spec), grid, "--format", "json"]) == 0
    two_arms = capsys.readouterr().out
    assert main(["plan", str(spec), grid, "sweep.grid={}", "--format", "json"]) == 0
    one_arm = capsys.readouterr().out
    assert '"dro.measure=loss"' in two_arms and '"dro.measure=loss"' not in one_arm


def test_missing_model_folder_fails_validation(spec: Path, capsys) -> None:
    model = "base_model={name: x, source: {path: /no/such/model}, pooling: mean}"
    line = _one_error(capsys, "validate", str(spec), model)
    assert "base_model (x): source.path /no/such/model: no such folder" in line


def test_missing_model_package_fails_validation(spec: Path, capsys) -> None:
    model = "base_model={name: x, source: {package: no_such_package_zz}, pooling: mean}"
    line = _one_error(capsys, "validate", str(spec), model)
    assert "source.package no_such_package_zz: not installed" in line


def test_skip_data_check_skips_the_model_source_too(spec: Path, capsys) -> None:
    model = "base_model={name: x, source: {package: no_such_package_zz}, pooling: mean}"
    assert main(["validate", str(spec), model, "--skip-data-check"]) == 0


def test_empty_training_file_fails_validation(spec: Path, capsys) -> None:
    (spec.parent / "data" / "alpha.jsonl").write_text("\n  \n")
    assert "datasets[0] (alpha):" in _one_error(capsys, "validate", str(spec))


def test_empty_training_file_fails_data_check(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert _one_error(capsys, "data", "check", str(empty)).endswith("no rows (the dataset is empty)")


def test_non_utf8_spec_names_file_and_line(spec: Path, capsys) -> None:
    spec.write_bytes(spec.read_bytes() + b"seed: 3 \xff\n")
    lines = spec.read_bytes().count(b"\n")
    assert _one_error(capsys, "validate", str(spec)) == f"error: {spec}:{lines}: not valid UTF-8 (byte 0xff)"


def test_non_utf8_registry_card_names_file_and_line(spec: Path, capsys) -> None:
    card = spec.parent / "registry" / "datasets" / "alpha.yaml"
    card.write_bytes(b"# \xfe\n" + card.read_bytes())
    assert f"{card}:1: not valid UTF-8 (byte 0xfe)" in _one_error(capsys, "validate", str(spec))
