"""Writers of stage outputs, all atomic (temp name in the same folder, then rename).

- `write_json(path, data)`, `write_result(output_dir, fields)` (adds `status: complete`).
- `write_parquet(path, rows, columns)`: a list of dicts as a parquet table with the given column order.
- `atomic_dir(target)`: a context manager yielding a temp folder renamed to `target` on success.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tdro.spec.stage_file import RESULT_FILE


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_json(path: str | Path, data: Any) -> Path:
    path = Path(path)
    tmp = _tmp(path)
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def write_result(output_dir: str | Path, fields: dict[str, Any]) -> Path:
    return write_json(Path(output_dir) / RESULT_FILE, {**fields, "status": "complete"})


def write_parquet(path: str | Path, rows: list[dict[str, Any]], columns: list[str]) -> Path:
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
