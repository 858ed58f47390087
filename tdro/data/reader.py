"""Random access to a JSONL training dataset through a cached byte-offset index.

`JsonlReader(path)` reads a file, or a folder whose `*.jsonl` files (sorted by name) form one dataset.
Opening scans each file once: it records where every line starts, validates every line (see `records`),
and hashes the bytes. The result is cached under the index directory (`cache_dir`, else
`$TDRO_INDEX_DIR`, else `~/.cache/tdro/index`, else a per-user temp dir when that is not writable), keyed
by the file's absolute path, size and mtime, so a second open reads a few arrays instead of the file.
Rows are read with `os.pread` on demand; the file is never held in memory.

Blank lines are not rows. A bad line (invalid JSON, missing field, no positives, wrong types, empty
query) raises `UserError("file:line: reason")` unless `skip_bad_lines`, in which case it is left out
and listed in `.skipped`. Which files a dataset is and its `.fingerprint` follow `tdro.data.files`, the
rule the plan uses for stage ids: it changes exactly when the data changes, not with the path, a file's
name, the mtime or `skip_bad_lines`. Given `expected_fingerprint` (the stage file's), a reader whose data
differs refuses to open: a stage never trains on data other than the data its id was computed from.
"""

from __future__ import annotations

import bisect
import gc
import hashlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tdro.data.files import data_changed, dataset_files, fingerprint
from tdro.data.records import BadLine, Decoder, QueryGroup, ScoredPair, decode_group
from tdro.errors import UserError

INDEX_VERSION = 1
_CHUNK = 16 << 20
_NEWLINE = 10


@dataclass
class FileIndex:
    """Where the valid rows of one file are, which lines were bad, and the file's content hash."""

    starts: np.ndarray  # int64 byte offset of each valid row
    lengths: np.ndarray  # int32 byte length of each valid row (no newline)
    bad: list[str] = field(default_factory=list)  # "file:line: reason", in file order
    sha256: str = ""
    lines: int = 0  # physical lines, blank and bad ones included


def default_index_dir() -> Path:
    """The first writable of $TDRO_INDEX_DIR, ~/.cache/tdro/index and a per-user temp dir."""
    env = os.environ.get("TDRO_INDEX_DIR")
    candidates = [Path(env)] if env else [Path.home() / ".cache" / "tdro" / "index"]
    candidates.append(Path(tempfile.gettempdir()) / f"tdro-index-{os.getuid()}")
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder
    raise UserError("no writable folder for the data index; set TDRO_INDEX_DIR")


def scan_file(path: Path, label: str, decode: Decoder = decode_group) -> FileIndex:
    """Read `path` once: row offsets, validation of every line, SHA-256 of the bytes."""
    hasher = hashlib.sha256()
    starts: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    bad: list[str] = []
    base = 0  # file offset of buf[0]
    line_no = 0
    carry = b""
    # hashlib releases the GIL on large buffers: hash on a second thread while this one validates.
    with open(path, "rb") as fh, ThreadPoolExecutor(max_workers=1) as hashing:
        while True:
            chunk = fh.read(_CHUNK)
            hashing.submit(hasher.update, chunk)  # one worker: chunks are hashed in order
            buf = carry + chunk if carry else chunk
            if not chunk:  # end of file: a last line without newline
                if buf:
                    buf += b"\n"
                else:
                    break
            newlines = np.flatnonzero(np.frombuffer(buf, np.uint8) == _NEWLINE)
            if newlines.size == 0:
                carry = buf
                continue
            ends = newlines
            begins = np.concatenate(([0], newlines[:-1] + 1))
            ok, bad_here = _validate(buf, begins, ends, line_no, label, decode)
            bad.extend(bad_here)
            starts.append(begins[ok] + base)
            lengths.append((ends - begins)[ok].astype(np.int32))
            line_no += newlines.size
            used = int(newlines[-1]) + 1
            base += used
            carry = buf[used:]
            if not chunk:
                break
    return FileIndex(  # leaving the `with` waited for the hashing thread
        starts=np.concatenate(starts) if starts else np.zeros(0, np.int64),
        lengths=np.concatenate(lengths) if lengths else np.zeros(0, np.int32),
        bad=bad, sha256=hasher.hexdigest(), lines=line_no,
    )


def _validate(buf: bytes, begins: np.ndarray, ends: np.ndarray, first_line: int, label: str,
              decode: Decoder):
    """Mask of valid rows among the lines of `buf`, and the bad lines' messages."""
    view = memoryview(buf)
    ok = np.ones(begins.size, dtype=bool)
    bad: list[str] = []
    was_enabled = gc.isenabled()
    gc.disable()  # millions of short-lived lists would trigger useless collections
    try:
        for i, (b, e) in enumerate(zip(begins.tolist(), ends.tolist(), strict=True)):
            if e - b <= 1 and (e == b or buf[b] == 13):  # blank (or a lone CR): not a row
                ok[i] = False
                continue
            try:
                decode(view[b:e])
            except BadLine as err:
                ok[i] = False
                bad.append(f"{label}:{first_line + i + 1}: {err}")
    finally:
        if was_enabled:
            gc.enable()
    return ok, bad


def _cache_key(path: Path, decode: Decoder) -> str:
    st = path.stat()
    kind = "" if decode is decode_group else f"|{decode.__name__}"  # group indexes keep their old keys
    ident = f"{INDEX_VERSION}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}{kind}"
    return hashlib.sha256(ident.encode()).hexdigest()[:32]


def _load_cached(cache_file: Path) -> FileIndex | None:
    try:
        with np.load(cache_file, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            return FileIndex(starts=data["starts"], lengths=data["lengths"], bad=meta["bad"],
                             sha256=meta["sha256"], lines=meta["lines"])
    except (OSError, ValueError, KeyError):
        return None  # missing or unreadable: rebuild


def _store(cache_file: Path, index: FileIndex) -> None:
    meta = json.dumps({"bad": index.bad, "sha256": index.sha256, "lines": index.lines}).encode()
    tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, starts=index.starts, lengths=index.lengths, meta=np.frombuffer(meta, np.uint8))
        os.replace(tmp, cache_file)
    except OSError:
        tmp.unlink(missing_ok=True)  # a cache we cannot write only costs a rescan next time


class JsonlReader:
    """A training dataset: `len(reader)`, `reader[i] -> QueryGroup` (or `ScoredPair` with
    `decode=decode_scored_pair`), `.skipped`, `.fingerprint`."""

    def __init__(self, path: str | Path, *, skip_bad_lines: bool = False,
                 cache_dir: str | Path | None = None, expected_fingerprint: str | None = None,
                 decode: Decoder = decode_group) -> None:
        self.path = Path(path)
        self.decode = decode
        self.skip_bad_lines = skip_bad_lines
        self.files = dataset_files(self.path)
        index_dir = Path(cache_dir) if cache_dir is not None else default_index_dir()
        index_dir.mkdir(parents=True, exist_ok=True)
        self.built_files: list[Path] = []  # files whose index this open had to build (not cached)
        self._indexes: list[FileIndex] = []
        for file in self.files:
            cache_file = index_dir / f"{_cache_key(file, decode)}.npz"
            index = _load_cached(cache_file)
            if index is None:
                index = scan_file(file, str(file), decode)
                _store(cache_file, index)
                self.built_files.append(file)
            self._indexes.append(index)
        self.fingerprint = fingerprint([ix.sha256 for ix in self._indexes])
        if expected_fingerprint is not None and self.fingerprint != expected_fingerprint:
            raise data_changed(self.path, self.fingerprint, expected_fingerprint)
        self.skipped: list[str] = [msg for ix in self._indexes for msg in ix.bad]
        if self.skipped and not skip_bad_lines:
            more = len(self.skipped) - 1
            hint = f"{more} more bad line(s) follow; " if more else ""
            raise UserError(self.skipped[0], f"{hint}fix them or set data.skip_bad_lines: true to skip them")
        self._cum = np.cumsum([len(ix.starts) for ix in self._indexes], dtype=np.int64)
        self._bounds = self._cum.tolist()  # rows before the end of each file, for bisect
        self._fds: dict[int, int] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return int(self._cum[-1]) if self._cum.size else 0

    def __getitem__(self, i: int) -> QueryGroup | ScoredPair:
        return self.decode(self.raw(i))

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def raw(self, i: int) -> bytes:
        """The bytes of row `i` (no newline)."""
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"row {i} out of range for {self.path} ({n} rows)")
        f = bisect.bisect_right(self._bounds, i) if len(self._bounds) > 1 else 0
        j = i - (self._bounds[f - 1] if f else 0)
        ix = self._indexes[f]
        return os.pread(self._fd(f), int(ix.lengths[j]), int(ix.starts[j]))

    def _fd(self, f: int) -> int:
        if self._pid != os.getpid():  # forked (a data worker): descriptors are not shared safely
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(f)
        if fd is None:
            fd = self._fds[f] = os.open(self.files[f], os.O_RDONLY)
        return fd

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def __del__(self) -> None:
        try:
            if self._pid == os.getpid():
                self.close()
        except AttributeError:  # __init__ failed before the descriptors existed
            pass

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fds"] = {}
        return state
