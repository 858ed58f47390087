"""Catalog and cached-run speed: `python bench/catalog.py [--arms 10000] [--steps 20] [--repeats 3]`.

Builds a catalog with 10k arms (each with its own stage 1, two stage-2 trainings and evaluations on five
benchmarks) and 1M trajectory rows (10k stage-1 runs x 20 steps x 5 datasets), then times, through the
same read-only path as `tdro sql` (open, query, fetch):
- the ablation query: mean nDCG@10 by measure x transfer over the `results` view;
- a weights query: mean final weight by measure x dataset over the `weights` view;
- a trajectory query: mean alpha per measure, step and dataset over the `trajectory` view;
and the wall time of a fully cached `tdro run` (a new process, as a user types it) on a small experiment.
Targets: queries < 1 s, cached run < 3 s. Prints a markdown table with each time as a ratio of its target.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tdro.catalog.connection import transaction  # noqa: E402
from tdro.catalog.query import run_sql  # noqa: E402

DATASETS = 5
BENCHMARKS = 5
QUERIES = {
    "ablation (results by measure x transfer)": """
        SELECT measure, transfer, avg(value) AS ndcg FROM results
        WHERE metric = 'ndcg@10' GROUP BY ALL ORDER BY ALL""",
    "weights (final weight by measure x dataset)": """
        SELECT measure, dataset, avg(weight) FROM weights WHERE source = 'curr' GROUP BY ALL ORDER BY ALL""",
    "trajectory (mean alpha by measure x step x dataset)": """
        SELECT measure, step, dataset, avg(alpha) FROM trajectory GROUP BY ALL ORDER BY ALL""",
}


def build_catalog(path: Path, arms: int, steps: int) -> None:
    measures = "['loss', 'loss_minus_ref', 'loss_over_ref'][1 + (i % 3)]"
    with transaction(path) as con:
        con.execute("INSERT INTO experiments VALUES ('bench', 'bench.yaml', '{}', now())")
        con.execute("ALTER TABLE arms ADD COLUMN dro_measure VARCHAR")
        con.execute("ALTER TABLE arms ADD COLUMN dro_eta DOUBLE")
        con.execute(f"""INSERT INTO arms
            (experiment, arm, assignments, spec, base_model, dro_measure, dro_eta)
            SELECT 'bench', 'arm' || i, '{{}}', '{{}}', 'qwen', {measures}, 0.01 * (1 + i % 10)
            FROM range({arms}) t(i)""")
        # stage ids: ref-<i % 100> shared, opt-<i>, train-<i>-<t>, eval-ref-<i % 100>, eval-<i>-<t>
        con.execute(f"""INSERT INTO stage_arms
            SELECT 'ref-' || (i % 100), 'bench', 'arm' || i, NULL, 'baseline' FROM range({arms}) t(i)
            UNION ALL SELECT 'eval-ref-' || (i % 100), 'bench', 'arm' || i, NULL, 'baseline'
                FROM range({arms}) t(i)
            UNION ALL SELECT 'opt-' || i, 'bench', 'arm' || i, {measures}, NULL FROM range({arms}) t(i)
            UNION ALL SELECT 'eval-' || i || '-' || tr, 'bench', 'arm' || i, {measures},
                ['top_percent_70', 'reweight'][1 + tr] FROM range({arms}) t(i), range(2) u(tr)""")
        con.execute(f"""INSERT INTO eval_metrics
            SELECT s, 'bench' || b, 'test', m, random(), 100, 1000, 100, false
            FROM (SELECT 'eval-' || i || '-' || tr AS s FROM range({arms}) t(i), range(2) u(tr)
                  UNION ALL SELECT 'eval-ref-' || i FROM range(100) t(i)),
                 range({BENCHMARKS}) v(b), (VALUES ('ndcg@10'), ('recall@100')) w(m)""")
        con.execute(f"""INSERT INTO mixture_weights
            SELECT 'opt-' || i, src, 'd' || d, random() FROM range({arms}) t(i),
                (VALUES ('curr'), ('mean'), ('ema')) s(src), range({DATASETS}) u(d)""")
        con.execute(f"""INSERT INTO trajectory_rows
            SELECT 'opt-' || i, step, 'd' || d, random(), random(), random(), random(), random(), random(), 8
            FROM range({arms}) t(i), range({steps}) s(step), range({DATASETS}) u(d)""")


def timed(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cached_run(root: Path, repeats: int) -> float:
    from tdro.plan.graph import build_plan
    from tests.runner_project import fake_outputs, load, write_project

    model = root / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    spec = write_project(root, model)
    for stage in build_plan(load(spec)).stages:
        fake_outputs(stage)
    env = {**os.environ, "TDRO_REGISTRY": str(root / "registry"), "WANDB_MODE": "disabled",
           "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "tdro", "run", str(spec)]
    subprocess.run(command, env=env, check=True, capture_output=True)  # first: ingests the folders
    return timed(lambda: subprocess.run(command, env=env, check=True, capture_output=True), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        t0 = time.perf_counter()
        build_catalog(db, args.arms, args.steps)
        build = time.perf_counter() - t0
        traj = run_sql(db, "SELECT count(*) FROM trajectory_rows").rows[0][0]
        print(f"catalog: {args.arms} arms, {traj:,} trajectory rows, built in {build:.1f}s\n")
        print("| measurement | median seconds | target | ratio to target |")
        print("|---|---|---|---|")
        for name, sql in QUERIES.items():
            seconds = timed(lambda sql=sql: run_sql(db, sql), args.repeats)
            print(f"| {name} | {seconds:.3f} | 1 s | {seconds / 1.0:.2f} |")
        root = Path(tmp) / "project"
        root.mkdir()
        seconds = cached_run(root, args.repeats)
        name = "fully cached `tdro run` (5 stages, new process)"
        print(f"| {name} | {seconds:.3f} | 3 s | {seconds / 3.0:.2f} |")


if __name__ == "__main__":
    main()
