"""The reference's weight JSON: import -> export reproduces the released files byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tdro.cli import main
from tdro.cli.weights import app
from tdro.enums import TransferMode, WeightSource
from tdro.errors import UserError
from tdro.spec.experiment import TransferSpec
from tdro.weights_file import (
    REFERENCE_TOP_PERCENTS,
    dump_reference,
    export_reference,
    import_reference,
    read_weights_file,
    write_weights_file,
)

RELEASED = Path(__file__).parent / "fixtures" / "robust_weights"


@pytest.fixture(scope="module")
def imported():
    return import_reference([RELEASED / f"{s}_weights.json" for s in ("curr", "mean", "ema")])


def test_import_reads_ids_sizes_and_snapshots(imported):
    assert len(imported.datasets) == 25
    assert imported.datasets[:3] == ["agnews", "AllNLI", "altlex"]  # id order
    assert imported.sizes["miracl"] == 32405
    assert imported.curr["miracl"] == 0.13141760230064392
    assert imported.imported_from == {s: f"{s.value}_weights.json" for s in WeightSource}


@pytest.mark.parametrize("source", list(WeightSource))
def test_round_trip_of_snapshots_is_exact(imported, source):
    released = (RELEASED / f"{source.value}_weights.json").read_text()
    obj = export_reference(imported.snapshot(source), imported.sizes)
    assert dump_reference(obj) == released
    assert list(obj) == ["domain_ids", "domain_weights", "size", "epoch"]


@pytest.mark.parametrize("percent", REFERENCE_TOP_PERCENTS)
def test_every_top_percent_reproduces_the_released_file(imported, percent):
    released_text = (RELEASED / f"top{percent}_weights.json").read_text()
    spec = TransferSpec(mode=TransferMode.top_percent, percent=percent)
    obj = export_reference(imported.snapshot(WeightSource.curr), imported.sizes, transfer=spec)
    released = json.loads(released_text)
    for key in released:  # same keys in the same order, same values
        assert list(obj[key].items()) == list(released[key].items())
    assert dump_reference(obj) == released_text


def test_our_file_round_trips_and_cli_export_matches(imported, tmp_path):
    ours = tmp_path / "weights.json"
    write_weights_file(ours, imported)
    assert read_weights_file(ours) == imported
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(ours), "--transfer", "top_percent", "--percent", "70",
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    top70 = (RELEASED / "top70_weights.json").read_text()
    assert (tmp_path / "out" / "top70_weights.json").read_text() == top70
    result = runner.invoke(app, ["export", str(ours), "--all", "--out", str(tmp_path / "all")])
    assert result.exit_code == 0, result.output
    for released in RELEASED.glob("*.json"):
        assert (tmp_path / "all" / released.name).read_text() == released.read_text()
    curr = str(RELEASED / "curr_weights.json")
    result = runner.invoke(app, ["import", curr, "--out", str(tmp_path / "c.json")])
    assert result.exit_code == 0, result.output
    assert read_weights_file(tmp_path / "c.json").curr == imported.curr


def test_bad_reference_files_are_one_line_user_errors(tmp_path):
    data = json.loads((RELEASED / "curr_weights.json").read_text())
    del data["size"]["nq"]
    bad = tmp_path / "curr_weights.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(UserError) as err:
        import_reference([bad])
    (problem,) = err.value.problems
    assert str(bad) in problem and "size" in problem
    odd = tmp_path / "weights_v2.json"
    odd.write_text((RELEASED / "curr_weights.json").read_text())
    with pytest.raises(UserError, match="pass --source"):
        import_reference([odd])
    assert import_reference([odd], source=WeightSource.mean).mean is not None
    broken = tmp_path / "mean_weights.json"
    broken.write_text('{\n "domain_ids": {\n}}}')
    with pytest.raises(UserError, match=rf"{broken}:3:"):
        import_reference([broken])


# ---- refused imports: the file must hold a distribution (one case per regression) ---------------------


def _reference_file(folder: Path, weights: dict, **extra) -> Path:
    """A reference-format file of datasets a, b with these `domain_weights`."""
    path = folder / "curr_weights.json"
    names = list(weights) or []
    path.write_text(json.dumps({"domain_ids": {n: i for i, n in enumerate(names)}, "domain_weights": weights,
                                "size": {n: 10 for n in names}, **extra}))
    return path


@pytest.mark.parametrize(("weights", "extra", "expected"), [
    pytest.param({"a": 0.5, "b": 1.0}, {}, "domain_weights: the weights sum to 1.5, not 1", id="sum_1_5"),
    pytest.param({"a": -0.5, "b": 1.5}, {}, "domain_weights: negative weight for a", id="negative"),
    pytest.param({"a": float("nan"), "b": 1.0}, {}, "domain_weights.a: Input should be a finite number",
                 id="nan"),
    pytest.param({"a": float("inf"), "b": 0.0}, {}, "domain_weights.a: Input should be a finite number",
                 id="inf"),
    pytest.param({"a": 0.5, "b": 0.5}, {"extra": 1}, "extra: Extra inputs are not permitted",
                 id="unknown_key"),
    pytest.param({}, {}, "domain_weights: no datasets", id="zero_datasets"),
])
def test_import_refuses_what_is_not_a_distribution(tmp_path: Path, capsys, weights: dict, extra: dict,
                                                   expected: str) -> None:
    path = _reference_file(tmp_path, weights, **extra)
    assert main(["weights", "import", str(path), "-o", str(tmp_path / "out.json")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {path}: {expected}" + (
        " (pass --renormalize to scale them to 1)" if "sum to" in expected else "")
    assert not (tmp_path / "out.json").exists()


def test_import_renormalizes_when_asked(tmp_path: Path) -> None:
    path = _reference_file(tmp_path, {"a": 0.5, "b": 1.0})
    out = tmp_path / "out.json"
    assert main(["weights", "import", str(path), "-o", str(out), "--renormalize"]) == 0
    assert read_weights_file(out).curr == pytest.approx({"a": 1 / 3, "b": 2 / 3})


def test_import_to_a_path_under_a_file_is_one_line(tmp_path: Path, capsys) -> None:
    path = _reference_file(tmp_path, {"a": 0.5, "b": 0.5})
    (tmp_path / "afile").write_text("")
    assert main(["weights", "import", str(path), "-o", str(tmp_path / "afile" / "out.json")]) == 2
    reason = f"cannot write ({tmp_path / 'afile'} is a file, not a folder)"
    assert capsys.readouterr().err.strip().endswith(reason)
