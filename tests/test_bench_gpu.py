"""bench/gpu.py, the device benchmark, runs end to end at its tiny CPU size (so it cannot rot)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

GPU_BENCH = Path(__file__).resolve().parents[1] / "bench" / "gpu.py"


@pytest.fixture(scope="module")
def tiny_report() -> dict:
    spec = importlib.util.spec_from_file_location("bench_gpu", GPU_BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module.main(["--tiny", "--cpu", "--steps", "2", "--warmup", "1"])


def test_tiny_run_reports_finite_rates(tiny_report):
    keys = ("stage0_tokens_per_second", "stage0_mfu", "stage1_over_stage0", "encode_passages_per_second",
            "search_seconds", "peak_memory_bytes")
    assert all(math.isfinite(tiny_report[k]) and tiny_report[k] > 0 for k in keys)


def test_tiny_run_is_fp32_on_cpu(tiny_report):
    where = (tiny_report["device"], tiny_report["precision"], tiny_report["faiss_gpu"])
    assert where == ("cpu", "fp32", False)
