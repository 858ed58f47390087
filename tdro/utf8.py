"""Text files read as UTF-8, with an error that names the file and line of the first bad byte.

Standard library only. `decode(path, data)` for a whole file, `lines(path)` for line-by-line reading;
both raise (or, for `lines`, report) `not valid UTF-8` with the line number and the byte, never a
`UnicodeDecodeError` traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
