"""Timer fidelity: our device time against Nsight Compute's ``gpu__time_duration`` for the same points.

A run directory that was timed (``ssmscope bench … --out RUN``) and then profiled (``ssmscope ncu … --out RUN``)
holds both ``rows.jsonl`` and ``ncu_points.jsonl``, joined on (op, impl, config_id). ncu serializes kernels and
times each alone (``--cache-control all``: caches flushed before each pass), summed over the point's kernels;
our cold-cache graph replay includes the gaps between an op's kernels. So ``ratio = device_ms / ncu_ms`` should be
close to 1 for single-kernel points of tens of microseconds and above, and above 1 by the inter-kernel gaps for
multi-kernel ops; a ratio well below 1 means our timing misses work (or the clocks differed: both are recorded).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .rows import TIMED_STATUSES, load_rows, read_jsonl

NCU_POINTS = "ncu_points.jsonl"


def compare_with_ncu(run_dir: str | Path) -> list[dict[str, Any]]:
    """One record per timed point that ncu also measured: device_ms, ncu_ms, ratio, kernels and clocks."""
    run_dir = Path(run_dir)
    points = read_jsonl(run_dir / NCU_POINTS)
    if not points:
        raise FileNotFoundError(f"{run_dir} has no {NCU_POINTS}: run `ssmscope ncu … --out {run_dir}` first")
    ncu = {(p.get("op"), p.get("impl"), p.get("config_id")): p for p in points if p.get("gpu_time_ns")}
    out = []
    for row in load_rows(run_dir):
        if row.get("mode", "time") != "time" or row.get("status") not in TIMED_STATUSES or not row.get("device_ms"):
            continue
        p = ncu.get((row["op"], row["impl"], row["config_id"]))
        if p is None:
            continue
        ncu_ms = p["gpu_time_ns"] * 1e-6
        out.append({"op": row["op"], "impl": row["impl"], "config_id": row["config_id"], "cache": row.get("cache"),
                    "timer": row.get("timer"), "device_ms": row["device_ms"], "ncu_ms": ncu_ms,
                    "ratio": row["device_ms"] / ncu_ms, "n_kernels": p.get("n_kernels"),
                    "sm_clock_mhz": row.get("sm_clock_mhz_after"),
                    "ncu_sm_clock_mhz": p["sm_clock_hz"] / 1e6 if p.get("sm_clock_hz") else None})
    return out
