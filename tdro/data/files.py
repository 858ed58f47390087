"""Which files a training dataset is, and its fingerprint: one rule for the plan and the reader.

Contract (stdlib only, so the control plane may import it):
- `dataset_files(path)`: a file is the dataset; a folder's dataset is its `*.jsonl` files directly inside
  it, sorted by name (the order the reader reads them). Nothing else in the folder counts: a stray
  `x.jsonl.bak` or a subfolder `old/` is not data.
- `source_files(path, split)`: the same, or with a BEIR `split` its corpus, queries and qrels files.
- `fingerprint(content_hashes)`: the sha256 over the files' content hashes in reading order. File names
  and paths do not enter, so renaming a file, or moving the data, keeps every stage id; reordering the
  files changes it, because the reader's row order (and so the sampling) changes with it.
- `FingerprintCache`: content hashes remembered by (resolved path, size, mtime_ns), saved atomically, so
  the plan hashes a file once and afterwards only stats it. The reader computes the same content hash
  while it indexes a file and compares its fingerprint with the one its stage file carries.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from tdro.errors import UserError

DATA_SUFFIX = ".jsonl"
FINGERPRINT_CACHE_FILE = ".fingerprints.json"  # inside the runs folder
_VERSION = b"tdro-dataset-v2\n"


def dataset_files(path: Path) -> list[Path]:
    """The files of the dataset at `path`, in reading order; a clear error when there are none."""
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.name.endswith(DATA_SUFFIX) and p.is_file())
        if not files:
            raise UserError(f"{path}: folder holds no *{DATA_SUFFIX} files")
        return files
    raise UserError(f"{path}: no such file or folder")


def beir_split_files(root: Path, split: str) -> list[Path]:
    """The files one BEIR split is, in a fixed order: corpus, queries, the split's qrels."""
    return [root / "corpus.jsonl", root / "queries.jsonl", root / "qrels" / f"{split}.tsv"]


def source_files(path: Path, split: str | None = None) -> list[Path]:
    """The files of a dataset source: a BEIR split's (when `split` is given) or `dataset_files(path)`."""
    if split is None:
        return dataset_files(path)
    files = beir_split_files(path, split)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise UserError(*(f"{m}: no such file" for m in missing))
    return files


def is_blank(path: Path) -> bool:
    """Whether the dataset at `path` holds no row at all (every file empty or whitespace only)."""
    for file in dataset_files(path):
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 16):
                if chunk.strip():
                    return False
    return True


def fingerprint(content_hashes: Sequence[str]) -> str:
    """A dataset's fingerprint from the sha256 of each of its files, in reading order."""
    return hashlib.sha256(_VERSION + "\n".join(content_hashes).encode()).hexdigest()


def file_sha256(file: Path) -> str:
    with file.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class FingerprintCache:
    """Content hashes of files, remembered by (path, size, mtime_ns); saved atomically."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, dict[str, object]] = {}
        self._dirty = False
        if path and path.is_file():
            try:
                self._entries = json.loads(path.read_text())
            except (OSError, ValueError):
                self._entries = {}  # a damaged cache is only a cache

    def file_hash(self, file: Path) -> str:
        stat = file.stat()
        key = str(file.resolve())
        entry = self._entries.get(key)
        if entry and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
            return str(entry["sha256"])
        digest = file_sha256(file)
        self._entries[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
        self._dirty = True
        return digest

    def dataset_fingerprint(self, path: Path, split: str | None = None) -> str:
        return fingerprint([self.file_hash(f) for f in source_files(path, split)])

    def save(self) -> None:
        if not (self.path and self._dirty):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self._entries, sort_keys=True))
        tmp.replace(self.path)
        self._dirty = False


def data_changed(shown: object, found: str, planned: str) -> UserError:
    """The error of a stage whose input data no longer has the fingerprint it was planned with."""
    return UserError(f"{shown}: the data changed since the stage was planned (fingerprint {found[:12]}, "
                     f"planned {planned[:12]}); plan again")


def require_fingerprint(shown: object, path: Path, split: str | None, planned: str) -> None:
    """Refuse data at `path` (a dataset, or a BEIR folder's `split`) whose fingerprint is not `planned`."""
    found = FingerprintCache(None).dataset_fingerprint(path, split)
    if found != planned:
        raise data_changed(shown, found, planned)
