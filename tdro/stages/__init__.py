"""What runs inside a launched job: `python -m tdro.stages.<kind> STAGE_FILE` under `accelerate launch`.

Shared utilities: `runtime` (accelerator, seeding, tracker, encoder loading, the exit-code wrapper),
`checkpoint` (atomic, resumable checkpoints), `outputs` (result.json and parquet writers), `step` (one
contrastive forward/backward, full-batch or GradCache-chunked). Stages: `train` (stages 0 and 2).
"""
