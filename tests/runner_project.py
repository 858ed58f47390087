"""A tiny tdro project on disk for the runner's tests: registry cards, datasets, a benchmark, a spec.

`write_project(root, model_dir, **spec)` returns the spec path; `load(spec, *overrides)` loads it with the
project's registry. `fake_outputs(stage, ...)` writes, into a stage's complete folder, the files a job
writes by contract (tdro.spec.stage_file) with numbers the catalog tests choose, so that ingest and views
are checked against hand-derived values without training.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
import yaml

from tdro.spec.load import Experiment, load_experiment
from tdro.spec.registry import Registry
from tdro.spec.stage_result import BenchmarkRecord, DatasetUse, EvaluateResult, OptimizeResult, TrainResult
from tests.train_helpers import write_dataset

REPO = Path(__file__).resolve().parents[1]
TINY_BEIR = REPO / "tests" / "fixtures" / "tiny_beir"
DATASETS = ("alpha", "beta", "gamma")


def write_project(root: Path, model_dir: Path, *, datasets: tuple[str, ...] = DATASETS, **spec: Any) -> Path:
    reg = root / "registry"
    for kind in ("datasets", "models", "benchmarks"):
        (reg / kind).mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(datasets):
        path = write_dataset(root / "data" / f"{name}.jsonl", groups=24, seed=k)
        card = {"name": name, "path": str(path), "instructions": [f"Given a {name} question, find passages"]}
        (reg / "datasets" / f"{name}.yaml").write_text(yaml.safe_dump(card))
    broken = root / "data" / "broken.jsonl"
    broken.write_text('{"query": "ok", "positive_passages": [{"text": "fine"}]}\n{"query": oops}\n')
    (reg / "datasets" / "broken.yaml").write_text(yaml.safe_dump(
        {"name": "broken", "path": str(broken), "instructions": ["Find passages"]}))
    bench = root / "bench" / "tiny"
    if not bench.exists():
        shutil.copytree(TINY_BEIR, bench)
    (reg / "benchmarks" / "tiny.yaml").write_text(yaml.safe_dump({"name": "tiny", "path": str(bench)}))
    (reg / "models" / "tiny.yaml").write_text(yaml.safe_dump({
        "name": "tiny", "source": {"path": str(model_dir)}, "pooling": "mean", "eos": "none",
        "query_max_length": 16, "passage_max_length": 24, "prompt_style": "none",
    }))
    data: dict[str, Any] = {
        "name": "tiny",
        "seed": 1,
        "base_model": "tiny",
        "datasets": list(datasets),
        "train": {"steps": 2, "batch_size": 8, "warmup_steps": 0, "checkpoint_every": 1,
                  "loss": {"temperature": 0.05}},
        "dro": {"steps": 2, "batch_size": 8, "gradient_accumulation": 1, "passages_per_query": 2,
                "warmup_steps": 0, "checkpoint_every": 1,
                  "loss": {"temperature": 0.05}},
        "transfer": [{"mode": "top_percent", "percent": 70}],
        # the base model's own evaluation is left out: these tests count stages and catalog rows
        "evaluate": {"benchmarks": ["tiny"], "metrics": ["ndcg@10"], "top_k": 10, "batch_size": 16,
                     "zero_shot": False},
        "resources": {"processes": 1},
        "tracking": {"mode": "disabled"},
        "output": {"runs_dir": str(root / "runs"), "catalog": str(root / "catalog.duckdb")},
    }
    for key, value in spec.items():
        data[key] = value
    path = root / "experiment.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_project_with_model_folder(root: Path) -> Path:
    """`write_project` with a bare local model folder (enough for planning and emitting, not training)."""
    model = root / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    return write_project(root, model)


def load(spec: Path, *overrides: str) -> Experiment:
    return load_experiment(spec, list(overrides), registry=Registry.load(spec.parent / "registry"))


def fake_outputs(stage: Any, *, value: float = 0.5, weights: dict[str, float] | None = None) -> Path:
    """The files a finished job leaves, per the stage-result contract, in the stage's complete folder."""
    folder: Path = stage.folder
    folder.mkdir(parents=True, exist_ok=True)
    kind = stage.kind.value
    common: dict[str, Any] = {"stage_id": stage.id, "wall_seconds": 1.5}
    names = [d.name for d in stage.stage_file.datasets] if hasattr(stage.stage_file, "datasets") else []
    used = [DatasetUse(name=n, rows=24, fingerprint="x", skipped_lines=0) for n in names]
    result: TrainResult | OptimizeResult | EvaluateResult
    if kind in ("reference", "train"):
        (folder / TrainResult.MODEL_DIR).mkdir(exist_ok=True)
        result = TrainResult(kind=kind, **common, steps=2, final_loss=value,
                             mixture={n: 1.0 / len(names) for n in names}, datasets=used)
        con = duckdb.connect()
        con.execute(f"COPY (SELECT range AS step, {value} AS loss, 1e-4 AS lr, 'alpha' AS dataset, "
                    f"1.0 AS grad_norm, 0.1 AS seconds FROM range(1, 3)) TO '{folder / result.metrics_file}'")
    elif kind == "optimize":
        w = weights or {n: 1.0 / len(names) for n in names}
        (folder / OptimizeResult.WEIGHTS_FILE).write_text(json.dumps({
            "stage_id": stage.id, "measure": stage.stage_file.dro.measure.value, "step": 2, "datasets": names,
            "sizes": {n: 24 for n in names}, "initial": {n: 1.0 / len(names) for n in names},
            "curr": w, "mean": w, "ema": w,
        }))
        rows = " UNION ALL ".join(
            f"SELECT {step} AS step, '{n}' AS dataset, {w[n]} AS alpha, {w[n]} AS alpha_mean, "
            f"{w[n]} AS alpha_ema, 0.1 AS group_measure, 1.0 AS proxy_loss, 2.0 AS ref_loss, 8 AS samples"
            for step in (1, 2) for n in names
        )
        duckdb.connect().execute(f"COPY ({rows}) TO '{folder / OptimizeResult.TRAJECTORY_FILE}'")
        dro = stage.stage_file.dro
        result = OptimizeResult(**common, steps=2, measure=dro.measure, ratio=dro.ratio, diagnostics={},
                                final_loss=value, datasets=[])
    else:
        model_dir = stage.stage_file.model_under_test.path if stage.stage_file.model_under_test else "base"
        result = EvaluateResult(**common, model_dir=model_dir, benchmarks=[BenchmarkRecord(
            benchmark="tiny", split="test", num_queries=13, num_docs=26, top_k=10, ignore_identical_ids=False,
            metrics={"ndcg@10": value},
        )])
    result.write(folder)
    return folder
