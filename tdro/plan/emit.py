"""Scripts instead of running: plain shell (one script per stage + `run_all.sh` in graph order) and Slurm
batch files (`slurm/*.sbatch` + `slurm/submit_all.sh`, which chains jobs with `--dependency=afterok`).

Only stages not cached are emitted; their `stage.json` (and accelerate config) are written into their
partial folders now, so the scripts run as they are on a machine that sees the same paths. Each script
skips a stage whose folder is complete, launches into the partial folder with the log in `stage.log`, and
renames the folder on success; the next `tdro run` ingests what the scripts produced. Emitted scripts
target the cluster, so mixed precision is the spec's (not decided by this machine's GPU). A Slurm job
runs one task per node; each task's `accelerate launch` gets `--machine_rank $SLURM_NODEID` and the
first node of the allocation as main process.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from tdro.enums import Backend
from tdro.plan.graph import Plan, Stage, Status
from tdro.plan.launch import ACCELERATE_CONFIG, gradient_accumulation, launch_args, write_accelerate_config
from tdro.plan.runner import LOG_FILE
from tdro.spec.stage_file import RESULT_FILE, STAGE_FILE

# A port in the usual torch.distributed range, distinct per job so two jobs on one node do not collide.
SLURM_PORT = "$((29500 + SLURM_JOB_ID % 1000))"
SHELL_PORT = '$(python3 -c "import socket; s=socket.socket(); s.bind((\'\', 0)); print(s.getsockname()[1])")'


@dataclass(frozen=True)
class Emitted:
    shell: list[Path]
    run_all: Path
    slurm: list[Path]
    submit_all: Path


def _quote(arg: str) -> str:
    return f'"{arg}"' if arg.startswith("$") else shlex.quote(arg)


def _command(stage: Stage, *, machine_rank: str, main_ip: str | None, port: str) -> str:
    config = stage.partial / ACCELERATE_CONFIG if stage.resources.backend is not Backend.ddp else None
    args = launch_args(
        stage.kind, stage.partial, stage.resources, mixed_precision=stage.resources.mixed_precision,
        port=port, machine_rank=machine_rank, main_process_ip=main_ip, config_file=config,
    )
    return " ".join(_quote(a) for a in args)


def _header(stage: Stage) -> list[str]:
    return [
        f"# tdro stage {stage.kind.value} {stage.id}",
        f"# arms: {', '.join(stage.arms)}",
        f"# inputs: {', '.join(i[:12] for i in stage.inputs) or '-'}",
    ]


def _prologue(stage: Stage, cwd: Path) -> list[str]:
    return [
        "set -euo pipefail",
        f"FINAL={shlex.quote(str(stage.folder))}",
        f"PARTIAL={shlex.quote(str(stage.partial))}",
        f'if [ -f "$FINAL/{RESULT_FILE}" ]; then echo "{stage.name}: cached"; exit 0; fi',
        f"cd {shlex.quote(str(cwd))}",
        'mkdir -p "$PARTIAL"',
    ]


def _epilogue(stage: Stage) -> list[str]:
    return [
        f'if [ ! -f "$PARTIAL/{RESULT_FILE}" ]; then',
        f'  echo "{stage.name} failed: see $PARTIAL/{LOG_FILE}" >&2; exit 1',
        "fi",
        'mv "$PARTIAL" "$FINAL"',
        f'echo "{stage.name}: done"',
    ]


def shell_script(stage: Stage, cwd: Path) -> str:
    multi = stage.resources.machines > 1
    port = str(stage.resources.main_process_port or "$PORT")
    command = _command(
        stage, machine_rank="$MACHINE_RANK" if multi else "0",
        main_ip="$MAIN_PROCESS_IP" if multi else None, port=port,
    )
    lines = ["#!/usr/bin/env bash", *_header(stage), *_prologue(stage, cwd)]
    if multi:  # run this script on every machine with its rank; the main machine's address
        lines += ['MACHINE_RANK="${MACHINE_RANK:?set MACHINE_RANK on each machine}"',
                  f'MAIN_PROCESS_IP="${{MAIN_PROCESS_IP:-{stage.resources.main_process_ip or ""}}}"']
    if port == "$PORT":
        lines.append(f'PORT="${{TDRO_PORT:-{SHELL_PORT}}}"')
    lines += [f'{command} >> "$PARTIAL/{LOG_FILE}" 2>&1 || true', *_epilogue(stage)]
    return "\n".join(lines) + "\n"


def slurm_script(stage: Stage, cwd: Path) -> str:
    r = stage.resources
    command = _command(stage, machine_rank="$SLURM_NODEID", main_ip="$MAIN_PROCESS_IP",
                       port="$MAIN_PROCESS_PORT") if r.machines > 1 else _command(
        stage, machine_rank="0", main_ip=None, port="$MAIN_PROCESS_PORT")
    lines = [
        "#!/usr/bin/env bash",
        f"#SBATCH --job-name=tdro-{stage.name}",
        f"#SBATCH --nodes={r.machines}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --gpus-per-node={r.processes}",
        f"#SBATCH --output={stage.runs_dir}/{stage.name}.slurm-%j.out",
        *_header(stage),
        *_prologue(stage, cwd),
        'MAIN_PROCESS_IP="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
        f'MAIN_PROCESS_PORT="{r.main_process_port or SLURM_PORT}"',
        "export MAIN_PROCESS_IP MAIN_PROCESS_PORT",
        "# One task per node; SLURM_NODEID is that node's rank.",
        f"launch() {{ {command}; }}",
        "export -f launch",
        f'srun --kill-on-bad-exit=1 bash -c launch >> "$PARTIAL/{LOG_FILE}" 2>&1 || true',
        *_epilogue(stage),
    ]
    return "\n".join(lines) + "\n"


def emit(plan: Plan, folder: str | Path, *, cwd: Path | None = None) -> Emitted:
    """Write stage files and scripts for every stage not cached; return the scripts written."""
    out = Path(folder).expanduser().resolve()
    (out / "slurm").mkdir(parents=True, exist_ok=True)
    cwd = (cwd or Path.cwd()).resolve()
    todo = [s for s in plan.stages if s.status is Status.run]
    shell: list[Path] = []
    slurm: list[Path] = []
    submit = ["#!/usr/bin/env bash", f"# tdro experiment {plan.experiment}: submit in graph order",
              "set -euo pipefail", 'cd "$(dirname "$0")"']
    run_all = ["#!/usr/bin/env bash", f"# tdro experiment {plan.experiment}: every stage in graph order",
               "set -euo pipefail", 'cd "$(dirname "$0")"']
    job_var = {s.id: f"JOB_{i}" for i, s in enumerate(todo)}
    for i, stage in enumerate(todo):
        stage.partial.mkdir(parents=True, exist_ok=True)
        stage.stage_file.write(stage.partial / STAGE_FILE)
        if stage.resources.backend is not Backend.ddp:
            write_accelerate_config(stage.partial, stage.resources, gradient_accumulation(stage.stage_file))
        base = f"{i:02d}-{stage.name}"
        shell.append(_write(out / f"{base}.sh", shell_script(stage, cwd)))
        slurm.append(_write(out / "slurm" / f"{base}.sbatch", slurm_script(stage, cwd)))
        run_all.append(f"bash {shlex.quote(base + '.sh')}")
        deps = [job_var[d] for d in stage.inputs if d in job_var]
        dep = f"--dependency=afterok:{':'.join('$' + d for d in deps)} " if deps else ""
        submit.append(f"{job_var[stage.id]}=$(sbatch --parsable {dep}{shlex.quote(base + '.sbatch')})")
        submit.append(f'echo "{stage.name}: job ${job_var[stage.id]}"')
    return Emitted(shell, _write(out / "run_all.sh", "\n".join(run_all) + "\n"), slurm,
                   _write(out / "slurm" / "submit_all.sh", "\n".join(submit) + "\n"))


def _write(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    tmp.replace(path)
    return path
