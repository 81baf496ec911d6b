"""Operator breakdown of one prefill with torch.profiler, tied back to the kernel families and their floors.

On a GPU the breakdown is device time per kernel (what the paper should have used; it mixed CPU and GPU
time), with the host's wall time reported beside it. On the CPU the profiler has no kernels: aten operators'
self CPU time stands in, and no roofline floor is given.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from .breakdown import amdahl_gain, breakdown
from .models import ModelSpec


def profile_prefill(model, *, seqlen: int, batch: int = 1, trace: str | Path | None = None,
                    seed: int = 0) -> dict[str, Any]:
    """Profile one prefill forward (last-position logits only, as generation does) after a warm-up."""
    device = next(model.parameters()).device
    ids = torch.randint(0, model.config.vocab_size, (batch, seqlen),
                        generator=torch.Generator().manual_seed(seed)).to(device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with torch.no_grad():
        model(ids, logits_to_keep=1)  # warm-up outside the profile
        sync()
        activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
        with torch.profiler.profile(activities=activities) as prof:
            start = time.perf_counter()
            model(ids, logits_to_keep=1)
            sync()
            wall = time.perf_counter() - start
    if trace:
        prof.export_chrome_trace(str(trace))
    times = _kernel_times(prof, cuda)
    result = breakdown(times)
    result.update(seqlen=seqlen, batch=batch, wall_s=wall, device_s=sum(t for _, t in times),
                  time_source="device kernels" if cuda else "aten ops, self CPU time")
    result["top"] = sorted(times, key=lambda nt: -nt[1])[:15]
    return result


def _kernel_times(prof, cuda: bool) -> list[tuple[str, float]]:
    """(name, seconds) per kernel (GPU) or per aten op (CPU), summed over calls."""
    out = []
    for evt in prof.key_averages():
        if cuda:
            if evt.device_type == torch.autograd.DeviceType.CUDA and evt.self_device_time_total > 0:
                out.append((evt.key, evt.self_device_time_total * 1e-6))
        elif evt.key.startswith("aten::") and evt.self_cpu_time_total > 0:
            out.append((evt.key, evt.self_cpu_time_total * 1e-6))
    return out


def tie_back(spec: ModelSpec, result: dict[str, Any], device_id: str, dtype: str = "bf16") -> dict[str, Any]:
    """Per kernel family: measured share of the prefill, its roofline floor on ``device_id`` (summed over the
    model's calls at this length) and the Amdahl estimate of the prefill speed-up if it reached that floor."""
    from ..roofline import place

    floors: dict[str, float] = {}
    for call in spec.op_calls(result["seqlen"], batch=result["batch"], phase="prefill"):
        floor = place(call.op, call.params, device_id, dtype=dtype).roofline.floor_s * call.count
        floors[call.op] = floors.get(call.op, 0.0) + floor
    total = result["device_s"]
    gains = amdahl_gain(result["families"], floors, total)
    return {op: {"measured_s": t, "share": t / total if total else 0.0, "floor_s": floors.get(op),
                 "floor_gap": t / floors[op] if floors.get(op) else None, "amdahl_speedup": gains.get(op)}
            for op, t in result["families"].items()}
