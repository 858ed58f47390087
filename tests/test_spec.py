"""Spec loading: extends, interpolation, overrides, sweeps, registry cards, and every bad-input case.

Bad input must exit 2 with one line per problem naming the file and the dotted field, and no traceback.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tdro.cli import main
from tdro.enums import Measure
from tdro.errors import UserError
from tdro.spec.load import key_problem, load_experiment
from tdro.spec.registry import Registry

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def reg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small registry with two datasets (files present), one model (a bare folder) and one benchmark."""
    root = tmp_path / "registry"
    for kind in ("datasets", "models", "benchmarks"):
        (root / kind).mkdir(parents=True)
    data = tmp_path / "data"
    data.mkdir()
    for name in ("alpha", "beta"):
        (data / f"{name}.jsonl").write_text('{"query": "q", "positive_passages": [{"text": "p"}]}\n')
        (root / "datasets" / f"{name}.yaml").write_text(
            f"name: {name}\npath: {data}/{name}.jsonl\ninstructions: [Retrieve {name} passages]\n"
        )
    (root / "datasets" / "gamma.yaml").write_text(
        f"name: gamma\npath: {data}/missing.jsonl\ninstructions: [x]\n"
    )
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (root / "models" / "tiny.yaml").write_text(f"name: tiny\nsource: {{path: {model}}}\npooling: mean\n")
    bench = tmp_path / "bench"
    (bench / "qrels").mkdir(parents=True)
    (root / "benchmarks" / "b1.yaml").write_text(f"name: b1\npath: {bench}\ninstruction: find it\n")
    monkeypatch.setenv("TDRO_REGISTRY", str(root))
    return tmp_path


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


BASE = """\
name: exp
base_model: tiny
datasets: [alpha, beta]
evaluate: {benchmarks: [b1]}
"""


def errors_of(capsys: pytest.CaptureFixture[str], argv: list[str]) -> list[str]:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.strip()]


def test_valid_spec_defaults_follow_reference(reg: Path) -> None:
    spec_path = write(reg, "exp.yaml", BASE)
    exp = load_experiment(spec_path)
    spec = exp.spec
    assert (spec.train.steps, spec.train.batch_size, spec.train.passages_per_query) == (1000, 2048, 2)
    assert (spec.train.learning_rate, spec.train.warmup_steps) == (1e-4, 100)
    assert spec.train.loss.temperature == spec.dro.loss.temperature == 0.002
    assert (spec.dro.eta, spec.dro.passages_per_query, spec.dro.gradient_accumulation) == (0.02, 8, 4)
    assert spec.dro.measure is Measure.loss_over_ref and spec.dro.loss.only_hard_negatives
    assert [t.label for t in spec.transfer] == ["top_percent_70"]
    assert [a.name for a in exp.arms] == ["default"]
    assert [d.name for d in exp.arms[0].datasets] == ["alpha", "beta"]


def test_extends_interpolation_and_overrides(reg: Path) -> None:
    write(reg, "base.yaml", BASE + "train: {steps: 10, warmup_steps: '${train.steps}'}\n")
    child = write(reg, "child.yaml", "extends: base.yaml\nname: child\ndro: {steps: '${train.steps}'}\n")
    exp = load_experiment(child, ["train.steps=7", "dro.measure=loss", "evaluate.metrics=[ndcg@10,mrr@10]"])
    assert exp.spec.name == "child"
    assert exp.spec.train.steps == 7 and exp.spec.train.warmup_steps == 7 and exp.spec.dro.steps == 7
    assert exp.spec.dro.measure is Measure.loss
    assert exp.spec.evaluate.metrics == ["ndcg@10", "mrr@10"]


def test_sweep_grid_zip_and_arms(reg: Path) -> None:
    spec_path = write(reg, "sweep.yaml", BASE + textwrap.dedent("""\
        sweep:
          grid: {dro.measure: [loss, loss_over_ref]}
          zip: {dro.eta: [0.01, 0.02], seed: [1, 2]}
          arms:
            - {name: big-batch, set: {train.batch_size: 4096}}
        """))
    exp = load_experiment(spec_path)
    names = [a.name for a in exp.arms]
    assert len(names) == 2 * 2 + 1
    assert names[0] == "dro.measure=loss,dro.eta=0.01,seed=1"
    assert names[-1] == "big-batch"
    by_name = {a.name: a.spec for a in exp.arms}
    assert by_name["dro.measure=loss_over_ref,dro.eta=0.02,seed=2"].dro.eta == 0.02
    assert by_name["dro.measure=loss_over_ref,dro.eta=0.02,seed=2"].seed == 2
    assert by_name["big-batch"].train.batch_size == 4096
    assert all(a.spec.sweep is None for a in exp.arms)


def test_unknown_field_suggests_close_match(reg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_path = write(reg, "bad.yaml", BASE + "train: {stpes: 5}\n")
    lines = errors_of(capsys, ["validate", str(spec_path)])
    assert len(lines) == 1
    assert str(spec_path) in lines[0] and "train.stpes" in lines[0] and "did you mean 'steps'" in lines[0]


def test_wrong_type(reg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_path = write(reg, "bad.yaml", BASE + "train: {steps: many}\n")
    (line,) = errors_of(capsys, ["validate", str(spec_path)])
    assert "train.steps" in line and "integer" in line and "many" in line


def test_unknown_enum_value(reg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_path = write(reg, "bad.yaml", BASE + "dro: {measure: loss_times_ref}\n")
    (line,) = errors_of(capsys, ["validate", str(spec_path)])
    assert "dro.measure" in line and "loss_times_ref" in line and "loss_over_ref" in line


def test_unknown_card_names(reg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_path = write(reg, "bad.yaml", "name: exp\nbase_model: tinny\ndatasets: [alpha, betta]\n")
    lines = errors_of(capsys, ["validate", str(spec_path)])
    assert len(lines) == 2
    assert "base_model" in lines[0] and "'tinny'" in lines[0] and "did you mean 'tiny'" in lines[0]
    assert "datasets[1]" in lines[1] and "did you mean 'beta'" in lines[1]


def test_missing_data_file_and_benchmark_folder(reg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_path = write(reg, "bad.yaml", "name: exp\nbase_model: tiny\ndatasets: [alpha, gamma]\n"
                      "evaluate: {benchmarks: [b1]}\n")
    (line,) = errors_of(capsys, ["validate", str(spec_path)])
    assert "datasets[1] (gamma)" in line and "missing.jsonl" in line
    assert main(["validate", str(spec_path), "--skip-data-check", "--no-show-spec"]) == 0


def test_yaml_syntax_error_names_line(reg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_path = write(reg, "bad.yaml", "name: exp\nbase_model: tiny\ndatasets: [alpha\ntrain: {steps: 3}\n")
    (line,) = errors_of(capsys, ["validate", str(spec_path)])
    assert f"{spec_path}:4" in line and "YAML syntax error" in line


@pytest.mark.parametrize(
    ("transfer", "needle"),
    [
        ("[{mode: top_percent}]", "top_percent needs a percent"),
        ("[{mode: top_percent, percent: 0}]", "percent must be in (0, 100]"),
        ("[{mode: top_percent, percent: 120}]", "percent must be in (0, 100]"),
    ],
)
def test_top_percent_checks(
    reg: Path, capsys: pytest.CaptureFixture[str], transfer: str, needle: str
) -> None:
    spec_path = write(reg, "bad.yaml", BASE + f"transfer: {transfer}\n")
    (line,) = errors_of(capsys, ["validate", str(spec_path)])
    assert "transfer[0]" in line and needle in line


def test_override_of_unknown_field(reg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_path = write(reg, "exp.yaml", BASE)
    (line,) = errors_of(capsys, ["validate", str(spec_path), "dro.mesure=loss"])
    assert "override dro.mesure" in line and "did you mean 'measure'" in line


def test_sweep_over_unknown_field(reg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_path = write(reg, "bad.yaml", BASE + "sweep: {grid: {dro.etaa: [0.1, 0.2]}}\n")
    (line,) = errors_of(capsys, ["validate", str(spec_path)])
    assert "sweep.grid.dro.etaa" in line and "did you mean 'eta'" in line


def test_bad_value_inside_a_sweep_arm(reg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_path = write(reg, "bad.yaml", BASE + "sweep: {grid: {dro.measure: [loss, lossy]}}\n")
    (line,) = errors_of(capsys, ["validate", str(spec_path)])
    assert "arm dro.measure=lossy" in line and "dro.measure" in line


def test_a_sweep_into_a_null_section_is_one_line(reg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Regression: a grid over dro.measure with `dro: null` raised a bare KeyError (a traceback).
    null_dro = "dro: null\ntransfer: []\nsweep: {grid: {dro.measure: [loss]}}\n"
    spec_path = write(reg, "bad.yaml", BASE + null_dro)
    (line,) = errors_of(capsys, ["validate", str(spec_path)])
    assert line.endswith("bad.yaml: sweep sets dro.measure, but dro is null in the spec")


def test_without_stage_1_nothing_is_transferred(reg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_path = write(reg, "bad.yaml", BASE + "dro: null\n")  # the default transfer is top-70%
    lines = errors_of(capsys, ["validate", str(spec_path)])
    assert any("transfer: without stage 1 (dro: null)" in line for line in lines)
    plain = load_experiment(write(reg, "ok.yaml", BASE + "dro: null\ntransfer: []\n"))
    assert plain.spec.dro is None and plain.spec.transfer == []


def test_key_problem_walks_lists_and_mappings() -> None:
    assert key_problem("transfer.0.percent") is None
    assert key_problem("sweep.grid.anything") is None
    assert key_problem("base_model.pooling") is None
    assert key_problem("transfer.percent") is not None
    assert key_problem("seed.x") is not None


def test_shipped_registry_cards_validate() -> None:
    registry = Registry.load(REPO / "registry")
    names = registry.names("datasets")
    cards = [registry.dataset(n) for n in names]
    real = [c for c in cards if c.name.startswith("real-")]  # experiments/real.yaml's shipped data
    paper = [c for c in cards if not c.generated_by and c not in real]
    assert len(paper) == 25 and sum(c.size or 0 for c in paper) == 11_067_280
    # eleven of experiments/real.yaml, and STS-B train (CoSENT) of experiments/sts.yaml
    assert len(real) == 12 and {c.source.value for c in real} == {"pairs", "beir", "sts"}
    assert {c.name for c in real if c.symmetric} == {"real-allnli", "real-altlex", "real-stsb-train"}
    assert {c.name for c in paper if c.symmetric} == {
        "AllNLI", "altlex", "quora_duplicates_triplets", "SimpleWiki",
        "stackexchange_duplicate_questions_title-body_title-body",
    }
    for name in registry.names("models"):
        registry.model(name)
    for name in registry.names("benchmarks"):
        registry.benchmark(name)
    assert registry.model("qwen1.5-0.5b").eos.value == "append"


def test_paper_spec_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TDRO_REGISTRY", str(REPO / "registry"))
    spec = REPO / "experiments" / "paper" / "qwen1.5-0.5b.yaml"
    assert main(["validate", str(spec), "--skip-data-check", "--no-show-spec"]) == 0
    # With the data laid out where the cards point, the full check passes too.
    dedup = tmp_path / "data" / "retrieval" / "dedup"
    dedup.mkdir(parents=True)
    exp = load_experiment(spec, check_data=False)
    for card in exp.arms[0].datasets:
        (dedup / Path(card.path).name).write_text('{"query": "q", "positive_passages": [{"text": "p"}]}\n')
    for bench in exp.arms[0].benchmarks:
        rel = Path(bench.path).relative_to(Path("benchmarks").resolve())  # loading made the path absolute
        (tmp_path / "benchmarks" / rel).mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("TDRO_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TDRO_BENCHMARKS", str(tmp_path / "benchmarks"))
    exp = load_experiment(spec)
    assert exp.spec.resources.world_size == 8 and exp.spec.train.batch_size == 2048
    assert [t.label for t in exp.spec.transfer] == ["top_percent_70", "reweight"]


def test_cli_error_without_traceback_from_subprocess(reg: Path) -> None:
    import subprocess
    import sys

    spec_path = write(reg, "bad.yaml", BASE + "dro: {measure: nope}\n")
    proc = subprocess.run([sys.executable, "-m", "tdro", "validate", str(spec_path)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "dro.measure" in proc.stderr


def test_user_error_keeps_each_problem_on_one_line() -> None:
    exc = UserError("a.yaml: x: bad", "a.yaml: y: worse")
    assert exc.problems == ["a.yaml: x: bad", "a.yaml: y: worse"]
