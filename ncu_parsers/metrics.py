"""The metric set for hierarchical rooflines, and what each kernel did, derived from it.

Why these metrics (README.md has the long form): one time, the clocks that turn per-cycle peaks into
per-second ceilings, the instruction counts of ncu's own roofline sections (so FLOPs match what Nsight
Compute's roofline charts show), the tensor-path op counters per precision, the special-function pipe, and
bytes at each level of the hierarchy. Everything else (``--set full``) is opt-in: it multiplies the number
of replay passes.

FLOP counting follows ncu's SpeedOfLight roofline sections (``SpeedOfLight_Hierarchical*RooflineChart``):

* FP32 and FP64: ADD and MUL count 1, FMA counts 2 (per predicated-on *thread* instruction).
* FP16: every half instruction is counted as packed ``half2``: HADD2 and HMUL2 count 2, HFMA2 counts 4
  (ncu's derived metrics ``..._hadd_pred_on_x2``, ``..._hmul_pred_on_x2``, ``..._hfma_pred_on_x4``; the half
  peak is ``hfma.peak_sustained x 4``). The counters include bf16x2 and also the ``HFMA2.MMA`` moves that
  ptxas uses to load constants, so an fp32-only kernel can show a few "FP16 FLOPs" per thread.
* Tensor cores: ``sm__ops_path_tensor_src_*`` already count operations with an FMA as 2 (a 4096³ bf16 GEMM
  reads exactly 2·4096³), by source precision; the ``op_hgmma`` variants are the Hopper wgmma share.
* Special-function unit: thread instructions on the XU pipe (MUFU ex2/rcp/rsq/…, some conversions); they
  are ops, not FLOPs, and are kept apart from ``flops_total``.
"""
from __future__ import annotations

from typing import Any, Callable

from .parse import KernelRecord

TIME = "gpu__time_duration.sum"
SM_HZ = "sm__cycles_elapsed.avg.per_second"
DRAM_HZ = "dram__cycles_elapsed.avg.per_second"
L2_HZ = "lts__cycles_elapsed.avg.per_second"
PASSES = "profiler__replayer_passes"  # ncu adds it to every raw page by itself; not requested
GPU_NAME = "device__attribute_display_name"  # likewise ("NVIDIA H100 80GB HBM3")


def _sass(op: str) -> str:
    return f"sm__sass_thread_inst_executed_op_{op}_pred_on.sum"


# class -> ((metric, FLOPs per thread instruction), ...)
CUDA_CORE_FLOPS: dict[str, tuple[tuple[str, int], ...]] = {
    "fp32": ((_sass("fadd"), 1), (_sass("fmul"), 1), (_sass("ffma"), 2)),
    "fp64": ((_sass("dadd"), 1), (_sass("dmul"), 1), (_sass("dfma"), 2)),
    "fp16": ((_sass("hadd"), 2), (_sass("hmul"), 2), (_sass("hfma"), 4)),
}
# The FMA counter whose .peak_sustained (thread instructions per cycle) x FLOPs per FMA is the class peak.
CUDA_CORE_PEAK: dict[str, tuple[str, int]] = {"fp32": (_sass("ffma"), 2), "fp64": (_sass("dfma"), 2),
                                              "fp16": (_sass("hfma"), 4)}
# Tensor-path ops by source precision (disjoint; they sum to all tensor work of these types).
TENSOR_OPS: dict[str, str] = {
    "bf16": "sm__ops_path_tensor_src_bf16_dst_fp32.sum",
    "fp16": "sm__ops_path_tensor_src_fp16.sum",  # fp16 inputs, fp16 or fp32 accumulate
    "tf32": "sm__ops_path_tensor_src_tf32_dst_fp32.sum",
    "fp8": "sm__ops_path_tensor_src_fp8.sum",  # e4m3/e5m2 (sm_89, sm_90)
    "fp64": "sm__ops_path_tensor_src_fp64.sum",  # DMMA
}
# The part of the above issued as Hopper warpgroup MMA (wgmma / HGMMA); the rest is mma.sync (HMMA).
WGMMA_OPS: dict[str, str] = {
    "bf16": "sm__ops_path_tensor_op_hgmma_src_bf16_dst_fp32.sum",
    "fp16": "sm__ops_path_tensor_op_hgmma_src_fp16.sum",
    "tf32": "sm__ops_path_tensor_op_hgmma_src_tf32_dst_fp32.sum",
}
XU_THREAD = "sm__thread_inst_executed_pipe_xu_pred_on.sum"
XU_WARP = "sm__inst_executed_pipe_xu.sum"  # warp instructions: older captures hold it; its peak is the SFU ceiling

DRAM_READ = "dram__bytes_read.sum"
DRAM_WRITE = "dram__bytes_write.sum"
DRAM_TOTAL = "dram__bytes.sum"  # not requested (read + write is the same counter), accepted when present
L2_BYTES = "lts__t_bytes.sum"
L1_BYTES = "l1tex__t_bytes.sum"
# Bytes moved by SASS shared-memory instructions (LDS/STS/LDSM, atomics, the shared side of LDGSTS): a
# byte count, unlike l1tex__data_pipe_lsu_wavefronts_mem_shared (wavefronts include bank-conflict replays)
# or smsp__sass_inst_executed_op_shared_ld/st (warp instructions of unknown width). Not included: wgmma
# operands read from shared memory through descriptors, and TMA bulk copies into shared memory.
SHARED_BYTES = "sm__sass_data_bytes_mem_shared.sum"
# Jetson Orin (sm_87) has no dram__* counters: L2 sectors that missed go to DRAM, 32 B each.
L2_MISS_SECTORS = "lts__t_sectors_lookup_miss.sum"
SECTOR_BYTES = 32

# Ceiling names as the roofline stage's device files spell them (unit in the name), per tensor precision.
_TENSOR_CEILING = {"bf16": "tensor_bf16_f32acc", "fp16": "tensor_fp16", "tf32": "tensor_tf32", "fp8": "tensor_fp8",
                   "fp64": "tensor_fp64"}
# ceiling name -> (per-cycle peak metric, clock metric, multiplier): ceiling per second = peak x clock x mult
CEILINGS: dict[str, tuple[str, str, float]] = {
    **{f"{cls}_flop_per_s": (f"{m}.peak_sustained", SM_HZ, mult) for cls, (m, mult) in CUDA_CORE_PEAK.items()},
    **{f"{_TENSOR_CEILING[p]}_flop_per_s": (f"{m}.peak_sustained", SM_HZ, 1.0) for p, m in TENSOR_OPS.items()},
    "sfu_op_per_s": (f"{XU_WARP}.peak_sustained", SM_HZ, 32.0),  # warp instructions -> thread ops
    "dram_B_per_s": ("dram__bytes.sum.peak_sustained", DRAM_HZ, 1.0),
    "l2_B_per_s": (f"{L2_BYTES}.peak_sustained", L2_HZ, 1.0),
    "l1_B_per_s": (f"{L1_BYTES}.peak_sustained", SM_HZ, 1.0),  # L1/TEX runs on the SM clock
    "shared_B_per_s": (f"{SHARED_BYTES}.peak_sustained", SM_HZ, 1.0),
}


def metric_set(cc: tuple[int, int] | None = None) -> list[str]:
    """The ``--metrics`` list for a device of compute capability ``cc`` (None: the H100 set, sm_90).

    sm_90 gets everything; wgmma counters exist only on Hopper, fp8 tensor paths from sm_89; Jetson Orin
    (sm_87) has no dram__* counters and gets the L2-miss proxy instead.
    """
    cc = cc or (9, 0)
    skip = {"fp8"} if cc < (8, 9) else set()
    skip |= {"fp64"} if cc not in ((8, 0), (9, 0)) else set()  # DMMA: GA100 and GH100 only
    tensor = [m for p, m in TENSOR_OPS.items() if p not in skip]
    wgmma = list(WGMMA_OPS.values()) if cc[0] == 9 else []
    has_dram = cc not in ((8, 7), (7, 2))  # the Tegra parts: Orin, Xavier
    dram = [DRAM_READ, DRAM_WRITE, DRAM_HZ] if has_dram else [L2_MISS_SECTORS]
    counters = [TIME, SM_HZ, L2_HZ,
                *(m for ms in CUDA_CORE_FLOPS.values() for m, _ in ms), *tensor, *wgmma, XU_THREAD,
                *dram, L2_BYTES, L1_BYTES, SHARED_BYTES]
    peaks = [peak for name, (peak, clock, _) in CEILINGS.items()
             if (clock != DRAM_HZ or has_dram) and (not name.startswith("tensor_") or
                                                    peak.removesuffix(".peak_sustained") in tensor)]
    return counters + peaks


# --------------------------------------------------------------------------------------------------
# Per kernel
# --------------------------------------------------------------------------------------------------
def _weighted(k: KernelRecord, terms: tuple[tuple[str, int], ...]) -> float | None:
    """sum(count x weight) over the metrics present; None when none is present."""
    present = [(k.value(m), w) for m, w in terms if k.value(m) is not None]
    return float(sum(v * w for v, w in present)) if present else None


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _dram(k: KernelRecord) -> tuple[float | None, float | None, float | None, str | None]:
    """(total, read, write, source) of DRAM bytes: the dram__ counters, else the L2-miss proxy."""
    read, write, total = k.value(DRAM_READ), k.value(DRAM_WRITE), k.value(DRAM_TOTAL)
    if total is None and read is not None and write is not None:
        total = read + write
    if total is not None:
        return total, read, write, "dram__bytes"
    misses = k.value(L2_MISS_SECTORS)
    if misses is not None:
        return misses * SECTOR_BYTES, None, None, "l2_miss_proxy"
    return None, None, None, None


def _cc(text: str) -> tuple[int, int] | None:
    major, _, minor = text.partition(".")
    return (int(major), int(minor)) if major.isdigit() and minor.isdigit() else None


def ceilings(k: KernelRecord) -> dict[str, float]:
    """The device's own ceilings at the clocks this kernel ran at, per second (FLOP/s, op/s, byte/s)."""
    out = {}
    for name, (peak, clock, mult) in CEILINGS.items():
        p, hz = k.value(peak), k.value(clock)
        if p is not None and hz:
            out[name] = p * hz * mult
    return out


def kernel_summary(k: KernelRecord, short_name: Callable[[str], str] | None = None) -> dict[str, Any]:
    """Everything the roofline stage needs about one kernel, in FLOPs, bytes, ns, Hz (None = not measured)."""
    flops = {cls: _weighted(k, terms) for cls, terms in CUDA_CORE_FLOPS.items()}
    tensor = {p: k.value(m) for p, m in TENSOR_OPS.items() if k.value(m) is not None}
    wgmma = sum(k.value(m) or 0.0 for m in WGMMA_OPS.values())
    has_wgmma = any(k.value(m) is not None for m in WGMMA_OPS.values())
    flops_tensor = float(sum(tensor.values())) if tensor else None
    xu_thread, xu_warp = k.value(XU_THREAD), k.value(XU_WARP)
    sfu = xu_thread if xu_thread is not None else (xu_warp * 32 if xu_warp is not None else None)
    dram, dram_read, dram_write, dram_source = _dram(k)
    parts = [v for v in (*flops.values(), flops_tensor) if v is not None]
    total = float(sum(parts)) if parts else None
    time_ns = k.value(TIME)
    seconds = time_ns * 1e-9 if time_ns else None
    gpu = k.metrics.get(GPU_NAME, (None, ""))[0]
    summary = {
        "id": k.id,
        "name": k.name,
        "gpu": gpu if isinstance(gpu, str) else None,
        "short_name": short_name(k.name) if short_name else k.name,
        "block": list(k.block) if k.block else None,
        "grid": list(k.grid) if k.grid else None,
        "nvtx": list(k.nvtx),
        "gpu_time_ns": time_ns,
        "sm_clock_hz": k.value(SM_HZ),
        "replay_passes": k.value(PASSES),
        "flops_fp32": flops["fp32"], "flops_fp16": flops["fp16"], "flops_fp64": flops["fp64"],
        "flops_tensor": flops_tensor,
        "flops_tensor_by_precision": tensor,
        "tensor_wgmma_fraction": _div(wgmma, flops_tensor) if has_wgmma else None,
        "flops_total": total,
        "sfu_ops": sfu,
        "dram_bytes": dram, "dram_bytes_read": dram_read, "dram_bytes_write": dram_write,
        "dram_source": dram_source,
        "l2_bytes": k.value(L2_BYTES), "l1_bytes": k.value(L1_BYTES), "shared_bytes": k.value(SHARED_BYTES),
        "ceilings": ceilings(k),
        # what the set for this kernel's GPU asks for and the capture lacks (older or custom --metrics)
        "missing_metrics": [m for m in metric_set(_cc(k.cc)) if k.value(m) is None],
    }
    summary.update(rates(summary, seconds))
    return summary


def rates(s: dict[str, Any], seconds: float | None) -> dict[str, Any]:
    """Arithmetic intensities and achieved rates of a kernel or operator summary."""
    flops = s["flops_total"]
    per_s = lambda v: v / seconds if v is not None and seconds else None  # noqa: E731
    return {
        "ai_dram": _div(flops, s["dram_bytes"]), "ai_l2": _div(flops, s["l2_bytes"]),
        "ai_l1": _div(flops, s["l1_bytes"]),
        "flops_per_s": {"fp32": per_s(s["flops_fp32"]), "fp16": per_s(s["flops_fp16"]),
                        "fp64": per_s(s["flops_fp64"]), "tensor": per_s(s["flops_tensor"]),
                        **{f"tensor_{p}": per_s(v) for p, v in s["flops_tensor_by_precision"].items()},
                        "sfu": per_s(s["sfu_ops"]), "total": per_s(flops)},
        "bytes_per_s": {level: per_s(s[f"{level}_bytes"]) for level in ("dram", "l2", "l1", "shared")},
    }
