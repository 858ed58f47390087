"""User errors: one line naming file, line or field; the CLI prints it and exits with code 2.

Raise `UserError` for anything the user can fix (bad spec, malformed data line, missing file, a model
that cannot be loaded). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

USER_ERROR_EXIT_CODE = 2


class UserError(Exception):
    """One or more problems the user can fix; each is one line."""

    def __init__(self, *problems: str) -> None:
        self.problems = [p for p in problems if p] or ["unknown error"]
        super().__init__("\n".join(self.problems))
