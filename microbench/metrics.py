"""Rates derived from a point's time and the op's analytic cost, and fractions of a device's peaks.

Peaks are an optional mapping keyed as the roofline device files key them (SI units):
``dram_bandwidth_B_per_s``, ``fp32_flop_per_s``, ``tensor_bf16_f32acc_flop_per_s``,
``tensor_fp16_f32acc_flop_per_s``, ``tensor_tf32_flop_per_s``, ``sfu_op_per_s``. The microbench stage does
not need the roofline stage; :func:`peaks_from_device` reads one of its device files when it is installed.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..kernels.op import Cost

PEAK_KEYS = ("dram_bandwidth_B_per_s", "fp32_flop_per_s", "fp16_flop_per_s", "tensor_bf16_f32acc_flop_per_s",
             "tensor_fp16_f32acc_flop_per_s", "tensor_tf32_flop_per_s", "sfu_op_per_s")
TENSOR_PEAK = {"bf16": "tensor_bf16_f32acc_flop_per_s", "fp16": "tensor_fp16_f32acc_flop_per_s",
               "fp32": "tensor_tf32_flop_per_s"}


def cost_fields(cost: Cost, impl: str) -> dict[str, Any]:
    """The row's cost-model columns: FLOPs, tensor FLOPs, minimum DRAM bytes, the impl's own bytes (when
    the family models them), transcendentals."""
    return {"flops": cost.flops, "tensor_flops": cost.tensor_flops, "min_bytes": cost.min_bytes,
            "impl_bytes": cost.impl_bytes.get(impl), "transcendentals": cost.transcendentals}


def flop_peak_key(cost: Cost, dtype: str) -> str:
    """Which peak a point's FLOP/s is compared with: the tensor-core peak of the dtype when the cost model
    has matrix-shaped FLOPs (SSD, attention), else the FP32 CUDA-core peak (the SSM kernels compute in fp32)."""
    if cost.tensor_flops > 0 and dtype in TENSOR_PEAK:
        return TENSOR_PEAK[dtype]
    return "fp32_flop_per_s"


def rates(cost: Cost, device_ms: float | None, dtype: str, peaks: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Achieved GB/s of minimum traffic, TFLOP/s, G exp/s and their fractions of ``peaks``."""
    out: dict[str, Any] = dict.fromkeys(("achieved_gbps", "achieved_tflops", "achieved_gexps", "frac_peak_dram",
                                         "frac_peak_flops", "frac_peak_sfu", "peak_flops_key"))
    if not device_ms or device_ms <= 0:
        return out
    seconds = device_ms * 1e-3
    bps, fps, eps = cost.min_bytes / seconds, cost.flops / seconds, cost.transcendentals / seconds
    out.update(achieved_gbps=bps / 1e9, achieved_tflops=fps / 1e12, achieved_gexps=eps / 1e9)
    if peaks:
        key = flop_peak_key(cost, dtype)
        out["peak_flops_key"] = key
        out["frac_peak_dram"] = _frac(bps, peaks.get("dram_bandwidth_B_per_s"))
        out["frac_peak_flops"] = _frac(fps, peaks.get(key))
        out["frac_peak_sfu"] = _frac(eps, peaks.get("sfu_op_per_s")) if cost.transcendentals else None
    return out


def _frac(achieved: float, peak: float | None) -> float | None:
    return achieved / peak if peak else None


def speedup(baseline_ms: float | None, ms: float | None) -> float | None:
    """baseline time / this time (> 1: faster than the baseline)."""
    if not baseline_ms or not ms:
        return None
    return baseline_ms / ms


def peaks_from_device(device_id: str) -> dict[str, float]:
    """Peaks of a roofline device file (``h100-sxm``, ``rtx4090``, …); needs ``ssmscope.roofline``."""
    try:
        from ..roofline.devices import get_device
    except ImportError as exc:
        raise RuntimeError(f"device specs come from ssmscope.roofline, which does not import here ({exc}); "
                           "pass peaks as --peak KEY=VALUE instead") from None
    dev = get_device(device_id)
    return {key: float(getattr(dev, key)) for key in PEAK_KEYS if getattr(dev, key, None)}


def parse_peaks(items: list[str] | tuple[str, ...]) -> dict[str, float]:
    """``["dram_bandwidth_B_per_s=3.35e12", …]`` -> mapping; unknown keys are an error naming the known ones."""
    peaks = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in PEAK_KEYS:
            raise ValueError(f"--peak {item!r}: expected KEY=VALUE with KEY one of {', '.join(PEAK_KEYS)}")
        try:
            peaks[key] = float(value)
        except ValueError:
            raise ValueError(f"--peak {item!r}: {value!r} is not a number") from None
    return peaks
