"""Measured points from a bench run directory (and ncu points), and their projection onto other devices."""
import json

import pytest

from ssmscope import kernels
from ssmscope.roofline import get_device, load_run, project
from ssmscope.roofline.devices import DeviceError
from ssmscope.roofline.points import MeasuredPoint

H100 = "NVIDIA H100 80GB HBM3"


def conv_row(seqlen: int, ms: float, impl: str = "official", status: str = "ok", gpu: str = H100) -> dict:
    params = {"batch": 1, "dim": 1536, "seqlen": seqlen, "width": 4}
    cost = kernels.get("causal_conv1d").cost_of("bf16", **params)
    return {"op": "causal_conv1d", "impl": impl, "config_id": f"L{seqlen}", "params": params, "dtype": "bf16",
            "status": status, "device_ms": ms, "gpu": gpu, "flops": cost.flops, "min_bytes": cost.min_bytes}


def write_run(tmp_path, rows, ncu=None):
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if ncu is not None:
        (tmp_path / "ncu_points.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ncu))
    return tmp_path


def test_load_run_keeps_ok_rows_and_says_what_it_skipped(tmp_path):
    run = load_run(write_run(tmp_path, [conv_row(4096, 0.0115), conv_row(65536, 0.149),
                                        conv_row(16384, None, status="error"), conv_row(1000, 0.1, status="fail")]))
    assert [p.params["seqlen"] for p in run.points] == [4096, 65536]
    assert run.devices == ["h100-sxm"]
    assert any("status error" in n for n in run.notes) and any("status fail" in n for n in run.notes)
    p = run.points[1]
    assert p.time_s == pytest.approx(0.149e-3)
    assert p.transcendentals == 1536 * 65536  # filled in from the cost model
    assert p.intensity == pytest.approx(p.flops / p.bytes)
    assert p.achieved_flop_per_s == pytest.approx(p.flops / 0.149e-3)
    assert p.label == "B1-D1536-L65536-W4"


def test_unknown_gpu_needs_an_explicit_device(tmp_path):
    write_run(tmp_path, [conv_row(4096, 0.01, gpu="Some Future GPU")])
    with pytest.raises(DeviceError, match="no device file matches"):
        load_run(tmp_path)
    assert load_run(tmp_path, device="a100").points[0].device == "a100"


def test_ncu_points_one_per_memory_level(tmp_path):
    row = conv_row(65536, 0.149)
    ncu = {"op": "causal_conv1d", "impl": "official", "config_id": "L65536", "params": row["params"],
           "dtype": "bf16", "gpu": H100, "gpu_time_ns": 160_000, "flops_total": 1.3e9, "flops_tensor": 0,
           "sfu_ops": 1e8, "dram_bytes": 4.1e8, "l2_bytes": 5.0e8, "l1_bytes": 9.0e8,
           "ceilings": {"l2_B_per_s": 1.1e13, "note": "ignored", "fp32_flop_per_s": "bad"}}
    run = load_run(write_run(tmp_path, [row], [ncu]))
    levels = {p.level: p for p in run.ncu_points}
    assert set(levels) == {"l1", "l2", "dram"}
    assert levels["l2"].intensity == pytest.approx(1.3e9 / 5.0e8)
    assert levels["l1"].achieved_flop_per_s == pytest.approx(1.3e9 / 160e-6)
    assert run.ncu_ceilings == {"h100-sxm": {"l2_B_per_s": 1.1e13}}


def point(ms: float, seqlen: int = 65536, device: str = "h100-sxm") -> MeasuredPoint:
    params = {"batch": 1, "dim": 1536, "seqlen": seqlen, "width": 4}
    cost = kernels.get("causal_conv1d").cost_of("bf16", **params)
    return MeasuredPoint(op="causal_conv1d", impl="official", config_id="x", params=params, dtype="bf16", gpu=H100,
                         device=device, time_s=ms * 1e-3, flops=cost.flops, bytes=cost.min_bytes,
                         transcendentals=cost.transcendentals, label="B1-D1536-L65536-W4")


def test_projection_carries_the_efficiency_over():
    p = point(0.149)
    proj = project(p, "rtx4090")
    h100_floor = p.bytes / 3.35e12
    target_floor = p.bytes / 1008e9
    assert proj.efficiency == pytest.approx(h100_floor / 0.149e-3)
    assert proj.estimate_s == pytest.approx(target_floor / proj.efficiency)
    assert proj.estimate_s == pytest.approx(0.149e-3 * 3.35e12 / 1008e9)  # dram-bound on both: bandwidth ratio
    assert proj.target_floor_s <= proj.low_s <= proj.estimate_s <= proj.high_s
    assert proj.scalings["dram"] == pytest.approx(3.35e12 / 1008e9)
    assert "same efficiency" in proj.assumption and "dram x3.32" in proj.assumption


def test_projection_flags_a_measurement_faster_than_its_floor():
    p = point(0.05)  # 400 MB in 50 µs on a 3.35 TB/s GPU: impossible from DRAM
    proj = project(p, "orin-nano")
    assert proj.efficiency > 1
    assert any("cache-resident" in c for c in proj.caveats)
    assert proj.low_s <= proj.estimate_s <= proj.high_s


def test_projection_onto_the_same_device_is_the_measurement():
    proj = project(point(0.149), get_device("h100-sxm"))
    assert proj.estimate_s == pytest.approx(0.149e-3)
    assert proj.low_s == pytest.approx(0.149e-3) and proj.high_s == pytest.approx(0.149e-3)
