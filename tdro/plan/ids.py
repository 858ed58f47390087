"""Stage ids: sha256 of the canonical JSON of a stage's kind, the parameters that can change its result,
and the ids of its inputs (upstream stages, data fingerprints, model identity).

Excluded because they change how a stage runs, not what it computes: tracking, output paths, checkpoint
intervals, evaluation batch and search-chunk sizes, and `resources` (the global batch is fixed by the
spec, so a stage trained on 2 GPUs is reused on 8; mixed precision is a property of the hardware).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tdro.enums import Measure, RatioMode, SampleOrder
from tdro.spec.cards import BenchmarkCard, DatasetCard, ModelCard
from tdro.spec.experiment import DataSpec, DroSpec, EvaluateSpec, TrainSpec, TransferSpec


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def stage_id(kind: str, params: dict[str, Any], inputs: list[str]) -> str:
    text = canonical_json({"kind": kind, "params": params, "inputs": inputs})
    return hashlib.sha256(text.encode()).hexdigest()


def train_params(train: TrainSpec) -> dict[str, Any]:
    return train.model_dump(mode="json", exclude={"checkpoint_every"})


def dro_params(dro: DroSpec) -> dict[str, Any]:
    params = dro.model_dump(mode="json", exclude={"checkpoint_every"})
    # the floor only acts on the per-sample ratio; left out where it cannot act (and when unset, so the ids
    # of stages planned before the field existed still hold)
    if (dro.ref_floor_batch is None or dro.measure is not Measure.loss_over_ref
            or dro.ratio is not RatioMode.per_sample_l1):
        del params["ref_floor_batch"]
    # stages planned before `sample_order` existed replayed stage 0's order: their ids hold for as_reference
    if dro.sample_order is SampleOrder.as_reference:
        del params["sample_order"]
    return params


def evaluate_params(evaluate: EvaluateSpec) -> dict[str, Any]:
    # benchmarks enter through their cards and fingerprints; batch and chunk sizes only change speed.
    return evaluate.model_dump(mode="json", exclude={"benchmarks", "batch_size", "chunk_size"})


def data_params(data: DataSpec) -> dict[str, Any]:
    return data.model_dump(mode="json")


def transfer_params(transfer: TransferSpec) -> dict[str, Any]:
    return transfer.model_dump(mode="json")


def model_params(card: ModelCard, identity: str) -> dict[str, Any]:
    """The card minus its name (a label), with the source replaced by what identifies the weights."""
    params = card.model_dump(mode="json", exclude={"name", "source"})
    params["weights"] = identity
    return params


def dataset_params(card: DatasetCard, fingerprint: str) -> dict[str, Any]:
    # The name stays: it keys the mixture and the weights. Path and size are not content.
    params = card.model_dump(mode="json", exclude={"path", "generated_by", "size"})
    params["fingerprint"] = fingerprint
    return params


def benchmark_params(card: BenchmarkCard, fingerprint: str) -> dict[str, Any]:
    params = card.model_dump(mode="json", exclude={"path", "generated_by"})
    if not card.ignore_identical_ids:  # ids of stages planned before the card field existed still hold
        del params["ignore_identical_ids"]
    params["fingerprint"] = fingerprint
    return params
