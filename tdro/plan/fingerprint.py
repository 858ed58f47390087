"""Cheap, stable identities of the inputs a stage reads: datasets, benchmarks, base models.

Choice: a dataset or benchmark fingerprint is the sha256 of its files' *content* (so regenerating the
demo collection byte for byte, or copying data to another machine, keeps stage ids); the dataset rule
and the hash cache are `tdro.data.files`, which the reader shares. A model folder is identified by the
names, sizes and mtimes of its files (weights can be many GB; hashing them on every plan would not be
cheap); a package model by package name and installed version; a hub model by id and revision. A
weights file inside a package (`source: {package, file, format}`) by the sha256 of the file and its
format, which is also what its converted folder is cached by (`tdro.modeling.source`): a package release
that ships the same file keeps stage ids, another file changes them. The hash is remembered per process by
(path, size, mtime), so one plan hashes each file once.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from tdro.data.files import FingerprintCache, file_sha256, fingerprint
from tdro.errors import UserError
from tdro.spec.cards import BenchmarkCard, DatasetCard, ModelSource
from tdro.spec.package_file import package_file


def dataset_fingerprint(card: DatasetCard, cache: FingerprintCache) -> str:
    try:
        return cache.dataset_fingerprint(card.resolved_path)
    except UserError as exc:
        raise UserError(f"dataset {card.name}: path {exc}") from None


def benchmark_fingerprint(card: BenchmarkCard, cache: FingerprintCache) -> str:
    root = Path(card.path).expanduser().resolve()
    files = [f.resolve() for f in card.files()]  # the card's kind says which files it reads
    missing = [f.relative_to(root).as_posix() for f in files if not f.is_file()]
    if missing:
        raise UserError(f"benchmark {card.name}: {card.path}: missing {', '.join(missing)}")
    return fingerprint([cache.file_hash(f) for f in files])


def model_identity(source: ModelSource) -> str:
    """What names the base model's weights, for stage ids (only a packaged weights file is hashed)."""
    if source.hub_id:
        return f"hub:{source.hub_id}@{source.revision or 'default'}"
    if source.package and source.file and source.format:
        file = package_file(source.package, source.file)
        stat = file.stat()
        return f"file:{source.format.value}:{_file_sha256(str(file), stat.st_size, stat.st_mtime_ns)}"
    if source.package:
        return f"package:{source.package}=={_package_version(source.package)}"
    folder = Path(source.path or "").expanduser().resolve()
    if not folder.is_dir():
        raise UserError(f"model source path {source.path}: no such folder")
    stats = sorted(
        f"{p.relative_to(folder).as_posix()}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
        for p in folder.rglob("*") if p.is_file()
    )
    return "path:" + hashlib.sha256("\n".join(stats).encode()).hexdigest()


@lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:  # size and mtime key the cache
    return file_sha256(Path(path))


def _package_version(module: str) -> str:
    from importlib import metadata

    for candidate in (module, module.replace("_", "-")):
        try:
            return metadata.version(candidate)
        except metadata.PackageNotFoundError:
            continue
    dists = metadata.packages_distributions().get(module, [])
    return metadata.version(dists[0]) if dists else "unknown"
