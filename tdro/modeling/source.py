"""Where a model card's weights live: a local folder, a Python package that ships them, or a hub id.

A package source with `file` and `format` names a weights file inside the package; it resolves to the
folder converted from it (`tdro.modeling.convert.cache`: once per file, cached by its sha256). The
package itself is never imported for that (`tdro.spec.package_file`).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from tdro.errors import UserError
from tdro.spec.cards import ModelSource
from tdro.spec.package_file import package_file


def resolve_model_path(source: ModelSource) -> str:
    """A folder path, or a hub id that transformers resolves (only when the user has a network)."""
    if source.path:
        path = Path(source.path).expanduser()
        if not path.exists():
            raise UserError(f"model path {source.path}: no such folder")
        return str(path.resolve())
    if source.package and source.file and source.format:
        from tdro.modeling.convert.cache import converted_folder

        return str(converted_folder(package_file(source.package, source.file), source.format))
    if source.package:
        try:
            module = importlib.import_module(source.package)
        except ImportError as exc:
            raise UserError(f"model package {source.package}: not installed ({exc})") from None
        getter = getattr(module, "get_model_path", None)
        if getter is None:
            raise UserError(f"model package {source.package}: has no get_model_path()")
        return str(getter())
    assert source.hub_id
    return source.hub_id
