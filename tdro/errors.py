"""User errors and the one boundary that turns them into lines on stderr and exit code 2.

Raise `UserError` for anything the user can fix (bad spec, malformed data line, missing file, a model
that cannot be loaded). Anything else is a bug and keeps its traceback.

The boundary (`user_error_lines`, `report_user_error`, `exit_on_user_error`) is the only code that
prints a user error. It knows four kinds: a `UserError` (its lines as they are), a pydantic
`ValidationError` that escaped to the edge (one line per error, `Model: field.path: message`), a
click usage error (`tdro plan: No such option: --bogus (see tdro plan --help)`) and an `OSError` of the
environment at a path (full disk, no permission, a file where a folder must be: `path: cannot write
(reason)`). The `tdro` command
(`tdro.cli`) and the stage jobs (`python -m tdro.stages.<kind>`) both end through it.

Standard library only, so the control plane and the work plane can both import it at the top. It
recognises pydantic and click errors by their classes in `sys.modules`: an exception cannot be an
instance of a class whose module was never imported, so nothing is imported here to check.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

USER_ERROR_EXIT_CODE = 2
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for Ctrl-C

# typer 0.2x carries its own copy of click, whose errors are not click's classes: check both.
_CLICK_MODULES = ("click.exceptions", "typer._click.exceptions")


class UserError(Exception):
    """One or more problems the user can fix; each is one line."""

    def __init__(self, *problems: str) -> None:
        self.problems = [p for p in problems if p] or ["unknown error"]
        super().__init__("\n".join(self.problems))


# What the environment, not the code, gets wrong: full disks, permissions, a file where a folder must be.
_ENVIRONMENT_ERRNOS = frozenset({
    errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST,
    errno.EISDIR, errno.ENAMETOOLONG, errno.ENOENT,
})


def path_error(path: str | os.PathLike[str], exc: OSError, doing: str = "cannot write") -> UserError:
    """One line for a file-system failure at `path`: the path, what failed and the system's reason, with
    the common causes said plainly (a regular file where a folder must be, a full disk, no permission)."""
    target = Path(path)
    if exc.errno == errno.EEXIST and target.exists() and not target.is_dir():
        return UserError(f"{target}: cannot create a folder here (it is a file)")
    for parent in target.parents:
        if parent.exists() and not parent.is_dir():
            return UserError(f"{target}: {doing} ({parent} is a file, not a folder)")
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return UserError(f"{target}: {doing} ({reason})")


def _loaded_classes(modules: tuple[str, ...], name: str) -> tuple[type, ...]:
    found = (getattr(sys.modules.get(m), name, None) for m in modules)
    return tuple(c for c in found if isinstance(c, type))


def _validation_lines(exc: Any) -> list[str]:
    """One line per pydantic error: `Model: field.path: message`."""
    lines = []
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"])
        lines.append(f"{exc.title}: {field}: {err['msg']}" if field else f"{exc.title}: {err['msg']}")
    return lines


def _usage_line(exc: Any) -> str:
    """One line for a command-line usage error: the command, what is wrong, where help is."""
    message = " ".join(exc.format_message().split()).rstrip(".")
    ctx = getattr(exc, "ctx", None)
    if ctx is None:
        return message
    return f"{ctx.command_path}: {message} (see {ctx.command_path} --help)"


def user_error_lines(exc: BaseException) -> list[str] | None:
    """The lines to show for an error the user can fix, or None when `exc` is a bug."""
    if isinstance(exc, UserError):
        return exc.problems
    if isinstance(exc, _loaded_classes(("pydantic_core",), "ValidationError")):
        return _validation_lines(exc)
    if isinstance(exc, _loaded_classes(_CLICK_MODULES, "ClickException")):
        return [_usage_line(exc)]
    if isinstance(exc, OSError) and exc.filename and exc.errno in _ENVIRONMENT_ERRNOS:
        doing = "failed" if exc.errno == errno.ENOENT else "cannot write"
        return path_error(exc.filename, exc, doing).problems
    return None


def print_error(line: str) -> None:
    print(f"error: {line}", file=sys.stderr)


def report_user_error(exc: BaseException, write: Callable[[str], None] = print_error) -> int | None:
    """Write each line of a user error with `write`; return 2. A bug: nothing written, None returned."""
    lines = user_error_lines(exc)
    if lines is None:
        return None
    for line in lines:
        write(line)
    return USER_ERROR_EXIT_CODE


@contextmanager
def exit_on_user_error(write: Callable[[str], None] = print_error) -> Iterator[None]:
    """Inside: a user error is written one line per problem and ends the process with code 2.

    A bug propagates with its traceback. Use: `with exit_on_user_error(): job(stage)`.
    """
    try:
        yield
    except Exception as exc:
        if report_user_error(exc, write) is None:
            raise
        raise SystemExit(USER_ERROR_EXIT_CODE) from None
