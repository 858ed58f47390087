"""The training stage in-process: learning, outputs, reload, resume, NaN stop, bad model."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch

from tdro.errors import UserError
from tdro.spec.experiment import TransferSpec
from tdro.spec.stage_file import Mixture, Upstream
from tdro.spec.stage_result import TrainResult
from tdro.stages import train
from tdro.stages.loop import StoppedEarly
from tests.train_helpers import dataset_cards, model_card, stage_file


def test_tiny_bert_learns_and_reloads(tmp_path, tiny_bert_dir, capsys):
    cards = dataset_cards(tmp_path / "data")
    stage = stage_file(tmp_path / "run", model_card(tiny_bert_dir), cards, steps=20, learning_rate=3e-3)
    result = train.run(stage)
    rows = pq.read_table(tmp_path / "run" / "metrics.parquet").to_pylist()
    assert [r["step"] for r in rows] == list(range(1, 21))
    progress = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    # stage.log shows every second step of 20, with the loss the metrics file holds
    assert [line.split()[1] for line in progress] == [f"{k}/20" for k in range(2, 21, 2)]
    assert [line.split()[3] for line in progress] == [f"{r['loss']:.4f}" for r in rows[1::2]]
    first, last = sum(r["loss"] for r in rows[:4]) / 4, sum(r["loss"] for r in rows[-4:]) / 4
    assert last < 0.6 * first, (first, last)
    assert {r["dataset"] for r in rows} <= {"alpha", "beta"}
    on_disk = TrainResult.read(tmp_path / "run")
    assert on_disk == result
    assert on_disk.status == "complete" and on_disk.steps == 20 and on_disk.model_dir == "model"
    assert on_disk.mixture == {"alpha": 0.5, "beta": 0.5}  # normalised
    assert [d.name for d in on_disk.datasets] == ["alpha", "beta"]
    assert all(d.rows == 64 and d.skipped_lines == 0 and d.fingerprint for d in on_disk.datasets)
    from transformers import AutoModel

    reloaded = AutoModel.from_pretrained(tmp_path / "run" / "model")
    base = AutoModel.from_pretrained(tiny_bert_dir)
    key = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(reloaded.state_dict()[key], base.state_dict()[key])  # trained weights saved


def test_tiny_decoder_last_token_learns(tmp_path, tiny_decoder_dir):
    cards = dataset_cards(tmp_path / "data")
    card = model_card(tiny_decoder_dir, pooling="last_token", eos="append", padding_side="left")
    stage = stage_file(
        tmp_path / "run",
        card,
        cards,
        steps=30,
        learning_rate=1e-3,
        temperature=0.1,
        warmup_steps=5,
        gradient_accumulation=2,
    )
    train.run(stage)
    rows = pq.read_table(tmp_path / "run" / "metrics.parquet").to_pylist()
    first, last = sum(r["loss"] for r in rows[:3]) / 3, sum(r["loss"] for r in rows[-5:]) / 5
    assert last < 0.6 * first, (first, last)
    from tdro.modeling.encoder import Encoder

    enc = Encoder.from_pretrained(tmp_path / "run" / "model")
    assert enc.config.pooling.value == "last_token" and enc.tokenizer.padding_side == "left"


def test_resume_after_kill_gives_identical_weights(tmp_path, tiny_bert_dir):
    cards = dataset_cards(tmp_path / "data")
    card = model_card(tiny_bert_dir)  # dropout on: RNG states must be restored too
    options = dict(steps=5, checkpoint_every=2, chunk_size=4)
    full = stage_file(tmp_path / "full", card, cards, **options)
    train.run(full)
    killed = stage_file(tmp_path / "killed", card, cards, **options)
    with pytest.raises(StoppedEarly):
        train.run(killed, stop_after_step=3)  # checkpoint at step 2, step 3 lost
    assert sorted(p.name for p in (tmp_path / "killed" / "checkpoints").iterdir()) == ["step-2"]
    assert not (tmp_path / "killed" / "result.json").exists()
    result = train.run(killed)
    assert result is not None and result.resumed_from_step == 2
    from safetensors.torch import load_file

    a = load_file(tmp_path / "full" / "model" / "model.safetensors")
    b = load_file(tmp_path / "killed" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows_a = pq.read_table(tmp_path / "full" / "metrics.parquet").to_pylist()
    rows_b = pq.read_table(tmp_path / "killed" / "metrics.parquet").to_pylist()
    assert [r["loss"] for r in rows_a] == [r["loss"] for r in rows_b]


def test_nan_loss_stops_naming_step_and_dataset(tmp_path, tiny_bert_dir):
    cards = dataset_cards(tmp_path / "data", names=("alpha",))
    stage = stage_file(
        tmp_path / "run",
        model_card(tiny_bert_dir),
        cards,
        steps=6,
        checkpoint_every=1,
        learning_rate=1e30,
        max_grad_norm=None,
        warmup_steps=0,
    )
    with pytest.raises(UserError) as err:
        train.run(stage)
    (line,) = err.value.problems
    assert "on dataset alpha" in line and "training stopped" in line
    step = int(line.split(":")[0].removeprefix("step "))
    assert step >= 2 and f"checkpoints/step-{step - 1} kept" in line
    assert (tmp_path / "run" / "checkpoints" / f"step-{step - 1}" / "complete").is_file()
    assert not (tmp_path / "run" / "result.json").exists()


def test_unloadable_model_fails_before_training(tmp_path, capsys):
    cards = dataset_cards(tmp_path / "data", names=("alpha",), groups=4)
    (tmp_path / "empty").mkdir()
    stage = stage_file(tmp_path / "run", model_card(tmp_path / "empty"), cards)
    code = train.main([str(tmp_path / "run" / "stage.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot be loaded" in err[0] and str(tmp_path / "empty") in err[0]
    assert stage.output.exists() and not (stage.output / "checkpoints").exists()


def test_stage2_mixture_from_weights_file_and_transfer(tmp_path, tiny_bert_dir):
    cards = dataset_cards(tmp_path / "data", names=("alpha", "beta", "gamma"), groups=8)
    weights = {"alpha": 0.2, "beta": 0.5, "gamma": 0.3}
    (tmp_path / "weights.json").write_text(
        json.dumps(
            {"datasets": list(weights), "curr": weights, "ema": {"alpha": 0.6, "beta": 0.2, "gamma": 0.2}}
        )
    )
    mixture = Mixture(
        alpha_file=Upstream(stage_id="stage-1", path=str(tmp_path / "weights.json")),
        transfer=TransferSpec(mode="top_percent", percent=70),
    )
    stage = stage_file(tmp_path / "run", model_card(tiny_bert_dir), cards, mixture=mixture, steps=2)
    result = train.run(stage)
    # top 70% of 3 datasets = 2 (floor), the largest curr weights: beta, gamma; uniform over them
    assert result is not None and result.mixture == {"beta": 0.5, "gamma": 0.5}
    assert [d.name for d in result.datasets] == ["beta", "gamma"]
    rows = pq.read_table(tmp_path / "run" / "metrics.parquet").to_pylist()
    assert {r["dataset"] for r in rows} <= {"beta", "gamma"}


def test_last_token_without_eos_refused_before_training(tmp_path, tiny_decoder_dir, capsys):
    cards = dataset_cards(tmp_path / "data", names=("alpha",), groups=4)
    card = model_card(tiny_decoder_dir, pooling="last_token", eos="tokenizer")  # tokenizer adds no EOS
    stage_file(tmp_path / "run", card, cards)
    code = train.main([str(tmp_path / "run" / "stage.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "does not append EOS" in err[0]
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_job_streams_per_step_curves_to_its_wandb_run(tmp_path, tiny_bert_dir):
    import wandb

    from tdro import tracking_keys as keys
    from tests.wandb_offline import offline_runs

    cards = dataset_cards(tmp_path / "data", names=("alpha",), groups=16)
    stage = stage_file(tmp_path / "run", model_card(tiny_bert_dir), cards, tracking="offline", steps=3)
    train.run(stage)
    wandb.teardown()  # the W&B service writes the run file asynchronously; this waits for it
    (run,) = offline_runs(tmp_path / "run")
    assert run.run_id == keys.run_id("reference", stage.stage_id)
    for key in (keys.LOSS, keys.LR, keys.GRAD_NORM, keys.QUERIES_PER_SECOND, keys.dataset_loss("alpha")):
        assert [step for step, _ in run.curve(key)] == [1, 2, 3], key
    rows = pq.read_table(tmp_path / "run" / "metrics.parquet").to_pylist()
    assert [value for _, value in run.curve(keys.LOSS)] == [r["loss"] for r in rows]
    assert run.summary[keys.FINAL_LOSS] == rows[-1]["loss"]


def test_tracking_does_not_change_training(tmp_path, tiny_bert_dir):
    cards = dataset_cards(tmp_path / "data", names=("alpha",), groups=16)
    card = model_card(tiny_bert_dir)
    for name, tracking in (("quiet", "disabled"), ("tracked", "offline")):
        train.run(stage_file(tmp_path / name, card, cards, tracking=tracking, steps=3))
    losses = [[r["loss"] for r in pq.read_table(tmp_path / n / "metrics.parquet").to_pylist()]
              for n in ("quiet", "tracked")]
    assert losses[0] == losses[1]
