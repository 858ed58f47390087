"""The mine stage on 1 and on 2 real processes gives the same bytes (a check, not a timing).

    python bench/mine_processes.py [--dataset real-scifact-train] [--retriever all-minilm-l6-v2] [--out DIR]

Plans `experiments/real.yaml` reduced to one dataset with the given retriever, then runs only its mine
stage through the runner twice, into two runs folders (so no embedding is shared through the cache):
once as one process, once as `accelerate launch --multi_gpu --num_processes 2` (gloo on CPU). Prints the
sizes, each run's seconds and whether `groups.jsonl` and `candidates.parquet` are byte-identical; exits 1
when they are not. The data comes from `$TDRO_REAL_DATA` as the cards say.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
import time
from pathlib import Path

from tdro.plan.graph import build_plan
from tdro.plan.runner import Runner
from tdro.spec.load import load_experiment
from tdro.spec.stage_result import MineResult

REPO = Path(__file__).resolve().parents[1]


def mine_once(out: Path, dataset: str, retriever: str, processes: int) -> tuple[Path, float]:
    overrides = [f"datasets=[{dataset}]", f"prepare.retriever={retriever}", "sweep=null",
                 f"resources.processes={processes}", "tracking.mode=disabled",
                 f"output.runs_dir={out / 'runs'}", f"output.catalog={out / 'catalog.duckdb'}"]
    plan = build_plan(load_experiment(REPO / "experiments" / "real.yaml", overrides))
    stage = next(s for s in plan.stages if s.kind.value == "mine")
    runner = Runner(plan, gpu=False)
    runner.register()
    started = time.perf_counter()
    outcome = runner.run_stage(stage)
    if outcome.outcome.value != "done":
        raise SystemExit(f"mine on {processes} process(es) failed: {outcome.reason}")
    return stage.folder, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="real-scifact-train")
    parser.add_argument("--retriever", default="all-minilm-l6-v2")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="mine-processes-"))
    one, one_s = mine_once(root / "one", args.dataset, args.retriever, 1)
    two, two_s = mine_once(root / "two", args.dataset, args.retriever, 2)
    result = MineResult.read(one)
    same = {name: filecmp.cmp(one / name, two / name, shallow=False)
            for name in (MineResult.DATA_FILE, MineResult.CANDIDATES_FILE)}
    print(f"{args.dataset} with {args.retriever}: {result.rows_out} groups, corpus {result.corpus_size}, "
          f"{result.negatives_total} negatives; 1 process {one_s:.0f} s, 2 processes {two_s:.0f} s; "
          + ", ".join(f"{name} {'identical' if ok else 'DIFFERENT'}" for name, ok in same.items()))
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
