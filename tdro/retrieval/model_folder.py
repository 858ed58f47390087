"""Which retriever `tdro eval MODEL` means, and how to use it: folder, RetrieverConfig, LoadSettings.

MODEL is tried as, in order:
1. a folder saved by tdro (`tdro_retriever.json` holds pooling, normalisation, lengths, prompts);
2. a folder with sentence-transformers files: pooling from `1_Pooling/config.json` (via `modules.json`),
   normalisation from a `Normalize` module, max length from `sentence_bert_config.json`, fixed prefixes
   from the `query` / `document` prompts of `config_sentence_transformers.json` (prompt style none);
3. any other folder: pooling must come from the overrides (prompt style none);
4. a model card name in the registry (its source gives the folder, the card gives the config);
5. a Hugging Face hub id (`owner/name`), downloaded by huggingface_hub when the user has a network.
Overrides are field name -> value of `RetrieverConfig` or `LoadSettings` (`tdro eval`'s flags carry the
same names); each is applied over what was read and validated again, so the config's own rules hold (an
unstated `eos` follows the pooling). A folder with no `modules.json` is taken to normalise (cosine, the
common default) unless an override says otherwise. No torch here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from tdro.enums import Pooling, PromptStyle
from tdro.errors import UserError
from tdro.spec.cards import ModelCard
from tdro.spec.errors import validation_problems
from tdro.spec.retriever import LoadSettings, RetrieverConfig

_S = TypeVar("_S", RetrieverConfig, LoadSettings)

# sentence-transformers pooling flags -> our pooling; max / mean-sqrt pooling have no counterpart.
_ST_POOLING = {
    "pooling_mode_cls_token": Pooling.cls,
    "pooling_mode_mean_tokens": Pooling.mean,
    "pooling_mode_lasttoken": Pooling.last_token,
}
_ST_PASSAGE_PROMPTS = ("document", "passage", "corpus")


@dataclass(frozen=True)
class ResolvedModel:
    path: str  # a local folder (or a hub id transformers resolves)
    config: RetrieverConfig
    loading: LoadSettings
    origin: str  # where the config came from, for messages


def _read_json(path: Path) -> dict | list:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: cannot be read as JSON ({exc})") from None


def sentence_transformers_settings(folder: Path, *, read_pooling: bool = True) -> dict:
    """RetrieverConfig fields that the folder's sentence-transformers files state (maybe none)."""
    found: dict = {}
    modules_path = folder / "modules.json"
    modules = _read_json(modules_path) if modules_path.is_file() else []
    entries = [m for m in modules if isinstance(m, dict)] if isinstance(modules, list) else []
    types = [str(m.get("type", "")) for m in entries]
    pooling_dirs = [str(m.get("path", "")) for m in entries if str(m.get("type", "")).endswith("Pooling")]
    pooling_file = folder / (pooling_dirs[0] if pooling_dirs else "1_Pooling") / "config.json"
    if read_pooling and pooling_file.is_file():
        flags = _read_json(pooling_file)
        chosen = [pool for key, pool in _ST_POOLING.items() if isinstance(flags, dict) and flags.get(key)]
        if len(chosen) != 1:
            raise UserError(
                f"{pooling_file}: pooling mode not supported (need exactly one of cls, mean, lasttoken); "
                "give --pooling"
            )
        found["pooling"] = chosen[0]
    if entries:
        found["normalize"] = any(t.endswith("Normalize") for t in types)
    st_config = folder / "sentence_bert_config.json"
    if st_config.is_file():
        data = _read_json(st_config)
        if isinstance(data, dict) and isinstance(data.get("max_seq_length"), int):
            found["query_max_length"] = found["passage_max_length"] = data["max_seq_length"]
    prompts_file = folder / "config_sentence_transformers.json"
    if prompts_file.is_file():
        data = _read_json(prompts_file)
        prompts = (data.get("prompts") or {}) if isinstance(data, dict) else {}
        if prompts.get("query"):
            found["query_prefix"] = prompts["query"]
        for key in _ST_PASSAGE_PROMPTS:
            if prompts.get(key):
                found["passage_prefix"] = prompts[key]
                break
    return found


Overrides = Mapping[str, Any]  # RetrieverConfig / LoadSettings field name -> value


def _override(settings: _S, overrides: Overrides, where: str) -> _S:
    """`settings` with the overrides of its own fields applied, validated again (a bad one: a UserError)."""
    update = {k: v for k, v in overrides.items() if k in type(settings).model_fields}
    try:
        return settings.with_overrides(update)
    except ValidationError as exc:
        raise UserError(*validation_problems(exc, type(settings), where)) from None


def _check_names(overrides: Overrides) -> None:
    known = set(RetrieverConfig.model_fields) | set(LoadSettings.model_fields)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"not a retriever or load setting: {', '.join(unknown)}")


def _resolved(path: str, config: RetrieverConfig, loading: LoadSettings, overrides: Overrides,
              origin: str) -> ResolvedModel:
    where = f"model {path}"
    config, loading = _override(config, overrides, where), _override(loading, overrides, where)
    return ResolvedModel(path, config, loading, origin)


def _plain_config(path: Path, overrides: Overrides) -> tuple[RetrieverConfig, str]:
    """A folder without tdro_retriever.json: what its sentence-transformers files say, prompt style none."""
    settings = sentence_transformers_settings(path, read_pooling="pooling" not in overrides)
    origin = "sentence-transformers files" if settings else "options"
    pooling = settings.get("pooling", overrides.get("pooling"))
    if pooling is None:
        raise UserError(
            f"model {path}: pooling is neither saved (no tdro_retriever.json or 1_Pooling/config.json) "
            "nor given; pass --pooling mean|cls|last_token"
        )
    settings["pooling"] = pooling
    return RetrieverConfig(prompt_style=PromptStyle.none, **settings), origin


def resolve_folder(
    folder: str | Path, overrides: Overrides | None = None, card: ModelCard | None = None
) -> ResolvedModel:
    """The config of a local folder: tdro_retriever.json, else the card, else ST files; then overrides."""
    overrides = dict(overrides or {})
    _check_names(overrides)
    path = Path(folder).expanduser()
    loading = LoadSettings.of(card) if card is not None else LoadSettings()
    if RetrieverConfig.exists(path):
        base, origin = RetrieverConfig.load(path), "tdro_retriever.json"
    elif card is not None:
        base, origin = card.retriever_config(), f"model card {card.name}"
    else:
        base, origin = _plain_config(path, overrides)
    return _resolved(str(path.resolve()), base, loading, overrides, origin)


def resolve_model(
    model: str, overrides: Overrides | None = None, registry_root: str | Path | None = None
) -> ResolvedModel:
    """Resolve MODEL as a folder, a model card name, or a hub id (see module docstring)."""
    overrides = dict(overrides or {})
    _check_names(overrides)
    if Path(model).expanduser().is_dir():
        return resolve_folder(model, overrides)
    from tdro.spec.registry import Registry

    card = None
    try:
        registry = Registry.load(registry_root)
        if model in registry.names("models"):
            card = registry.model(model)
    except UserError:
        card = None  # no registry here: MODEL may still be a hub id
    if card is not None:
        from tdro.modeling.source import resolve_model_path

        path = resolve_model_path(card.source)
        if Path(path).is_dir():
            return resolve_folder(path, overrides, card)
        origin = f"model card {model}"
        return _resolved(path, card.retriever_config(), LoadSettings.of(card), overrides, origin)
    if model.count("/") == 1 and not model.startswith((".", "/", "~")):
        return resolve_folder(_download(model), overrides)
    raise UserError(f"model {model!r}: not a folder, not a model card name, not a hub id (owner/name)")


def _download(hub_id: str) -> str:
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(hub_id)
    except Exception as exc:  # offline, unknown repo, no access: all user-fixable
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"model {hub_id!r}: not a local folder or card, and the hub download failed ({first})"
        ) from None
