"""Stages 0 (reference, uniform mixture) and 2 (transferred mixture): contrastive retriever training.

Run as `accelerate launch [...] -m tdro.stages.train STAGE_FILE` (a `TrainStageFile`, kind `reference` or
`train`). Each optimizer step takes `train.batch_size` query groups over all processes (homogeneous: one
dataset per global batch), split into `train.gradient_accumulation` micro-batches; the loss
(`ContrastiveLoss.from_spec(train.loss)`) is InfoNCE with hard, in-batch and (optionally) cross-device
negatives, optionally GTR-bidirectional and Matryoshka, optionally encoded in GradCache chunks of
`train.chunk_size`; a batch of an STS dataset (`source: sts`, scored pairs) is trained with CoSENT
instead (`tdro.modeling.losses.cosent`, the card's `cosent_scale`). With `train.balanced_batches`
(cross-GPU batch balance) a step holds one batch per dataset, every process the same query groups with
its own negatives: each retrieval task's loss is `balanced_info_nce`, an STS task's CoSENT (computed by
every process alike: DDP needs the same encoder calls everywhere), and the step's loss is their sum.
AdamW, warm-up + cosine/linear/constant schedule with a minimum-LR ratio, gradient clipping at
`max_grad_norm`.

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


class _Scored:
    """A loss that also records each query's mean cosine with its hard negatives (re-mining's score),
    from the representations the step computes anyway."""

    def __init__(self, loss_fn, passages_per_query: int) -> None:
        self.loss_fn, self.n = loss_fn, passages_per_query
        self.scores = None

    def scale(self) -> int:
        return self.loss_fn.scale()

    def __call__(self, q, p, *args, **kwargs):
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            negatives = p.detach().view(q.shape[0], self.n, -1)[:, 1:]
            self.scores = F.cosine_similarity(q.detach()[:, None, :], negatives, dim=-1).mean(1).cpu()
        return self.loss_fn(q, p, *args, **kwargs)


class _Balanced:
    """A retrieval task's loss in a balanced step (`balanced_info_nce`): the same value on every process."""

    def __init__(self, passages_per_query: int, temperature: float) -> None:
        self.n, self.temperature = passages_per_query, temperature

    def scale(self) -> int:
        return 1

    def __call__(self, q, p):
        from tdro.modeling.losses import balanced_info_nce

        return balanced_info_nce(q, p, passages_per_query=self.n, temperature=self.temperature)


class TrainTask:
    """Stages 0/2's part of the loop: micro-batches of one stream step, the contrastive loss (CoSENT for
    STS batches), and with re-mining its observations and checks (`tdro.data.remine`)."""

    def __init__(self, spec: TrainSpec, stream, model, loss_fn, accelerator, remining=None) -> None:
        self.spec = spec
        self.stream, self.model, self.loss_fn, self.accelerator = stream, model, loss_fn, accelerator
        self.remining = remining
        self.checks: list[dict[str, Any]] = []  # REMINING_COLUMNS rows

    def draw(self) -> list:
        return self.stream.next_step(self.spec.gradient_accumulation)

    def forward_backward(self, step: int, batches: list) -> float:
        import torch

        from tdro.stages.step import forward_backward

        losses, observed = [], []
        for j, batch in enumerate(batches):
            batch = batch.to(self.accelerator.device)
            loss_fn = self.loss_for(batch)
            scored = self.remining is not None and batch.scores is None and batch.passages_per_query > 1
            if scored:
                loss_fn = _Scored(loss_fn, batch.passages_per_query)
            # micro-batches average into the step's loss; a balanced step's tasks sum into it
            weight = 1.0 if self.spec.balanced_batches else 1.0 / len(batches)
            loss = forward_backward(
                self.model, batch.query, batch.passages, loss_fn, accelerator=self.accelerator,
                token_budget=self.spec.token_budget, chunk_size=self.spec.chunk_size,
                loss_weight=weight, sync=j == len(batches) - 1,
            )
            losses.append(loss / loss_fn.scale())
            if scored:
                observed += [(step, d, r, s) for d, r, s in zip(
                    batch.dataset_ids.tolist(), batch.rows.tolist(), loss_fn.scores.tolist(), strict=True)
                    if self.remining.remines(d)]
        if self.remining is not None:
            self.observe(observed)
        total = torch.stack(losses).sum() if self.spec.balanced_batches else torch.stack(losses).mean()
        return self.accelerator.reduce(total, reduction="mean").item()

    def observe(self, observed: list[tuple[int, int, int, float]]) -> None:
        """Every process's observations of this step, on every process (the state stays identical)."""
        from accelerate.utils import gather_object

        everyone = gather_object(observed) if self.accelerator.num_processes > 1 else observed
        for step, dataset, row, score in everyone:
            self.remining.observe(dataset, row, step, score)

    def loss_for(self, batch):
        """CoSENT for a batch of scored pairs (an STS dataset's: batches are homogeneous or balanced), the
        balanced InfoNCE for a retrieval task of a balanced step, else the contrastive loss of the spec."""
        if batch.scores is not None:
            from tdro.modeling.losses import CoSENTLoss

            card = self.stream.cards[int(batch.dataset_ids[0])]
            return CoSENTLoss(batch.scores, card.cosent_scale)
        if self.spec.balanced_batches:
            return _Balanced(batch.passages_per_query, self.spec.loss.temperature)
        return self.loss_fn

    def after_step(self, record: StepRecord) -> dict[str, float]:
        curves = {} if record.dataset == "mixed" else {keys.dataset_loss(record.dataset): record.loss}
        if self.remining is not None and self.spec.remine and record.step % self.spec.remine.every == 0:
            for count in self.remining.check(record.step, self.remining.take_pending()):
                name = self.stream.names[count.dataset]
                self.checks.append({**asdict(count), "dataset": name})
                curves[keys.remined(name)] = float(count.groups_remined)
        return curves

    def state_dict(self) -> dict[str, Any]:
        if self.remining is None:
            return {}
        return {"remining": self.remining.state_dict(), "checks": self.checks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.remining is not None:
            self.remining.load_state_dict(state["remining"])
            self.checks = list(state["checks"])


def attach_remining(stage: TrainStageFile, stream):
    """Re-mining state over the stream's datasets (those with a mine stage), attached to the stream."""
    from tdro.data.remine import Remining
    from tdro.data.remine_pools import RemineSource, load_pools

    assert stage.train.remine is not None
    loaded = {i: load_pools(stage.remine_sources[card.name].path, stream.readers[i])
              for i, card in enumerate(stream.cards) if card.name in stage.remine_sources}
    pools = [loaded[i].pools if i in loaded else [] for i in range(len(stream.cards))]
    negatives = [loaded[i].negatives if i in loaded else 0 for i in range(len(stream.cards))]
    remining = Remining(pools, negatives, stage.train.remine)
    stream.remine = RemineSource(remining, [loaded[i].passages if i in loaded else {}
                                            for i in range(len(stream.cards))])
    return remining


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
        mode=(MixtureMode.balanced if spec.balanced_batches
              else MixtureMode.homogeneous if spec.homogeneous_batches else MixtureMode.mixed),
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
    remining = attach_remining(stage, stream) if spec.remine is not None else None
    optimizer = build_optimizer(encoder, spec)
    scheduler = build_training_schedule(optimizer, spec, spec.steps)
    model, optimizer = accelerator.prepare(encoder, optimizer)
    model.train()

    tracker = start_tracker(stage, accelerator)
    task = TrainTask(spec, stream, model, loss_fn, accelerator, remining)
    try:
        end = run_loop(
            task, output=output, stream=stream,
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
        if remining is not None:
            write_parquet(output / TrainResult.REMINING_FILE, task.checks, TrainResult.REMINING_COLUMNS)
        result = TrainResult(
            kind=stage.kind, stage_id=stage.stage_id, wall_seconds=end.wall_seconds(), steps=spec.steps,
            final_loss=end.final_loss, resumed_from_step=end.resumed_from_step,
            num_processes=accelerator.num_processes, mixture=weights, datasets=dataset_uses(stream),
            remining_file=TrainResult.REMINING_FILE if remining is not None else None,
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
