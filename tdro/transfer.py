"""Stage-1 weights -> stage-2 mixture: pure functions, no torch, so the runner can derive any transfer.

`transfer(weights, spec)` maps one weight snapshot (dataset -> alpha) to sampling weights that sum to 1:

- `top_percent` (P): k = floor(n * P / 100), at least 1; the k largest weights get 1/k each, the rest are
  left out of the mixture (stage 2 loads only the selected datasets, as the reference does). Ties are
  broken by the original order of `weights` (a stable sort on descending weight), so the result is
  deterministic. The result is ordered by rank (largest weight first), which is also the order in which
  the reference re-indexes `domain_ids` in its `top{P}_weights.json`.
- `reweight`: alpha itself, divided by its sum; original order.
- `uniform`: 1/n for every dataset; original order.

`resolve_mixture(mixture)` turns a stage file's `Mixture` into sampling weights: explicit `weights`, or the
snapshot `transfer.source` (curr | mean | ema) of a stage-1 `weights.json`; then `transfer` if one is given,
else the weights divided by their sum. Problems raise `UserError` with one line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path

from tdro.enums import TransferMode, WeightSource
from tdro.errors import UserError
from tdro.spec.experiment import TransferSpec
from tdro.spec.stage_file import Mixture


def top_k_count(n: int, percent: float) -> int:
    """floor(n * P / 100), at least 1. Exact rational arithmetic: P=70, n=25 gives 17 (the reference's
    `n * P // 100`), and a float P such as 33.3 is not rounded below an exact integer boundary."""
    k = math.floor(Fraction(n) * Fraction(str(percent)) / 100)
    return max(1, min(n, k))


def rank(weights: Mapping[str, float]) -> list[str]:
    """Dataset names by descending weight; ties keep their original order (Python's sort is stable)."""
    return sorted(weights, key=lambda name: -weights[name])


def _check(weights: Mapping[str, float]) -> None:
    if not weights:
        raise UserError("transfer: no datasets in the weight snapshot")
    bad = [n for n, w in weights.items() if not (math.isfinite(w) and w >= 0)]
    if bad:
        raise UserError(f"transfer: weights must be finite and >= 0; bad: {', '.join(bad)}")


def normalized(weights: Mapping[str, float]) -> dict[str, float]:
    """Weights divided by their sum, original order."""
    _check(weights)
    total = math.fsum(weights.values())
    if total <= 0:
        raise UserError("transfer: the weights sum to 0")
    return {name: w / total for name, w in weights.items()}


def transfer(weights: Mapping[str, float], spec: TransferSpec) -> dict[str, float]:
    """Stage-2 sampling weights (summing to 1) from one stage-1 snapshot; see the module docstring."""
    _check(weights)
    if spec.mode is TransferMode.uniform:
        return {name: 1.0 / len(weights) for name in weights}
    if spec.mode is TransferMode.reweight:
        return normalized(weights)
    assert spec.percent is not None  # TransferSpec guarantees it for top_percent
    k = top_k_count(len(weights), spec.percent)
    return {name: 1.0 / k for name in rank(weights)[:k]}


def read_snapshot(path: str | Path, source: WeightSource) -> dict[str, float]:
    """One snapshot (curr | mean | ema) of a stage-1 `weights.json`, in its dataset order."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: weights file not found") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object (a stage-1 weights.json)")
    snapshot = data.get(source.value)
    if not isinstance(snapshot, dict) or not snapshot:
        raise UserError(f"{path}: no '{source.value}' weights in this file")
    try:
        weights = {str(name): float(w) for name, w in snapshot.items()}
    except (TypeError, ValueError):
        raise UserError(f"{path}: '{source.value}' weights must be numbers") from None
    order = data.get("datasets")
    if isinstance(order, list) and set(order) == set(weights):
        weights = {name: weights[name] for name in order}
    return weights


def resolve_mixture(mixture: Mixture) -> dict[str, float]:
    """Sampling weights of a training stage (summing to 1) from its stage file's `Mixture`."""
    if (mixture.weights is None) == (mixture.alpha_file is None):
        raise UserError("mixture: give exactly one of weights, alpha_file")
    if mixture.weights is not None:
        weights = dict(mixture.weights)
    else:
        assert mixture.weights_file is not None
        source = mixture.transfer.source if mixture.transfer else WeightSource.curr
        weights = read_snapshot(mixture.weights_file, source)
    if mixture.transfer is None:
        return normalized(weights)
    return transfer(weights, mixture.transfer)
