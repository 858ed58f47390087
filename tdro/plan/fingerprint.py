"""Cheap, stable identities of the inputs a stage reads: datasets, benchmarks, base models.

Choice: a dataset or benchmark fingerprint is the sha256 of its files' *content* (so regenerating the
demo collection byte for byte, or copying data to another machine, keeps stage ids), and that hash is
cached in `<runs_dir>/.fingerprints.json` keyed by (resolved path, size, mtime_ns): the control plane
hashes a file once and afterwards only stats it. A model folder is identified by the names, sizes and
mtimes of its files (weights can be many GB; hashing them on every plan would not be cheap); a package
model by package name and installed version; a hub model by id and revision.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from tdro.spec.cards import BenchmarkCard, DatasetCard, ModelSource

CACHE_FILE = ".fingerprints.json"


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
        with file.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        self._entries[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
        self._dirty = True
        return digest

    def files_hash(self, root: Path, files: Iterable[Path]) -> str:
        parts = [f"{f.relative_to(root).as_posix()}:{self.file_hash(f)}" for f in sorted(files)]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def save(self) -> None:
        if not (self.path and self._dirty):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self._entries, sort_keys=True))
        tmp.replace(self.path)
        self._dirty = False


def dataset_files(card: DatasetCard) -> tuple[Path, list[Path]]:
    path = card.resolved_path
    if path.is_dir():
        return path, sorted(p for p in path.rglob("*.jsonl*") if p.is_file())
    return path.parent, [path]


def dataset_fingerprint(card: DatasetCard, cache: FingerprintCache) -> str:
    root, files = dataset_files(card)
    missing = [f for f in files if not f.is_file()]
    if missing or not files:
        from tdro.errors import UserError

        raise UserError(f"dataset {card.name}: path {card.path}: no such file or no *.jsonl files in it")
    return cache.files_hash(root, files)


def benchmark_fingerprint(card: BenchmarkCard, cache: FingerprintCache) -> str:
    root = Path(card.path).expanduser().resolve()
    files = [root / "corpus.jsonl", root / "queries.jsonl", root / "qrels" / f"{card.split}.tsv"]
    missing = [f.relative_to(root).as_posix() for f in files if not f.is_file()]
    if missing:
        from tdro.errors import UserError

        raise UserError(f"benchmark {card.name}: {card.path}: missing {', '.join(missing)}")
    return cache.files_hash(root, files)


def model_identity(source: ModelSource) -> str:
    """What names the base model's weights, for stage ids (no hashing of weight files)."""
    if source.hub_id:
        return f"hub:{source.hub_id}@{source.revision or 'default'}"
    if source.package:
        return f"package:{source.package}=={_package_version(source.package)}"
    folder = Path(source.path or "").expanduser().resolve()
    if not folder.is_dir():
        from tdro.errors import UserError

        raise UserError(f"model source path {source.path}: no such folder")
    stats = sorted(
        f"{p.relative_to(folder).as_posix()}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
        for p in folder.rglob("*") if p.is_file()
    )
    return "path:" + hashlib.sha256("\n".join(stats).encode()).hexdigest()


def _package_version(module: str) -> str:
    from importlib import metadata

    for candidate in (module, module.replace("_", "-")):
        try:
            return metadata.version(candidate)
        except metadata.PackageNotFoundError:
            continue
    dists = metadata.packages_distributions().get(module, [])
    return metadata.version(dists[0]) if dists else "unknown"
