"""Arguments and options that several commands share, as `Annotated` typer types."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

SpecArg = Annotated[Path, typer.Argument(help="Experiment spec YAML, e.g. experiments/demo.yaml.")]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Dotted overrides key=value, e.g. dro.measure=loss train.steps=5.", show_default=False
    ),
]
CatalogOpt = Annotated[
    Path | None,
    typer.Option("--catalog", envvar="TDRO_CATALOG",
                 help="DuckDB catalog file (default: the spec's output.catalog, else catalog.duckdb)."),
]
