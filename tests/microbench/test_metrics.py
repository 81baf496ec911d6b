"""Derived rates, peak fractions and the row schema guard."""
from __future__ import annotations

import pytest

from ssmscope import kernels
from ssmscope.kernels.op import Cost
from ssmscope.microbench.metrics import parse_peaks, rates, speedup
from ssmscope.microbench.rows import ROW_KEYS, make_row

PEAKS = {"dram_bandwidth_B_per_s": 3.35e12, "fp32_flop_per_s": 66.9e12, "tensor_bf16_f32acc_flop_per_s": 989.4e12,
         "sfu_op_per_s": 4.18e12}


def test_rates_of_a_scan_point():
    op = kernels.get("selective_scan")
    cost = op.cost_of(dtype="bf16", batch=1, dim=1536, dstate=16, seqlen=4096)
    r = rates(cost, 0.121, "bf16", PEAKS)  # the official scan's graph time on the H100 (shared/GPU.md)
    assert r["achieved_gbps"] == pytest.approx(cost.min_bytes / 0.121e-3 / 1e9)
    assert r["achieved_tflops"] == pytest.approx(cost.flops / 0.121e-3 / 1e12)
    assert r["achieved_gexps"] == pytest.approx(cost.transcendentals / 0.121e-3 / 1e9)
    assert r["peak_flops_key"] == "fp32_flop_per_s"  # no tensor FLOPs in the scan's model
    assert r["frac_peak_dram"] == pytest.approx(r["achieved_gbps"] * 1e9 / 3.35e12)
    assert 0 < r["frac_peak_sfu"] < 1


def test_tensor_flops_compare_with_the_dtype_tensor_peak():
    cost = Cost(flops=2e12, tensor_flops=1.9e12, transcendentals=0.0, bytes={"x": 1e9})
    r = rates(cost, 4.0, "bf16", PEAKS)
    assert r["peak_flops_key"] == "tensor_bf16_f32acc_flop_per_s"
    assert r["frac_peak_flops"] == pytest.approx(0.5e15 / 989.4e12)
    assert r["frac_peak_sfu"] is None  # no transcendentals: no fraction
    assert rates(cost, 4.0, "bf16")["frac_peak_dram"] is None  # no peaks given
    assert rates(cost, None, "bf16")["achieved_gbps"] is None
    assert speedup(2.0, 0.5) == 4.0 and speedup(None, 0.5) is None


def test_parse_peaks():
    assert parse_peaks(["dram_bandwidth_B_per_s=2e12"]) == {"dram_bandwidth_B_per_s": 2e12}
    with pytest.raises(ValueError, match="dram_bandwidth_B_per_s"):
        parse_peaks(["bandwidth=2e12"])
    with pytest.raises(ValueError, match="not a number"):
        parse_peaks(["fp32_flop_per_s=fast"])


def test_make_row_fills_every_key_and_rejects_unknown_ones():
    row = make_row(op="x", impl="y", status="ok")
    assert list(row) == list(ROW_KEYS) and row["device_ms"] is None
    with pytest.raises(KeyError, match="devise_ms"):
        make_row(op="x", status="ok", devise_ms=1.0)
    with pytest.raises(ValueError, match="status"):
        make_row(op="x", status="fine")
