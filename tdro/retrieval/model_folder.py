"""Which retriever `tdro eval MODEL` means, and how to use it: folder, RetrieverConfig, dtype.

MODEL is tried as, in order:
1. a folder saved by tdro (`tdro_retriever.json` holds pooling, normalisation, lengths, prompts);
2. a folder with sentence-transformers files: pooling from `1_Pooling/config.json` (via `modules.json`),
   normalisation from a `Normalize` module, max length from `sentence_bert_config.json`, fixed prefixes
   from the `query` / `document` prompts of `config_sentence_transformers.json`;
3. any other folder: pooling etc. must come from the options;
4. a model card name in the registry (its source gives the folder, the card gives the config);
5. a Hugging Face hub id (`owner/name`), downloaded by huggingface_hub when the user has a network.
Options given explicitly (`ModelOptions`) override what was read. A folder with no `modules.json` is
taken to normalise (cosine, the common default) unless `--no-normalize` says otherwise. No torch here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from tdro.enums import DType, EosHandling, Pooling, PromptStyle
from tdro.errors import UserError
from tdro.spec.retriever import RetrieverConfig
from tdro.spec.cards import ModelCard

# sentence-transformers pooling flags -> our pooling; max / mean-sqrt pooling have no counterpart.
_ST_POOLING = {
    "pooling_mode_cls_token": Pooling.cls,
    "pooling_mode_mean_tokens": Pooling.mean,
    "pooling_mode_lasttoken": Pooling.last_token,
}
_ST_PASSAGE_PROMPTS = ("document", "passage", "corpus")


class ModelOptions(BaseModel):
    """What the user may state on the command line; None means "read it from the model"."""

    model_config = ConfigDict(extra="forbid")

    pooling: Pooling | None = None
    normalize: bool | None = None
    max_length: int | None = Field(None, gt=0)  # both query and passage
    query_prefix: str | None = None
    passage_prefix: str | None = None
    prompt_style: PromptStyle | None = None  # e5 puts the benchmark's instruction before each query
    dtype: DType | None = None
    trust_remote_code: bool = False


@dataclass(frozen=True)
class ResolvedModel:
    path: str  # a local folder (or a hub id transformers resolves)
    config: RetrieverConfig
    dtype: DType
    trust_remote_code: bool
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


def _apply(config: RetrieverConfig, options: ModelOptions) -> RetrieverConfig:
    update: dict = {}
    if options.pooling is not None:
        update["pooling"] = options.pooling
    if options.normalize is not None:
        update["normalize"] = options.normalize
    if options.max_length is not None:
        update["query_max_length"] = update["passage_max_length"] = options.max_length
    if options.query_prefix is not None:
        update["query_prefix"] = options.query_prefix
    if options.passage_prefix is not None:
        update["passage_prefix"] = options.passage_prefix
    if options.prompt_style is not None:
        update["prompt_style"] = options.prompt_style
    merged = config.model_copy(update=update)
    if merged.pooling is Pooling.last_token and merged.eos is EosHandling.none:
        merged = merged.model_copy(update={"eos": EosHandling.append})  # append only when missing
    return merged


def resolve_folder(
    folder: str | Path, options: ModelOptions | None = None, card: ModelCard | None = None
) -> ResolvedModel:
    """The config of a local folder: tdro_retriever.json, else the card, else ST files, else options."""
    options = options or ModelOptions()
    path = Path(folder).expanduser()
    dtype = options.dtype or (card.dtype if card else DType.float32)
    trust = options.trust_remote_code or bool(card and card.trust_remote_code)
    if RetrieverConfig.exists(path):
        base, origin = RetrieverConfig.load(path), "tdro_retriever.json"
    elif card is not None:
        base, origin = card.retriever_config(), f"model card {card.name}"
    else:
        settings = sentence_transformers_settings(path, read_pooling=options.pooling is None)
        origin = "sentence-transformers files" if settings else "options"
        if "pooling" not in settings and options.pooling is None:
            raise UserError(
                f"model {path}: pooling is neither saved (no tdro_retriever.json or 1_Pooling/config.json) "
                "nor given; pass --pooling mean|cls|last_token"
            )
        settings.setdefault("pooling", options.pooling)
        base = RetrieverConfig(prompt_style=PromptStyle.none, **settings)
    return ResolvedModel(str(path.resolve()), _apply(base, options), dtype, trust, origin)


def resolve_model(
    model: str, options: ModelOptions | None = None, registry_root: str | Path | None = None
) -> ResolvedModel:
    """Resolve MODEL as a folder, a model card name, or a hub id (see module docstring)."""
    options = options or ModelOptions()
    if Path(model).expanduser().is_dir():
        return resolve_folder(model, options)
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
            return resolve_folder(path, options, card)
        config = _apply(card.retriever_config(), options)
        dtype = options.dtype or card.dtype
        return ResolvedModel(path, config, dtype, card.trust_remote_code, f"model card {model}")
    if model.count("/") == 1 and not model.startswith((".", "/", "~")):
        return resolve_folder(_download(model), options)
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
