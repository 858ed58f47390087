"""Stage 1 in-process: outputs, alpha consistent with the logged group measure, absent datasets, resume,
the non-finite guard."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from tdro.errors import UserError
from tdro.spec.cards import DatasetCard, ModelCard
from tdro.spec.stage_file import OptimizeStageFile
from tdro.spec.stage_result import OptimizeResult
from tdro.stages import optimize
from tdro.stages.loop import StoppedEarly
from tests.optimize_helpers import optimize_stage, reference_model
from tests.train_helpers import dataset_cards, model_card

NAMES = ("alpha", "beta", "gamma")
INITIAL = [1.0, 1.0, 1e-9]  # gamma: practically never drawn, absent from every batch
OPTIONS = dict(steps=5, checkpoint_every=2)


@dataclass(frozen=True)
class Setup:
    """A tiny decoder, three datasets and a stage-0 stand-in, shared by the module's tests."""

    card: ModelCard
    cards: list[DatasetCard]
    reference_dir: Path


@dataclass(frozen=True)
class Finished:
    """A 5-step stage 1 run to the end: its result, trajectory rows and weights file."""

    folder: Path
    result: OptimizeResult
    rows: list[dict]
    weights: dict


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_decoder_dir) -> Setup:
    root = tmp_path_factory.mktemp("optimize")
    card = model_card(tiny_decoder_dir, pooling="last_token", eos="append")
    cards = dataset_cards(root / "data", names=NAMES, groups=32)
    return Setup(card, cards, reference_model(card, root / "reference"))


def gamma_absent_stage(setup: Setup, out: Path, **options) -> OptimizeStageFile:
    stage = optimize_stage(out, setup.card, setup.cards, setup.reference_dir, **options)
    stage.initial_weights.update(zip(NAMES, INITIAL, strict=True))
    stage.write()
    return stage


def finish(folder: Path, result: OptimizeResult) -> Finished:
    rows = pq.read_table(folder / OptimizeResult.TRAJECTORY_FILE).to_pylist()
    weights = json.loads((folder / OptimizeResult.WEIGHTS_FILE).read_text())
    return Finished(folder, result, rows, weights)


@pytest.fixture(scope="module")
def finished(setup: Setup, tmp_path_factory) -> Finished:
    folder = tmp_path_factory.mktemp("finished") / "run"
    result = optimize.run(gamma_absent_stage(setup, folder, **OPTIONS))
    assert result is not None
    return finish(folder, result)


@pytest.fixture(scope="module")
def killed(setup: Setup, tmp_path_factory) -> Path:
    """The same stage stopped after step 3 as if killed (checkpoint at step 2; step 3 is lost)."""
    folder = tmp_path_factory.mktemp("killed") / "run"
    with pytest.raises(StoppedEarly):
        optimize.run(gamma_absent_stage(setup, folder, **OPTIONS), stop_after_step=3)
    return folder


@pytest.fixture(scope="module")
def resumed(setup: Setup, killed: Path) -> Finished:
    result = optimize.run(gamma_absent_stage(setup, killed, **OPTIONS))
    assert result is not None
    return finish(killed, result)


def replay_alpha(rows: list[dict], initial: list[float], eta: float, ema: float):
    """alpha from the trajectory's own group measures, by the update rule written out in plain math."""
    steps = sorted({r["step"] for r in rows})
    log_alpha = [math.log(w / sum(initial)) for w in initial]
    mean, smoothed = [0.0] * len(initial), [w / sum(initial) for w in initial]
    out = []
    for c, step in enumerate(steps):
        g = [r["group_measure"] for r in rows if r["step"] == step]
        scale = min(1.0, 1.0 / (math.sqrt(sum(v * v for v in g)) + 1e-6))
        log_alpha = [la + eta * scale * v for la, v in zip(log_alpha, g, strict=True)]
        z = sum(math.exp(v) for v in log_alpha)
        alpha = [math.exp(v) / z for v in log_alpha]
        log_alpha = [math.log(a) for a in alpha]
        mean = [(m * c + a) / (c + 1) for m, a in zip(mean, alpha, strict=True)]
        smoothed = [(1 - ema) * e + ema * a for e, a in zip(smoothed, alpha, strict=True)]
        out.append((alpha, mean, smoothed))
    return out


def test_result_on_disk_is_the_returned_result(finished: Finished) -> None:
    assert OptimizeResult.read(finished.folder) == finished.result
    assert finished.result.weights_file == "weights.json" and finished.result.steps == 5


def test_trajectory_has_one_row_per_step_and_dataset(finished: Finished) -> None:
    assert tuple(finished.rows[0]) == OptimizeResult.TRAJECTORY_COLUMNS
    assert [(r["step"], r["dataset"]) for r in finished.rows] == [(s, n) for s in range(1, 6) for n in NAMES]


def test_absent_dataset_has_no_samples_and_no_measure(finished: Finished) -> None:
    gamma = [r for r in finished.rows if r["dataset"] == "gamma"]
    assert all(r["samples"] == 0 and r["group_measure"] == 0.0 and r["proxy_loss"] is None for r in gamma)
    assert finished.result.diagnostics["absent_datasets"] == ["gamma"]


def test_every_query_group_is_counted_once(finished: Finished) -> None:
    assert sum(r["samples"] for r in finished.rows) == 5 * 8  # every query group of the global batches
    assert all(r["ref_loss"] is not None for r in finished.rows if r["samples"])


@pytest.mark.parametrize("column, position", [
    pytest.param("alpha", 0, id="alpha"),
    pytest.param("alpha_mean", 1, id="mean"),
    pytest.param("alpha_ema", 2, id="ema"),
])
def test_alpha_follows_the_update_rule_on_the_logged_measure(finished: Finished, column, position) -> None:
    for step, expected in enumerate(replay_alpha(finished.rows, INITIAL, eta=0.5, ema=0.1), start=1):
        got = [r[column] for r in finished.rows if r["step"] == step]
        assert got == pytest.approx(expected[position], rel=1e-9), step


def test_alpha_moves_every_step(finished: Finished) -> None:
    assert len({r["alpha"] for r in finished.rows if r["dataset"] == "alpha"}) == 5


def test_weights_file_holds_the_last_step(finished: Finished) -> None:
    weights, final = finished.weights, [r for r in finished.rows if r["step"] == 5]
    assert (weights["datasets"], weights["step"], weights["measure"]) == (list(NAMES), 5, "loss_over_ref")
    assert weights["sizes"] == {n: 32 for n in NAMES}
    assert [weights["curr"][n] for n in NAMES] == [r["alpha"] for r in final]
    assert [weights["mean"][n] for n in NAMES] == [r["alpha_mean"] for r in final]
    assert math.fsum(weights["curr"].values()) == pytest.approx(1.0)


def test_diagnostics_describe_the_final_weights(finished: Finished) -> None:
    diag, shares = finished.result.diagnostics, list(finished.weights["curr"].values())
    assert diag["entropy"] == pytest.approx(-sum(p * math.log(p) for p in shares))
    assert diag["max_share"] == pytest.approx(max(shares)) and diag["collapsed"] == (max(shares) > 0.9)


def test_a_killed_run_writes_no_outputs(killed: Path) -> None:
    assert not (killed / OptimizeResult.WEIGHTS_FILE).exists()
    assert not (killed / OptimizeResult.FILE).exists()


def test_checkpoint_holds_the_proxy_only(killed: Path) -> None:
    saved = torch.load(killed / "checkpoints" / "step-2" / "model.pt", weights_only=True)
    assert saved and all(k.startswith("model.") for k in saved)  # never the reference


def test_resume_continues_alpha_bit_for_bit(finished: Finished, resumed: Finished) -> None:
    assert resumed.result.resumed_from_step == 2
    assert resumed.rows == finished.rows
    assert resumed.weights == {**finished.weights, "stage_id": resumed.weights["stage_id"]}


def test_nan_stops_naming_step_and_datasets_and_writes_nothing(setup: Setup, tmp_path: Path) -> None:
    stage = optimize_stage(tmp_path / "run", setup.card, setup.cards[:2], setup.reference_dir, steps=4,
                           checkpoint_every=1, learning_rate=1e30, max_grad_norm=None, warmup_steps=0)
    with pytest.raises(UserError) as err:
        optimize.run(stage)
    (line,) = err.value.problems
    assert line.startswith("step ") and "on datasets alpha, beta; training stopped" in line, line
    assert not (tmp_path / "run" / OptimizeResult.FILE).exists()
    assert not (tmp_path / "run" / OptimizeResult.TRAJECTORY_FILE).exists()


def test_measure_loss_needs_no_reference_but_ratios_do(setup, tmp_path):
    stage = optimize_stage(tmp_path / "plain", setup.card, setup.cards[:2], None, steps=2, measure="loss",
                           gradient_accumulation=1)
    optimize.run(stage)
    rows = pq.read_table(tmp_path / "plain" / "trajectory.parquet").to_pylist()
    assert all(r["ref_loss"] is None for r in rows)
    # measure loss, one micro-batch per step: the group measure is each dataset's mean proxy loss
    assert all(r["group_measure"] == pytest.approx(r["proxy_loss"]) for r in rows if r["samples"])
    bad = optimize_stage(tmp_path / "bad", setup.card, setup.cards[:2], None, steps=2)
    with pytest.raises(UserError, match="reference_model_dir: measure loss_over_ref needs"):
        optimize.run(bad)


def test_stage1_draws_its_own_groups_unless_told_to_replay_stage0(setup, tmp_path):
    """Regression: stage 1 used stage 0's seed, so with a mixed stage 0 of its batch size it scored the
    reference on the very batches the reference was trained on (the reference code does the same)."""
    from tdro.data.sampler import MixtureSampler, derived_seed
    from tdro.enums import MixtureMode

    card, cards, ref = setup.card, setup.cards, setup.reference_dir
    fresh = optimize_stage(tmp_path / "fresh", card, cards, ref)
    replay = optimize_stage(tmp_path / "replay", card, cards, ref, sample_order="as_reference")

    def pairs(seed: int) -> list[tuple[int, int]]:
        sampler = MixtureSampler([32] * len(cards), [1.0] * len(cards), MixtureMode.mixed, 8, seed)
        return [pair for _ in range(4) for pair in sampler.next_step()]

    stage0 = pairs(fresh.seed)  # what a mixed stage 0 with the same seed and batch size trains on, in order
    assert pairs(optimize.sample_seed(replay)) == stage0
    own = pairs(optimize.sample_seed(fresh))
    same = sum(a == b for a, b in zip(own, stage0, strict=True))
    assert same <= 3, (same, own, stage0)  # by chance 1/3 * 1/32 of 32 positions
    assert derived_seed(7, "optimize") == derived_seed(7, "optimize") != derived_seed(7, "train")
    assert derived_seed(7, "optimize") != derived_seed(8, "optimize")
