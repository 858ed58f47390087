"""Stages 0 (reference, uniform mixture) and 2 (transferred mixture): contrastive retriever training.

Run as `accelerate launch [...] -m tdro.stages.train STAGE_FILE` (a `TrainStageFile`, kind `reference` or
`train`). Each optimizer step takes `train.batch_size` query groups over all processes (homogeneous: one
dataset per global batch), split into `train.gradient_accumulation` micro-batches; the loss
(`ContrastiveLoss.from_spec(train.loss)`) is InfoNCE with hard, in-batch and (optionally) cross-device
negatives, optionally GTR-bidirectional and Matryoshka, optionally encoded in GradCache chunks of
`train.chunk_size`; a batch of an STS dataset (`source: sts`, scored pairs) is trained with CoSENT
instead (`tdro.modeling.losses.cosent`, the card's `cosent_scale`). AdamW, warm-up +
cosine/linear/constant schedule with a minimum-LR ratio, gradient clipping at `max_grad_norm`.

The loop (`tdro.stages.loop.run_loop`) prefetches, checkpoints every `train.checkpoint_every` steps,
resumes, stops on a NaN/inf loss or gradient norm with one line (exit 2) and streams the curves to W&B.
Outputs (`tdro.spec.stage_result.TrainResult`): `model/`, `metrics.parquet`, `result.json`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from typing import Any

from tdro import tracking_keys as keys
from tdro.enums import MixtureMode
from tdro.errors import UserError
from tdro.spec.experiment import TrainSpec
from tdro.spec.stage_file import TrainStageFile
from tdro.spec.stage_result import TrainResult
from tdro.stages.loop import StepRecord


def resolve_weights(stage: TrainStageFile) -> dict[str, float]:
    """The stage's sampling weights, in the order of `stage.datasets`, zero-weight datasets left out."""
    from tdro.transfer import resolve_mixture

    weights = resolve_mixture(stage.mixture)
    known = {c.name for c in stage.datasets}
    unknown = sorted(set(weights) - known)
    if unknown:
        raise UserError(f"mixture: datasets {', '.join(unknown)} are not among the stage's datasets")
    chosen = {c.name: float(weights[c.name]) for c in stage.datasets if weights.get(c.name, 0.0) > 0}
    if not chosen:
        raise UserError("mixture: every weight is zero")
    return chosen


def build_loss(stage: TrainStageFile, encoder):
    from tdro.modeling.losses import ContrastiveLoss

    return ContrastiveLoss.from_spec(
        stage.train.loss, passages_per_query=stage.train.passages_per_query,
        normalize=encoder.config.normalize, dim=encoder.dim,
    )


class TrainTask:
    """Stages 0/2's part of the loop: micro-batches of one stream step, the contrastive loss."""

    def __init__(self, spec: TrainSpec, stream, model, loss_fn, accelerator) -> None:
        self.spec = spec
        self.stream, self.model, self.loss_fn, self.accelerator = stream, model, loss_fn, accelerator

    def draw(self) -> list:
        return self.stream.next_step(self.spec.gradient_accumulation)

    def forward_backward(self, step: int, batches: list) -> float:
        import torch

        from tdro.stages.step import forward_backward

        losses = []
        for j, batch in enumerate(batches):
            batch = batch.to(self.accelerator.device)
            loss_fn = self.loss_for(batch)
            loss = forward_backward(
                self.model, batch.query, batch.passages, loss_fn, accelerator=self.accelerator,
                token_budget=self.spec.token_budget, chunk_size=self.spec.chunk_size,
                loss_weight=1.0 / len(batches), sync=j == len(batches) - 1,
            )
            losses.append(loss / loss_fn.scale())
        return self.accelerator.reduce(torch.stack(losses).mean(), reduction="mean").item()

    def loss_for(self, batch):
        """CoSENT for a batch of scored pairs (an STS dataset's: batches are homogeneous), else the
        contrastive loss of the spec."""
        if batch.scores is None:
            return self.loss_fn
        from tdro.modeling.losses import CoSENTLoss

        card = self.stream.cards[int(batch.dataset_ids[0])]
        return CoSENTLoss(batch.scores, card.cosent_scale)

    def after_step(self, record: StepRecord) -> dict[str, float]:
        return {} if record.dataset == "mixed" else {keys.dataset_loss(record.dataset): record.loss}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def run(stage: TrainStageFile, *, stop_after_step: int | None = None) -> TrainResult | None:
    """Train; write the outputs and return the result (main process) or None (the other processes)."""
    from tdro.data.stream import TrainingStream
    from tdro.modeling.optim import build_optimizer, build_training_schedule
    from tdro.stages.checkpoint import full_model_state
    from tdro.stages.loop import dataset_uses, run_loop
    from tdro.stages.outputs import atomic_dir, write_parquet
    from tdro.stages.runtime import load_encoder, make_accelerator, seed_everything, start_tracker

    started = time.perf_counter()
    spec = stage.train
    output = stage.output
    output.mkdir(parents=True, exist_ok=True)
    accelerator = make_accelerator(stage.resources)
    seed_everything(stage.seed)
    weights = resolve_weights(stage)
    cards = [c for c in stage.datasets if c.name in weights]
    encoder = load_encoder(stage.model)
    loss_fn = build_loss(stage, encoder)
    stream = TrainingStream(
        cards,
        [weights[c.name] for c in cards],
        mode=MixtureMode.homogeneous if spec.homogeneous_batches else MixtureMode.mixed,
        batch_size=spec.batch_size,
        passages_per_query=spec.passages_per_query,
        seed=stage.seed,
        config=encoder.config,
        tokenizer=encoder.tokenizer,
        num_processes=accelerator.num_processes,
        process_index=accelerator.process_index,
        skip_bad_lines=stage.data.skip_bad_lines,
        fingerprints=stage.dataset_fingerprints,
    )
    optimizer = build_optimizer(encoder, spec)
    scheduler = build_training_schedule(optimizer, spec, spec.steps)
    model, optimizer = accelerator.prepare(encoder, optimizer)
    model.train()

    tracker = start_tracker(stage, accelerator)
    try:
        end = run_loop(
            TrainTask(spec, stream, model, loss_fn, accelerator), output=output, stream=stream,
            accelerator=accelerator, model=model, optimizer=optimizer, scheduler=scheduler, steps=spec.steps,
            checkpoint_every=spec.checkpoint_every, max_grad_norm=spec.max_grad_norm,
            queries_per_step=spec.batch_size, tracker=tracker, started=started,
            stop_after_step=stop_after_step,
        )
        state = full_model_state(accelerator, model)  # collective under FSDP/DeepSpeed
        if end is None:
            return None
        with atomic_dir(output / TrainResult.MODEL_DIR) as tmp:
            accelerator.unwrap_model(model).save_pretrained(tmp, state_dict=state)
        write_parquet(output / TrainResult.METRICS_FILE, [asdict(r) for r in end.records],
                      TrainResult.METRIC_COLUMNS)
        result = TrainResult(
            kind=stage.kind, stage_id=stage.stage_id, wall_seconds=end.wall_seconds(), steps=spec.steps,
            final_loss=end.final_loss, resumed_from_step=end.resumed_from_step,
            num_processes=accelerator.num_processes, mixture=weights, datasets=dataset_uses(stream),
        )
        result.write(output)
        tracker.summary({keys.FINAL_LOSS: result.final_loss, keys.STEPS: spec.steps})
        return result
    finally:
        tracker.finish()


def main(argv: list[str] | None = None) -> int:
    from tdro.stages.runtime import run_stage_module

    return run_stage_module(run, (TrainStageFile,), "tdro.stages.train", argv)


if __name__ == "__main__":
    sys.exit(main())
