"""The `tdro` command: one package, one module per command group, one error boundary.

- `app`: the root typer app and `tdro validate` (`tdro.cli.app`), with the groups mounted on it:
  `tdro.cli.runner` (plan, run, status, sql, report), `tdro.cli.eval` (eval), `tdro.cli.data`
  (`tdro data ...`) and `tdro.cli.weights` (`tdro weights ...`).
- `main(argv)`: run a command and return its exit code; `run()`: the console entry point (`tdro`,
  and `python -m tdro`). Errors end in `tdro.cli.boundary` (one line each, exit code 2).

Control plane: importing this package imports no torch, transformers or faiss.
"""

from __future__ import annotations

import sys

from tdro.cli.app import app
from tdro.cli.boundary import run_app


def main(argv: list[str] | None = None) -> int:
    """Run the `tdro` command on `argv` (None: the process's arguments); return the exit code."""
    return run_app(app, argv, prog_name="tdro")


def run() -> None:
    sys.exit(main())


__all__ = ["app", "main", "run"]
