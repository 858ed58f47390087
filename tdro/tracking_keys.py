"""Every W&B key name, in one place: the jobs' per-step curves and the runner's summaries and tables.

A stage has one W&B run (`run_id`), written twice: the job streams its curves while it trains (main
process only), and the runner adds the summary and tables after ingest (resume="allow", so it is
idempotent). Torch-free; `tdro.stages` and `tdro.plan.projection` both take their keys from here.

Per step, every training stage: `train/loss`, `train/lr`, `train/grad_norm`, `train/seconds`,
`train/queries_per_second`; stages 0/2 also `train/loss/<dataset>` for a one-dataset batch. Stage 1 also
`alpha/<dataset>`, `alpha_mean/<dataset>`, `alpha_ema/<dataset>`, `group_measure/<dataset>`,
`proxy_loss/<dataset>`, `ref_loss/<dataset>` and `alpha/grad_norm`. With re-mining (`train.remine`),
stages 0/2 log `remined/<dataset>` (groups given new negatives) at each check.
Summary: `final_loss`, `steps` (training); `final_alpha/<dataset>`, `alpha_entropy`, `alpha_max_share`
(stage 1); `<benchmark>/<metric>` (evaluate); `stage_id`, `arms` (every stage, from the runner).
Tables: `weights` (stage 1: source, dataset, weight), `evaluation` (benchmark, metric, value).
"""

from __future__ import annotations

LOSS = "train/loss"
LR = "train/lr"
GRAD_NORM = "train/grad_norm"
SECONDS = "train/seconds"
QUERIES_PER_SECOND = "train/queries_per_second"
ALPHA_GRAD_NORM = "alpha/grad_norm"

FINAL_LOSS = "final_loss"
STEPS = "steps"
ALPHA_ENTROPY = "alpha_entropy"
ALPHA_MAX_SHARE = "alpha_max_share"
STAGE_ID = "stage_id"
ARMS = "arms"

WEIGHTS_TABLE = "weights"
EVALUATION_TABLE = "evaluation"

# Stage 1's per-dataset curves: trajectory column -> key prefix (`<prefix>/<dataset>`).
TRAJECTORY_CURVES = {
    "alpha": "alpha",
    "alpha_mean": "alpha_mean",
    "alpha_ema": "alpha_ema",
    "group_measure": "group_measure",
    "proxy_loss": "proxy_loss",
    "ref_loss": "ref_loss",
}


def run_id(kind: str, stage_id: str) -> str:
    """The W&B run id (and name) of a stage: the job and the runner write to the same run."""
    return f"{kind}-{stage_id[:12]}"


def per_dataset(prefix: str, dataset: str) -> str:
    return f"{prefix}/{dataset}"


def dataset_loss(dataset: str) -> str:
    return per_dataset(LOSS, dataset)


def remined(dataset: str) -> str:
    return per_dataset("remined", dataset)


def final_alpha(dataset: str) -> str:
    return per_dataset("final_alpha", dataset)


def benchmark_metric(benchmark: str, metric: str) -> str:
    return f"{benchmark}/{metric}"
