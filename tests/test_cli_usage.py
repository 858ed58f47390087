"""The error boundary: usage and user errors are one line on stderr with exit code 2, never a traceback.

Regression: typer 0.2x carries its own copy of click, so `except click.ClickException` no longer caught
an unknown option or a missing argument, and `tdro` alone printed a traceback instead of the help.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from tdro.cli import main
from tdro.errors import USER_ERROR_EXIT_CODE, UserError, exit_on_user_error, user_error_lines

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("argv", "expected"), [
    (["plan", "experiments/demo.yaml", "--bogus"],
     "tdro plan: No such option: --bogus (see tdro plan --help)"),
    (["validate"], "tdro validate: Missing argument 'spec' (see tdro validate --help)"),
    (["data", "check"], "tdro data check: Missing argument"),
    (["weights", "export", "w.json", "--transfer", "sideways"], "tdro weights export: Invalid value"),
    (["nosuchcommand"], "tdro: No such command 'nosuchcommand'"),
])
def test_usage_errors_are_one_line_with_exit_code_2(argv: list[str], expected: str, capsys) -> None:
    assert main(argv) == USER_ERROR_EXIT_CODE
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: " + expected), lines[0]
    assert "Traceback" not in out + err


@pytest.mark.parametrize("argv", [[], ["data"]])
def test_a_group_alone_prints_its_help(argv: list[str], capsys) -> None:
    assert main(argv) == USER_ERROR_EXIT_CODE
    out, err = capsys.readouterr()
    assert "Usage: tdro" in out and "Commands" in out, out
    assert "Traceback" not in out + err


def test_help_exits_0(capsys) -> None:
    assert main(["plan", "--help"]) == 0
    assert "--emit" in capsys.readouterr().out


def test_python_m_tdro_is_the_tdro_command() -> None:
    done = subprocess.run([sys.executable, "-m", "tdro", "plan", "--help"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert "--emit" in done.stdout


@pytest.mark.parametrize("argv", [
    pytest.param(["validate", "experiments/demo.yaml", "--skip-data-check", "--no-show-spec"], id="validate"),
    pytest.param(["plan", "--help"], id="plan"),
])
def test_control_plane_commands_import_no_torch(argv: list[str]) -> None:
    code = ("import sys; from tdro.cli import main; rc = main(sys.argv[1:]); "
            "heavy = sorted(m for m in ('torch', 'transformers', 'faiss') if m in sys.modules); "
            "print('imported:', heavy); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert "imported: []" in done.stdout, done.stdout


class Point(BaseModel):
    x: int
    y: int


def test_a_validation_error_at_the_edge_is_one_line_per_problem() -> None:
    with pytest.raises(ValidationError) as caught:
        Point(x="a")  # type: ignore[arg-type]
    assert user_error_lines(caught.value) == [
        "Point: x: Input should be a valid integer, unable to parse string as an integer",
        "Point: y: Field required",
    ]


def test_a_bug_is_not_a_user_error() -> None:
    assert user_error_lines(RuntimeError("boom")) is None


def test_exit_on_user_error_prints_each_problem_and_exits_with_code_2(capsys) -> None:
    with pytest.raises(SystemExit) as caught, exit_on_user_error():
        raise UserError("spec.yaml: train.steps: must be > 0", "spec.yaml: dro.eta: must be > 0")
    assert caught.value.code == USER_ERROR_EXIT_CODE
    assert capsys.readouterr().err.splitlines() == [
        "error: spec.yaml: train.steps: must be > 0", "error: spec.yaml: dro.eta: must be > 0",
    ]


def test_exit_on_user_error_lets_a_bug_keep_its_traceback() -> None:
    with pytest.raises(ZeroDivisionError), exit_on_user_error():
        _ = 1 / 0


def test_a_user_error_is_printed_as_it_is_not_as_markup(capsys) -> None:
    assert main(["validate", "[bold]missing[/bold].yaml"]) == USER_ERROR_EXIT_CODE
    err = capsys.readouterr().err
    assert "[bold]missing[/bold].yaml" in err, err


@pytest.mark.parametrize(("argv_tail", "expected"), [
    pytest.param(["output.runs_dir={file}/runs"],
                 "{file}/runs: cannot write ({file} is a file, not a folder)", id="runs_dir_under_a_file"),
    pytest.param(["output.catalog={file}/c.duckdb"], "{file}: cannot create a folder here (it is a file)",
                 id="catalog_under_a_file"),
])
def test_an_output_path_under_a_regular_file_is_one_line(tmp_path, monkeypatch, capsys, argv_tail, expected):
    from tests.runner_project import write_project_with_model_folder

    spec = write_project_with_model_folder(tmp_path)
    monkeypatch.setenv("TDRO_REGISTRY", str(tmp_path / "registry"))
    afile = tmp_path / "afile"
    afile.write_text("")
    assert main(["run", str(spec), *(a.format(file=afile) for a in argv_tail)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"error: {expected.format(file=afile)}"]
