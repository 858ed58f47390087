"""The DuckDB catalog: every finished stage of every experiment, queryable with SQL.

Contract: only the runner writes (`ingest.py`, one transaction per finished stage, opened only for that
transaction so that several runners can share one file); everyone else reads through `query.py`,
read-only. The schema is versioned (`schema.py`); users and docs query the views `results`, `weights`
and `trajectory`, whose columns are fixed here and documented in `schema.py`.
"""
