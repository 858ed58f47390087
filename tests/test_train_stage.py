"""The training stage in-process: learning, outputs, reload, resume, NaN stop, bad model."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch

from tdro.errors import UserError
from tdro.stages import train
from tests.train_helpers import dataset_cards, model_card, stage_file


def test_tiny_bert_learns_and_reloads(tmp_path, tiny_bert_dir):
    cards = dataset_cards(tmp_path / "data")
    stage = stage_file(tmp_path / "run", model_card(tiny_bert_dir), cards, steps=20, learning_rate=3e-3)
    result = train.run(stage)
    rows = pq.read_table(tmp_path / "run" / "metrics.parquet").to_pylist()
    assert [r["step"] for r in rows] == list(range(1, 21))
    first, last = sum(r["loss"] for r in rows[:4]) / 4, sum(r["loss"] for r in rows[-4:]) / 4
    assert last < 0.6 * first, (first, last)
    assert {r["dataset"] for r in rows} <= {"alpha", "beta"}
    on_disk = json.loads((tmp_path / "run" / "result.json").read_text())
    assert on_disk == json.loads(json.dumps(result))
    assert on_disk["status"] == "complete" and on_disk["steps"] == 20 and on_disk["model_dir"] == "model"
    assert on_disk["mixture"] == {"alpha": 0.5, "beta": 0.5}  # normalised
    assert [d["name"] for d in on_disk["datasets"]] == ["alpha", "beta"]
    assert all(d["rows"] == 64 and d["skipped_lines"] == 0 and d["fingerprint"] for d in on_disk["datasets"])
    from transformers import AutoModel

    reloaded = AutoModel.from_pretrained(tmp_path / "run" / "model")
    base = AutoModel.from_pretrained(tiny_bert_dir)
    key = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(reloaded.state_dict()[key], base.state_dict()[key])  # trained weights saved


def test_tiny_decoder_last_token_learns(tmp_path, tiny_decoder_dir):
    cards = dataset_cards(tmp_path / "data")
    card = model_card(tiny_decoder_dir, pooling="last_token", eos="append", padding_side="left")
    stage = stage_file(
        tmp_path / "run", card, cards, steps=20, learning_rate=1e-3, temperature=0.1, warmup_steps=5,
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
    assert train.run(killed, stop_after_step=3) is None  # checkpoint at step 2, step 3 lost
    assert sorted(p.name for p in (tmp_path / "killed" / "checkpoints").iterdir()) == ["step-2"]
    assert not (tmp_path / "killed" / "result.json").exists()
    result = train.run(killed)
    assert result["resumed_from_step"] == 2
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
        tmp_path / "run", model_card(tiny_bert_dir), cards, steps=6, checkpoint_every=1, learning_rate=1e30,
        max_grad_norm=None, warmup_steps=0,
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
