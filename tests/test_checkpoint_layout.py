"""Checkpoint layouts: the sharded one (accelerate's save_state; FSDP and DeepSpeed) resumes model,
optimizer, scheduler, RNG and per-process state exactly, in tdro's atomic folder; layouts do not mix.

accelerate enables FSDP only on accelerator devices (not MULTI_CPU), so on CPU the sharded layout is
exercised through the same save_state/load_state calls under a plain accelerator."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from tdro.enums import Pooling
from tdro.errors import UserError
from tdro.modeling.encoder import Encoder
from tdro.spec.experiment import ResourcesSpec
from tdro.spec.retriever import RetrieverConfig
from tdro.stages.checkpoint import (
    CheckpointLayout,
    full_model_state,
    latest_checkpoint,
    layout_for,
    load_checkpoint,
    save_checkpoint,
)
from tdro.stages.runtime import make_accelerator


@dataclass
class Training:
    accelerator: object
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    batch: dict[str, torch.Tensor]

    def step(self) -> None:
        self.model(**self.batch).pow(2).sum().backward()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def save(self, folder, step: int, layout: CheckpointLayout):
        return save_checkpoint(
            folder, step, accelerator=self.accelerator, model=self.model, optimizer=self.optimizer,
            scheduler=self.scheduler, trainer={"records": [step]}, rank_state={"stream": {"position": step}},
            layout=layout,
        )

    def load(self, path, layout: CheckpointLayout):
        return load_checkpoint(
            path, accelerator=self.accelerator, model=self.model, optimizer=self.optimizer,
            scheduler=self.scheduler, layout=layout,
        )

    def weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}


@pytest.fixture
def training(tiny_bert_dir) -> Training:
    encoder = Encoder.from_pretrained(tiny_bert_dir, RetrieverConfig(pooling=Pooling.mean))
    accelerator = make_accelerator(ResourcesSpec(mixed_precision="no"))
    optimizer = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad], lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (1 + s))
    model, optimizer = accelerator.prepare(encoder, optimizer)
    batch = encoder.tokenizer(["a blue bird", "the river by the city"], padding=True, return_tensors="pt")
    training = Training(accelerator, model, optimizer, scheduler,
                        {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]})
    training.step()
    return training


def test_ddp_writes_the_full_layout(training):
    assert layout_for(training.accelerator) is CheckpointLayout.full
    assert full_model_state(training.accelerator, training.model) is None


def test_sharded_checkpoint_resumes_exactly(tmp_path, training):
    path = training.save(tmp_path, 1, CheckpointLayout.sharded)
    saved, lr = training.weights(), training.scheduler.get_last_lr()
    expected_draw = torch.rand(3)
    training.step()
    trainer, rank_state = training.load(path, CheckpointLayout.sharded)
    assert latest_checkpoint(tmp_path) == path and (path / "state").is_dir()
    assert (trainer["step"], trainer["records"], rank_state) == (1, [1], {"stream": {"position": 1}})
    assert training.scheduler.get_last_lr() == lr
    torch.testing.assert_close(torch.rand(3), expected_draw, atol=0, rtol=0)
    for name, value in training.weights().items():
        torch.testing.assert_close(value, saved[name], atol=0, rtol=0)


def test_sharded_resume_continues_like_an_unbroken_run(tmp_path, training):
    path = training.save(tmp_path, 1, CheckpointLayout.sharded)
    training.step()
    unbroken = training.weights()
    training.load(path, CheckpointLayout.sharded)
    training.step()  # needs the optimizer's moments restored to land on the same weights
    for name, value in training.weights().items():
        torch.testing.assert_close(value, unbroken[name], atol=1e-7, rtol=0)


def test_a_sharded_checkpoint_does_not_resume_as_full(tmp_path, training):
    path = training.save(tmp_path, 1, CheckpointLayout.sharded)
    with pytest.raises(UserError, match="a sharded checkpoint, resumed with a backend that needs a full one"):
        training.load(path, CheckpointLayout.full)


def test_final_model_written_from_a_gathered_state_dict(tmp_path, tiny_bert_dir):
    encoder = Encoder.from_pretrained(tiny_bert_dir, RetrieverConfig(pooling=Pooling.mean))
    gathered = {k: torch.full_like(v, 0.5) for k, v in encoder.state_dict().items()}
    encoder.save_pretrained(tmp_path / "model", state_dict=gathered)
    again = Encoder.from_pretrained(tmp_path / "model")
    assert all(bool((v == 0.5).all()) for v in again.model.state_dict().values() if v.is_floating_point())
