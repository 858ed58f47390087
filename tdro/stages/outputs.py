"""Writers of stage outputs, all atomic (temp name in the same folder, then rename).

(`result.json` is written by its model: `tdro.spec.stage_result`.)
- `write_parquet(path, rows, columns)`: a list of dicts as a parquet table with the given column order.
- `atomic_dir(target)`: a context manager yielding a temp folder renamed to `target` on success.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_parquet(path: str | Path, rows: list[dict[str, Any]], columns: Sequence[str]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    table = pa.table({c: [r.get(c) for r in rows] for c in columns})
    tmp = _tmp(path)
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    target = Path(target)
    tmp = _tmp(target)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
