"""`ssmscope roofline …` through click's CliRunner."""
import csv
import json

import pytest
from click.testing import CliRunner

from ssmscope.cli import main


def run(*args, ok=True):
    result = CliRunner().invoke(main, ["roofline", *args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def test_devices_json_lists_every_device_with_sources():
    devices = json.loads(run("devices", "--json").output)
    ids = [d["id"] for d in devices]
    assert {"rtx4090", "orin-nano", "orin-nano-super", "agx-orin", "h100-sxm", "h100-pcie", "h200", "a100"} <= set(ids)
    h100 = next(d for d in devices if d["id"] == "h100-sxm")
    assert h100["specs"]["dram_bandwidth_B_per_s"]["value"] == 3.35e12
    assert "http" in h100["specs"]["dram_bandwidth_B_per_s"]["source"]


def test_devices_table_and_detail():
    assert "orin-nano-super" in run("devices").output
    detail = run("devices", "rtx4090").output
    assert "tensor_fp16_f16acc_flop_per_s" in detail and "330.3 TFLOP/s" in detail


def test_unknown_device_is_a_one_line_error():
    result = run("place", "--device", "rtx5090", "--op", "causal_conv1d", "--shape", "batch=1", ok=False)
    assert result.exit_code != 0 and "known devices: a100" in result.output and "Traceback" not in result.output


def test_place_json_matches_the_hand_computed_floor():
    out = json.loads(run("place", "--device", "orin-nano,h100-sxm", "--op", "causal_conv1d",
                         "--shape", "batch=1,dim=1536,seqlen=4096", "--json").output)
    nbytes = 2 * 1536 * 4096 * 2 + 1536 * 4 * 2 + 1536 * 2
    by_dev = {p["device"]: p for p in out["placements"]}
    assert by_dev["orin-nano"]["bound"] == "dram"
    assert by_dev["orin-nano"]["floor_s"] == pytest.approx(nbytes / 68e9)
    assert by_dev["h100-sxm"]["floor_s"] == pytest.approx(nbytes / 3.35e12)


def test_place_with_a_run_prints_the_projection_and_its_assumption(tmp_path):
    from ssmscope import kernels

    params = {"batch": 1, "dim": 1536, "seqlen": 65536, "width": 4}
    cost = kernels.get("causal_conv1d").cost_of("bf16", **params)
    row = {"op": "causal_conv1d", "impl": "official", "config_id": "x", "params": params, "dtype": "bf16",
           "status": "ok", "device_ms": 0.149, "gpu": "NVIDIA H100 80GB HBM3", "flops": cost.flops,
           "min_bytes": cost.min_bytes}
    (tmp_path / "rows.jsonl").write_text(json.dumps(row) + "\n")
    out = run("place", "--device", "rtx4090", "--op", "causal_conv1d", "--shape", "batch=1,dim=1536,seqlen=65536",
              "--run", str(tmp_path)).output
    assert "official measured 149 µs on h100-sxm -> rtx4090" in out
    assert "assumption: same efficiency as measured" in out


def test_bad_shape_field_is_a_clear_error():
    result = run("place", "--device", "a100", "--op", "causal_conv1d", "--shape", "batch=1,dstate=16", ok=False)
    assert result.exit_code != 0 and "unknown shape field(s) dstate" in result.output


def test_calibrate_without_a_gpu_stack_fails_cleanly():
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    result = run("calibrate", ok=False)
    assert result.exit_code != 0 and "needs CuPy" in result.output


def test_paper_on_a_reduced_set(tmp_path):
    out = tmp_path / "paper"
    result = run("paper", "--out", str(out), "--device", "h100-sxm", "--models", "mamba-130m,qwen2.5-0.5b",
                 "--lengths", "1k,4096")
    for name in ("table.md", "table.csv", "table.json", "rtx4090_prefill.png", "orin-nano_decode.svg",
                 "h100-sxm_prefill.png"):
        assert (out / name).exists(), name
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert {r["device"] for r in rows} == {"rtx4090", "orin-nano", "h100-sxm"}
    assert {r["model"] for r in rows} == {"mamba-130m", "qwen2.5-0.5b"}
    assert {int(r["seqlen"]) for r in rows} == {1024, 4096}
    assert {r["phase"] for r in rows} == {"prefill", "decode"}
    for r in rows:
        assert r["bound"] in ("dram", "compute", "sfu") and float(r["floor_ms"]) > 0
        assert float(r["floor_ms_total"]) == pytest.approx(float(r["floor_ms"]) * int(r["count"]))
    ops = {r["op"] for r in rows}
    assert "attention" in ops or "attention_decode" in ops  # Qwen's attention is placed
    data = json.loads((out / "table.json").read_text())
    assert len(data["rows"]) == len(rows) and data["dtype"] == "bf16"
    md = (out / "table.md").read_text()
    assert "## NVIDIA GeForce RTX 4090" in md and "| mamba-130m | prefill | 4K |" in md
    # a family that is not there yet is reported, never silently dropped
    for note in data["notes"]:
        assert note in result.output
