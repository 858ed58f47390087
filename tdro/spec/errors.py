"""Turn pydantic and omegaconf failures into one line per problem: `file: dotted.field: reason`."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError


def _dotted(loc: Iterable[Any]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif parts:
            parts.append(f".{item}")
        else:
            parts.append(str(item))
    return "".join(parts)


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (sub)model at `loc`, for close-match suggestions."""
    current: Any = model
    for item in loc:
        if isinstance(item, int) or current is None:
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or item not in fields:
            return []
        current = _submodel(fields[item].annotation)
    fields = getattr(current, "model_fields", None)
    return list(fields) if fields else []


def _submodel(annotation: Any) -> Any:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def validation_problems(exc: ValidationError, model: type[BaseModel], where: str) -> list[str]:
    """One line per pydantic error: `where: field.path: message`."""
    problems = []
    seen: set[str] = set()
    for err in exc.errors():
        loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and "[" in x and "]" in x))
        field = _dotted(loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = "unknown field" + suggest(str(loc[-1]), _fields_at(model, loc[:-1]))
        elif kind == "enum":
            expected = err.get("ctx", {}).get("expected", "")
            msg = f"unknown value {err.get('input')!r}; expected {expected}"
        elif kind == "missing":
            msg = "required field missing"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if "input" in err and kind.endswith(("_type", "_parsing")):
                msg += f", got {err['input']!r}"
        line = f"{where}: {field}: {msg}" if field else f"{where}: {msg}"
        if line not in seen:
            seen.add(line)
            problems.append(line)
    return problems
