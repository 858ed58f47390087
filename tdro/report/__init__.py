"""Reports of one experiment from the catalog: `report.md` with PNG plots (matplotlib, Agg backend).

Contract: `write_report(catalog, experiment, out=None) -> Path` reads the catalog read-only and writes
into `out` (default `runs/reports/<experiment>/`); an unknown experiment is a `UserError`.
"""

from tdro.report.build import write_report

__all__ = ["write_report"]
