"""The registry of cards: `registry/{datasets,models,benchmarks}/*.yaml`, one card per file.

Cards are loaded with omegaconf (so `${oc.env:TDRO_DATA,data}` works) and validated by pydantic.
The registry root is `$TDRO_REGISTRY`, else `./registry`. A card's name is its `name` field and must
equal the file stem.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ValidationError

from tdro import utf8
from tdro.errors import UserError
from tdro.spec.cards import BenchmarkCard, DatasetCard, ModelCard
from tdro.spec.errors import suggest, validation_problems

C = TypeVar("C", bound=BaseModel)


def default_root() -> Path:
    return Path(os.environ.get("TDRO_REGISTRY", "registry"))


def load_yaml_config(path: Path) -> DictConfig:
    """A YAML file as an omegaconf mapping; UserError naming file and line on bad YAML."""
    import yaml

    text = utf8.read_text(path)
    try:
        conf = OmegaConf.load(io.StringIO(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}{line}: YAML syntax error: {problem}") from None
    except OmegaConfBaseException as exc:
        raise UserError(f"{path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(conf, DictConfig):
        raise UserError(f"{path}: expected a mapping at the top level")
    return conf


def read_yaml(path: Path) -> dict:
    """A YAML file as a plain dict with interpolations resolved."""
    conf = load_yaml_config(path)
    try:
        data = OmegaConf.to_container(conf, resolve=True)
    except OmegaConfBaseException as exc:
        raise UserError(f"{path}: {str(exc).splitlines()[0]}") from None
    assert isinstance(data, dict)
    return data


def load_card(path: Path, model: type[C]) -> C:
    data = read_yaml(path)
    try:
        card = model.model_validate(data)
    except ValidationError as exc:
        raise UserError(*validation_problems(exc, model, str(path))) from None
    name = getattr(card, "name", path.stem)
    if name != path.stem:
        raise UserError(f"{path}: name: {name!r} must equal the file name {path.stem!r}")
    return card


@dataclass
class Registry:
    root: Path
    _cache: dict[tuple[str, str], BaseModel] = field(default_factory=dict)

    @classmethod
    def load(cls, root: str | Path | None = None) -> Registry:
        path = Path(root) if root is not None else default_root()
        if not path.is_dir():
            raise UserError(
                f"{path}: registry folder not found (set TDRO_REGISTRY, or run from the project root)"
            )
        return cls(path)

    def names(self, kind: str) -> list[str]:
        folder = self.root / kind
        return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []

    def _get(self, kind: str, name: str, model: type[C]) -> C:
        key = (kind, name)
        if key not in self._cache:
            path = self.root / kind / f"{name}.yaml"
            if not path.is_file():
                singular = kind.rstrip("s")
                raise UserError(f"unknown {singular} card {name!r}" + suggest(name, self.names(kind)))
            self._cache[key] = load_card(path, model)
        return self._cache[key]  # type: ignore[return-value]

    def dataset(self, name: str) -> DatasetCard:
        return self._get("datasets", name, DatasetCard)

    def model(self, name: str) -> ModelCard:
        return self._get("models", name, ModelCard)

    def benchmark(self, name: str) -> BenchmarkCard:
        return self._get("benchmarks", name, BenchmarkCard)
