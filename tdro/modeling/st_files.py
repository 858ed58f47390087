"""sentence-transformers module files for a saved retriever, so `SentenceTransformer(folder)` loads it.

Written beside the Hugging Face weights: `modules.json` (Transformer -> Pooling [-> Normalize]),
`sentence_bert_config.json` (max length), `1_Pooling/config.json` (the matching pooling mode, incl.
`pooling_mode_lasttoken`) and `config_sentence_transformers.json` (similarity function; fixed prefixes as
the `query` / `document` prompts). The legacy `sentence_transformers.models.*` names are used:
every sentence-transformers release since 2.x reads them.
"""

from __future__ import annotations

import json
from pathlib import Path

from tdro.enums import Pooling, Score
from tdro.spec.retriever import RetrieverConfig

_ST_SIMILARITY = {Score.cos: "cosine", Score.dot: "dot"}


def pooling_config(config: RetrieverConfig, dim: int) -> dict:
    return {
        "word_embedding_dimension": dim,
        "pooling_mode_cls_token": config.pooling is Pooling.cls,
        "pooling_mode_mean_tokens": config.pooling is Pooling.mean,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": config.pooling is Pooling.last_token,
        "include_prompt": True,
    }


def modules(config: RetrieverConfig) -> list[dict]:
    out = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if config.normalize:
        out.append(
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
        )
    return out


def write_st_files(folder: str | Path, config: RetrieverConfig, dim: int) -> None:
    folder = Path(folder)
    (folder / "1_Pooling").mkdir(parents=True, exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps(pooling_config(config, dim), indent=2) + "\n"
    )
    (folder / "modules.json").write_text(json.dumps(modules(config), indent=2) + "\n")
    st_config = {
        "max_seq_length": max(config.query_max_length, config.passage_max_length),
        "do_lower_case": False,
    }
    (folder / "sentence_bert_config.json").write_text(json.dumps(st_config, indent=2) + "\n")
    prompts = {"query": config.query_prefix, "document": config.passage_prefix}
    st = {
        "prompts": prompts if config.query_prefix or config.passage_prefix else {},
        "default_prompt_name": None,
        "similarity_fn_name": _ST_SIMILARITY[config.score],
    }
    (folder / "config_sentence_transformers.json").write_text(json.dumps(st, indent=2) + "\n")
