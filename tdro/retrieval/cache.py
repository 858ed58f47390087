"""On-disk embedding cache: evaluating an unchanged model on unchanged texts encodes nothing.

Key = sha256 of (model identity, role, max length, the ordered texts as the encoder sees them, i.e.
with prompts and prefixes applied). The model identity (`model_identity`) hashes the content of the
folder's weight, tokenizer and config files, the RetrieverConfig fields that act inside the encoder
(pooling, normalisation, EOS handling, padding side) and the dtype, so a retrained model or a patched
tokenizer never reuses old vectors, while a changed query prompt or query length re-encodes the
queries only. File digests are remembered in
`<cache>/file_digests.json` by (path, size, mtime) so big weights are hashed once.
Entries are `<cache>/<model key[:16]>/<text key>.npy`, written to a temporary name and renamed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tdro.spec.retriever import RetrieverConfig

# Files whose content changes the embeddings; README, optimizer state etc. do not.
_MODEL_FILE_PATTERNS = (
    "*.safetensors", "*.bin", "*.pt", "*.model", "config.json", "tokenizer*.json", "vocab*",
    "merges.txt", "special_tokens_map.json", "added_tokens.json",
)
_DIGESTS_FILE = "file_digests.json"
# Prefixes, prompt style and max lengths are not here: they are part of each text key instead.
_ENCODER_FIELDS = {"pooling", "normalize", "eos", "padding_side"}


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def text_key(model_key: str, role: str, max_length: int, texts: Sequence[str]) -> str:
    digest = hashlib.sha256(f"{model_key}\0{role}\0{max_length}\0{len(texts)}\0".encode())
    for text in texts:
        encoded = text.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little"))  # length-prefixed: no ambiguous joins
        digest.update(encoded)
    return digest.hexdigest()


class EmbeddingCache:
    """A folder of cached embedding matrices; `EmbeddingCache(None)` caches nothing."""

    def __init__(self, folder: str | Path | None) -> None:
        self.folder = Path(folder).expanduser() if folder else None

    @property
    def enabled(self) -> bool:
        return self.folder is not None

    def _path(self, model_key: str, key: str) -> Path:
        assert self.folder is not None
        return self.folder / model_key[:16] / f"{key}.npy"

    def load(self, model_key: str, key: str, rows: int) -> np.ndarray | None:
        if self.folder is None:
            return None
        path = self._path(model_key, key)
        if not path.is_file():
            return None
        try:
            array = np.load(path)
        except (OSError, ValueError):
            return None  # a damaged entry is recomputed and overwritten
        return array if array.ndim == 2 and array.shape[0] == rows else None

    def save(self, model_key: str, key: str, array: np.ndarray) -> None:
        if self.folder is not None:
            atomic_write_bytes(self._path(model_key, key), lambda h: np.save(h, array, allow_pickle=False))

    def file_digest(self, path: Path) -> str:
        """sha256 of a file, remembered by (path, size, mtime) when the cache is enabled."""
        if self.folder is None:
            return _sha256_file(path)
        stat = path.stat()
        memo_key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        memo_path = self.folder / _DIGESTS_FILE
        try:
            memo = json.loads(memo_path.read_text()) if memo_path.is_file() else {}
        except (OSError, json.JSONDecodeError):
            memo = {}
        if memo_key not in memo:
            memo[memo_key] = _sha256_file(path)
            payload = json.dumps(memo, indent=0, sort_keys=True).encode()
            atomic_write_bytes(memo_path, lambda h: h.write(payload))
        return memo[memo_key]


def model_identity(path: str | Path, config: RetrieverConfig, dtype: str, cache: EmbeddingCache) -> str:
    """A hash of what determines the model's embeddings (see module docstring)."""
    folder = Path(path)
    digest = hashlib.sha256()
    encoder_fields = config.model_dump(mode="json", include=_ENCODER_FIELDS)
    digest.update(json.dumps(encoder_fields, sort_keys=True).encode())
    digest.update(f"\0{dtype}\0".encode())
    if folder.is_dir():
        files = sorted({f for pattern in _MODEL_FILE_PATTERNS for f in folder.glob(pattern) if f.is_file()})
        for file in files:
            digest.update(f"{file.name}\0{cache.file_digest(file)}\0".encode())
    else:
        digest.update(str(path).encode())  # a hub id: its name is all we know before loading
    return digest.hexdigest()
