"""A Markdown summary of an ncu run's attributed points (RUN/ncu_points.jsonl): per (op, impl, config) the
kernels, device time, DRAM bandwidth and its share of the device's peak, excess DRAM traffic over the cost
model's minimum, achieved FLOP/s by class, special-function rate and arithmetic intensity at each level.

    usage: python benchmarks/summarize_ncu.py RUN_DIR   (writes RUN_DIR/SUMMARY.md)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ssmscope.microbench.rows import read_jsonl

COLUMNS = ["op", "impl", "config", "kernels", "µs", "DRAM TB/s", "of peak", "DRAM / min bytes", "FP32 TFLOP/s",
           "tensor TFLOP/s", "SFU G/s", "AI DRAM", "AI L2", "AI L1"]


def _cells(p: dict) -> list[str]:
    sec = p["gpu_time_ns"] * 1e-9
    peak_bw = (p.get("ceilings") or {}).get("dram_B_per_s")
    bw = p["dram_bytes"] / sec if sec else 0.0
    names = ", ".join(sorted({k["short_name"] for k in p.get("kernels", [])})) if p["n_kernels"] > 1 else ""

    def num(v: float | None, fmt: str) -> str:
        return "–" if v is None else format(v, fmt)

    return [p["op"], p["impl"], p["config_id"] + (f" ({names})" if names else ""), str(p["n_kernels"]),
            f"{p['gpu_time_ns'] / 1e3:.1f}", f"{bw / 1e12:.2f}", num(bw / peak_bw if peak_bw else None, ".0%"),
            num(p.get("dram_excess_ratio"), ".2f"), f"{(p['flops_fp32'] + p['flops_fp16']) / sec / 1e12:.2f}",
            f"{p['flops_tensor'] / sec / 1e12:.1f}", f"{p['sfu_ops'] / sec / 1e9:.0f}",
            num(p.get("ai_dram"), ".1f"), num(p.get("ai_l2"), ".1f"), num(p.get("ai_l1"), ".2f")]


def summarize(run: Path) -> str:
    points = read_jsonl(run / "ncu_points.jsonl")  # or its .gz copy
    meta = json.loads((run / "ncu_meta.json").read_text()) if (run / "ncu_meta.json").exists() else {}
    lines = [f"# ncu summary: {run.name}", "",
             f"{len(points)} points, {meta.get('n_kernels', '?')} kernels ({meta.get('n_unattributed', '?')} outside "
             f"our NVTX ranges), {meta.get('ncu_version', 'ncu ?')}, {meta.get('replay_passes', '?')} replay passes, "
             f"SM clock {meta.get('sm_clock_hz', {}).get('min', 0) / 1e6:.0f}–"
             f"{meta.get('sm_clock_hz', {}).get('max', 0) / 1e6:.0f} MHz (`--clock-control none`, "
             "`--cache-control all`). FLOP/s: CUDA-core FP32+FP16 (FMA = 2) and tensor; SFU: MUFU instructions "
             "per second; AI = FLOPs per byte at that level. DRAM bytes of outputs that fit in L2 are "
             "under-counted (see README, pitfalls).", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(p)) + " |" for p in points]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    run_dir = Path(sys.argv[1])
    (run_dir / "SUMMARY.md").write_text(summarize(run_dir))
    print(run_dir / "SUMMARY.md")
