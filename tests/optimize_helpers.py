"""Helpers of the stage-1 tests: a stage-0 stand-in (a perturbed copy of a tiny model) and stage files."""

from __future__ import annotations

from pathlib import Path

from tdro.spec.cards import DatasetCard, ModelCard
from tdro.spec.experiment import DroSpec, ResourcesSpec, TrackingSpec
from tdro.spec.stage_file import OptimizeStageFile, Upstream
from tests.train_helpers import with_loss_section


def reference_model(card: ModelCard, folder: Path, *, noise: float = 0.05, seed: int = 1) -> Path:
    """The base model with seeded noise on every weight, saved as a retriever folder: a reference whose
    losses differ from the proxy's from the first step on."""
    import torch

    from tdro.modeling.encoder import Encoder

    encoder = Encoder.from_card(card)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in encoder.parameters():
            p.add_(noise * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return encoder.save_pretrained(folder)


def optimize_stage(
    out: Path, model: ModelCard, datasets: list[DatasetCard], reference_dir: Path | None, *,
    processes: int = 1, tracking: str = "disabled", **dro,
) -> OptimizeStageFile:
    defaults = dict(
        steps=4, batch_size=8, gradient_accumulation=2, passages_per_query=4, learning_rate=1e-3,
        warmup_steps=1, eta=0.5, checkpoint_every=100,
    )
    stage = OptimizeStageFile(
        stage_id="test-" + out.name, experiment="tests", seed=7, output_dir=str(out), model=model,
        datasets=datasets, initial_weights={d.name: 1.0 for d in datasets},
        reference_model=Upstream(stage_id="reference", path=str(reference_dir)) if reference_dir else None,
        dro=DroSpec(**{**defaults, **with_loss_section(dro)}),
        resources=ResourcesSpec(mixed_precision="no", processes=processes),
        tracking=TrackingSpec(mode=tracking, project="tdro-tests"),
    )
    stage.write()
    return stage
