"""The metric set (every name real on gh100) and what is derived from it: FLOPs by class as ncu's roofline
sections count them, exact on the captured GEMM and within a few % of the model on captured SDPA; bytes,
ceilings, and the Orin fallback for DRAM bytes."""
import pytest

from ssmscope import kernels
from ssmscope.ncu_parsers import kernel_summary, metric_set, parse_csv, parse_file
from ssmscope.ncu_parsers import metrics as M

# Not in the filtered gh100 query list nor among the captured columns, each with its evidence; the test
# below fails when a name is added to the set without being checked (or when a listed one turns up).
UNLISTED = {
    # ncu's own SpeedOfLight_Hierarchical*RooflineChart sections read the L2 clock by this name.
    "lts__cycles_elapsed",
    # the MemoryWorkloadAnalysis shared-memory table's byte counter (ld/st/ldsm/atom/ldgsts sub-metrics).
    "sm__sass_data_bytes_mem_shared",
}
ROLLUPS = (".sum.peak_sustained", ".avg.per_second", ".sum", ".avg", ".max", ".min")


def base_metric(name: str) -> str:
    return next((name.removesuffix(r) for r in ROLLUPS if name.endswith(r)), name)


@pytest.fixture(scope="module")
def h100_names(request) -> set[str]:
    """Metric base names known on the H100: `ncu --query-metrics --chip gh100` (filtered) and the columns
    of the captured raw page."""
    from pathlib import Path
    data = Path(__file__).resolve().parents[1] / "data" / "ncu"
    listed = {line.split()[0] for line in (data / "gh100_metric_names.txt").read_text().splitlines() if line.strip()}
    captured = parse_file(data / "h100_torch_ops_raw.csv")[0].metrics
    return listed | {base_metric(m) for m in captured}


def test_every_metric_exists_on_gh100(h100_names):
    names = metric_set((9, 0))
    assert len(names) == len(set(names))
    unknown = {base_metric(m) for m in names} - h100_names
    assert unknown == UNLISTED
    assert not UNLISTED & h100_names


@pytest.mark.parametrize("cc", [(9, 0), (8, 9), (8, 7), (8, 6), (8, 0)], ids=lambda cc: f"sm_{cc[0]}{cc[1]}")
def test_metric_set_per_arch(cc):
    names = set(metric_set(cc))
    assert {M.TIME, M.SM_HZ, M.L2_BYTES, M.L1_BYTES, M.SHARED_BYTES, M.XU_THREAD} <= names
    assert (set(M.WGMMA_OPS.values()) <= names) == (cc == (9, 0))
    assert (M.TENSOR_OPS["fp8"] in names) == (cc >= (8, 9))
    assert (M.TENSOR_OPS["fp64"] in names) == (cc in ((9, 0), (8, 0)))
    orin = cc == (8, 7)
    assert not any(m.startswith("dram__") for m in names) if orin else {M.DRAM_READ, M.DRAM_WRITE} <= names
    assert (M.L2_MISS_SECTORS in names) == orin
    # every tensor counter comes with its peak, nothing else is asked for twice
    assert all(f"{m}.peak_sustained" in names for m in M.TENSOR_OPS.values() if m in names)
    assert metric_set(None) == metric_set((9, 0))


def test_gemm_tensor_flops_are_exact(data_dir):
    (gemm,) = [k for k in parse_file(data_dir / "h100_torch_ops_raw.csv") if k.nvtx[-1] == "gemm"]
    s = kernel_summary(gemm)
    assert s["flops_tensor"] == 2 * 4096 ** 3
    assert s["flops_tensor_by_precision"]["bf16"] == 2 * 4096 ** 3
    assert s["flops_total"] == 2 * 4096 ** 3  # no CUDA-core work in a cuBLAS GEMM
    assert s["flops_per_s"]["tensor"] == pytest.approx(2 * 4096 ** 3 / 206_464e-9)


def test_sdpa_tensor_flops_match_the_model(data_dir):
    (sdpa,) = [k for k in parse_file(data_dir / "h100_torch_ops_raw.csv") if k.nvtx[-1] == "sdpa"]
    model = kernels.get("attention").cost_of(dtype="bf16", batch=1, seqlen=8192, heads=14, kv_heads=2, head_dim=64)
    assert model.tensor_flops == pytest.approx(1.20e11, rel=0.01)
    # cuDNN computes the diagonal tiles in full: a little over the causal count, never under.
    assert 1.0 <= kernel_summary(sdpa)["flops_tensor"] / model.tensor_flops < 1.03


def test_captured_counts_and_ceilings(data_dir):
    sdpa, gemm, silu = (kernel_summary(k) for k in parse_file(data_dir / "h100_torch_ops_raw.csv"))
    # FP32: FADD + FMUL + 2·FFMA; FP16: 4·HFMA (HADD/HMUL were not captured and are reported missing).
    assert sdpa["flops_fp32"] == 970_031_104 + 737_936_384 + 2 * 14_909_440
    assert silu["flops_fp16"] == 4 * 58_720_265
    assert M.CUDA_CORE_FLOPS["fp16"][0][0] in silu["missing_metrics"]
    assert silu["flops_tensor"] == 0 and silu["flops_total"] == 67_108_864 + 2 * 671_088_640 + 4 * 58_720_265
    # Special-function ops from warp instructions (x32) when the thread-level counter is absent.
    assert silu["sfu_ops"] == 32 * 6_291_456
    # Bytes and intensities; the DRAM ceiling is bytes/cycle x DRAM clock (3.35 TB/s on the H100 SXM).
    assert silu["dram_bytes"] == 268_494_080 + 247_781_888 and silu["dram_source"] == "dram__bytes"
    assert silu["ai_dram"] == pytest.approx(silu["flops_total"] / silu["dram_bytes"])
    assert silu["ai_l2"] == pytest.approx(silu["flops_total"] / 824_401_824)
    assert gemm["ceilings"]["dram_B_per_s"] == pytest.approx(1_280 * 2_618_691_878.49)
    assert gemm["ceilings"]["dram_B_per_s"] / 1e12 == pytest.approx(3.35, abs=0.01)
    assert gemm["sm_clock_hz"] == pytest.approx(1.362e9, rel=1e-3) and gemm["replay_passes"] == 5
    assert gemm["gpu"] == "NVIDIA H100 80GB HBM3"  # what the roofline stage matches its device files with


# FLOPs per predicated-on thread instruction (ncu's roofline sections: FMA 2; half ops packed, HFMA2 = 4).
FLOP_WEIGHTS = {"fadd": 1, "fmul": 1, "ffma": 2, "dadd": 1, "dmul": 1, "dfma": 2, "hadd": 2, "hmul": 2, "hfma": 4}
CLASS_OF = {"f": "fp32", "d": "fp64", "h": "fp16"}


def test_flop_weights_and_ceilings(make_raw):
    """One counter per kernel: each class gets the weight ncu's roofline sections give it."""
    rows = [{"name": f"k_{op}", "nvtx": ["ssmscope", "w"],
             "metrics": {f"sm__sass_thread_inst_executed_op_{op}_pred_on.sum": (1_001 + i, "inst")}}
            for i, op in enumerate(FLOP_WEIGHTS)]
    for k, (op, weight) in zip(parse_csv(make_raw(rows)), FLOP_WEIGHTS.items()):
        s = kernel_summary(k)
        assert s[f"flops_{CLASS_OF[op[0]]}"] == (1_001 + k.id) * weight, op
        assert s["flops_total"] == (1_001 + k.id) * weight
    peaks = {M.SM_HZ: (1.5e9, "hz"), M.L2_HZ: (1.75e9, "hz"), M.DRAM_HZ: (2.6e9, "hz"),
             **{peak: (3.0 + i, "x/cycle") for i, (peak, _, _) in enumerate(M.CEILINGS.values())}}
    (k,) = parse_csv(make_raw([{"name": "p", "nvtx": [], "metrics": peaks}]))
    ceilings = kernel_summary(k)["ceilings"]
    assert set(ceilings) == set(M.CEILINGS)
    for i, (name, (peak, clock, mult)) in enumerate(M.CEILINGS.items()):
        assert ceilings[name] == pytest.approx((3.0 + i) * peaks[clock][0] * mult), name
    assert ceilings["fp16_flop_per_s"] == pytest.approx(5.0 * 1.5e9 * 4)  # hfma peak x 4, as ncu's half roofline


def test_orin_l2_miss_proxy(make_raw):
    (k,) = parse_csv(make_raw([{"name": "_chunk_scan_fwd_kernel", "nvtx": ["ssmscope"], "metrics": {
        M.TIME: (40_961, "ns"), M.L2_MISS_SECTORS: (1_234_567, "sector"), M.L2_BYTES: (98_765_432, "byte"),
        M._sass("ffma"): (3_000_001, "inst")}}]))
    s = kernel_summary(k)
    assert s["dram_source"] == "l2_miss_proxy"
    assert s["dram_bytes"] == 1_234_567 * 32 and s["dram_bytes_read"] is None
    assert s["ai_dram"] == pytest.approx(6_000_002 / (1_234_567 * 32))
    assert "dram_B_per_s" not in s["ceilings"]
