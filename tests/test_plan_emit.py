"""Launch commands and emitted scripts: accelerate arguments for DDP / FSDP, 2-machine Slurm, plan JSON."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tdro.cli import main
from tdro.enums import Backend, MixedPrecision, StageKind
from tdro.plan.emit import emit
from tdro.plan.graph import build_plan
from tdro.plan.launch import accelerate_config, launch_args
from tdro.spec.experiment import ResourcesSpec
from tests.runner_project import load, write_project_with_model_folder

TWO_MACHINES = ("resources.machines=2", "resources.processes=4", "resources.mixed_precision=bf16")


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    return write_project_with_model_folder(tmp_path)


def test_ddp_flags_single_and_multi_process() -> None:
    one = launch_args(StageKind.optimize, "/r/s", ResourcesSpec(), mixed_precision=MixedPrecision.no,
                      port=123)
    assert one == ["accelerate", "launch", "--num_processes", "1", "--num_machines", "1", "--mixed_precision",
                   "no", "--dynamo_backend", "no", "--main_process_port", "123", "-m", "tdro.stages.optimize",
                   "/r/s/stage.json"]
    two = launch_args(StageKind.reference, "/r/s", ResourcesSpec(processes=2),
                      mixed_precision=MixedPrecision.bf16, port=5)
    assert two[2] == "--multi_gpu" and two[two.index("--num_processes") + 1] == "2"
    assert two[-2:] == ["tdro.stages.train", "/r/s/stage.json"]


def test_fsdp_and_deepspeed_go_through_a_config_file() -> None:
    fsdp = accelerate_config(ResourcesSpec(backend=Backend.fsdp))
    assert fsdp is not None and fsdp["distributed_type"] == "FSDP"
    ds = accelerate_config(ResourcesSpec(backend=Backend.deepspeed, zero_stage=3), gradient_accumulation=4)
    assert ds is not None and ds["deepspeed_config"]["zero_stage"] == 3
    assert ds["deepspeed_config"]["gradient_accumulation_steps"] == 4
    args = launch_args(StageKind.train, "/s", ResourcesSpec(processes=2, backend=Backend.fsdp),
                       mixed_precision=MixedPrecision.bf16, port=1, config_file="/s/accelerate.yaml")
    assert "--multi_gpu" not in args and args[2:4] == ["--config_file", "/s/accelerate.yaml"]


def test_two_machine_scripts(spec: Path, tmp_path: Path) -> None:
    plan = build_plan(load(spec, *TWO_MACHINES))
    out = emit(plan, tmp_path / "emit")
    assert len(out.shell) == len(plan.stages) == len(out.slurm) == 5
    for stage in plan.stages:  # stage files are in place for the scripts
        assert (stage.partial / "stage.json").is_file()
    ref_sbatch = out.slurm[0].read_text()
    assert "#SBATCH --nodes=2" in ref_sbatch and "#SBATCH --gpus-per-node=4" in ref_sbatch
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1' in ref_sbatch
    launch = next(line for line in ref_sbatch.splitlines() if line.startswith("launch()"))
    for expected in ("accelerate launch --multi_gpu", "--num_processes 8", "--num_machines 2",
                     '--machine_rank "$SLURM_NODEID"', '--main_process_ip "$MAIN_PROCESS_IP"',
                     '--main_process_port "$MAIN_PROCESS_PORT"', "--mixed_precision bf16",
                     f"-m tdro.stages.train {plan.stages[0].partial}/stage.json"):
        assert expected in launch, expected
    submit = out.submit_all.read_text().splitlines()
    assert submit[4].startswith("JOB_0=$(sbatch --parsable 00-reference-")
    # optimize waits for the reference; the trained model's evaluation waits for its training
    assert "--dependency=afterok:$JOB_0 01-optimize-" in submit[6]
    assert any("--dependency=afterok:$JOB_2 " in line and "evaluate" in line for line in submit)
    shell = out.shell[1].read_text()
    assert '--machine_rank "$MACHINE_RANK"' in shell and "-m tdro.stages.optimize" in shell
    run_all = out.run_all.read_text().splitlines()
    assert [line.split()[1] for line in run_all if line.startswith("bash ")] == [p.name for p in out.shell]
    for script in [*out.shell, *out.slurm, out.run_all, out.submit_all]:
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0, script


def test_fsdp_config_is_written_into_the_stage_folder(spec: Path, tmp_path: Path) -> None:
    plan = build_plan(load(spec, "resources.backend=fsdp", "resources.processes=2"))
    out = emit(plan, tmp_path / "emit")
    config = yaml.safe_load((plan.stages[0].partial / "accelerate.yaml").read_text())
    assert config["distributed_type"] == "FSDP"
    assert f"--config_file {plan.stages[0].partial}/accelerate.yaml" in out.shell[0].read_text()


def test_plan_json(spec: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TDRO_REGISTRY", str(spec.parent / "registry"))
    assert main(["plan", str(spec), "resources.processes=2", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in rows] == ["reference", "optimize", "train", "evaluate", "evaluate"]
    assert set(rows[0]) >= {"id", "kind", "arms", "status", "inputs", "command"}
    assert rows[1]["inputs"] == [rows[0]["id"]] and rows[0]["arms"] == ["default"]
    assert all(r["status"] == "run" for r in rows)
    assert "--multi_gpu --num_processes 2" in rows[0]["command"]
    assert main(["plan", str(spec), "dro.nope=1"]) == 2
