"""What runs inside a launched job: `python -m tdro.stages.<kind> STAGE_FILE` under `accelerate launch`.

Stages, one module per kind: `train` (stage 0, the reference model, and stage 2, one per transfer),
`optimize` (stage 1: a proxy model and alpha, the mixture weights) and `evaluate` (one trained or base
model on the benchmarks). Shared utilities: `loop` (the one training loop: resume, checkpoints, the
non-finite guard, prefetch, logging), `runtime` (accelerator, seeding, tracker, encoder loading, the
exit-code wrapper), `checkpoint` (atomic, resumable checkpoints), `outputs` (result.json and parquet
writers), `prefetch` (the next batch while this one trains), `step` (one contrastive forward/backward,
full-batch or GradCache-chunked).
"""
