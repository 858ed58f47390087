"""experiments/real.yaml, reduced: three real domains, a 10-query held-out slice each, two steps per stage,
run by the `tdro` command as a user runs it, with the real MiniLM. Every stage kind must run and land in
the catalog, and every number it records must be finite.

The data is $TDRO_REAL_DATA, else ../shared/data beside the checkout (the cards' default), else
/work/shared/data; the test skips, saying so, on a machine without it.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tdro.catalog.query import run_sql
from tdro.enums import StageKind

REPO = Path(__file__).resolve().parents[1]
# $TDRO_REAL_DATA, else the cards' default (../shared/data beside the checkout), else where it lies here
_CANDIDATES = [Path(p) for p in (os.environ.get("TDRO_REAL_DATA"),) if p] + [
    REPO.parent / "shared" / "data", Path("/work/shared/data")]
REAL_DATA = next((p for p in _CANDIDATES if (p / "train").is_dir()), _CANDIDATES[0])
DOMAINS = ("real-conala", "real-allnli", "real-pubmedqa")
REDUCED = (
    f"datasets=[{', '.join(DOMAINS)}]",
    "prepare.holdout={queries: 10, corpus: 30, max_positives: 5, train_queries: 24, seed: 0}",
    "prepare.mine={negatives: 3, depth: [1, 12], top_k: 12, seed: 42}",
    "train.steps=2", "train.batch_size=6", "train.warmup_steps=0", "train.checkpoint_every=1",
    "dro.steps=2", "dro.batch_size=6", "dro.warmup_steps=0", "dro.checkpoint_every=1",
    "sweep=null", "transfer=[{mode: top_percent, percent: 70}]",
    "evaluate.benchmarks=[]",  # the held-out sets only: SciFact's 5,183 passages take minutes here
    "tracking.mode=disabled",
)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (REAL_DATA / "train").is_dir():
        pytest.skip(f"{REAL_DATA}: the real data is not on this machine (set TDRO_REAL_DATA)")
    out = tmp_path_factory.mktemp("real")
    env = {**os.environ, "TDRO_REAL_DATA": str(REAL_DATA), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    env.pop("TDRO_REGISTRY", None)
    proc = subprocess.run(
        [sys.executable, "-m", "tdro", "run", "experiments/real.yaml", *REDUCED,
         f"output.runs_dir={out / 'runs'}", f"output.catalog={out / 'catalog.duckdb'}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return out / "catalog.duckdb"


@pytest.mark.slow
def test_every_stage_kind_runs_and_lands(catalog: Path) -> None:
    rows = run_sql(catalog, "SELECT kind, status, count(*) FROM stages GROUP BY ALL ORDER BY ALL").rows
    counts = {kind: n for kind, status, n in rows if status == "complete"}
    assert {kind for kind, _, _ in rows} == {k.value for k in StageKind}
    assert all(status == "complete" for _, status, _ in rows)
    # per domain: holdout, mine, dedup; one reference, stage 1 and stage 2; zero-shot, baseline, stage 2
    assert counts == {"holdout": 3, "mine": 3, "dedup": 3, "reference": 1, "optimize": 1, "train": 1,
                      "evaluate": 3}


@pytest.mark.slow
def test_each_model_is_scored_on_every_held_out_set_with_finite_numbers(catalog: Path) -> None:
    rows = run_sql(catalog, "SELECT transfer, benchmark, metric, value FROM results ORDER BY ALL").rows
    assert {(t, b) for t, b, _, _ in rows} == {
        (t, f"heldout-{d}") for t in ("baseline", "top_percent_70", "zero_shot") for d in DOMAINS}
    assert all(math.isfinite(v) and 0 <= v <= 1 for *_, v in rows)
    queries = run_sql(catalog, "SELECT DISTINCT benchmark, num_queries, num_docs FROM eval_metrics").rows
    assert sorted(queries) == [(f"heldout-{d}", 10, 30) for d in sorted(DOMAINS)]


@pytest.mark.slow
def test_preparation_and_stage_1_record_finite_counts_and_weights(catalog: Path) -> None:
    prep = run_sql(catalog, "SELECT dataset, kind, rows_in, rows_out FROM preparation ORDER BY ALL").rows
    assert {(d, k) for d, k, _, _ in prep} == {(d, k) for d in DOMAINS for k in ("holdout", "mine", "dedup")}
    holdout = {d: (i, o) for d, k, i, o in prep if k == "holdout"}
    assert all(0 < out < rows for rows, out in holdout.values())
    weights = run_sql(catalog, "SELECT dataset, weight FROM weights WHERE source = 'curr'").rows
    assert sorted(d for d, _ in weights) == sorted(DOMAINS)
    assert math.isclose(sum(w for _, w in weights), 1.0, rel_tol=1e-6)
    losses = run_sql(catalog, "SELECT proxy_loss, ref_loss, alpha FROM trajectory").rows
    assert losses and all(math.isfinite(x) for row in losses for x in row if x is not None)
