"""Stage identity: the stage file's dump minus fields the models mark run-only or inert."""

from __future__ import annotations

import doctest
from typing import Annotated

import pytest
from pydantic import BaseModel

import tdro.spec.identity as identity_module
from tdro.spec.experiment import DroSpec
from tdro.spec.identity import RUN_ONLY, identity, stage_id
from tdro.spec.stage_file import Upstream


class Inner(BaseModel):
    size: int
    path: Annotated[str, RUN_ONLY] = "x"


class Step(BaseModel):
    lr: float
    inner: Inner
    inners: list[Inner] = []
    every: Annotated[int, RUN_ONLY] = 10


def test_module_example_holds() -> None:
    assert doctest.testmod(identity_module).failed == 0


def test_a_new_field_counts_unless_marked() -> None:
    assert identity(Step(lr=0.1, inner=Inner(size=1))) == {"lr": 0.1, "inner": {"size": 1}, "inners": []}


@pytest.mark.parametrize("change", [
    pytest.param({"every": 3}, id="run_only_field"),
    pytest.param({"inner": Inner(size=1, path="elsewhere")}, id="run_only_field_of_a_nested_model"),
    pytest.param({"inners": [Inner(size=2, path="y")]}, id="run_only_field_inside_a_list"),
])
def test_run_only_changes_keep_the_id(change: dict) -> None:
    base = Step(lr=0.1, inner=Inner(size=1), inners=[Inner(size=2)])
    assert stage_id(base.model_copy(update=change)) == stage_id(base)


def test_a_counted_change_moves_the_id() -> None:
    assert stage_id(Step(lr=0.1, inner=Inner(size=2))) != stage_id(Step(lr=0.1, inner=Inner(size=1)))


def test_upstream_counts_by_stage_id_only() -> None:
    assert identity(Upstream(stage_id="abc", path="/runs/x/model")) == {"stage_id": "abc"}


@pytest.mark.parametrize(("measure", "ratio", "counts"), [
    pytest.param("loss_over_ref", "per_sample_l1", True, id="per_sample_ratio"),
    pytest.param("loss_over_ref", "domain_means", False, id="domain_means_ratio"),
    pytest.param("loss", "per_sample_l1", False, id="no_ratio"),
    pytest.param("loss_minus_ref", "per_sample_l1", False, id="difference"),
])
def test_reference_floor_counts_only_where_it_acts(measure: str, ratio: str, counts: bool) -> None:
    dro = DroSpec(measure=measure, ratio=ratio, ref_floor_batch=512)
    assert ("ref_floor_batch" in identity(dro)) is counts
