"""Atomic, resumable training checkpoints: `<output_dir>/checkpoints/step-N/`.

A checkpoint holds the model weights, optimizer and scheduler state and a `trainer` dict (step, metric
rows, anything the stage needs; written by the main process) plus, per process, `rank-<i>.pt` with that
process's RNG states (python, numpy, torch CPU, CUDA) and its `rank_state` dict (e.g. the data stream).

- `save_checkpoint(output_dir, step, *, accelerator, model, optimizer, scheduler, trainer, rank_state,
  keep=2) -> Path`: every process calls it. Files go to `checkpoints/.step-N.tmp/`; after a barrier the
  main process renames it to `step-N` and deletes all but the newest `keep`. A folder without its
  `complete` marker is never read.
- `latest_checkpoint(output_dir) -> Path | None`: the newest complete checkpoint.
- `load_checkpoint(path, *, accelerator, model, optimizer, scheduler) -> (trainer, rank_state)`: restores
  model, optimizer, scheduler and this process's RNG states.
- `full_model_state(accelerator, model) -> dict | None`: every process calls it before the main process
  writes the final model; the gathered full state dict under FSDP/DeepSpeed, None under DDP (the
  unwrapped model's own is complete).

The layout (`CheckpointLayout`, chosen by `layout_for(accelerator)`): `full` under DDP, where the main
process writes the unwrapped model's state dict and the replicated optimizer state; `sharded` under FSDP
and DeepSpeed, where every process writes its own shard of model and optimizer through accelerate's
`save_state` into `state/` (FSDP's `SHARDED_STATE_DICT`, set by `tdro.plan.launch`). Both keep the same
folder protocol, scheduler, trainer dict and per-process RNG and stream state.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tdro.spec.stage_file import CHECKPOINTS_DIR

CHECKPOINTS = CHECKPOINTS_DIR
_COMPLETE = "complete"
_STEP = re.compile(r"^step-(\d+)$")


class CheckpointLayout(StrEnum):
    full = "full"  # main process: the unwrapped model's state dict, the replicated optimizer state (DDP)
    sharded = "sharded"  # every process: its shards, through accelerate's save_state (FSDP, DeepSpeed)


_STATE_DIR = "state"  # accelerate's save_state folder of a sharded checkpoint


def layout_for(accelerator) -> CheckpointLayout:
    from accelerate.utils import DistributedType

    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    return CheckpointLayout.sharded if sharded else CheckpointLayout.full


def full_model_state(accelerator, model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """The full state dict of a sharded model (collective: every process calls it); None under DDP."""
    if layout_for(accelerator) is CheckpointLayout.full:
        return None
    return accelerator.get_state_dict(model)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_steps(output_dir: str | Path) -> list[tuple[int, Path]]:
    root = Path(output_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP.match(child.name)
        if match and (child / _COMPLETE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    steps = checkpoint_steps(output_dir)
    return steps[-1][1] if steps else None


def torch_save(obj: Any, path: Path) -> None:
    """`torch.save`, with a full disk told as what it is. torch's zip writer reports a failed write as
    "enforce fail ... unexpected pos"; a plain write at the same path then shows the system's reason,
    which is raised as that `OSError` (the error boundary prints `path: cannot write (No space left on
    device)`)."""
    try:
        torch.save(obj, path)
    except RuntimeError:
        try:
            with open(path, "wb") as probe:
                probe.write(bytes(1 << 20))
                probe.flush()
                os.fsync(probe.fileno())
        except OSError as reason:
            raise OSError(reason.errno, os.strerror(reason.errno or 0), str(path)) from None
        raise


def save_checkpoint(
    output_dir: str | Path,
    step: int,
    *,
    accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    trainer: dict[str, Any],
    rank_state: dict[str, Any] | None = None,
    keep: int = 2,
    layout: CheckpointLayout | None = None,
) -> Path:
    layout = layout or layout_for(accelerator)
    root = Path(output_dir) / CHECKPOINTS
    final = root / f"step-{step}"
    tmp = root / f".step-{step}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    rank_file = tmp / f"rank-{accelerator.process_index}.pt"
    torch_save({"rng": _rng_state(), "state": rank_state or {}}, rank_file)
    if layout is CheckpointLayout.sharded:
        accelerator.save_state(str(tmp / _STATE_DIR))  # collective: each process writes its shards
    if accelerator.is_main_process:
        if layout is CheckpointLayout.full:
            torch_save(accelerator.unwrap_model(model).state_dict(), tmp / "model.pt")
            torch_save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch_save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch_save({**trainer, "step": step, "num_processes": accelerator.num_processes,
                    "layout": layout.value}, tmp / "trainer.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / _COMPLETE).write_text(f"{step}\n")
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for _, old in checkpoint_steps(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(
    path: str | Path, *, accelerator, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler,
    layout: CheckpointLayout | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    from tdro.errors import UserError

    path = Path(path)
    trainer = torch.load(path / "trainer.pt", weights_only=False)
    if trainer["num_processes"] != accelerator.num_processes:
        raise UserError(
            f"{path}: written by {trainer['num_processes']} processes, resumed with "
            f"{accelerator.num_processes}; resume with the same resources or delete the checkpoints"
        )
    written = CheckpointLayout(trainer.get("layout", CheckpointLayout.full.value))
    needed = layout or layout_for(accelerator)
    if written is not needed:
        raise UserError(
            f"{path}: a {written.value} checkpoint, resumed with a backend that needs a {needed.value} one; "
            "resume with the same resources or delete the checkpoints"
        )
    if written is CheckpointLayout.sharded:
        accelerator.load_state(str(path / _STATE_DIR))  # model and optimizer shards of this process
    else:
        accelerator.unwrap_model(model).load_state_dict(torch.load(path / "model.pt", weights_only=True))
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    rank = torch.load(path / f"rank-{accelerator.process_index}.pt", weights_only=False)
    _set_rng_state(rank["rng"])
    return trainer, rank["state"]
