"""Stage 1 (tDRO): train a proxy retriever on mixed batches while learning the mixture weights alpha.

Run as `accelerate launch [...] -m tdro.stages.optimize STAGE_FILE` (an `OptimizeStageFile`). Each optimizer
step takes `dro.batch_size` query groups over all processes, drawn from the initial mixture with every
example's dataset drawn independently (mixed batches), as `dro.gradient_accumulation` global
micro-batches, each split over the processes (as the reference's sharded loader does), so a micro-batch
holds the same query groups whatever the number of processes. Per micro-batch:
1. the proxy (the base model card) and the frozen reference (`reference_model_dir`, the stage-0 model: eval
   mode, no grad, `requires_grad_(False)`, never saved) encode the same batch; per-sample InfoNCE losses
   over each query's own positive and hard negatives (`dro.only_hard_negatives`; else in-batch too);
2. losses and dataset ids are gathered over processes (the GLOBAL micro-batch) and the group measure
   (`tdro.dro.group_measure`) is accumulated into alpha's gradient;
3. on the last micro-batch of the step alpha is updated (`tdro.dro.AlphaState`) BEFORE that micro-batch's
   loss is formed, as in the reference;
4. the proxy is trained on the alpha-weighted loss (`tdro.dro.robust_loss`, normalised over the global
   micro-batch so that the result does not depend on the number of processes).
The proxy's optimizer and schedule are those of stage 0 (AdamW, warm-up, cosine, clipping; `DroSpec`).

Outputs (see `tdro.spec.stage_file`): `weights.json` (`tdro.weights_file.WeightsFile`), `trajectory.parquet`
(one row per alpha update and dataset), `result.json` with diagnostics (entropy, largest share, absent
datasets, `collapsed` when one dataset holds > 90 %, also printed), `checkpoints/step-N` every
`dro.checkpoint_every` steps holding the proxy, its optimizer and schedule, alpha's full state, the
trajectory so far and the data stream; a restarted job resumes from the newest one and continues alpha
exactly. alpha (curr, mean, EMA), the group measure and the losses per dataset go to W&B on the main
process. `TDRO_STOP_AFTER_STEP=k` (tests only) stops after step k as if killed (exit 3).
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from contextlib import nullcontext
from typing import Any

from tdro.enums import Measure, MixtureMode, SampleOrder
from tdro.errors import UserError
from tdro.spec.stage_file import OptimizeStageFile

TRAJECTORY_FILE = "trajectory.parquet"
TRAJECTORY_COLUMNS = [
    "step", "dataset", "alpha", "alpha_mean", "alpha_ema", "group_measure", "proxy_loss", "ref_loss",
    "samples",
]


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
    out: dict[str, float] = {"alpha/grad_norm": update.grad_norm}
    for r in rows:
        name = r["dataset"]
        out[f"alpha/{name}"] = r["alpha"]
        out[f"alpha_mean/{name}"] = r["alpha_mean"]
        out[f"alpha_ema/{name}"] = r["alpha_ema"]
        out[f"group_measure/{name}"] = r["group_measure"]
        for key in ("proxy_loss", "ref_loss"):
            if r[key] is not None:
                out[f"{key}/{name}"] = r[key]
    return out


def run(stage: OptimizeStageFile, *, stop_after_step: int | None = None) -> dict[str, Any] | None:
    """Optimise alpha; return the result.json fields (main process) or {} (others); None if stopped."""
    import torch

    from tdro.data.stream import TrainingStream
    from tdro.dro import AlphaState, diagnostics, group_measure, robust_loss
    from tdro.modeling.losses import info_nce
    from tdro.modeling.optim import build_optimizer, build_training_schedule
    from tdro.stages.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
    from tdro.stages.outputs import write_parquet, write_result
    from tdro.stages.runtime import load_encoder, make_accelerator, seed_everything, start_tracker
    from tdro.weights_file import WEIGHTS_FILE, WeightsFile, write_weights_file

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
    # One stream step per GLOBAL micro-batch, split over processes: micro-batch j holds the same query
    # groups whatever the number of processes (the group measure is taken per global micro-batch).
    micro_size = spec.batch_size // spec.gradient_accumulation
    stream = TrainingStream(
        list(stage.datasets), initial, mode=MixtureMode.mixed, batch_size=micro_size,
        passages_per_query=spec.passages_per_query, seed=sample_seed(stage), config=proxy.config,
        tokenizer=proxy.tokenizer, num_processes=world, process_index=accelerator.process_index,
        skip_bad_lines=stage.data.skip_bad_lines,
    )
    alpha = AlphaState(
        initial, eta=spec.eta, max_grad_norm=spec.max_alpha_grad_norm,
        normalize_on_update=spec.normalize_on_update, ema=spec.ema,
    )
    optimizer = build_optimizer(proxy, spec)
    scheduler = build_training_schedule(optimizer, spec, spec.steps)
    model, optimizer = accelerator.prepare(proxy, optimizer)
    model.train()

    def per_sample(encoder, batch) -> torch.Tensor:
        return info_nce(
            encoder(**batch.query), encoder(**batch.passages), passages_per_query=batch.passages_per_query,
            temperature=spec.temperature, only_hard_negatives=spec.only_hard_negatives, reduction="none",
        )

    rows: list[dict[str, Any]] = []
    seen = torch.zeros(len(names), dtype=torch.long)
    start_step, previous_wall = 0, 0.0
    step_seconds: list[float] = []
    step_losses: list[float] = []
    last_good = latest_checkpoint(output)
    if last_good is not None:
        trainer, rank_state = load_checkpoint(
            last_good, accelerator=accelerator, model=model, optimizer=optimizer, scheduler=scheduler
        )
        stream.load_state_dict(rank_state["stream"])
        alpha.load_state_dict(trainer["alpha"])
        seen = trainer["seen"].clone()
        start_step, rows = trainer["step"], trainer["rows"]
        previous_wall, step_seconds = trainer["wall_seconds"], trainer["step_seconds"]
        step_losses = trainer["step_losses"]

    tracker = start_tracker(stage, accelerator)
    try:
        for step in range(start_step + 1, spec.steps + 1):
            t0 = time.perf_counter()
            lr = scheduler.get_last_lr()[0]
            batches = [stream.next_step(micro_batches=1)[0] for _ in range(spec.gradient_accumulation)]
            window = WindowStats(len(names))
            losses = []
            for j, batch in enumerate(batches):
                batch = batch.to(accelerator.device)
                last = j == len(batches) - 1
                with nullcontext() if last else accelerator.no_sync(model):
                    proxy_losses = per_sample(model, batch)
                    ref_losses = None
                    if reference is not None:
                        with torch.inference_mode():  # frozen: no graph, no version counters
                            ref_losses = per_sample(reference, batch)
                    all_proxy = accelerator.gather(proxy_losses.detach())
                    all_ref = None if ref_losses is None else accelerator.gather(ref_losses)
                    all_ids = accelerator.gather(batch.dataset_ids)
                    stats = group_measure(all_proxy, all_ref, all_ids, len(names), spec.measure, spec.ratio,
                                          spec.ref_floor_batch)
                    alpha.accumulate(stats.measure)
                    window.add(stats, all_proxy, all_ref, all_ids)
                    if last:
                        update = alpha.update()  # before this micro-batch's loss, as the reference
                    current = alpha.alpha.to(accelerator.device)
                    loss = robust_loss(
                        proxy_losses, batch.dataset_ids, current,
                        global_weight_sum=current[all_ids.long()].sum(), num_processes=world,
                    )
                    accelerator.backward(loss / len(batches))
                losses.append(loss.detach() / world)
            step_loss = accelerator.reduce(torch.stack(losses).mean(), reduction="sum").item()
            grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), spec.max_grad_norm or math.inf))
            if not (math.isfinite(step_loss) and math.isfinite(grad_norm)):
                what = f"gradient norm is {grad_norm}" if math.isfinite(step_loss) else f"loss is {step_loss}"
                kept = f"checkpoints/{last_good.name} kept" if last_good else "no checkpoint was written yet"
                raise UserError(f"step {step}: proxy {what}; stage 1 stopped ({kept})")
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            seen += window.counts
            new_rows = trajectory_rows(step, names, alpha, window, reference is not None)
            rows.extend(new_rows)
            step_seconds.append(time.perf_counter() - t0)
            step_losses.append(step_loss)
            tracker.log({"train/loss": step_loss, "train/lr": lr, "train/grad_norm": grad_norm,
                         "train/seconds": step_seconds[-1], **curves(new_rows, update)}, step=step)
            if step % spec.checkpoint_every == 0 and step < spec.steps:
                last_good = save_checkpoint(
                    output, step, accelerator=accelerator, model=model, optimizer=optimizer,
                    scheduler=scheduler,
                    trainer={"rows": rows, "alpha": alpha.state_dict(), "seen": seen,
                             "step_seconds": step_seconds, "step_losses": step_losses,
                             "wall_seconds": previous_wall + time.perf_counter() - started},
                    rank_state={"stream": stream.state_dict()},
                )
            if stop_after_step is not None and step >= stop_after_step:
                return None

        accelerator.wait_for_everyone()
        if not accelerator.is_main_process:
            return {}
        snapshots = alpha.snapshot(names)
        write_weights_file(output / WEIGHTS_FILE, WeightsFile(
            stage_id=stage.stage_id, measure=spec.measure, step=spec.steps, datasets=names,
            sizes={n: len(r) for n, r in zip(names, stream.readers, strict=True)}, **snapshots,
        ))
        write_parquet(output / TRAJECTORY_FILE, rows, TRAJECTORY_COLUMNS)
        absent = [n for n, c in zip(names, seen.tolist(), strict=True) if c == 0]
        diag = diagnostics(snapshots["curr"], absent=absent)
        warning = diag.warning()
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        timed = step_seconds[1:] or step_seconds  # the first step pays for warm-up
        result = {
            "kind": stage.kind,
            "stage_id": stage.stage_id,
            "wall_seconds": previous_wall + time.perf_counter() - started,
            "steps": spec.steps,
            "weights_file": WEIGHTS_FILE,
            "trajectory_file": TRAJECTORY_FILE,
            "measure": spec.measure.value,
            "ratio": spec.ratio.value,
            "ref_floor_batch": spec.ref_floor_batch,
            "diagnostics": diag.model_dump(),
            "warnings": [warning] if warning else [],
            "final_loss": step_losses[-1] if step_losses else None,
            "seconds_per_step": sum(timed) / len(timed) if timed else None,
            "median_seconds_per_step": statistics.median(timed) if timed else None,
            "resumed_from_step": start_step or None,
            "num_processes": world,
            "datasets": [
                {"name": n, "rows": len(r), "fingerprint": r.fingerprint, "skipped_lines": len(r.skipped)}
                for n, r in zip(names, stream.readers, strict=True)
            ],
        }
        write_result(output, result)
        tracker.summary({f"final_alpha/{n}": w for n, w in snapshots["curr"].items()}
                        | {"alpha_entropy": diag.entropy, "alpha_max_share": diag.max_share})
        return result
    finally:
        tracker.finish()


def main(argv: list[str] | None = None) -> int:
    from tdro.stages.runtime import run_stage_module

    return run_stage_module(run, (OptimizeStageFile,), "tdro.stages.optimize", argv)


if __name__ == "__main__":
    sys.exit(main())
