"""Stage 1 (tDRO): train a proxy retriever on mixed batches while learning the mixture weights alpha.

Run as `accelerate launch [...] -m tdro.stages.optimize STAGE_FILE` (an `OptimizeStageFile`). Each optimizer
step takes `dro.batch_size` query groups over all processes, drawn from the initial mixture with every
example's dataset drawn independently (mixed batches), as `dro.gradient_accumulation` global
micro-batches, each split over the processes (as the reference's sharded loader does), so a micro-batch
holds the same query groups whatever the number of processes. Per micro-batch:
1. the proxy (the base model card) and the frozen reference (`reference_model_dir`, the stage-0 model: eval
   mode, no grad, `requires_grad_(False)`, never saved; encoding under the proxy's autocast on GPUs)
   encode the same batch in length-aware chunks (`dro.token_budget`); per-sample InfoNCE losses
   over each query's own positive and hard negatives (`dro.loss.only_hard_negatives`; else in-batch too);
2. losses and dataset ids are gathered over processes (the GLOBAL micro-batch) and the group measure
   (`tdro.dro.group_measure`) is accumulated into alpha's gradient;
3. on the last micro-batch of the step alpha is updated (`tdro.dro.AlphaState`) BEFORE that micro-batch's
   loss is formed, as in the reference;
4. the proxy is trained on the alpha-weighted loss (`tdro.dro.robust_loss`, normalised over the global
   micro-batch so that the result does not depend on the number of processes).
The per-sample loss is built by the same factory as stage 0/2's (`ContrastiveLoss.from_spec(dro.loss)`);
the proxy's optimizer and schedule are those of stage 0 (AdamW, warm-up, cosine, clipping).

The loop (`tdro.stages.loop.run_loop`) prefetches, checkpoints every `dro.checkpoint_every` steps (the
proxy, its optimizer and schedule, the data stream, and this stage's `OptimizeTask` state: alpha's full
state, the trajectory so far, the samples seen), resumes (alpha continues exactly), stops on a NaN/inf
with one line (exit 2) and streams the curves to W&B: alpha (curr, mean, EMA), the group measure and the
losses per dataset. Outputs (`tdro.spec.stage_result.OptimizeResult`): `weights.json`
(`tdro.weights_file.WeightsFile`), `trajectory.parquet`, `result.json` with diagnostics (entropy, largest
share, absent datasets, `collapsed` when one dataset holds > 90 %, also printed).
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from contextlib import nullcontext
from typing import Any

from tdro import tracking_keys as keys
from tdro.enums import Measure, MixtureMode, SampleOrder
from tdro.errors import UserError
from tdro.spec.stage_file import OptimizeStageFile
from tdro.spec.stage_result import OptimizeResult
from tdro.stages.loop import StepRecord


def initial_weights(stage: OptimizeStageFile) -> list[float]:
    """The initial alpha in dataset order; every dataset needs a weight > 0 (log alpha starts at its log)."""
    names = [c.name for c in stage.datasets]
    if len(set(names)) != len(names):
        raise UserError("datasets: a dataset is listed twice")
    missing = [n for n in names if n not in stage.initial_weights]
    extra = sorted(set(stage.initial_weights) - set(names))
    if missing or extra:
        raise UserError(
            f"initial_weights: must name exactly the stage's datasets (missing: {', '.join(missing) or '-'}; "
            f"unknown: {', '.join(extra) or '-'})"
        )
    bad = [n for n in names if not (math.isfinite(stage.initial_weights[n]) and stage.initial_weights[n] > 0)]
    if bad:
        raise UserError(f"initial_weights: must be finite and > 0 for stage 1; bad: {', '.join(bad)}")
    return [float(stage.initial_weights[n]) for n in names]


def sample_seed(stage: OptimizeStageFile) -> int:
    """The seed of stage 1's data stream (see `SampleOrder`).

    With stage 0's seed (`as_reference`, the reference code) every dataset's rows come in stage 0's order, and
    with a mixed stage 0 of the same batch size stage 1 replays its batches exactly (groups, negatives,
    instructions), so the reference is scored on what it was trained on: on small data it has partly
    memorised them (the demo's random-label domain most of all), which bends every reference-based measure.
    `independent` (default) draws from a seed derived for stage 1.
    """
    if stage.dro.sample_order is SampleOrder.as_reference:
        return stage.seed
    from tdro.data.sampler import derived_seed

    return derived_seed(stage.seed, "optimize")


def load_reference(stage: OptimizeStageFile, proxy, device):
    """The frozen stage-0 model, or None for measure `loss`; it must share the proxy's tokenizer."""
    if stage.reference_model_dir is None:
        if stage.dro.measure is not Measure.loss:
            raise UserError(f"reference_model_dir: measure {stage.dro.measure.value} needs the stage-0 model")
        return None
    from tdro.modeling.encoder import Encoder

    card = stage.model
    ref = Encoder.from_pretrained(
        stage.reference_model_dir, dtype=card.dtype.value, trust_remote_code=card.trust_remote_code
    )
    if ref.tokenizer.get_vocab() != proxy.tokenizer.get_vocab():
        raise UserError(
            f"reference_model_dir: {stage.reference_model_dir} has a different tokenizer than the base model "
            f"{stage.model.name}; stage 0 must be trained from the same base model"
        )
    ref.eval()
    ref.requires_grad_(False)
    return ref.to(device)


class WindowStats:
    """Per-dataset sums over one optimizer step's global micro-batches, for the trajectory."""

    def __init__(self, n: int) -> None:
        import torch

        self.g = torch.zeros(n, dtype=torch.float64)
        self.proxy = torch.zeros(n, dtype=torch.float64)
        self.ref = torch.zeros(n, dtype=torch.float64)
        self.counts = torch.zeros(n, dtype=torch.long)
        self.micro = 0

    def add(self, stats, proxy, ref, ids) -> None:
        ids = ids.long().cpu()
        self.g += stats.measure
        self.counts += stats.counts
        self.proxy.index_add_(0, ids, proxy.double().cpu())
        if ref is not None:
            self.ref.index_add_(0, ids, ref.double().cpu())
        self.micro += 1


def _mean(total: float, count: int) -> float | None:
    return total / count if count else None


def trajectory_rows(step: int, names: list[str], alpha, window: WindowStats, has_ref: bool) -> list[dict]:
    rows = []
    for d, name in enumerate(names):
        count = int(window.counts[d])
        rows.append(dict(
            step=step, dataset=name, alpha=float(alpha.alpha[d]), alpha_mean=float(alpha.mean[d]),
            alpha_ema=float(alpha.ema[d]), group_measure=float(window.g[d]) / max(1, window.micro),
            proxy_loss=_mean(float(window.proxy[d]), count),
            ref_loss=_mean(float(window.ref[d]), count) if has_ref else None, samples=count,
        ))
    return rows


def curves(rows: list[dict], update) -> dict[str, float]:
    out: dict[str, float] = {keys.ALPHA_GRAD_NORM: update.grad_norm}
    for r in rows:
        for column, prefix in keys.TRAJECTORY_CURVES.items():
            if r[column] is not None:
                out[keys.per_dataset(prefix, r["dataset"])] = r[column]
    return out


class OptimizeTask:
    """Stage 1's part of the loop: global micro-batches, the group measure, alpha's update, the trajectory."""

    def __init__(
        self, stage: OptimizeStageFile, stream, model, reference, loss_fn, alpha, accelerator
    ) -> None:
        import torch

        self.spec = stage.dro
        self.names = [c.name for c in stage.datasets]
        self.stream, self.model, self.reference, self.loss_fn = stream, model, reference, loss_fn
        self.alpha, self.accelerator = alpha, accelerator
        self.rows: list[dict[str, Any]] = []
        self.seen = torch.zeros(len(self.names), dtype=torch.long)
        self.window: WindowStats | None = None
        self.update = None

    def draw(self) -> list:
        # One stream step per GLOBAL micro-batch, split over processes: micro-batch j holds the same query
        # groups whatever the number of processes (the group measure is taken per global micro-batch).
        return [self.stream.next_step(micro_batches=1)[0] for _ in range(self.spec.gradient_accumulation)]

    def _per_sample(self, encoder, batch, *, frozen: bool = False):
        from tdro.stages.step import encode_by_length

        budget, acc = self.spec.token_budget, self.accelerator  # length-aware chunks, the loss on all rows
        # The frozen reference encodes in the proxy's precision (the prepared proxy's autocast; a no-op on
        # CPU); the scores stay float32 outside it.
        with acc.autocast() if frozen else nullcontext():
            query, passages = [encode_by_length(encoder, f, budget, accelerator=acc)
                               for f in (batch.query, batch.passages)]
        return self.loss_fn(query, passages, reduction="none")

    def forward_backward(self, step: int, batches: list) -> float:
        import torch

        from tdro.dro import group_measure, robust_loss

        accelerator, spec, world = self.accelerator, self.spec, self.accelerator.num_processes
        window = self.window = WindowStats(len(self.names))
        losses = []
        for j, batch in enumerate(batches):
            batch = batch.to(accelerator.device)
            last = j == len(batches) - 1
            with nullcontext() if last else accelerator.no_sync(self.model):
                proxy_losses = self._per_sample(self.model, batch)
                ref_losses = None
                if self.reference is not None:
                    with torch.inference_mode():  # frozen: no graph, no version counters
                        ref_losses = self._per_sample(self.reference, batch, frozen=True)
                all_proxy = accelerator.gather(proxy_losses.detach())
                all_ref = None if ref_losses is None else accelerator.gather(ref_losses)
                all_ids = accelerator.gather(batch.dataset_ids)
                stats = group_measure(all_proxy, all_ref, all_ids, len(self.names), spec.measure, spec.ratio,
                                      spec.ref_floor_batch)
                self.alpha.accumulate(stats.measure)
                window.add(stats, all_proxy, all_ref, all_ids)
                if last:
                    self.update = self.alpha.update()  # before this micro-batch's loss, as the reference
                current = self.alpha.alpha.to(accelerator.device)
                loss = robust_loss(
                    proxy_losses, batch.dataset_ids, current,
                    global_weight_sum=current[all_ids.long()].sum(), num_processes=world,
                )
                accelerator.backward(loss / len(batches))
            losses.append(loss.detach() / world)
        return accelerator.reduce(torch.stack(losses).mean(), reduction="sum").item()

    def after_step(self, record: StepRecord) -> dict[str, float]:
        assert self.window is not None
        self.seen += self.window.counts
        has_ref = self.reference is not None
        new_rows = trajectory_rows(record.step, self.names, self.alpha, self.window, has_ref)
        self.rows.extend(new_rows)
        return curves(new_rows, self.update)

    def state_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha.state_dict(), "rows": self.rows, "seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.alpha.load_state_dict(state["alpha"])
        self.rows, self.seen = state["rows"], state["seen"].clone()


def run(stage: OptimizeStageFile, *, stop_after_step: int | None = None) -> OptimizeResult | None:
    """Optimise alpha; write the outputs and return the result (main process) or None (the others)."""
    from tdro.data.stream import TrainingStream
    from tdro.dro import AlphaState, diagnostics
    from tdro.modeling.losses import ContrastiveLoss
    from tdro.modeling.optim import build_optimizer, build_training_schedule
    from tdro.stages.loop import dataset_uses, run_loop
    from tdro.stages.outputs import write_parquet
    from tdro.stages.runtime import load_encoder, make_accelerator, seed_everything, start_tracker
    from tdro.weights_file import WeightsFile, write_weights_file

    started = time.perf_counter()
    spec = stage.dro
    output = stage.output
    output.mkdir(parents=True, exist_ok=True)
    names = [c.name for c in stage.datasets]
    initial = initial_weights(stage)
    accelerator = make_accelerator(stage.resources)
    seed_everything(stage.seed)
    world = accelerator.num_processes
    if spec.batch_size % (world * spec.gradient_accumulation):
        raise UserError(
            f"dro.batch_size: {spec.batch_size} must split into {spec.gradient_accumulation} micro-batches "
            f"on each of {world} processes"
        )
    proxy = load_encoder(stage.model)
    reference = load_reference(stage, proxy, accelerator.device)
    loss_fn = ContrastiveLoss.from_spec(
        spec.loss, passages_per_query=spec.passages_per_query, normalize=proxy.config.normalize, dim=proxy.dim
    )
    stream = TrainingStream(
        list(stage.datasets), initial, mode=MixtureMode.mixed,
        batch_size=spec.batch_size // spec.gradient_accumulation,
        passages_per_query=spec.passages_per_query, seed=sample_seed(stage), config=proxy.config,
        tokenizer=proxy.tokenizer, num_processes=world, process_index=accelerator.process_index,
        skip_bad_lines=stage.data.skip_bad_lines, fingerprints=stage.dataset_fingerprints,
    )
    alpha = AlphaState(
        initial, eta=spec.eta, max_grad_norm=spec.max_alpha_grad_norm,
        normalize_on_update=spec.normalize_on_update, ema=spec.ema,
    )
    optimizer = build_optimizer(proxy, spec)
    scheduler = build_training_schedule(optimizer, spec, spec.steps)
    model, optimizer = accelerator.prepare(proxy, optimizer)
    model.train()
    task = OptimizeTask(stage, stream, model, reference, loss_fn, alpha, accelerator)

    tracker = start_tracker(stage, accelerator)
    try:
        end = run_loop(
            task, output=output, stream=stream, accelerator=accelerator, model=model, optimizer=optimizer,
            scheduler=scheduler, steps=spec.steps, checkpoint_every=spec.checkpoint_every,
            max_grad_norm=spec.max_grad_norm, queries_per_step=spec.batch_size, tracker=tracker,
            started=started, stop_after_step=stop_after_step,
        )
        if end is None:
            return None
        snapshots = alpha.snapshot(names)
        write_weights_file(output / OptimizeResult.WEIGHTS_FILE, WeightsFile(
            stage_id=stage.stage_id, measure=spec.measure, step=spec.steps, datasets=names,
            sizes={n: len(r) for n, r in zip(names, stream.readers, strict=True)}, **snapshots,
        ))
        write_parquet(output / OptimizeResult.TRAJECTORY_FILE, task.rows, OptimizeResult.TRAJECTORY_COLUMNS)
        absent = [n for n, c in zip(names, task.seen.tolist(), strict=True) if c == 0]
        diag = diagnostics(snapshots["curr"], absent=absent)
        warning = diag.warning()
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        timed = [r.seconds for r in end.records][1:] or [r.seconds for r in end.records]  # 1st: warm-up
        result = OptimizeResult(
            stage_id=stage.stage_id, wall_seconds=end.wall_seconds(), steps=spec.steps,
            measure=spec.measure, ratio=spec.ratio, ref_floor_batch=spec.ref_floor_batch,
            diagnostics=diag.model_dump(), warnings=[warning] if warning else [], final_loss=end.final_loss,
            seconds_per_step=sum(timed) / len(timed) if timed else None,
            median_seconds_per_step=statistics.median(timed) if timed else None,
            resumed_from_step=end.resumed_from_step, num_processes=world, datasets=dataset_uses(stream),
        )
        result.write(output)
        tracker.summary({keys.final_alpha(n): w for n, w in snapshots["curr"].items()}
                        | {keys.ALPHA_ENTROPY: diag.entropy, keys.ALPHA_MAX_SHARE: diag.max_share})
        return result
    finally:
        tracker.finish()


def main(argv: list[str] | None = None) -> int:
    from tdro.stages.runtime import run_stage_module

    return run_stage_module(run, (OptimizeStageFile,), "tdro.stages.optimize", argv)


if __name__ == "__main__":
    sys.exit(main())
