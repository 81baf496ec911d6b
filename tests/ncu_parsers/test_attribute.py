"""Kernels -> operator points: the NVTX stack names the point, a five-kernel SSD call is summed with its
breakdown kept, and bench rows bring the shape and the cost model's minimum bytes."""
import pytest

from ssmscope import kernels
from ssmscope.ncu_parsers import attribute, parse_csv, short_name
from ssmscope.ncu_parsers.attribute import base_name, range_key

ROLES = ["chunk_cumsum", "chunk_state", "state_passing", "bmm_chunk", "chunk_scan"]


def printed(value):
    """What the parser can know of a value the capture printed with two decimals."""
    return round(value, 2)


def test_ssd_five_kernels_aggregate(ssd_capture):
    text, spec = ssd_capture
    ks = parse_csv(text)
    assert len(ks) == 7
    points = attribute(ks)
    assert [(p["op"], p["impl"], p["n_kernels"]) for p in points] == [("ssd", "official", 5), ("ssd", "triton", 1)]
    p = points[0]
    assert p["config_id"] == "B1-L4097-H24-P64-N128-bf16" and p["dtype"] == "bf16" and p["params"] == {}
    assert [k["short_name"] for k in p["kernels"]] == ROLES
    official = [s for s in spec if s["nvtx"][1:3] == ["ssd", "official"]]
    m = lambda name: [s["metrics"][name][0] for s in official]  # noqa: E731
    time = m("gpu__time_duration.sum")
    fp32 = [a + b + 2 * c for a, b, c in zip(m("sm__sass_thread_inst_executed_op_fadd_pred_on.sum"),
                                             m("sm__sass_thread_inst_executed_op_fmul_pred_on.sum"),
                                             m("sm__sass_thread_inst_executed_op_ffma_pred_on.sum"))]
    tensor = m("sm__ops_path_tensor_src_bf16_dst_fp32.sum")
    dram = [r + w for r, w in zip(m("dram__bytes_read.sum"), m("dram__bytes_write.sum"))]
    assert p["gpu_time_ns"] == sum(time)
    assert p["flops_fp32"] == sum(fp32) and p["flops_tensor"] == sum(tensor)
    assert p["flops_tensor_by_precision"] == {"bf16": sum(tensor)}
    assert p["flops_total"] == sum(fp32) + sum(tensor)
    assert p["sfu_ops"] == sum(m("sm__thread_inst_executed_pipe_xu_pred_on.sum"))
    assert p["dram_bytes"] == sum(dram) and p["dram_bytes_read"] == sum(m("dram__bytes_read.sum"))
    assert (p["l2_bytes"], p["l1_bytes"], p["shared_bytes"]) == tuple(
        sum(m(n)) for n in ("lts__t_bytes.sum", "l1tex__t_bytes.sum", "sm__sass_data_bytes_mem_shared.sum"))
    assert p["ai_dram"] == pytest.approx(p["flops_total"] / sum(dram))
    assert p["ai_l2"] == pytest.approx(p["flops_total"] / p["l2_bytes"])
    assert p["flops_per_s"]["tensor"] == pytest.approx(sum(tensor) / (sum(time) * 1e-9))
    assert p["bytes_per_s"]["dram"] == pytest.approx(sum(dram) / (sum(time) * 1e-9))
    # Clocks and ceilings: time-weighted over the kernels; passes: the worst kernel's.
    clocks = [printed(c) for c in m("sm__cycles_elapsed.avg.per_second")]
    assert p["sm_clock_hz"] == pytest.approx(sum(c * t for c, t in zip(clocks, time)) / sum(time), rel=1e-12)
    assert p["ceilings"]["tensor_bf16_f32acc_flop_per_s"] == pytest.approx(270_336 * p["sm_clock_hz"], rel=1e-12)
    assert p["ceilings"]["dram_B_per_s"] == pytest.approx(1_280 * 2_618_668_941.98)
    assert p["replay_passes"] == max(m("profiler__replayer_passes"))
    assert p["tensor_wgmma_fraction"] == 0.0  # mma.sync only in this capture
    assert p["dram_source"] == "dram__bytes" and p["dram_excess_ratio"] is None  # no rows, no model
    # The breakdown adds up to the totals.
    for key in ("gpu_time_ns", "flops_total", "dram_bytes", "l2_bytes"):
        assert sum(k[key] for k in p["kernels"]) == p[key], key


def test_kernels_outside_ssmscope_are_left_out(ssd_capture):
    ks = parse_csv(ssd_capture[0])
    assert ks[0].nvtx == ["warmup"] and range_key(ks[0].nvtx) is None
    assert sum(p["n_kernels"] for p in attribute(ks)) == 6


@pytest.mark.parametrize("stack, key", [
    (["ssmscope", "ssd", "official", "B1-bf16"], ("ssd", "official", "B1-bf16")),
    (["outer", "ssmscope", "ssd", "triton", "B1-bf16", "inner"], ("ssd", "triton", "B1-bf16")),
    (["ssmscope", "gemm"], ("gemm", None, None)),
    (["ssd", "official"], None),
], ids=["four-levels", "nested-deeper", "two-levels", "no-root"])
def test_range_key(stack, key):
    assert range_key(stack) == key


@pytest.mark.parametrize("name, short", [
    ("_chunk_cumsum_fwd_kernel", "chunk_cumsum"),
    ("_bmm_chunk_fwd_kernel", "bmm_chunk"),
    ("void selective_scan_fwd_kernel<Selective_Scan_fwd_kernel_traits<32, 16, 1, true, true, true, true, "
     "c10::BFloat16, float, c10::BFloat16>>(SSMParamsBase)", "selective_scan"),
    ("void causal_conv1d_update_kernel<Causal_conv1d_update_kernel_traits<64, 4, c10::BFloat16>>(ConvParamsBase)",
     "causal_conv1d_update"),
    ("void causal_conv1d_channellast_fwd_kernel<Causal_conv1d_channellast_fwd_kernel_traits<128, 4, 64, true, "
     "c10::BFloat16>>(ConvParamsBase)", "causal_conv1d"),
    ("void at::vectorized_elementwise_kernel<4, at::<unnamed>::silu_kernel(at::TensorIteratorBase &)>(int, T2, T3)",
     "vectorized_elementwise_kernel"),
    ("(anonymous namespace)::rms_norm_kernel(float *, int)", "rms_norm_kernel"),
    ("nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT", "nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT"),
], ids=["cumsum", "bmm", "scan", "conv-update", "conv-channellast", "torch-elementwise", "anonymous-ns", "cublas"])
def test_short_names(name, short):
    assert short_name(name) == short
    assert base_name(name) in name


# ------------------------------------------------------------------------------- bench rows, cost model
CONV_ID = "B1-D1536-L4097-W4-bf16"
CONV_SHAPE = dict(batch=1, dim=1536, seqlen=4097, width=4)


def conv_kernel(dram_read: int | None, dram_write: int | None) -> dict:
    metrics = {"gpu__time_duration.sum": (12_345, "ns"),
               "sm__sass_thread_inst_executed_op_ffma_pred_on.sum": (25_171_969, "inst")}
    if dram_read is not None:
        metrics |= {"dram__bytes_read.sum": (dram_read, "byte"), "dram__bytes_write.sum": (dram_write, "byte")}
    return {"name": "void causal_conv1d_fwd_kernel<Causal_conv1d_fwd_kernel_traits<128, 4, true, c10::BFloat16>>"
                    "(ConvParamsBase)", "nvtx": ["ssmscope", "causal_conv1d", "official", CONV_ID], "metrics": metrics}


@pytest.mark.parametrize("row", [
    {"op": "causal_conv1d", "impl": "official", "dtype": "bf16", **CONV_SHAPE, "device_ms": 0.0123,
     "gpu": "NVIDIA H100 80GB HBM3"},
    {"op": "causal_conv1d", "impl": "official", "dtype": "bf16", "params": CONV_SHAPE, "config_id": CONV_ID},
], ids=["shape-columns", "params-and-config-id"])
def test_rows_bring_shape_and_model_bytes(make_raw, row):
    other = {**row, "impl": "triton"}  # a row of another point must not be picked
    (p,) = attribute(parse_csv(make_raw([conv_kernel(12_599_297, 12_601_345)])), [other, row])
    model = kernels.get("causal_conv1d").cost_of(dtype="bf16", **CONV_SHAPE)
    assert (p["dtype"], p["params"]) == ("bf16", CONV_SHAPE)
    assert p["gpu"] == row.get("gpu")  # from the bench row; the capture has no display-name column
    assert p["model_min_bytes"] == model.min_bytes == 2 * 1536 * 4097 * 2 + 1536 * 4 * 2 + 1536 * 2
    assert p["model_flops"] == model.flops
    assert p["dram_excess_ratio"] == pytest.approx((12_599_297 + 12_601_345) / model.min_bytes)
    assert p["dram_source"] == "dram__bytes"
    assert p["kernels"][0]["short_name"] == "causal_conv1d"


def test_cost_model_stands_in_without_dram_counters(make_raw):
    row = {"op": "causal_conv1d", "impl": "official", "dtype": "bf16", **CONV_SHAPE}
    (p,) = attribute(parse_csv(make_raw([conv_kernel(None, None)])), [row])
    model = kernels.get("causal_conv1d").cost_of(dtype="bf16", **CONV_SHAPE)
    assert p["dram_source"] == "cost_model" and p["dram_bytes"] == model.min_bytes
    assert p["dram_excess_ratio"] is None
    assert p["ai_dram"] == pytest.approx(2 * 25_171_969 / model.min_bytes)
    # Without rows nothing stands in: DRAM bytes are simply unknown.
    (bare,) = attribute(parse_csv(make_raw([conv_kernel(None, None)])))
    assert bare["dram_source"] is None and bare["dram_bytes"] is None and bare["ai_dram"] is None
    assert bare["dtype"] == "bf16" and bare["model_min_bytes"] is None


def test_rows_of_unknown_ops_or_shapes_are_ignored(make_raw):
    rows = [{"op": "causal_conv1d", "impl": "official", "dtype": "bf16", **CONV_SHAPE, "width": 9},  # invalid
            {"op": "no_such_op", "impl": "x", "dtype": "bf16", "seqlen": 3}]
    (p,) = attribute(parse_csv(make_raw([conv_kernel(1_001, 2_003)])), rows)
    assert p["model_min_bytes"] is None and p["params"] == {}


def test_decode_kernel_of_mamba_is_not_taken_for_the_prefill_scan():
    from ssmscope.ncu_parsers.attribute import short_name

    assert short_name("_selective_scan_update_kernel") == "selective_state_update"
    assert short_name("void selective_scan_fwd_kernel<Selective_Scan_fwd_kernel_traits<32, 16, 1, true>>(SSMParamsBase)") \
        == "selective_scan"
