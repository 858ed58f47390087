"""Helpers of the training tests: tiny learnable datasets in the real JSONL format and stage files.

Each generated query names two topic words; its positive passage repeats them among filler words, its
hard negatives use other topics. A retriever learns this in a few steps.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tdro.spec.cards import DatasetCard, ModelCard, ModelSource
from tdro.spec.experiment import ResourcesSpec, TrackingSpec, TrainSpec
from tdro.spec.stage_file import Mixture, TrainStageFile
from tests.tiny_models import WORDS

TOPICS = WORDS[20:80]
FILLER = WORDS[:20]


def _passage(rng: random.Random, group: int, words: list[str]) -> dict:
    body = words + rng.sample(FILLER, 4)
    rng.shuffle(body)
    return {"docid": f"d{group}-{rng.randrange(10**6)}", "title": "", "text": " ".join(body)}


def write_dataset(path: Path, *, groups: int, seed: int, negatives: int = 3) -> Path:
    rng = random.Random(seed)
    lines = []
    for i in range(groups):
        a, b = rng.sample(TOPICS, 2)
        others = [t for t in TOPICS if t not in (a, b)]
        lines.append(
            {
                "query_id": str(i),
                "query": f"what {a} {b}",
                "positive_passages": [_passage(rng, i, [a, b, a])],
                "negative_passages": [_passage(rng, i, rng.sample(others, 3)) for _ in range(negatives)],
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def dataset_cards(
    root: Path, names: tuple[str, ...] = ("alpha", "beta"), groups: int = 64
) -> list[DatasetCard]:
    return [
        DatasetCard(
            name=name,
            path=str(write_dataset(root / f"{name}.jsonl", groups=groups, seed=k)),
            instructions=[f"Given a {name} question, retrieve passages that answer it"],
        )
        for k, name in enumerate(names)
    ]


def model_card(model_dir: Path, *, pooling: str = "mean", eos: str = "none", **extra) -> ModelCard:
    """No e5 prompt by default: a long shared instruction would swamp mean pooling of a tiny model."""
    return ModelCard(
        name="tiny",
        source=ModelSource(path=str(model_dir)),
        pooling=pooling,
        eos=eos,
        query_max_length=16,
        passage_max_length=24,
        **{"prompt_style": "none", **extra},
    )


LOSS_KEYS = (
    "temperature", "only_hard_negatives", "cross_device_negatives", "bidirectional", "matryoshka_dims",
)


def with_loss_section(options: dict, temperature: float = 0.05) -> dict:
    """Keyword options of a train/dro section with the loss settings moved into its `loss` section."""
    loss = {"temperature": temperature, **{k: options[k] for k in LOSS_KEYS if k in options}}
    return {**{k: v for k, v in options.items() if k not in LOSS_KEYS}, "loss": loss}


def stage_file(
    out: Path,
    model: ModelCard,
    datasets: list[DatasetCard],
    *,
    weights: dict[str, float] | None = None,
    mixture: Mixture | None = None,
    tracking: str = "disabled",
    **train,
) -> TrainStageFile:
    defaults = dict(
        steps=6,
        batch_size=8,
        passages_per_query=2,
        learning_rate=1e-3,
        warmup_steps=1,
        checkpoint_every=100,
    )
    stage = TrainStageFile(
        kind="reference",
        stage_id="test-" + out.name,
        experiment="tests",
        seed=7,
        output_dir=str(out),
        model=model,
        datasets=datasets,
        mixture=mixture or Mixture(weights=weights or {d.name: 1.0 for d in datasets}),
        train=TrainSpec(**{**defaults, **with_loss_section(train)}),
        resources=ResourcesSpec(mixed_precision="no"),
        tracking=TrackingSpec(mode=tracking, project="tdro-tests"),
    )
    stage.write()
    return stage


GRAD_QUERIES = ["what river city", "who is the king", "find a blue bird", "where does the train stop"]
GRAD_PASSAGES = [
    "the river runs by the city",
    "a mountain of stone",
    "music of the forest",
    "the king and the queen",
    "a paper on energy",
    "a dog in the garden",
    "a blue bird in the tree",
    "red apple house",
    "winter snow field",
    "the train stops at the school",
    "a story of the ocean",
    "green light on the bridge",
]


def grad_check_batch(tokenizer, world: int = 1, rank: int = 0) -> tuple[dict, dict]:
    """4 queries x 3 passages padded to common lengths; `rank`'s share of `world` equal slices."""
    q = tokenizer(GRAD_QUERIES, padding="max_length", max_length=12, return_tensors="pt")
    p = tokenizer(GRAD_PASSAGES, padding="max_length", max_length=12, return_tensors="pt")
    b = len(GRAD_QUERIES) // world
    q = {k: v[rank * b : (rank + 1) * b] for k, v in q.items() if k in ("input_ids", "attention_mask")}
    p = {
        k: v[rank * b * 3 : (rank + 1) * b * 3] for k, v in p.items() if k in ("input_ids", "attention_mask")
    }
    return q, p
