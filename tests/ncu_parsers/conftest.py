"""Helpers for the ncu_parsers tests: the captured H100 fixtures, and a writer of synthetic ``--page raw``
CSV laid out exactly like ncu's (==PROF== lines, header, units row, quoted cells, thousands separators)."""
from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "ncu"
NVTX_COL = "thread Domain:Push/Pop_Range:PL_Type:PL_Value:CLR_Type:Color:Msg_Type:Msg"
START_END_COL = "Id:Domain:Start/Stop_Range:PL_Type:PL_Value:CLR_Type:Color:Msg_Type:Msg"
IDENTITY = ["ID", "Process ID", "Process Name", "Host Name", NVTX_COL, START_END_COL, "Kernel Name", "Context",
            "Stream", "Block Size", "Grid Size", "Device", "CC"]


def ncu_number(x: float | int) -> str:
    """As ncu prints it: thousands separators, two decimals for non-integers."""
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,.2f}"


def nvtx_cell(stack: list[str], tid: int = 4242) -> str:
    return f"{tid}  " + "  ".join(f'"<default domain>:{name}:none:none:none:none:none:none"' for name in stack) + " "


def make_raw_csv(kernels: list[dict], app_lines: tuple[str, ...] = ()) -> str:
    """kernels: {"name", "nvtx": [...], "block", "grid", "metrics": {metric: (value, unit)}} with value a
    number (printed the ncu way) or a string printed as is; metrics a kernel lacks print as "n/a"."""
    columns: dict[str, str] = {}
    for k in kernels:
        for metric, (_, unit) in k["metrics"].items():
            columns.setdefault(metric, unit)
    out = io.StringIO()
    out.write("==PROF== Connected to process 4242 (/usr/bin/python3.12)\n")
    for line in app_lines:
        out.write(line + "\n")
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(IDENTITY + list(columns))
    writer.writerow([""] * len(IDENTITY) + list(columns.values()))
    for i, k in enumerate(kernels):
        ident = [str(i), "4242", "python3.12", "127.0.0.1", nvtx_cell(k["nvtx"]), "", k["name"], "1", "7",
                 k.get("block", "(128, 1, 1)"), k.get("grid", "(264, 1, 1)"), "0", "9.0"]
        values = []
        for metric in columns:
            value = k["metrics"].get(metric, ("n/a", ""))[0]
            values.append(value if isinstance(value, str) else ncu_number(value))
        writer.writerow(ident + values)
    out.write("==PROF== Disconnected from process 4242\n")
    return out.getvalue()


SSD_ROLES = ("chunk_cumsum", "chunk_state", "state_passing", "bmm_chunk", "chunk_scan")
SSD_STACK = ["ssmscope", "ssd", "official", "B1-L4097-H24-P64-N128-bf16"]
PEAKS = {  # H100 SXM per-cycle peaks as ncu reports them
    "sm__sass_thread_inst_executed_op_ffma_pred_on.sum.peak_sustained": (16_896, "inst/cycle"),
    "sm__ops_path_tensor_src_bf16_dst_fp32.sum.peak_sustained": (270_336, ""),
    "dram__bytes.sum.peak_sustained": (1_280, "byte/cycle"),
    "lts__t_bytes.sum.peak_sustained": (5_120, "byte/cycle"),
}


def kernel_metrics(rng: random.Random, tensor: bool) -> dict[str, tuple[float, str]]:
    """Plausible counters of one kernel (odd values, thousands separators once printed)."""
    m = {
        "gpu__time_duration.sum": (rng.randrange(3_001, 400_001), "ns"),
        "sm__cycles_elapsed.avg.per_second": (rng.uniform(1.6e9, 1.98e9), "hz"),
        "dram__cycles_elapsed.avg.per_second": (2_618_668_941.98, "hz"),
        "lts__cycles_elapsed.avg.per_second": (rng.uniform(1.6e9, 1.98e9), "hz"),
        "sm__sass_thread_inst_executed_op_fadd_pred_on.sum": (rng.randrange(1_001, 9_000_001), "inst"),
        "sm__sass_thread_inst_executed_op_fmul_pred_on.sum": (rng.randrange(1_001, 9_000_001), "inst"),
        "sm__sass_thread_inst_executed_op_ffma_pred_on.sum": (rng.randrange(1_001, 9_000_001), "inst"),
        "sm__ops_path_tensor_src_bf16_dst_fp32.sum": (rng.randrange(1, 10**11) if tensor else 0, ""),
        "sm__ops_path_tensor_op_hgmma_src_bf16_dst_fp32.sum": (0, ""),
        "sm__thread_inst_executed_pipe_xu_pred_on.sum": (rng.randrange(1_001, 5_000_001), "inst"),
        "dram__bytes_read.sum": (rng.randrange(10**5, 10**9), "byte"),
        "dram__bytes_write.sum": (rng.randrange(10**5, 10**9), "byte"),
        "lts__t_bytes.sum": (rng.randrange(10**6, 10**10), "byte"),
        "l1tex__t_bytes.sum": (rng.randrange(10**6, 10**10), "byte"),
        "sm__sass_data_bytes_mem_shared.sum": (rng.randrange(10**6, 10**10), "byte"),
        "profiler__replayer_passes": (rng.randrange(5, 9), "pass"),
    }
    return {**m, **PEAKS}


@pytest.fixture
def make_raw():
    return make_raw_csv


@pytest.fixture
def ssd_capture() -> tuple[str, list[dict]]:
    """The official SSD call's five Triton kernels under one 4-level stack, one kernel of another point
    and one launched outside any ssmscope range (a warm-up)."""
    rng = random.Random(4099)
    kernels = [{"name": f"_{role}_fwd_kernel", "nvtx": SSD_STACK, "grid": f"({rng.randrange(1, 999)}, 24, 1)",
                "metrics": kernel_metrics(rng, tensor=role in ("chunk_state", "bmm_chunk", "chunk_scan"))}
               for role in SSD_ROLES]
    kernels.insert(2, {"name": "_ssd_fused_kernel", "nvtx": ["ssmscope", "ssd", "triton", SSD_STACK[3]],
                       "metrics": kernel_metrics(rng, tensor=True)})
    kernels.insert(0, {"name": "_chunk_scan_fwd_kernel", "nvtx": ["warmup"], "metrics": kernel_metrics(rng, True)})
    return make_raw_csv(kernels, app_lines=("bench: ssd, 2 points",)), kernels


@pytest.fixture
def data_dir() -> Path:
    return DATA
