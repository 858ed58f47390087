"""Where a `tdro` command ends: its exit code, and user errors as one line each on stderr.

Exit codes: 0 done; 1 a command's own failure (`tdro run` with a failed stage, `tdro data check` with
bad lines); 2 a user error or a usage error (one line, no traceback) and a group named alone (its help
on stdout); 130 interrupted. What counts as a user error and how it reads is `tdro.errors`, the same
boundary the stage jobs end through; this module adds only click's control flow (exit, abort, help).
"""

from __future__ import annotations

from types import ModuleType

import click
import typer
from rich.text import Text

from tdro.cli.console import err_console
from tdro.errors import INTERRUPTED_EXIT_CODE, USER_ERROR_EXIT_CODE, report_user_error

_vendored_click: ModuleType | None
try:  # typer 0.2x carries its own copy of click, whose errors are not click's classes
    from typer._click import exceptions as _vendored_click
except ImportError:  # older typer: plain click
    _vendored_click = None
_CLICK = [m for m in (click.exceptions, _vendored_click) if m is not None]
_NO_ARGS_HELP = tuple(m.NoArgsIsHelpError for m in _CLICK if hasattr(m, "NoArgsIsHelpError"))
_ABORTS = tuple(m.Abort for m in _CLICK if hasattr(m, "Abort"))
_EXITS = tuple({click.exceptions.Exit, typer.Exit})


def print_error(line: str) -> None:
    """`error: <line>` on stderr, `error:` in red on a terminal; the line is printed as it is."""
    err_console.print(Text.assemble(("error:", "red"), " ", line), highlight=False)


def run_app(app: typer.Typer, argv: list[str] | None, prog_name: str = "tdro") -> int:
    """Run a typer app on `argv` (None: the process's arguments) and return its exit code."""
    try:
        code = app(args=argv, standalone_mode=False, prog_name=prog_name)
    except _EXITS as exc:
        return int(getattr(exc, "exit_code", 0))
    except (*_ABORTS, KeyboardInterrupt):
        err_console.print("aborted")
        return INTERRUPTED_EXIT_CODE
    except _NO_ARGS_HELP as exc:  # `tdro` or `tdro data` alone: the help, as click prints it standalone
        print(exc.format_message())
        return USER_ERROR_EXIT_CODE
    except Exception as exc:
        reported = report_user_error(exc, print_error)
        if reported is None:  # a bug: keep its traceback
            raise
        return reported
    # Without standalone mode, click returns (not raises) the code of typer.Exit and of Ctrl-C.
    return code if isinstance(code, int) else 0
