"""The prepare stages in the graph: which datasets get mine and dedup, and what re-runs when inputs change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tdro.errors import UserError
from tdro.plan.graph import build_plan
from tests.runner_project import load, write_project

PREPARE = {"retriever": "tiny", "mine": {"negatives": 2, "depth": [1, 5], "top_k": 5}}


def model_folder(path: Path) -> Path:
    path.mkdir()
    (path / "config.json").write_text("{}")
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The runner's tiny project plus a pairs dataset, a second retriever and a second benchmark split."""
    spec = write_project(tmp_path, model_folder(tmp_path / "model"), datasets=("alpha", "pairs"),
                         prepare=PREPARE)
    registry = tmp_path / "registry"
    other = yaml.safe_load((registry / "models" / "tiny.yaml").read_text())
    other |= {"name": "other", "source": {"path": str(model_folder(tmp_path / "other-model"))}}
    (registry / "models" / "other.yaml").write_text(yaml.safe_dump(other))
    (registry / "benchmarks" / "tiny_dev.yaml").write_text(yaml.safe_dump(
        {"name": "tiny_dev", "path": str(tmp_path / "bench" / "tiny"), "split": "dev"}))
    pairs = tmp_path / "data" / "pairs.jsonl"
    pairs.write_text("".join(json.dumps([f"question {i}", f"answer {i}"]) + "\n" for i in range(12)))
    (tmp_path / "registry" / "datasets" / "pairs.yaml").write_text(yaml.safe_dump(
        {"name": "pairs", "path": str(pairs), "source": "pairs", "instructions": ["Find the answer"]}))
    return spec


def ids_by_kind(spec: Path, *overrides: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for stage in build_plan(load(spec, *overrides)).stages:
        out.setdefault(stage.kind.value, set()).add(stage.id)
    return out


def changed(a: dict[str, set[str]], b: dict[str, set[str]]) -> dict[str, int]:
    return {kind: len(a[kind] - b.get(kind, set())) for kind in a}





def test_pairs_are_mined_then_deduplicated_before_stage_0(project: Path) -> None:
    plan = build_plan(load(project))
    kinds = [s.kind.value for s in plan.stages]
    assert kinds[:3] == ["mine", "dedup", "dedup"]  # alpha has negatives: dedup only
    mine = plan.stages[0]
    dedup_pairs = next(s for s in plan.stages if s.kind.value == "dedup" and mine.id in s.inputs)
    reference = next(s for s in plan.stages if s.kind.value == "reference")
    assert dedup_pairs.id in reference.inputs
    card = next(c for c in reference.stage_file.datasets if c.name == "pairs")
    assert card.path == str(dedup_pairs.folder / "groups.jsonl") and card.source.value == "groups"


def test_without_prepare_a_pairs_source_is_refused(project: Path) -> None:
    with pytest.raises(UserError, match="source pairs has no negatives"):
        build_plan(load(project, "prepare=null"))


def test_changing_the_retriever_reruns_mining_and_everything_downstream(project: Path) -> None:
    base = ids_by_kind(project)
    other = ids_by_kind(project, "prepare.retriever=other")
    assert changed(base, other) == {"mine": 1, "dedup": 1, "reference": 1, "optimize": 1, "train": 1,
                                    "evaluate": 2}


def test_changing_mining_parameters_reruns_mining_and_downstream(project: Path) -> None:
    base = ids_by_kind(project)
    other = ids_by_kind(project, "prepare.mine.negatives=3")
    assert changed(base, other) == {"mine": 1, "dedup": 1, "reference": 1, "optimize": 1, "train": 1,
                                    "evaluate": 2}


def test_changing_only_benchmarks_reruns_dedup_not_mining(project: Path) -> None:
    base = ids_by_kind(project)
    other = ids_by_kind(project, "prepare.dedup.benchmarks=[tiny_dev]")
    assert changed(base, other) == {"mine": 0, "dedup": 2, "reference": 1, "optimize": 1, "train": 1,
                                    "evaluate": 2}


def test_run_only_mining_settings_keep_ids(project: Path) -> None:
    base = ids_by_kind(project)
    assert ids_by_kind(project, "prepare.mine.batch_size=7", "prepare.mine.chunk_size=9") == base


def test_a_spec_without_prepare_keeps_its_ids(project: Path) -> None:
    # prepare's fields on cards and stage files are inert when unused
    plan = build_plan(load(project, "prepare=null", "datasets=[alpha]"))
    reference = next(s for s in plan.stages if s.kind.value == "reference")
    assert "prepared_data" not in reference.identity
    assert all("source" not in card for card in reference.identity["datasets"])


def test_query_groups_skip_mining_unless_asked(project: Path) -> None:
    assert ids_by_kind(project).get("mine") and len(ids_by_kind(project)["mine"]) == 1  # pairs only
    assert len(ids_by_kind(project, "prepare.datasets={alpha: {mine: true}}")["mine"]) == 2


def test_a_per_dataset_override_changes_only_that_datasets_mining(project: Path) -> None:
    base = build_plan(load(project))
    other = build_plan(load(project, "prepare.datasets={pairs: {negatives: 5}}"))
    (mine,) = [s for s in other.stages if s.kind.value == "mine"]
    assert mine.stage_file.mine.negatives == 5 and mine.id not in {s.id for s in base.stages}
    dedup_alpha = {s.id for s in base.stages if s.kind.value == "dedup" and not s.inputs}
    assert dedup_alpha <= {s.id for s in other.stages}


def test_a_beir_split_is_mined_and_its_split_counts(project: Path) -> None:
    registry = project.parent / "registry"
    card = {"name": "tiny_train", "path": str(project.parent / "bench" / "tiny"), "source": "beir",
            "split": "dev", "instructions": ["Find the document"]}
    (registry / "datasets" / "tiny_train.yaml").write_text(yaml.safe_dump(card))
    dev = build_plan(load(project, "datasets=[tiny_train]"))
    (mine,) = [s for s in dev.stages if s.kind.value == "mine"]
    assert mine.stage_file.dataset.split == "dev"
    (registry / "datasets" / "tiny_train.yaml").write_text(yaml.safe_dump({**card, "split": "test"}))
    test = build_plan(load(project, "datasets=[tiny_train]"))
    (other,) = [s for s in test.stages if s.kind.value == "mine"]
    assert other.stage_file.dataset_fingerprint != mine.stage_file.dataset_fingerprint


HOLDOUT = "prepare.holdout={queries: 3, corpus: 6}"


def test_a_holdout_splits_pairs_before_mining_and_is_deduplicated_and_evaluated(project: Path) -> None:
    plan = build_plan(load(project, HOLDOUT))
    holdout = plan.stages[0]
    assert [s.kind.value for s in plan.stages[:4]] == ["holdout", "mine", "dedup", "dedup"]
    assert holdout.stage_file.dataset.name == "pairs"  # alpha is query groups: nothing to hold out
    mine = plan.stages[1]
    assert mine.inputs == [holdout.id] and mine.stage_file.data_path == holdout.folder / "train.jsonl"
    benchmark = "heldout-pairs"
    for stage in plan.stages:
        if stage.kind.value in ("dedup", "evaluate"):
            names = [c.name for c in stage.stage_file.benchmarks]
            assert benchmark in names and holdout.id in stage.inputs  # every dataset is checked against it
            assert stage.stage_file.benchmark_fingerprints[benchmark] == holdout.id
            card = next(c for c in stage.stage_file.benchmarks if c.name == benchmark)
            assert card.path == str(holdout.folder / "test") and card.group == "heldout"


def test_the_training_seed_shares_holdout_mining_and_dedup(project: Path) -> None:
    base = ids_by_kind(project, HOLDOUT)
    other = ids_by_kind(project, HOLDOUT, "seed=2")
    assert changed(base, other) == {"holdout": 0, "mine": 0, "dedup": 0, "reference": 1, "optimize": 1,
                                    "train": 1, "evaluate": 2}


def test_changing_the_holdout_reruns_everything_downstream(project: Path) -> None:
    base = ids_by_kind(project, HOLDOUT)
    other = ids_by_kind(project, "prepare.holdout={queries: 4, corpus: 6}")
    # alpha's dedup reads the held-out queries too
    assert changed(base, other) == {"holdout": 1, "mine": 1, "dedup": 2, "reference": 1, "optimize": 1,
                                    "train": 1, "evaluate": 2}


def test_a_holdout_of_a_query_group_dataset_is_refused(project: Path) -> None:
    with pytest.raises(UserError, match="prepare.datasets.alpha.holdout: holdout splits a pairs source"):
        build_plan(load(project, HOLDOUT, "prepare.datasets={alpha: {holdout: true}}"))
