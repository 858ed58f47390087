"""Load an experiment spec: YAML + `extends` + `${...}` interpolation + dotted overrides -> validated arms.

Contract: `load_experiment(path, overrides)` either returns an `Experiment` whose every arm is a
validated `ExperimentSpec` with its cards resolved, or raises `UserError` with one line per problem, each
naming the file and the dotted field. Nothing here touches torch or the data itself (only whether the
data paths exist).

- `extends: base.yaml` (or a list) merges the named spec files first; paths are relative to the file
  that names them; later files and then overrides win.
- Overrides are `key=value` with YAML values (`train.steps=5`, `evaluate.metrics=[ndcg@10]`); a key
  that is not a field of the spec is an error, with the close match suggested.
- Sweeps: `sweep.grid` (cartesian), `sweep.zip` (lists zipped together, crossed with the grid) and
  `sweep.arms` (explicit arms, added as a union).
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ValidationError

from tdro.data.files import is_blank
from tdro.errors import UserError
from tdro.spec.cards import BenchmarkCard, DatasetCard, ModelCard, ModelSource
from tdro.spec.errors import _submodel, suggest, validation_problems
from tdro.spec.experiment import ExperimentSpec
from tdro.spec.registry import Registry, load_yaml_config, read_yaml

EXTENDS = "extends"
DEFAULT_ARM = "default"


@dataclass(frozen=True)
class Arm:
    name: str
    assignments: dict[str, Any]
    spec: ExperimentSpec
    model: ModelCard
    datasets: list[DatasetCard]
    benchmarks: list[BenchmarkCard]


@dataclass(frozen=True)
class Experiment:
    spec: ExperimentSpec  # the spec before sweep assignments
    path: Path
    resolved: dict[str, Any]
    arms: list[Arm]
    registry: Registry


# ---------------------------------------------------------------------------------------------- keys


def _container_kind(annotation: Any) -> str | None:
    """'dict' or 'list' when the annotation (or a member of its union) is one."""
    candidates = [annotation, *typing.get_args(annotation)] if typing.get_origin(annotation) in (
        typing.Union, types.UnionType) else [annotation]
    for candidate in candidates:
        origin = typing.get_origin(candidate)
        if origin is dict:
            return "dict"
        if origin is list:
            return "list"
    return None


def key_problem(dotted: str, model: type[BaseModel] = ExperimentSpec) -> str | None:
    """None when `dotted` names a field of the spec, else the reason (with a suggestion)."""
    parts = dotted.split(".")
    current: Any = model
    i = 0
    while i < len(parts):
        part = parts[i]
        if current is None:
            return None  # inside a free-form mapping or a plain value list
        fields = current.model_fields
        if part not in fields:
            return "unknown field" + suggest(part, fields)
        annotation = fields[part].annotation
        kind = _container_kind(annotation)
        current = None if kind == "dict" else _submodel(annotation)
        if kind == "list" and i + 1 < len(parts):
            if not parts[i + 1].isdigit():
                return f"{'.'.join(parts[: i + 1])} is a list; index it with a number"
            i += 1
        elif current is None and kind is None and i + 1 < len(parts):
            return f"{'.'.join(parts[: i + 1])} has no sub-fields"
        i += 1
    return None


# ------------------------------------------------------------------------------------------- loading


def _load_with_extends(path: Path, seen: tuple[Path, ...] = ()) -> DictConfig:
    path = path.resolve()
    if path in seen:
        raise UserError(f"{path}: extends: cycle through {' -> '.join(p.name for p in (*seen, path))}")
    if not path.is_file():
        where = f"{seen[-1]}: extends: " if seen else ""
        raise UserError(f"{where}{path}: spec file not found")
    conf = load_yaml_config(path)
    bases = conf.pop(EXTENDS, None)
    if bases is None:
        return conf
    if isinstance(bases, str):
        bases = [bases]
    merged = OmegaConf.create()
    for base in bases:
        base_conf = _load_with_extends(path.parent / str(base), (*seen, path))
        merged = cast(DictConfig, OmegaConf.merge(merged, base_conf))
    return OmegaConf.merge(merged, conf)  # type: ignore[return-value]


def _apply_overrides(conf: DictConfig, overrides: Sequence[str], where: str) -> DictConfig:
    problems = []
    for item in overrides:
        if "=" not in item:
            problems.append(f"override {item!r}: expected key=value")
            continue
        key = item.split("=", 1)[0].strip()
        reason = key_problem(key)
        if reason:
            problems.append(f"{where}: override {key}: {reason}")
    if problems:
        raise UserError(*problems)
    conf = conf.copy()
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        try:
            value = OmegaConf.from_dotlist([item])
            # an override replaces the node: `sweep.grid={}` empties the grid instead of merging nothing
            OmegaConf.update(conf, key, OmegaConf.select(value, key), merge=False, force_add=True)
        except yaml.YAMLError as exc:
            reason = str(exc).splitlines()[0]
            raise UserError(f"{where}: override {item!r}: not valid YAML ({reason})") from None
        except OmegaConfBaseException as exc:
            raise UserError(f"{where}: override {item!r}: {str(exc).splitlines()[0]}") from None
    return conf


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node: Any = data
    for depth, part in enumerate(parts[:-1], start=1):
        if isinstance(node, list):
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
            if node is None:  # e.g. a sweep over dro.measure in a spec with `dro: null`
                raise UserError(f"sweep sets {dotted}, but {'.'.join(parts[:depth])} is null in the spec")
    if isinstance(node, list):
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value


def _validate(data: dict[str, Any], where: str) -> ExperimentSpec:
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        raise UserError(*validation_problems(exc, ExperimentSpec, where)) from None


def _arm_assignments(spec: ExperimentSpec, where: str) -> list[tuple[str | None, dict[str, Any]]]:
    sweep = spec.sweep
    if sweep is None or not (sweep.grid or sweep.zip or sweep.arms):
        return [(None, {})]
    problems = []
    for section, keys in (("grid", sweep.grid), ("zip", sweep.zip)):
        for key in keys:
            if key.startswith("sweep"):
                problems.append(f"{where}: sweep.{section}.{key}: cannot sweep over the sweep itself")
            elif reason := key_problem(key):
                problems.append(f"{where}: sweep.{section}.{key}: {reason}")
    for i, arm in enumerate(sweep.arms):
        for key in arm.set:
            if reason := key_problem(key):
                problems.append(f"{where}: sweep.arms[{i}].set.{key}: {reason}")
    if problems:
        raise UserError(*problems)
    out: list[tuple[str | None, dict[str, Any]]] = []
    if sweep.grid or sweep.zip:
        grid_keys = list(sweep.grid)
        zipped = list(zip(*sweep.zip.values(), strict=True)) if sweep.zip else [()]
        for combo in itertools.product(*(sweep.grid[k] for k in grid_keys)):
            for z in zipped:
                assignment = dict(zip(grid_keys, combo, strict=True))
                assignment.update(dict(zip(sweep.zip, z, strict=True)))
                out.append((None, assignment))
    out.extend((arm.name, dict(arm.set)) for arm in sweep.arms)
    return out


def arm_name(assignments: dict[str, Any]) -> str:
    if not assignments:
        return DEFAULT_ARM
    return ",".join(f"{k}={_show(v)}" for k, v in assignments.items())


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_show(v) for v in value) + "]"
    return str(value)


def _missing_model_source(source: ModelSource) -> str | None:
    """Why the weights cannot be found here, checked without importing anything heavy; None if they can."""
    if source.path and not Path(source.path).expanduser().is_dir():
        return f"source.path {source.path}: no such folder"
    if source.package and importlib.util.find_spec(source.package.split(".")[0]) is None:
        return f"source.package {source.package}: not installed"
    return None


def _empty_dataset(card: DatasetCard) -> str | None:
    try:
        return f"{card.path}: no rows (the dataset is empty)" if is_blank(card.resolved_path) else None
    except UserError as exc:
        return exc.problems[0]


def _resolve_cards(
    spec: ExperimentSpec, registry: Registry, where: str, check_data: bool = True
) -> tuple[ModelCard, list[DatasetCard], list[BenchmarkCard]]:
    problems: list[str] = []
    model: ModelCard | None = None
    if isinstance(spec.base_model, ModelCard):
        model = spec.base_model
    else:
        try:
            model = registry.model(spec.base_model)
        except UserError as exc:
            problems.append(f"{where}: base_model: {exc.problems[0]}")
    if check_data and model is not None and (missing := _missing_model_source(model.source)):
        problems.append(f"{where}: base_model ({model.name}): {missing}")
    datasets: list[DatasetCard] = []
    for i, name in enumerate(spec.datasets):
        try:
            card = registry.dataset(name)
        except UserError as exc:
            problems.append(f"{where}: datasets[{i}]: {exc.problems[0]}")
            continue
        if check_data and not card.generated_by:
            if not card.resolved_path.exists():
                problems.append(f"{where}: datasets[{i}] ({name}): data not found at {card.path}")
            elif (empty := _empty_dataset(card)) is not None:
                problems.append(f"{where}: datasets[{i}] ({name}): {empty}")
        # absolute from here on: stage files must not depend on the directory a job runs in
        datasets.append(card.model_copy(update={"path": str(card.resolved_path)}))
    benchmarks: list[BenchmarkCard] = []
    for i, name in enumerate(spec.evaluate.benchmarks):
        try:
            bench = registry.benchmark(name)
        except UserError as exc:
            problems.append(f"{where}: evaluate.benchmarks[{i}]: {exc.problems[0]}")
            continue
        if check_data and not bench.generated_by and not Path(bench.path).expanduser().is_dir():
            problems.append(f"{where}: evaluate.benchmarks[{i}] ({name}): folder not found at {bench.path}")
        benchmarks.append(bench.model_copy(update={"path": str(Path(bench.path).expanduser().resolve())}))
    if problems:
        raise UserError(*problems)
    assert model is not None
    return model, datasets, benchmarks


def load_experiment(
    path: str | Path,
    overrides: Sequence[str] = (),
    registry: Registry | None = None,
    *,
    check_data: bool = True,
) -> Experiment:
    path = Path(path)
    where = str(path)
    conf = _apply_overrides(_load_with_extends(path), overrides, where)
    try:
        resolved = OmegaConf.to_container(conf, resolve=True)
    except OmegaConfBaseException as exc:
        raise UserError(f"{where}: {str(exc).splitlines()[0]}") from None
    assert isinstance(resolved, dict)
    spec = _validate(resolved, where)  # type: ignore[arg-type]
    registry = registry or Registry.load()
    arms: list[Arm] = []
    names: set[str] = set()
    for explicit, assignment in _arm_assignments(spec, where):
        data = copy.deepcopy(cast(dict[str, Any], resolved))  # each arm edits its own copy
        data.pop("sweep", None)
        for key, value in assignment.items():
            try:
                _set_dotted(data, key, value)
            except UserError as exc:
                raise UserError(f"{where}: {exc.problems[0]}") from None
        name = explicit or arm_name(assignment)
        if name in names:
            raise UserError(f"{where}: sweep: two arms named {name!r}")
        names.add(name)
        arm_spec = _validate(data, f"{where}: arm {name}")
        model, datasets, benchmarks = _resolve_cards(arm_spec, registry, where, check_data)
        arms.append(Arm(name, assignment, arm_spec, model, datasets, benchmarks))
    return Experiment(spec=spec, path=path, resolved=resolved, arms=arms, registry=registry)  # type: ignore[arg-type]


__all__ = ["Arm", "Experiment", "key_problem", "load_experiment", "read_yaml", "arm_name"]
