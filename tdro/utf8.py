"""Text and JSON-lines files read as UTF-8, with errors that name the file and line.

Standard library only. `decode(path, data)` for a whole file, `lines(path)` for line-by-line reading;
both raise (or, for `lines`, report) `not valid UTF-8` with the line number and the byte, never a
`UnicodeDecodeError` traceback. `text_lines` and `json_lines` are the loops every line-based reader
shares: blank lines skipped, each bad line reported as `file:line: reason` and skipped, so that a reader
can collect every problem and check only what its own rows mean.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tdro.errors import UserError


def problem(path: Path, exc: UnicodeDecodeError, line: int) -> str:
    return f"{path}:{line}: not valid UTF-8 (byte 0x{exc.object[exc.start]:02x})"


def decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(problem(path, exc, data.count(b"\n", 0, exc.start) + 1)) from None


def read_text(path: Path) -> str:
    return decode(path, path.read_bytes())


def lines(path: Path) -> Iterator[tuple[int, str | UnicodeDecodeError]]:
    """(line number, text) of each line; the decode error in place of the text of a line that is not UTF-8,
    so that a caller collecting problems can name it and go on."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, exc


def text_lines(path: Path, report: Callable[[str], None]) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-blank line; a line that is not UTF-8 is reported and skipped."""
    for number, raw in lines(path):
        if isinstance(raw, UnicodeDecodeError):
            report(problem(path, raw, number))
        elif raw.strip():
            yield number, raw


def json_lines(path: Path, report: Callable[[str], None]) -> Iterator[tuple[int, Any]]:
    """(line number, JSON value) of each non-blank line; a line that is not UTF-8 or not JSON is reported
    and skipped."""
    for number, raw in text_lines(path, report):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            report(f"{path}:{number}: malformed JSON ({exc.msg})")
            continue
        yield number, value
