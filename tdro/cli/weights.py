"""`tdro weights import|export`: convert stage-1 mixture weights (alpha) between our `weights.json` and
the JSON files of the reference code (`domain_ids`, `domain_weights`, `size`, `epoch`).

Pure file work: no torch. Problems raise `UserError` (one line each); the boundary (`tdro.cli.boundary`)
prints them and exits with code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from tdro.enums import TransferMode, WeightSource
from tdro.errors import UserError
from tdro.spec.experiment import TransferSpec
from tdro.weights_file import (
    dump_reference,
    export_reference,
    import_reference,
    read_weights_file,
    reference_file_name,
    reference_file_set,
    write_json_atomic,
    write_weights_file,
)

app = typer.Typer(help="Import and export stage-1 mixture weights in the reference code's JSON format.")


@app.command("import")
def import_(
    files: Annotated[list[Path], typer.Argument(
        help="The reference code's alpha files; curr/mean/ema told by name ({curr,mean,ema}_weights.json).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Our weights.json to write.")],
    source: Annotated[WeightSource | None, typer.Option(
        help="Which snapshot a single file holds, when its name does not say.")] = None,
    renormalize: Annotated[bool, typer.Option(
        help="Scale weights that do not sum to 1 (beyond float rounding) instead of refusing them.")] = False,
) -> None:
    """Read the reference code's weight files (domain_ids, domain_weights, size, epoch) into weights.json.
    Each file must hold a distribution: finite, non-negative weights summing to 1."""
    alpha = import_reference(files, source=source, renormalize=renormalize)
    write_weights_file(out, alpha)
    snapshots = ", ".join(s.value for s in WeightSource if getattr(alpha, s.value) is not None)
    typer.echo(f"wrote {out} ({len(alpha.datasets)} datasets; {snapshots})")


def _is_dir_target(out: Path) -> bool:
    return out.is_dir() or str(out).endswith(("/", "\\")) or out.suffix != ".json"


@app.command("export")
def export(
    weights_file: Annotated[Path, typer.Argument(help="Our stage-1 weights.json (or one made by `import`).")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="A .json file, or a folder that gets the reference code's file name(s).")],
    source: Annotated[WeightSource, typer.Option(help="Which snapshot to export.")] = WeightSource.curr,
    transfer: Annotated[TransferMode | None, typer.Option(
        help="Export a stage-2 mixture instead of the raw snapshot (top_percent, reweight, uniform)."),
    ] = None,
    percent: Annotated[float | None, typer.Option(help="P for --transfer top_percent (top70: 70).")] = None,
    all_files: Annotated[bool, typer.Option(
        "--all", help="Write every file the reference code writes (curr/mean/ema, top20..top90) into --out.")
    ] = False,
) -> None:
    """Write alpha as the reference code's JSON (epoch = w * S / size; top-P re-indexed, alpha descending)."""
    alpha = read_weights_file(weights_file)
    if alpha.sizes is None:
        raise UserError(f"{weights_file}: sizes: missing; the reference format needs dataset sizes")
    if all_files:
        if transfer is not None or percent is not None:
            raise UserError("weights export: --all writes a fixed set; drop --transfer/--percent")
        files = reference_file_set(alpha)
    else:
        rule = None
        if transfer is not None:
            try:
                rule = TransferSpec(mode=transfer, percent=percent, source=source)
            except ValidationError as exc:
                raise UserError(f"weights export: {exc.errors()[0]['msg']}") from None
        elif percent is not None:
            raise UserError("weights export: --percent needs --transfer top_percent")
        obj = export_reference(alpha.snapshot(source), alpha.sizes, transfer=rule)
        name = reference_file_name(source, rule)
        if not _is_dir_target(out):
            write_json_atomic(out, dump_reference(obj))
            typer.echo(f"wrote {out}")
            return
        files = {name: dump_reference(obj)}
    if not _is_dir_target(out):
        raise UserError(f"weights export: --out {out} must be a folder with --all")
    for name, text in files.items():
        write_json_atomic(out / name, text)
    typer.echo(f"wrote {', '.join(files)} into {out}")
