"""Stages 0 (reference, uniform mixture) and 2 (transferred mixture): contrastive retriever training.

Run as `accelerate launch [...] -m tdro.stages.train STAGE_FILE` (a `TrainStageFile`, kind `reference` or
`train`). Each optimizer step takes `train.batch_size` query groups over all processes (homogeneous: one
dataset per global batch), split into `train.gradient_accumulation` micro-batches; the loss is InfoNCE
with hard, in-batch and (optionally) cross-device negatives, optionally GTR-bidirectional and
Matryoshka, optionally encoded in GradCache chunks of `train.chunk_size`. AdamW, warm-up + cosine/linear/
constant schedule with a minimum-LR ratio, gradient clipping at `max_grad_norm`.

The next step's batches are prepared in a background thread (`prefetch.Prefetcher`) while a step
computes. Every `train.checkpoint_every` steps a checkpoint goes to `checkpoints/step-N` (model, optimizer,
scheduler, data-stream and RNG states; the last 2 kept); a restarted job resumes from the newest one and
ends with the same weights as an uninterrupted run. Outputs (see `tdro.spec.stage_file`): `model/`,
`metrics.parquet` (step, loss, lr, dataset, grad_norm, seconds), `result.json`; the same curves go to
W&B on the main process unless tracking is disabled.

A NaN/inf loss or gradient norm stops the job before the optimizer step with one line naming the step
and dataset (exit 2); the last good checkpoint stays. `TDRO_STOP_AFTER_STEP=k` (tests only) makes the
job stop after step k as if killed, without writing outputs (exit 3).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from tdro.enums import MixtureMode
from tdro.errors import UserError
from tdro.spec.stage_file import TrainStageFile

METRICS_FILE = "metrics.parquet"
METRIC_COLUMNS = ["step", "loss", "lr", "dataset", "grad_norm", "seconds"]
MODEL_DIR = "model"


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


def batch_dataset(dataset_ids, names: list[str]) -> str:
    ids = sorted({int(i) for i in dataset_ids.tolist()})
    return names[ids[0]] if len(ids) == 1 else "mixed"


def build_loss(stage: TrainStageFile, encoder_dim: int, normalize: bool):
    from tdro.modeling.losses import ContrastiveLoss

    dims = stage.train.loss.matryoshka_dims
    if dims and max(dims) > encoder_dim:
        raise UserError(
            f"train.loss.matryoshka_dims: {max(dims)} exceeds the model's dimension {encoder_dim}"
        )
    return ContrastiveLoss(
        passages_per_query=stage.train.passages_per_query,
        temperature=stage.train.temperature,
        normalize=normalize,
        bidirectional=stage.train.loss.bidirectional,
        matryoshka_dims=tuple(dims) if dims else None,
        cross_device=stage.train.cross_device_negatives,
    )


class NonFiniteStep(Exception):
    """The loss or gradient norm of a step is NaN or infinite (raised before the weights change)."""


def optimizer_step(
    model, optimizer, scheduler, batches, loss_fn, *, accelerator, spec
) -> tuple[float, float]:
    """One optimizer step over this process's micro-batches of it: backward each, clip, AdamW, schedule.

    Returns (loss averaged over micro-batches and processes, gradient norm before clipping).
    """
    import torch

    from tdro.stages.step import forward_backward

    losses = []
    for j, batch in enumerate(batches):
        batch = batch.to(accelerator.device)
        loss = forward_backward(
            model,
            batch.query,
            batch.passages,
            loss_fn,
            accelerator=accelerator,
            chunk_size=spec.chunk_size,
            loss_weight=1.0 / len(batches),
            sync=j == len(batches) - 1,
        )
        losses.append(loss / loss_fn.scale())
    step_loss = accelerator.reduce(torch.stack(losses).mean(), reduction="mean").item()
    grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), spec.max_grad_norm or math.inf))
    if not math.isfinite(step_loss):
        raise NonFiniteStep(f"loss is {step_loss}")
    if not math.isfinite(grad_norm):
        raise NonFiniteStep(f"gradient norm is {grad_norm}")
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return step_loss, grad_norm


def run(stage: TrainStageFile, *, stop_after_step: int | None = None) -> dict[str, Any] | None:
    """Train; return the result.json fields (main process) or {} (others); None if stopped early."""

    from tdro.data.stream import TrainingStream
    from tdro.modeling.optim import build_optimizer, build_training_schedule
    from tdro.stages.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
    from tdro.stages.outputs import atomic_dir, write_parquet, write_result
    from tdro.stages.prefetch import Prefetcher
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
    loss_fn = build_loss(stage, encoder.dim, encoder.config.normalize)
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
    )
    optimizer = build_optimizer(encoder, spec)
    scheduler = build_training_schedule(optimizer, spec, spec.steps)
    model, optimizer = accelerator.prepare(encoder, optimizer)
    model.train()

    rows: list[dict[str, Any]] = []
    start_step, previous_wall, last_good = 0, 0.0, latest_checkpoint(output)
    if last_good is not None:
        trainer, rank_state = load_checkpoint(
            last_good, accelerator=accelerator, model=model, optimizer=optimizer, scheduler=scheduler
        )
        stream.load_state_dict(rank_state["stream"])
        start_step, rows, previous_wall = trainer["step"], trainer["rows"], trainer["wall_seconds"]

    tracker = start_tracker(stage, accelerator)
    prefetch = Prefetcher(stream, spec.gradient_accumulation, spec.steps - start_step)
    try:
        for step in range(start_step + 1, spec.steps + 1):
            t0 = time.perf_counter()
            lr = scheduler.get_last_lr()[0]
            batches = prefetch.next()
            dataset = batch_dataset(batches[0].dataset_ids, stream.names)
            try:
                step_loss, grad_norm = optimizer_step(
                    model, optimizer, scheduler, batches, loss_fn, accelerator=accelerator, spec=spec
                )
            except NonFiniteStep as bad:
                kept = f"checkpoints/{last_good.name} kept" if last_good else "no checkpoint was written yet"
                raise UserError(
                    f"step {step}: {bad} on dataset {dataset}; training stopped ({kept})"
                ) from None
            seconds = time.perf_counter() - t0
            rows.append(
                dict(step=step, loss=step_loss, lr=lr, dataset=dataset, grad_norm=grad_norm, seconds=seconds)
            )
            curves = {
                "train/loss": step_loss,
                "train/lr": lr,
                "train/grad_norm": grad_norm,
                "train/seconds": seconds,
            }
            if dataset != "mixed":
                curves[f"train/loss/{dataset}"] = step_loss
            tracker.log(curves, step=step)
            if step % spec.checkpoint_every == 0 and step < spec.steps:
                last_good = save_checkpoint(
                    output,
                    step,
                    accelerator=accelerator,
                    model=model,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    trainer={"rows": rows, "wall_seconds": previous_wall + time.perf_counter() - started},
                    rank_state={"stream": prefetch.state_dict()},
                )
            if stop_after_step is not None and step >= stop_after_step:
                return None

        accelerator.wait_for_everyone()
        if not accelerator.is_main_process:
            return {}
        with atomic_dir(output / MODEL_DIR) as tmp:
            accelerator.unwrap_model(model).save_pretrained(tmp)
        write_parquet(output / METRICS_FILE, rows, METRIC_COLUMNS)
        result = {
            "kind": stage.kind,
            "stage_id": stage.stage_id,
            "wall_seconds": previous_wall + time.perf_counter() - started,
            "steps": spec.steps,
            "final_loss": rows[-1]["loss"] if rows else None,
            "model_dir": MODEL_DIR,
            "metrics_file": METRICS_FILE,
            "resumed_from_step": start_step or None,
            "num_processes": accelerator.num_processes,
            "mixture": weights,
            "datasets": [
                {
                    "name": name,
                    "rows": len(reader),
                    "fingerprint": reader.fingerprint,
                    "skipped_lines": len(reader.skipped),
                }
                for name, reader in zip(stream.names, stream.readers, strict=True)
            ],
        }
        result["status"] = "complete"
        write_result(output, result)
        tracker.summary({"final_loss": result["final_loss"], "steps": spec.steps})
        return result
    finally:
        prefetch.close()
        tracker.finish()


def main(argv: list[str] | None = None) -> int:
    from tdro.stages.runtime import run_stage_module

    return run_stage_module(run, (TrainStageFile,), "tdro.stages.train", argv)


if __name__ == "__main__":
    sys.exit(main())
