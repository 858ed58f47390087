"""Stage-1 weight files: ours (`weights.json`) and the reference implementation's JSON, both ways. No torch.

Ours (`WeightsFile`, written by the optimize stage): `stage_id`, `measure`, `step`, `datasets` (names in id
order), `sizes` (rows per dataset), and the snapshots `initial`, `curr`, `mean`, `ema` (dataset -> weight).
An imported file has no stage provenance and holds only the snapshots it was given; `imported_from` names
the reference files.

The reference format (one file per snapshot): `domain_ids` (name -> id), `domain_weights`, `size`, `epoch`,
every map in id order, written as `json.dumps(obj, indent=4)` with no trailing newline. Its `epoch` is
informational: `w_d * S / size_d` with S the sum of the sizes of the datasets in the file (all datasets for
curr/mean/ema, the selected ones for top-P), evaluated left to right as the reference does, which
reproduces the released files bit for bit. A top-P file re-indexes `domain_ids` 0..k-1 by descending alpha
and gives each selected dataset 1/k (see `tdro.transfer`).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from tdro.enums import Measure, TransferMode, WeightSource
from tdro.errors import UserError, path_error
from tdro.spec.experiment import TransferSpec
from tdro.transfer import transfer as apply_transfer

M = TypeVar("M", bound=BaseModel)

WEIGHTS_FILE = "weights.json"
# The reference writes these on every save (`dro_save_top_percent_uniform_weights`).
REFERENCE_TOP_PERCENTS = (20, 30, 40, 50, 60, 70, 80, 90)
# How far from 1 a snapshot's sum may be: float32 accumulation over a few dozen datasets (the reference
# code's released mean_weights.json sums to 1 + 1.2e-6).
SUM_TOLERANCE = 1e-5


def distribution_problem(weights: Mapping[str, float], *, normalized: bool = True) -> str | None:
    """Why `weights` is not a distribution over its datasets (None if it is); finite values are assumed.
    `normalized=False` checks only what renormalising cannot fix."""
    if not weights:
        return "no datasets"
    negative = sorted(name for name, w in weights.items() if w < 0)
    if negative:
        return f"negative weight for {', '.join(negative)}"
    total = math.fsum(weights.values())
    if total <= 0:
        return "the weights sum to 0"
    if normalized and abs(total - 1) > SUM_TOLERANCE:
        return f"the weights sum to {total:.6g}, not 1"
    return None


class WeightsFile(BaseModel):
    """Our stage-1 weights file."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    stage_id: str | None = None
    measure: Measure | None = None
    step: int | None = None
    datasets: list[str]
    sizes: dict[str, int] | None = None
    initial: dict[str, float] | None = None
    curr: dict[str, float] | None = None
    mean: dict[str, float] | None = None
    ema: dict[str, float] | None = None
    imported_from: dict[WeightSource, str] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> WeightsFile:
        names = set(self.datasets)
        if len(names) != len(self.datasets):
            raise ValueError("datasets listed twice")
        for field in ("sizes", "initial", "curr", "mean", "ema"):
            value = getattr(self, field)
            if value is not None and set(value) != names:
                raise ValueError(f"{field}: datasets differ from `datasets`")
        if not any(getattr(self, s.value) for s in WeightSource):
            raise ValueError("no weights: give at least one of curr, mean, ema")
        for source in WeightSource:
            snapshot = getattr(self, source.value)
            if snapshot is not None and (problem := distribution_problem(snapshot)):
                raise ValueError(f"{source.value}: {problem}")
        return self

    def snapshot(self, source: WeightSource) -> dict[str, float]:
        """One snapshot in dataset (id) order."""
        weights = getattr(self, source.value)
        if weights is None:
            raise UserError(f"weights file has no '{source.value}' snapshot")
        return {name: weights[name] for name in self.datasets}


def write_json_atomic(path: str | Path, text: str) -> Path:
    """Write under a temporary name in the same folder, then rename: never a half-written file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise path_error(path, exc) from None
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise path_error(path, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _problem(path: Path, exc: ValidationError) -> str:
    err = exc.errors()[0]
    message = str(err["msg"]).removeprefix("Value error, ")
    where = ".".join(str(p) for p in err["loc"])
    return f"{path}: {where}: {message}" if where else f"{path}: {message}"


def _load_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def _read_validated(path: str | Path, model: type[M]) -> M:
    """A JSON file validated as `model`; UserError naming the file (and line or field) otherwise."""
    path = Path(path)
    try:
        return model.model_validate(_load_json(path))
    except ValidationError as exc:
        raise UserError(_problem(path, exc)) from None


def read_weights_file(path: str | Path) -> WeightsFile:
    return _read_validated(path, WeightsFile)


def write_weights_file(path: str | Path, weights: WeightsFile) -> Path:
    return write_json_atomic(path, weights.model_dump_json(indent=2, exclude_none=True) + "\n")


# ---- the reference format ------------------------------------------------------------------------


class ReferenceWeights(BaseModel):
    """One reference weight file (`config/robust_weights/*.json`, `uniform_sampling_s0.json`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    domain_ids: dict[str, int]
    domain_weights: dict[str, float]
    size: dict[str, int]
    epoch: dict[str, float] | None = None  # informational; recomputed on export

    @model_validator(mode="after")
    def _consistent(self) -> ReferenceWeights:
        names = set(self.domain_ids)
        for field in ("domain_weights", "size"):
            if set(getattr(self, field)) != names:
                raise ValueError(f"{field}: datasets differ from domain_ids")
        if sorted(self.domain_ids.values()) != list(range(len(names))):
            raise ValueError("domain_ids must number the datasets 0..n-1")
        if problem := distribution_problem(self.domain_weights, normalized=False):
            raise ValueError(f"domain_weights: {problem}")
        return self

    def ordered_names(self) -> list[str]:
        return sorted(self.domain_ids, key=self.domain_ids.__getitem__)


def source_from_name(path: Path) -> WeightSource | None:
    """`curr_weights.json` -> curr, `mean_weights.json` -> mean, `ema_weights.json` -> ema."""
    stem = path.name.removesuffix(".json").removesuffix("_weights")
    return WeightSource(stem) if stem in WeightSource.__members__ else None


def read_reference(path: str | Path) -> ReferenceWeights:
    return _read_validated(path, ReferenceWeights)


def import_reference(paths: Sequence[str | Path], *, source: WeightSource | None = None,
                     renormalize: bool = False) -> WeightsFile:
    """Reference weight files -> our `WeightsFile`. Each file's snapshot comes from its name
    (`{curr,mean,ema}_weights.json`), or from `source` when a single file is given. A snapshot whose sum is
    off 1 by more than float rounding is refused, or scaled to 1 with `renormalize`."""
    if not paths:
        raise UserError("weights import: give at least one reference weight file")
    if source is not None and len(paths) > 1:
        raise UserError(
            "weights import: --source applies to a single file; name files {curr,mean,ema}_weights.json"
        )
    snapshots: dict[WeightSource, dict[str, float]] = {}
    origin: dict[WeightSource, str] = {}
    datasets: list[str] | None = None
    sizes: dict[str, int] | None = None
    for raw in paths:
        path = Path(raw)
        which = source or source_from_name(path)
        if which is None:
            raise UserError(f"{path}: cannot tell curr, mean or ema from the name; pass --source")
        if which in snapshots:
            raise UserError(f"{path}: a second '{which.value}' file")
        ref = read_reference(path)
        names = ref.ordered_names()
        if datasets is None:
            datasets, sizes = names, {n: ref.size[n] for n in names}
        elif names != datasets or {n: ref.size[n] for n in names} != sizes:
            raise UserError(f"{path}: domain_ids or size differ from {paths[0]}")
        weights = {n: ref.domain_weights[n] for n in names}
        total = math.fsum(weights.values())
        if renormalize:
            weights = {n: w / total for n, w in weights.items()}
        elif problem := distribution_problem(weights):
            raise UserError(f"{path}: domain_weights: {problem} (pass --renormalize to scale them to 1)")
        snapshots[which] = weights
        origin[which] = path.name
    assert datasets is not None
    return WeightsFile(
        datasets=datasets, sizes=sizes, imported_from=origin, **{s.value: w for s, w in snapshots.items()}
    )


def export_reference(
    weights: Mapping[str, float], sizes: Mapping[str, int], *, transfer: TransferSpec | None = None
) -> dict[str, dict]:
    """The reference JSON object for one snapshot (`transfer=None`: as is, in the given order) or for a
    transferred mixture (top-P: re-indexed by descending weight, 1/k each)."""
    mixture = dict(weights) if transfer is None else apply_transfer(weights, transfer)
    missing = [n for n in mixture if n not in sizes]
    if missing:
        raise UserError(f"weights export: no size for {', '.join(missing)}")
    total = sum(int(sizes[n]) for n in mixture)
    return {
        "domain_ids": {name: i for i, name in enumerate(mixture)},
        "domain_weights": dict(mixture),
        "size": {name: int(sizes[name]) for name in mixture},
        "epoch": {name: w * total / int(sizes[name]) for name, w in mixture.items()},
    }


def dump_reference(obj: Mapping[str, object]) -> str:
    """Text exactly as the reference writes it."""
    return json.dumps(obj, indent=4)


def reference_file_name(source: WeightSource, transfer: TransferSpec | None) -> str:
    """The reference's names: `curr_weights.json`, `top70_weights.json` (top-P of curr); ours add the
    source for top-P of mean/ema (`mean_top70_weights.json`) and the mode for reweight/uniform."""
    if transfer is None:
        return f"{source.value}_weights.json"
    if transfer.mode is TransferMode.top_percent:
        assert transfer.percent is not None
        pct = int(transfer.percent) if float(transfer.percent).is_integer() else transfer.percent
        prefix = "" if source is WeightSource.curr else f"{source.value}_"
        return f"{prefix}top{pct}_weights.json"
    return f"{source.value}_{transfer.mode.value}_weights.json"


def reference_file_set(weights: WeightsFile) -> dict[str, str]:
    """What the reference writes on a save: curr/mean/ema (those present) and top20..top90 of curr.
    File name -> text."""
    if weights.sizes is None:
        raise UserError("weights export: the weights file has no dataset sizes")
    out: dict[str, str] = {}
    for source in WeightSource:
        if getattr(weights, source.value) is not None:
            obj = export_reference(weights.snapshot(source), weights.sizes)
            out[reference_file_name(source, None)] = dump_reference(obj)
    if weights.curr is not None:
        for pct in REFERENCE_TOP_PERCENTS:
            spec = TransferSpec(mode=TransferMode.top_percent, percent=pct)
            obj = export_reference(weights.snapshot(WeightSource.curr), weights.sizes, transfer=spec)
            out[reference_file_name(WeightSource.curr, spec)] = dump_reference(obj)
    return out
