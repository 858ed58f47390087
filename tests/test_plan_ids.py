"""Stage ids: what changes them and what does not; sharing between arms; uniform transfer reuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdro.plan.graph import build_plan
from tests.runner_project import load, write_project_with_model_folder


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    return write_project_with_model_folder(tmp_path)


def ids_by_kind(spec: Path, *overrides: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for stage in build_plan(load(spec, *overrides)).stages:
        out.setdefault(stage.kind.value, set()).add(stage.id)
    return out


def changed(a: dict[str, set[str]], b: dict[str, set[str]]) -> dict[str, int]:
    return {kind: len(a[kind] - b.get(kind, set())) for kind in a}


def test_graph_of_one_arm(spec: Path) -> None:
    plan = build_plan(load(spec))
    kinds = [s.kind.value for s in plan.stages]
    assert kinds == ["reference", "optimize", "train", "evaluate", "evaluate"]
    ref, opt, train, ev_ref, ev_train = plan.stages
    assert opt.inputs == [ref.id] and train.inputs == [opt.id]
    assert ev_ref.inputs == [ref.id] and ev_train.inputs == [train.id]
    assert all(s.status.value == "run" for s in plan.stages)
    assert opt.stage_file.reference_model_dir == str(ref.folder / "model")
    assert train.stage_file.mixture.weights_file == str(opt.folder / "weights.json")
    assert train.stage_file.mixture.alpha_file.stage_id == opt.id
    assert ref.stage_file.mixture.weights == {"alpha": 1.0, "beta": 1.0, "gamma": 1.0}
    assert ev_train.stage_file.model_under_test.path == str(train.folder / "model")
    assert ref.partial.name == f"reference-{ref.id[:12]}.partial"


def test_zero_shot_evaluates_the_base_model_and_changes_no_other_id(spec: Path) -> None:
    without = build_plan(load(spec))
    plan = build_plan(load(spec, "evaluate.zero_shot=true"))
    added = [s for s in plan.stages if s.id not in {t.id for t in without.stages}]
    assert [s.kind.value for s in added] == ["evaluate"] and len(plan.stages) == len(without.stages) + 1
    zero_shot = added[0]
    assert zero_shot.inputs == [] and zero_shot.stage_file.model_under_test is None
    assert zero_shot.stage_file.model_weights == plan.stages[0].stage_file.model_weights  # the base model
    assert [(link.measure, link.transfer) for link in zero_shot.links] == [(None, "zero_shot")]
    reseeded = build_plan(load(spec, "evaluate.zero_shot=true", "seed=5"))
    assert zero_shot.id in {s.id for s in reseeded.stages}  # shared by every training seed


def test_evaluate_metrics_change_only_evaluate_ids(spec: Path) -> None:
    base = ids_by_kind(spec)
    other = ids_by_kind(spec, "evaluate.metrics=[ndcg@10,recall@100]")
    assert changed(base, other) == {"reference": 0, "optimize": 0, "train": 0, "evaluate": 2}


def test_eta_change_reruns_stage1_stage2_and_their_evaluations_only(spec: Path) -> None:
    plan_a, plan_b = build_plan(load(spec)), build_plan(load(spec, "dro.eta=0.1"))
    a = {s.id for s in plan_a.stages}
    new = [s for s in plan_b.stages if s.id not in a]
    assert sorted(s.kind.value for s in new) == ["evaluate", "optimize", "train"]
    (new_eval,) = [s for s in new if s.kind.value == "evaluate"]
    assert new_eval.inputs == [next(s.id for s in new if s.kind.value == "train")]


def test_run_only_fields_do_not_change_ids(spec: Path) -> None:
    base = ids_by_kind(spec)
    same = ids_by_kind(spec, "train.checkpoint_every=7", "dro.checkpoint_every=3", "tracking.mode=offline",
                       "resources.processes=4", "evaluate.batch_size=3", "output.catalog=elsewhere.duckdb")
    assert same == base


def test_ref_floor_batch_changes_only_the_per_sample_ratio_arms(spec: Path) -> None:
    # regression: a field that cannot act must not re-run cached stage-1 runs
    base = ids_by_kind(spec, "dro.measure=loss_over_ref")
    floored = ids_by_kind(spec, "dro.measure=loss_over_ref", "dro.ref_floor_batch=512")
    assert changed(base, floored) == {"reference": 0, "optimize": 1, "train": 1, "evaluate": 1}
    for measure in ("loss", "loss_minus_ref"):
        assert ids_by_kind(spec, f"dro.measure={measure}", "dro.ref_floor_batch=512") == ids_by_kind(
            spec, f"dro.measure={measure}")
    domain_means = ("dro.measure=loss_over_ref", "dro.ratio=domain_means")
    assert ids_by_kind(spec, *domain_means, "dro.ref_floor_batch=512") == ids_by_kind(spec, *domain_means)


def test_sample_order_reruns_stage1_and_downstream_only(spec: Path) -> None:
    base = ids_by_kind(spec)
    replay = ids_by_kind(spec, "dro.sample_order=as_reference")
    assert changed(base, replay) == {"reference": 0, "optimize": 1, "train": 1, "evaluate": 1}


def test_arms_share_equal_stages(spec: Path) -> None:
    plan = build_plan(load(spec, "sweep.grid={dro.measure: [loss, loss_minus_ref, loss_over_ref]}"))
    kinds = [s.kind.value for s in plan.stages]
    # one reference (and its evaluation) for three measures; per measure: optimize, train, evaluate
    assert kinds.count("reference") == 1 and kinds.count("optimize") == 3 and kinds.count("train") == 3
    assert kinds.count("evaluate") == 4
    ref = plan.stages[0]
    assert len(ref.arms) == 3
    assert {link.transfer for link in ref.links} == {"baseline"}
    single = {s.id for s in build_plan(load(spec, "dro.measure=loss")).stages}
    assert single <= {s.id for s in plan.stages}  # an arm's stages are the stages of the same single run


def test_uniform_transfer_reuses_the_reference(spec: Path) -> None:
    plan = build_plan(load(spec, "transfer=[{mode: uniform}, {mode: reweight}]"))
    kinds = [s.kind.value for s in plan.stages]
    assert kinds == ["reference", "optimize", "train", "evaluate", "evaluate"]
    ref = plan.stages[0]
    assert {(link.transfer, link.measure) for link in ref.links} == {("baseline", None), ("uniform", None)}
    ref_eval = next(s for s in plan.stages if s.kind.value == "evaluate" and s.inputs == [ref.id])
    assert {link.transfer for link in ref_eval.links} == {"baseline", "uniform"}


def test_dataset_content_not_mtime_identifies_data(spec: Path) -> None:
    import os

    base = ids_by_kind(spec)
    data = spec.parent / "data" / "beta.jsonl"
    st = data.stat()
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, same bytes
    assert ids_by_kind(spec) == base
    data.write_text(data.read_text().replace("what", "which", 1))
    moved = ids_by_kind(spec)
    assert all(not (moved[k] & base[k]) for k in base)  # every stage reads the data (eval via its model)


def test_missing_generated_data_is_written_before_fingerprinting(tmp_path: Path) -> None:
    from tdro.errors import UserError
    from tdro.plan.graph import ensure_generated
    from tdro.spec.cards import BenchmarkCard, DatasetCard

    root = tmp_path / "demo"
    card = DatasetCard(name="demo_lexical", path=str(root / "train" / "demo_lexical.jsonl"),
                       instructions=["x"], generated_by="demo")
    bench = BenchmarkCard(name="demo_lexical", path=str(root / "test" / "demo_lexical"), generated_by="demo")
    ensure_generated([card], [bench])
    assert card.resolved_path.stat().st_size > 0 and (root / "test" / "demo_lexical" / "qrels").is_dir()
    # regression: a folder from another version of the generator (or edited by hand) was kept as it was
    good = card.resolved_path.read_bytes()
    card.resolved_path.write_text('{"query": "stale"}\n')
    ensure_generated([card], [bench])
    assert card.resolved_path.read_bytes() == good
    odd = DatasetCard(name="x", path=str(tmp_path / "nope.jsonl"), instructions=["x"], generated_by="magic")
    with pytest.raises(UserError, match="unknown generator"):
        ensure_generated([odd], [])


def test_benchmark_ignore_identical_ids_changes_only_evaluate_ids(spec: Path) -> None:
    card = spec.parent / "registry" / "benchmarks" / "tiny.yaml"
    base = ids_by_kind(spec)
    card.write_text(card.read_text() + "ignore_identical_ids: true\n")
    assert changed(base, ids_by_kind(spec)) == {"reference": 0, "optimize": 0, "train": 0, "evaluate": 2}


def test_stray_file_beside_folder_data_keeps_ids(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "alpha"
    spec = write_project_with_model_folder(tmp_path)
    folder.mkdir()
    (tmp_path / "data" / "alpha.jsonl").rename(folder / "part-0.jsonl")
    card = tmp_path / "registry" / "datasets" / "alpha.yaml"
    card.write_text(card.read_text().replace(str(tmp_path / "data" / "alpha.jsonl"), str(folder)))
    base = ids_by_kind(spec)
    (folder / "part-0.jsonl.bak").write_text("not data\n")
    (folder / "old").mkdir()
    (folder / "old" / "part-0.jsonl").write_text("not data either\n")
    assert ids_by_kind(spec) == base


def test_renamed_data_file_with_the_same_bytes_keeps_ids(spec: Path) -> None:
    base = ids_by_kind(spec)
    old = spec.parent / "data" / "beta.jsonl"
    new = old.rename(old.with_name("beta-renamed.jsonl"))
    card = spec.parent / "registry" / "datasets" / "beta.yaml"
    card.write_text(card.read_text().replace(str(old), str(new)))
    assert ids_by_kind(spec) == base


def test_stage_id_is_the_hash_of_the_stage_file_it_runs(spec: Path) -> None:
    from tdro.spec.identity import stage_id

    for stage in build_plan(load(spec)).stages:
        assert stage_id(stage.stage_file) == stage.id
        assert stage.stage_file.output_dir == str(stage.partial)


def test_upstream_paths_do_not_count_but_their_ids_do(spec: Path) -> None:
    opt = next(s for s in build_plan(load(spec)).stages if s.kind.value == "optimize")
    assert opt.identity["reference_model"] == {"stage_id": opt.inputs[0]}
