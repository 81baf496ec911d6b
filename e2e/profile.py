"""Operator breakdown of one prefill with torch.profiler, tied back to the kernel families and their floors; and
the decode step's device time against its wall time (launch-bound or not).

On a GPU the breakdown is device time per kernel, each kernel attributed to its enclosing ``nn.Module`` through
the profiler's call stack (see :mod:`ssmscope.e2e.breakdown`). The host's view is reported beside it, measured
without the profiler: the wall time of the same forward, and the gap (wall − device) that launches and Python
add. On the CPU the profiler has no kernels: aten operators' self CPU time stands in, and no floor is given.
"""
from __future__ import annotations

import re
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

from .breakdown import amdahl_gain, breakdown, kernel_paths
from .build import Built
from .models import ModelSpec

_MODULE = re.compile(r"^nn\.Module: (\w+?)(_\d+)?$")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(work: Callable[[], Any], device: torch.device, reps: int = 3) -> float:
    """Median wall seconds of ``work`` over ``reps`` runs, synchronised (after one warm-up run by the caller)."""
    times = []
    for _ in range(reps):
        _sync(device)
        start = time.perf_counter()
        work()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def profile_prefill(built: Built, *, seqlen: int, batch: int = 1, trace: str | Path | None = None,
                    seed: int = 0, reps: int = 3) -> dict[str, Any]:
    """Profile one prefill forward (last-position logits, as generation does) after a warm-up."""
    ids = built.prompt(seqlen, batch, seed)
    device = built.device
    built.forward(ids)  # warm-up outside the profile: autotuning, allocator growth
    wall = timed(lambda: built.forward(ids), device, reps)
    prof = _profile(lambda: built.forward(ids), device)
    if trace:
        prof.export_chrome_trace(str(trace))
    records = kernel_records(prof, device.type == "cuda")
    result = breakdown(records)
    device_s = sum(r[1] for r in records)
    expected = [c.op for c in built.spec.op_calls(seqlen, batch=batch, phase="prefill")]
    result.update(seqlen=seqlen, batch=batch, backend=built.backend, attn=built.attn, wall_s=wall, device_s=device_s,
                  host_gap_s=max(wall - device_s, 0.0) if device.type == "cuda" else None,
                  time_source="device kernels" if device.type == "cuda" else "aten ops, self CPU time",
                  kernel_paths=kernel_paths(expected, result["kernels"]))
    result["top"] = sorted(result.pop("kernels").items(), key=lambda kv: -kv[1])[:15]
    return result


def _profile(work: Callable[[], Any], device: torch.device):
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities, with_stack=True) as prof:
        work()
        _sync(device)
    return prof


def kernel_records(prof, cuda: bool) -> list[tuple[str, float, str | None]]:
    """(kernel name, seconds, enclosing nn.Module class) per kernel launch (GPU) or per aten op (CPU: self time)."""
    out = []
    for evt in prof.events():
        if evt.device_type != torch.autograd.DeviceType.CPU:
            continue
        if cuda:
            if evt.kernels:
                module = _module_of(evt)
                out += [(k.name, k.duration * 1e-6, module) for k in evt.kernels]
        elif evt.name.startswith("aten::") and evt.self_cpu_time_total > 0:
            out.append((evt.name, evt.self_cpu_time_total * 1e-6, _module_of(evt)))
    return out


def _module_of(evt) -> str | None:
    """The innermost ``nn.Module`` class on the event's call stack (profiled with_stack)."""
    parent = evt.cpu_parent
    while parent is not None:
        match = _MODULE.match(parent.name)
        if match:
            return match.group(1)
        parent = parent.cpu_parent
    return None


def profile_decode(built: Built, *, seqlen: int, gen_len: int = 32, batch: int = 1, seed: int = 0) -> dict[str, Any]:
    """Per decode step: wall time, device (kernel) time and kernel launches, from two profiled generations
    (1 and ``gen_len`` new tokens) whose difference is ``gen_len − 1`` decode steps. Device time well below
    wall time means the step is launch/host-bound: the GPU waits for the CPU."""
    if gen_len < 2:
        raise ValueError("gen_len must be >= 2")
    ids = built.prompt(seqlen, batch, seed)
    device = built.device
    built.generate(ids, gen_len)  # warm-up (and, for mamba_ssm, the CUDA-graph capture at this length)
    steps = gen_len - 1
    wall = (timed(lambda: built.generate(ids, gen_len), device, 1)
            - timed(lambda: built.generate(ids, 1), device, 1)) / steps
    row: dict[str, Any] = {"seqlen": seqlen, "gen_len": gen_len, "batch": batch, "decode_wall_per_step_s": wall}
    unmeasured = {**row, "decode_device_per_step_s": None, "decode_kernels_per_step": None, "device_busy": None}
    if device.type != "cuda":
        return unmeasured
    if built.backend == "mamba_ssm":  # decode replays a CUDA graph: the profiler does not list its kernels
        return {**unmeasured,
                "decode_profile_note": "decode is a CUDA-graph replay; its kernels are invisible to the profiler"}
    one = kernel_records(_profile(lambda: built.generate(ids, 1), device), True)
    many = kernel_records(_profile(lambda: built.generate(ids, gen_len), device), True)
    dev = (sum(r[1] for r in many) - sum(r[1] for r in one)) / steps
    if dev <= 0 or wall <= 0 or dev > 1.05 * wall:  # differences of noisy runs that say nothing
        return {**unmeasured,
                "decode_profile_note": f"unresolved: device {dev * 1e3:.3f} ms, wall {wall * 1e3:.3f} ms per step"}
    row.update(decode_device_per_step_s=dev, decode_kernels_per_step=(len(many) - len(one)) / steps,
               device_busy=dev / wall)
    return row


def tie_back(spec: ModelSpec, result: dict[str, Any], device_id: str, dtype: str = "bf16") -> dict[str, Any]:
    """Per kernel family: measured share of the prefill's device time, its roofline floor on ``device_id``
    (summed over the model's calls at this length) and the Amdahl estimate of the prefill speed-up if it reached
    that floor. Floors come from ``ssmscope.roofline.place``; without that stage the floors are left out."""
    floors = roofline_floors(spec, result["seqlen"], result["batch"], device_id, dtype)
    total = result["device_s"]
    gains = amdahl_gain(result["families"], floors, total)
    return {op: {"measured_s": t, "share": t / total if total else 0.0, "floor_s": floors.get(op),
                 "floor_gap": t / floors[op] if floors.get(op) else None, "amdahl_speedup": gains.get(op)}
            for op, t in result["families"].items()}


def roofline_floors(spec: ModelSpec, seqlen: int, batch: int, device_id: str, dtype: str) -> dict[str, float]:
    """{family: floor seconds × calls per forward} from the roofline stage; {} when it is not importable."""
    try:
        from ..roofline import place
    except ImportError:
        return {}
    floors: dict[str, float] = {}
    for call in spec.op_calls(seqlen, batch=batch, phase="prefill"):
        floor = place(call.op, dict(call.params), device_id, dtype=dtype).roofline.floor_s * call.count
        floors[call.op] = floors.get(call.op, 0.0) + floor
    return floors
