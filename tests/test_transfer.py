"""Transfer functions (stage-1 snapshot -> stage-2 mixture) and resolve_mixture."""

from __future__ import annotations

import json
import math

import pytest

from tdro.dro import diagnostics
from tdro.enums import TransferMode, WeightSource
from tdro.errors import UserError
from tdro.spec.experiment import TransferSpec
from tdro.spec.stage_file import Mixture, Upstream
from tdro.transfer import resolve_mixture, top_k_count, transfer

ALPHA = {"a": 0.10, "b": 0.40, "c": 0.05, "d": 0.25, "e": 0.20}


def from_alpha(path, transfer_spec: TransferSpec) -> Mixture:
    return Mixture(alpha_file=Upstream(stage_id="s1", path=str(path)), transfer=transfer_spec)


def top(p: float) -> TransferSpec:
    return TransferSpec(mode=TransferMode.top_percent, percent=p)


def test_top_k_count_matches_integer_floor():
    assert top_k_count(25, 70) == 17  # the reference's 25 * 70 // 100
    assert [top_k_count(25, p) for p in (20, 30, 40, 50, 60, 70, 80, 90)] == [5, 7, 10, 12, 15, 17, 20, 22]
    assert top_k_count(10, 70) == 7  # 10 * 0.7 is 6.999... in floats; exact arithmetic gives 7
    assert top_k_count(3, 10) == 1  # at least one dataset
    assert top_k_count(4, 100) == 4
    assert top_k_count(3, 33.4) == 1 and top_k_count(3, 66.7) == 2


def test_top_percent_uniform_over_the_largest_in_rank_order():
    out = transfer(ALPHA, top(60))  # k = floor(5 * 0.6) = 3: b, d, e
    assert list(out) == ["b", "d", "e"]
    assert out == {"b": 1 / 3, "d": 1 / 3, "e": 1 / 3}


def test_top_percent_ties_keep_dataset_order():
    tied = {"x": 0.2, "y": 0.3, "z": 0.2, "w": 0.3}
    assert list(transfer(tied, top(50))) == ["y", "w"]
    assert list(transfer(tied, top(75))) == ["y", "w", "x"]


def test_reweight_and_uniform():
    raw = {"a": 2.0, "b": 6.0, "c": 0.0}
    assert transfer(raw, TransferSpec(mode=TransferMode.reweight)) == {"a": 0.25, "b": 0.75, "c": 0.0}
    assert list(transfer(raw, TransferSpec(mode=TransferMode.reweight))) == ["a", "b", "c"]
    assert transfer(raw, TransferSpec(mode=TransferMode.uniform)) == {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}


def test_bad_weights_are_user_errors():
    with pytest.raises(UserError, match="weights must be finite"):
        transfer({"a": -1.0, "b": 1.0}, TransferSpec(mode=TransferMode.reweight))
    with pytest.raises(UserError, match="no datasets"):
        transfer({}, TransferSpec(mode=TransferMode.uniform))


def test_resolve_mixture(tmp_path):
    assert resolve_mixture(Mixture(weights={"a": 1.0, "b": 3.0})) == {"a": 0.25, "b": 0.75}
    weights = tmp_path / "weights.json"
    weights.write_text(json.dumps({
        "datasets": ["a", "b", "c"], "sizes": {"a": 1, "b": 2, "c": 3},
        "curr": {"a": 0.2, "b": 0.5, "c": 0.3}, "mean": {"a": 0.5, "b": 0.2, "c": 0.3},
        "ema": {"a": 0.3, "b": 0.3, "c": 0.4},
    }))
    spec = TransferSpec(mode=TransferMode.top_percent, percent=34, source=WeightSource.mean)
    assert resolve_mixture(from_alpha(weights, spec)) == {"a": 1.0}
    spec = TransferSpec(mode=TransferMode.top_percent, percent=70)  # curr, k=2
    assert resolve_mixture(from_alpha(weights, spec)) == {"b": 0.5, "c": 0.5}
    rew = TransferSpec(mode=TransferMode.reweight, source=WeightSource.ema)
    assert resolve_mixture(from_alpha(weights, rew)) == {"a": 0.3, "b": 0.3, "c": 0.4}


def test_resolve_mixture_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        resolve_mixture(from_alpha(tmp_path / "nope.json", top(70)))
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "curr": {"a": 0.5,}\n}')
    with pytest.raises(UserError) as err:
        resolve_mixture(from_alpha(bad, top(70)))
    assert f"{bad}:2:" in str(err.value) and len(err.value.problems) == 1
    only_curr = tmp_path / "curr.json"
    only_curr.write_text(json.dumps({"curr": {"a": 1.0}}))
    with pytest.raises(UserError, match="no 'ema' weights"):
        resolve_mixture(from_alpha(only_curr,
                                TransferSpec(mode=TransferMode.reweight, source=WeightSource.ema)))
    with pytest.raises(UserError, match="exactly one"):
        resolve_mixture(Mixture())


def test_diagnostics():
    uniform = diagnostics({"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0})
    assert uniform.entropy == pytest.approx(math.log(4))
    assert uniform.max_share == 0.25 and uniform.max_share_dataset == "a" and not uniform.collapsed
    skew = diagnostics({"a": 0.02, "b": 0.95, "c": 0.03}, absent=["c"])
    assert skew.collapsed and skew.max_share_dataset == "b" and skew.absent_datasets == ["c"]
    assert skew.entropy == pytest.approx(-sum(p * math.log(p) for p in (0.02, 0.95, 0.03)))
    assert "b holds 95.0%" in (skew.warning() or "")
