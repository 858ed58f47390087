"""What a stage's id is made of: the stage file itself, minus what cannot change its result.

Contract: `stage_id(stage_file)` is the sha256 of the canonical JSON of `identity(stage_file)`, and
`identity` is the stage file's own dump with two kinds of field left out, both declared on the models:

- *run-only* fields, marked `Annotated[T, RUN_ONLY]`: they change how a stage runs, not what it computes
  (output paths, checkpoint intervals, evaluation batch sizes, resources, tracking);
- *inert* fields, named by a model's `inert_fields()` method: fields that cannot act under the values
  of the others (e.g. stage 1's reference floor with a measure that has no ratio).

Nothing else decides what counts: a new stage-file field counts toward the id unless it is marked, and
the object that is hashed is the object the job receives (marin's executor works the same way). An
`Upstream` value inside a stage file is an edge of the graph: its stage id counts, its path does not.

Worked example (two stage files differing only in a run-only field share an id):

    >>> from typing import Annotated
    >>> from pydantic import BaseModel
    >>> class Step(BaseModel):
    ...     lr: float
    ...     every: Annotated[int, RUN_ONLY] = 10
    >>> identity(Step(lr=0.1, every=5))
    {'lr': 0.1}
    >>> stage_id(Step(lr=0.1, every=5)) == stage_id(Step(lr=0.1))
    True
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

__all__ = ["RUN_ONLY", "RunOnly", "canonical_json", "identity", "stage_id"]


class RunOnly:
    """`Annotated` marker of a field that changes how a stage runs, not what it computes."""

    def __repr__(self) -> str:
        return "RUN_ONLY"


RUN_ONLY = RunOnly()


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def identity(value: Any) -> Any:
    """The JSON-able part of `value` that its result depends on (see the module docstring)."""
    if isinstance(value, BaseModel):
        inert = value.inert_fields() if hasattr(value, "inert_fields") else set()
        return {
            name: identity(getattr(value, name))
            for name, info in type(value).model_fields.items()
            if name not in inert and not any(isinstance(m, RunOnly) for m in info.metadata)
        }
    if isinstance(value, list | tuple):
        return [identity(v) for v in value]
    if isinstance(value, dict):
        return {str(k): identity(v) for k, v in value.items()}
    return to_jsonable_python(value)


def stage_id(stage_file: BaseModel) -> str:
    return hashlib.sha256(canonical_json(identity(stage_file)).encode()).hexdigest()
