"""Control plane: spec -> content-addressed stage graph -> accelerate launches (run here, or emitted).

Contract: `build_plan(experiment)` is pure apart from cheap file stats (dataset fingerprints, see
`fingerprint.py`); `run_plan` launches each stage not cached as `accelerate launch -m tdro.stages.<kind>
<folder>/stage.json`, renames `<kind>-<id12>.partial/` to `<kind>-<id12>/` on success and ingests it into
the catalog. Nothing here imports torch, transformers or faiss.
"""
