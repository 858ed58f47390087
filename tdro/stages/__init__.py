"""What runs inside a launched job: `python -m tdro.stages.<kind> STAGE_FILE` under `accelerate launch`.

Shared parts: `loop` (the one training loop of stages 0/2 and 1: resume, prefetch, optimizer step,
non-finite guard, curves, checkpoints), `runtime` (accelerator, seeding, tracker, encoder loading, the
exit-code wrapper), `checkpoint` (atomic, resumable checkpoints), `prefetch` (the next step's batches in a
thread), `outputs` (atomic parquet and folder writers), `step` (one contrastive forward/backward,
full-batch or GradCache-chunked). Stages: `train` (stages 0 and 2), `optimize` (stage 1), `evaluate`.
What each writes is `tdro.spec.stage_result`.
"""
