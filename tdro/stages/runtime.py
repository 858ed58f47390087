"""Process-level setup shared by every stage job.

- `make_accelerator(resources)`: an `accelerate.Accelerator`; bf16/fp16 autocast only when a GPU is
  present (CPU runs stay fp32 whatever the spec says); without a GPU, processes join over gloo.
- `seed_everything(seed)`: python, numpy and torch RNGs (same seed on every process: identical model
  init and dropout streams are not needed across ranks, but a fixed seed makes every run repeatable).
- `load_encoder(card)`: the card's base model, failing before training with one line when it cannot be
  loaded or when last-token pooling cannot end sequences in EOS.
- `start_tracker(stage, accelerator)`: the W&B run of this stage on the main process (no-op elsewhere).
- `run_job(fn, argv)`: reads the stage file named in argv, calls fn(stage); a user error (see
  `tdro.errors`: a `UserError`, an environment `OSError` such as a full disk) prints one line per problem
  on stderr and exits 2.
- `run_stage_module(run, stage_types, module, argv)`: every stage module's `main`: `run_job` plus the
  stage-kind check, and exit 3 when the training loop stopped on purpose (`StoppedEarly`).
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tdro.enums import MixedPrecision
from tdro.errors import USER_ERROR_EXIT_CODE, UserError, report_user_error
from tdro.spec.cards import ModelCard
from tdro.spec.experiment import ResourcesSpec
from tdro.tracking import StageTracker


def make_accelerator(resources: ResourcesSpec):
    import torch
    from accelerate import Accelerator

    gpu = torch.cuda.is_available()
    precision = resources.mixed_precision if gpu else MixedPrecision.no
    # cpu=True is what makes accelerate use gloo across processes when there is no GPU
    return Accelerator(mixed_precision=precision.value, cpu=not gpu)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_encoder(card: ModelCard):
    """The card's model as an `Encoder`, EOS handling verified for last-token pooling."""
    from tdro.data.collator import check_eos
    from tdro.modeling.encoder import Encoder

    encoder = Encoder.from_card(card)
    check_eos(encoder.tokenizer, encoder.config)
    return encoder


def start_tracker(stage, accelerator, *, kind: str | None = None) -> StageTracker:
    return StageTracker.start(
        stage.tracking,
        experiment=stage.experiment,
        kind=kind or stage.kind,
        stage_id=stage.stage_id,
        folder=stage.output_dir,
        config=stage.tracking_config,
        enabled=accelerator.is_main_process,
    )


STOPPED_EXIT_CODE = 3  # stopped on purpose by TDRO_STOP_AFTER_STEP (tests), like a kill after a checkpoint


def run_stage_module(
    run: Callable[[Any], Any], stage_types: tuple[type, ...], module: str, argv: list[str] | None = None
) -> int:
    """`main` of a stage module: check the stage file's kind, run it; exit 3 when the training loop
    stopped on purpose (`TDRO_STOP_AFTER_STEP=k`, see `tdro.stages.loop`)."""
    from tdro.stages.loop import StoppedEarly

    stopped: list[bool] = []

    def job(stage: Any) -> None:
        if not isinstance(stage, stage_types):
            raise UserError(f"stage file of kind {stage.kind}: {module} cannot run it")
        try:
            run(stage)
        except StoppedEarly:
            stopped.append(True)

    code = run_job(job, argv)
    return STOPPED_EXIT_CODE if code == 0 and stopped else code


def run_job(fn: Callable[[Any], Any], argv: list[str] | None = None) -> int:
    """Entry point of a stage module: `python -m tdro.stages.<kind> STAGE_FILE`."""
    from tdro.spec.stage_file import read_stage_file

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tdro.stages.<kind> STAGE_FILE", file=sys.stderr)
        return USER_ERROR_EXIT_CODE
    try:
        path = Path(args[0])
        if not path.is_file():
            raise UserError(f"{path}: no such stage file")
        try:
            stage = read_stage_file(path)
        except ValueError as exc:
            raise UserError(f"{path}: invalid stage file ({str(exc).splitlines()[0]})") from None
        fn(stage)
    except Exception as exc:  # the one error boundary: a user error is one line each and exit 2
        code = report_user_error(exc)
        if code is None:
            raise
        return code
    finally:
        _leave_process_group()
    return 0


def _leave_process_group() -> None:
    """Tear the process group down before exit: a gloo group left open can abort a rank at exit."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
