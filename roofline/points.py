"""Measured points (from a bench run directory, optionally with Nsight Compute counters) and their projection
onto other devices.

A bench run directory holds ``rows.jsonl`` (one flat row per timed config: op, impl, config_id, params, dtype,
status, device_ms, gpu, flops, min_bytes) and, when ``ssmscope ncu`` ran, ``ncu_points.jsonl`` (op, impl,
config_id, params, dtype, gpu_time_ns, flops_total, flops_tensor, sfu_ops, dram_bytes, l2_bytes, l1_bytes,
ai_dram, ai_l2, ai_l1, ceilings). A bench point's bytes are the cost model's minimum DRAM traffic; an ncu
kernel gives one point per memory level (the hierarchical roofline), with the FLOPs the counters saw.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..microbench.rows import numbered_jsonl, stored
from .core import BOUNDS, Roofline, op_cost, precision_of, roofline
from .devices import Device, DeviceError, get_device, match_device

log = logging.getLogger(__name__)

OK_STATUSES = frozenset({"ok", "pass", "passed"})
LEVELS = ("l1", "l2", "dram")  # innermost first


@dataclass(frozen=True)
class MeasuredPoint:
    """One timed kernel (or one memory level of one profiled kernel).

    bytes:  the traffic the intensity is taken against: the cost model's minimum DRAM bytes for bench rows,
            the counted bytes of ``level`` for ncu points.
    source: "bench" | "ncu".
    """

    op: str
    impl: str
    config_id: str
    params: Mapping[str, Any]
    dtype: str
    gpu: str
    device: str
    time_s: float
    flops: float
    bytes: float
    tensor_flops: float = 0.0
    transcendentals: float = 0.0
    level: str = "dram"
    source: str = "bench"
    label: str = ""

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes if self.bytes else float("inf")

    @property
    def achieved_flop_per_s(self) -> float:
        return self.flops / self.time_s

    @property
    def kernel_key(self) -> tuple[str, str, str]:
        """Identifies one kernel across its memory levels."""
        return (self.op, self.impl, self.config_id)

    def roofline_on(self, device: Device | str | None = None, precision: str | None = None) -> Roofline:
        return roofline(self.flops, self.bytes, self.transcendentals, get_device(device or self.device),
                        precision or precision_of(self.dtype), tensor_flops=self.tensor_flops)

    def as_dict(self) -> dict[str, Any]:
        return {"op": self.op, "impl": self.impl, "config_id": self.config_id, "params": dict(self.params),
                "dtype": self.dtype, "gpu": self.gpu, "device": self.device, "time_s": self.time_s,
                "flops": self.flops, "bytes": self.bytes, "tensor_flops": self.tensor_flops,
                "transcendentals": self.transcendentals, "level": self.level, "source": self.source,
                "label": self.label, "intensity": self.intensity, "achieved_flop_per_s": self.achieved_flop_per_s}


@dataclass
class Run:
    """A bench run directory's points; ``notes`` says what was skipped and why."""

    path: Path
    points: list[MeasuredPoint] = field(default_factory=list)
    ncu_points: list[MeasuredPoint] = field(default_factory=list)
    ncu_ceilings: dict[str, dict[str, float]] = field(default_factory=dict)  # device id -> {name: value}
    notes: list[str] = field(default_factory=list)

    @property
    def devices(self) -> list[str]:
        return sorted({p.device for p in self.points + self.ncu_points})


class _DeviceResolver:
    """Maps each row's ``gpu`` string to a device file once (or uses the device the caller named)."""

    def __init__(self, device: Device | str | None):
        self.fixed = get_device(device) if device is not None else None
        self.cache: dict[str, Device] = {}

    def __call__(self, gpu: str | None) -> Device:
        if self.fixed is not None:
            return self.fixed
        if not gpu:
            raise DeviceError("a row has no `gpu` field; name the device the run was measured on")
        if gpu not in self.cache:
            self.cache[gpu] = match_device(gpu)
        return self.cache[gpu]


def _shape_terms(op: str, params: Mapping[str, Any], dtype: str) -> tuple[float, float, str] | str:
    """(tensor_flops, transcendentals, label) from the cost model, or the reason it is unavailable."""
    try:
        _, shape, cost = op_cost(op, params, dtype)
    except Exception as exc:  # an op family that does not import yet, or params from a newer schema
        return f"{type(exc).__name__}: {exc}"
    return cost.tensor_flops, cost.transcendentals, shape.label()


def load_run(path: str | Path, device: Device | str | None = None) -> Run:
    """Points of a bench run directory (``device`` overrides the GPU named in the rows)."""
    path = Path(path)
    rows_path = path / "rows.jsonl"
    if stored(rows_path) is None:
        raise FileNotFoundError(f"{path} has no rows.jsonl (is it a `ssmscope bench` run directory?)")
    resolve = _DeviceResolver(device)
    run = Run(path=path)
    skipped: dict[str, int] = {}
    for lineno, row in numbered_jsonl(rows_path):
        status = str(row.get("status", "")).lower()
        ms = row.get("device_ms")
        if status not in OK_STATUSES or not ms or ms <= 0:
            reason = f"status {status or '?'}" if status not in OK_STATUSES else "no device_ms"
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        run.points.append(_bench_point(row, resolve, run.notes, f"{rows_path}:{lineno}"))
    for reason, n in sorted(skipped.items()):
        run.notes.append(f"skipped {n} row(s) of rows.jsonl: {reason}")
    ncu_path = path / "ncu_points.jsonl"
    for lineno, row in numbered_jsonl(ncu_path):
        pts, ceilings = _ncu_points(row, resolve, run.notes, f"{ncu_path}:{lineno}")
        run.ncu_points.extend(pts)
        if pts and ceilings:
            run.ncu_ceilings.setdefault(pts[0].device, {}).update(ceilings)
    for note in run.notes:
        log.info("%s: %s", path, note)
    return run


def _bench_point(row: Mapping[str, Any], resolve: _DeviceResolver, notes: list[str], where: str) -> MeasuredPoint:
    for key in ("op", "impl", "params", "dtype"):
        if key not in row:
            raise ValueError(f"{where}: row has no {key!r}")
    dev = resolve(row.get("gpu"))
    params = dict(row["params"])
    terms = _shape_terms(row["op"], params, row["dtype"])
    if isinstance(terms, str):
        notes.append(f"{row['op']}: cost model unavailable ({terms}); its points have no tensor/exp split")
        tensor, trans, label = 0.0, 0.0, str(row.get("config_id", ""))
    else:
        tensor, trans, label = terms
    flops, min_bytes = row.get("flops"), row.get("min_bytes")
    if flops is None or min_bytes is None:
        raise ValueError(f"{where}: row has no flops/min_bytes")
    return MeasuredPoint(op=row["op"], impl=row["impl"], config_id=str(row.get("config_id", label)), params=params,
                         dtype=row["dtype"], gpu=str(row.get("gpu", "")), device=dev.id,
                         time_s=float(row["device_ms"]) * 1e-3, flops=float(flops), bytes=float(min_bytes),
                         tensor_flops=min(tensor, float(flops)), transcendentals=trans, label=label)


def _ncu_points(row: Mapping[str, Any], resolve: _DeviceResolver, notes: list[str],
                where: str) -> tuple[list[MeasuredPoint], dict[str, float]]:
    """One point per memory level with counted bytes; ceilings keyed ``*_B_per_s`` / ``*_flop_per_s``."""
    ns, flops = row.get("gpu_time_ns"), row.get("flops_total")
    if not ns or not flops:
        notes.append(f"{where}: ncu row without gpu_time_ns or flops_total skipped")
        return [], {}
    dev = resolve(row.get("gpu"))
    params = dict(row.get("params") or {})
    terms = _shape_terms(row.get("op", ""), params, row.get("dtype", "bf16"))
    label = terms[2] if not isinstance(terms, str) else str(row.get("config_id", ""))
    points = []
    for level in LEVELS:
        nbytes = row.get(f"{level}_bytes")
        if not nbytes:
            continue
        points.append(MeasuredPoint(
            op=row.get("op", "?"), impl=row.get("impl", "?"), config_id=str(row.get("config_id", label)),
            params=params, dtype=row.get("dtype", "bf16"), gpu=str(row.get("gpu", "")), device=dev.id,
            time_s=float(ns) * 1e-9, flops=float(flops), bytes=float(nbytes),
            tensor_flops=min(float(row.get("flops_tensor") or 0.0), float(flops)),
            transcendentals=float(row.get("sfu_ops") or 0.0), level=level, source="ncu", label=label))
    ceilings = {}
    for name, value in (row.get("ceilings") or {}).items():
        if isinstance(value, (int, float)) and value > 0 and name.endswith(("_B_per_s", "_flop_per_s")):
            ceilings[name] = float(value)
    return points, ceilings


# --------------------------------------------------------------------------------------------------
# Projection
# --------------------------------------------------------------------------------------------------
RELEVANT_FRACTION = 0.1  # a resource takes part in the range when its time is >= 10 % of the floor


@dataclass(frozen=True)
class Projection:
    """A measured point carried over to another device.

    efficiency:   measured floor / measured time (how close the kernel came to the model on its device).
    estimate_s:   target floor / efficiency — the same efficiency on the target.
    low_s/high_s: the measured time scaled by the peak ratio of each resource that matters (its time is
                  >= 10 % of the measured floor): the fastest and slowest of those scalings, the low end never
                  below the target's floor. If the kernel's time is governed by one resource, it scales with that
                  resource's ratio; the estimate always lies between them.
    """

    op: str
    impl: str
    label: str
    measured_on: str
    target: str
    measured_s: float
    measured_floor_s: float
    measured_bound: str
    efficiency: float
    target_floor_s: float
    target_bound: str
    estimate_s: float
    low_s: float
    high_s: float
    scalings: Mapping[str, float]
    caveats: tuple[str, ...] = ()

    @property
    def assumption(self) -> str:
        ratios = ", ".join(f"{r} x{s:.3g}" for r, s in self.scalings.items())
        text = (f"same efficiency as measured ({self.efficiency:.0%} of the {self.measured_on} floor, "
                f"{self.measured_bound}-bound there); range = measured time scaled by the peak ratio of "
                f"each resource that matters ({ratios})")
        return text + ("; " + "; ".join(self.caveats) if self.caveats else "")

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (
            "op", "impl", "label", "measured_on", "target", "measured_s", "measured_floor_s", "measured_bound",
            "efficiency", "target_floor_s", "target_bound", "estimate_s", "low_s", "high_s")} | {
            "scalings": dict(self.scalings), "caveats": list(self.caveats), "assumption": self.assumption}


def project(point: MeasuredPoint, target: Device | str, measured_on: Device | str | None = None,
            precision: str | None = None) -> Projection:
    """Carry a measured time over to ``target`` (see :class:`Projection` for the assumption)."""
    src = get_device(measured_on or point.device)
    dst = get_device(target)
    prec = precision or precision_of(point.dtype)
    args = (point.flops, point.bytes, point.transcendentals)
    on_src = roofline(*args, src, prec, tensor_flops=point.tensor_flops)
    on_dst = roofline(*args, dst, prec, tensor_flops=point.tensor_flops)
    efficiency = on_src.floor_s / point.time_s
    estimate = on_dst.floor_s / efficiency
    scalings = {r: on_dst.times_s[r] / on_src.times_s[r] for r in BOUNDS
                if on_src.times_s[r] > 0 and on_src.times_s[r] >= RELEVANT_FRACTION * on_src.floor_s}
    # never below the target's floor (unless the measurement itself beat its floor: then the estimate is lower)
    low = max(min(min(scalings.values()) * point.time_s, estimate), min(on_dst.floor_s, estimate))
    high = max(max(scalings.values()) * point.time_s, estimate)
    caveats = []
    if efficiency > 1:
        caveats.append(f"measured {efficiency:.2f}x faster than the {src.id} DRAM floor: the data was likely "
                       f"cache-resident (warm L2), so the projection is optimistic")
    if point.time_s < 20e-6:
        caveats.append("a kernel this short may be launch-bound, which does not scale with any peak")
    return Projection(op=point.op, impl=point.impl, label=point.label, measured_on=src.id, target=dst.id,
                      measured_s=point.time_s, measured_floor_s=on_src.floor_s, measured_bound=on_src.bound,
                      efficiency=efficiency, target_floor_s=on_dst.floor_s, target_bound=on_dst.bound,
                      estimate_s=estimate, low_s=low, high_s=high, scalings=scalings, caveats=tuple(caveats))


def matching_points(run: Run, op: str, params: Mapping[str, Any], dtype: str) -> list[MeasuredPoint]:
    """Bench points of ``op`` whose params contain ``params`` (the fields the caller named) at ``dtype``."""
    return [p for p in run.points
            if p.op == op and p.dtype == dtype and all(p.params.get(k) == v for k, v in params.items())]
