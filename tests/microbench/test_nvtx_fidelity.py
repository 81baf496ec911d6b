"""NVTX range nesting for Nsight Compute, and the join of our device times with ncu's."""
from __future__ import annotations

import json

import pytest
import torch

from ssmscope import kernels
from ssmscope.microbench import compare_with_ncu, config_id, nvtx_ranges


@pytest.fixture
def nvtx_log(monkeypatch):
    log: list[str] = []
    monkeypatch.setattr(torch.cuda.nvtx, "range_push", lambda name: log.append(f"push {name}"))
    monkeypatch.setattr(torch.cuda.nvtx, "range_pop", lambda: log.append("pop"))
    return log


def test_ranges_nest_ssmscope_op_impl_config(nvtx_log):
    op = kernels.get("causal_conv1d")
    shape, dtype = op.split_config(dict(batch=1, dim=1536, seqlen=4096, dtype="bf16"))
    cid = config_id(shape, dtype)
    assert cid == "B1-D1536-L4096-W4-bf16"
    with nvtx_ranges(op, "official", cid, enabled=True):
        nvtx_log.append("kernel")
    assert nvtx_log == ["push ssmscope", "push causal_conv1d", "push official", f"push {cid}", "kernel",
                        "pop", "pop", "pop", "pop"]


def test_ranges_pop_on_error_and_are_off_without_cuda(nvtx_log):
    with pytest.raises(RuntimeError):
        with nvtx_ranges("ssd", "triton", "B1-L4096-bf16", enabled=True):
            raise RuntimeError("kernel failed")
    assert nvtx_log.count("pop") == 4
    nvtx_log.clear()
    with nvtx_ranges("ssd", "triton", "x", enabled=False):
        pass
    assert nvtx_log == []


def test_compare_with_ncu_joins_on_the_point(tmp_path):
    rows = [
        {"op": "causal_conv1d", "impl": "official", "config_id": "B1-D1536-L65536-W4-bf16", "mode": "time",
         "status": "ok", "device_ms": 0.150, "cache": "cold", "timer": "cuda_graph", "sm_clock_mhz_after": 1980},
        {"op": "causal_conv1d", "impl": "official", "config_id": "B1-D1536-L65536-W4-bf16", "mode": "profile",
         "status": "ok", "device_ms": None},
        {"op": "ssd", "impl": "official", "config_id": "B1-L4096-H24-P64-N128-G1-Q256-bf16", "mode": "time",
         "status": "ok", "device_ms": 0.068},
        {"op": "ssd", "impl": "triton", "config_id": "B1-L4096-H24-P64-N128-G1-Q256-bf16", "mode": "time",
         "status": "error", "device_ms": None},
    ]
    points = [
        {"op": "causal_conv1d", "impl": "official", "config_id": "B1-D1536-L65536-W4-bf16", "gpu_time_ns": 148_000,
         "n_kernels": 1, "sm_clock_hz": 1.98e9},
        {"op": "ssd", "impl": "official", "config_id": "B1-L4096-H24-P64-N128-G1-Q256-bf16", "gpu_time_ns": 60_000,
         "n_kernels": 5, "sm_clock_hz": None},
        {"op": "ssd", "impl": "triton", "config_id": "B1-L4096-H24-P64-N128-G1-Q256-bf16", "gpu_time_ns": 50_000},
    ]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(FileNotFoundError, match="ncu_points.jsonl"):
        compare_with_ncu(tmp_path)
    (tmp_path / "ncu_points.jsonl").write_text("".join(json.dumps(p) + "\n" for p in points))
    conv, ssd = compare_with_ncu(tmp_path)
    assert conv["ratio"] == pytest.approx(0.150 / 0.148) and conv["ncu_sm_clock_mhz"] == pytest.approx(1980)
    assert ssd["n_kernels"] == 5 and ssd["ratio"] == pytest.approx(0.068 / 0.060)


def test_fidelity_command_writes_the_join(tmp_path):
    from click.testing import CliRunner

    from ssmscope.cli import main

    row = {"op": "causal_conv1d", "impl": "official", "config_id": "B1-D1536-L65536-W4-bf16", "mode": "time",
           "status": "ok", "device_ms": 0.150}
    point = {"op": "causal_conv1d", "impl": "official", "config_id": "B1-D1536-L65536-W4-bf16",
             "gpu_time_ns": 120_000, "n_kernels": 1}
    (tmp_path / "rows.jsonl").write_text(json.dumps(row) + "\n")
    missing = CliRunner().invoke(main, ["ncu", "fidelity", str(tmp_path)])
    assert missing.exit_code == 1 and "ncu_points.jsonl" in missing.output
    (tmp_path / "ncu_points.jsonl").write_text(json.dumps(point) + "\n")
    result = CliRunner().invoke(main, ["ncu", "fidelity", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "ratio 1.250" in result.output and "median ratio 1.250" in result.output
    assert json.loads((tmp_path / "fidelity.jsonl").read_text())["ratio"] == pytest.approx(1.25)
