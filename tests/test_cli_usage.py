"""Command-line usage errors are one line on stderr with exit code 2, never a traceback.

Regression: typer 0.2x carries its own copy of click, so `except click.ClickException` no longer caught
an unknown option or a missing argument, and `tdro` alone printed a traceback instead of the help.
"""

from __future__ import annotations

import pytest

from tdro.cli import main
from tdro.errors import USER_ERROR_EXIT_CODE


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
