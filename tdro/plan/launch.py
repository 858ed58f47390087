"""A stage as an `accelerate launch` command: processes, machines, mixed precision, a free port, and an
accelerate config YAML (written into the stage folder) for FSDP or DeepSpeed; DDP needs flags only.

GPU presence is decided without importing torch: `CUDA_VISIBLE_DEVICES` set empty or to -1 means none;
otherwise the NVIDIA driver's /proc entries, then `nvidia-smi -L`. Without a GPU, mixed precision is `no`.

One exception, for speed: a single-process DDP stage on a machine without a GPU runs as
`python -m tdro.stages.<kind> STAGE_FILE`. `accelerate launch` would start exactly that process with
default settings, after importing torch and accelerate itself (about 6 CPU-seconds per stage); the job's
`Accelerator()` behaves the same either way. Emitted scripts always use `accelerate launch`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from tdro.enums import Backend, MixedPrecision, StageKind
from tdro.spec.experiment import ResourcesSpec
from tdro.spec.stage_file import STAGE_FILE

STAGE_MODULES = {
    StageKind.reference: "tdro.stages.train",
    StageKind.train: "tdro.stages.train",
    StageKind.optimize: "tdro.stages.optimize",
    StageKind.evaluate: "tdro.stages.evaluate",
    StageKind.holdout: "tdro.stages.holdout",
    StageKind.mine: "tdro.stages.mine",
    StageKind.dedup: "tdro.stages.dedup",
}
ACCELERATE_CONFIG = "accelerate.yaml"


def gpu_available() -> bool:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    if gpus.is_dir() and any(gpus.iterdir()):
        return True
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def effective_precision(resources: ResourcesSpec, gpu: bool) -> MixedPrecision:
    return resources.mixed_precision if gpu else MixedPrecision.no


def accelerate_config(resources: ResourcesSpec, gradient_accumulation: int = 1) -> dict[str, Any] | None:
    """The accelerate config for FSDP / DeepSpeed (None for DDP, which flags describe fully)."""
    if resources.backend is Backend.fsdp:
        return {
            "compute_environment": "LOCAL_MACHINE",
            "distributed_type": "FSDP",
            "fsdp_config": {
                "fsdp_version": 1,
                "fsdp_sharding_strategy": "FULL_SHARD",
                "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                "fsdp_backward_prefetch": "BACKWARD_PRE",
                # checkpoints: each process its shard (accelerate's save_state); the final model is
                # gathered whole (tdro.stages.checkpoint.full_model_state) and loads with from_pretrained
                "fsdp_state_dict_type": "SHARDED_STATE_DICT",
                "fsdp_use_orig_params": True,
                "fsdp_sync_module_states": True,
                "fsdp_cpu_ram_efficient_loading": True,
                "fsdp_offload_params": False,
            },
        }
    if resources.backend is Backend.deepspeed:
        return {
            "compute_environment": "LOCAL_MACHINE",
            "distributed_type": "DEEPSPEED",
            "deepspeed_config": {
                "zero_stage": resources.zero_stage,
                "gradient_accumulation_steps": gradient_accumulation,
                "offload_optimizer_device": "none",
                "offload_param_device": "none",
                "zero3_init_flag": resources.zero_stage == 3,
                "zero3_save_16bit_model": resources.zero_stage == 3,
            },
        }
    return None


def gradient_accumulation(stage_file: object) -> int:
    """DeepSpeed's config must repeat the stage's gradient accumulation."""
    section = getattr(stage_file, "train", None) or getattr(stage_file, "dro", None)
    return int(getattr(section, "gradient_accumulation", 1))


def write_accelerate_config(
    folder: Path, resources: ResourcesSpec, grad_accumulation: int = 1
) -> Path | None:
    config = accelerate_config(resources, grad_accumulation)
    if config is None:
        return None
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ACCELERATE_CONFIG
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def accelerate_executable() -> list[str]:
    """The `accelerate` next to this Python (the venv's), else the one on PATH."""
    local = Path(sys.executable).with_name("accelerate")
    if local.is_file():
        return [str(local), "launch"]
    return ["accelerate", "launch"]


def direct_launch(resources: ResourcesSpec, gpu: bool) -> bool:
    """True when accelerate launch would add nothing: one CPU process, DDP."""
    return resources.world_size == 1 and not gpu and resources.backend is Backend.ddp


def direct_args(kind: StageKind, folder: Path | str) -> list[str]:
    return [sys.executable, "-m", STAGE_MODULES[kind], str(Path(folder) / STAGE_FILE)]


def launch_args(
    kind: StageKind,
    folder: Path | str,
    resources: ResourcesSpec,
    *,
    mixed_precision: MixedPrecision,
    port: int | str,
    machine_rank: int | str = 0,
    main_process_ip: str | None = None,
    config_file: Path | str | None = None,
    executable: list[str] | None = None,
) -> list[str]:
    """The full argument list; `port`, `machine_rank` and `main_process_ip` may be shell variables."""
    args = list(executable or ["accelerate", "launch"])
    if config_file is not None:
        args += ["--config_file", str(config_file)]
    elif resources.world_size > 1:
        args.append("--multi_gpu")
    args += [
        "--num_processes", str(resources.world_size),
        "--num_machines", str(resources.machines),
        "--mixed_precision", mixed_precision.value,
        "--dynamo_backend", "no",
    ]
    if resources.machines > 1:
        ip = main_process_ip or resources.main_process_ip
        if ip is None:
            raise ValueError("a multi-machine launch needs main_process_ip")
        args += ["--machine_rank", str(machine_rank), "--main_process_ip", ip]
    args += ["--main_process_port", str(port), "-m", STAGE_MODULES[kind], str(Path(folder) / STAGE_FILE)]
    return args
