"""The two consoles every command prints to: answers on stdout, progress and errors on stderr.

Rich looks up `sys.stdout` / `sys.stderr` when it prints, so tests that capture them see the output.
"""

from __future__ import annotations

from rich.console import Console

console = Console()
err_console = Console(stderr=True, soft_wrap=True)
