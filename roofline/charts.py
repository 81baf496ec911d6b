"""From placements and measured runs to chart points and files: the charts `ssmscope roofline plot` writes.

* Analytic (no run): every op family's ``paper`` grid placed on each device; the points sit on the roof.
* Measured: a run's points on the device they were measured on (filled), and projected onto every other
  requested device (hollow, with the projection range as a vertical bar; see points.project).
* Hierarchical (ncu): the L1, L2 and DRAM points of each profiled kernel joined by a line, under the L1/L2/
  DRAM slopes.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Sequence

from .core import Placement, place, sfu_flop_equivalent
from .devices import Device, get_device
from .plot import LEVEL_MARKERS, ChartPoint, roofline_chart, save_figure
from .points import LEVELS, MeasuredPoint, Run, project

log = logging.getLogger(__name__)

SWEEPS = ("seqlen", "dstate")  # fields a trajectory may run along, in order of preference


def _abbrev(op: str) -> dict[str, str]:
    try:
        from ..kernels import get

        return dict(get(op).shape_type.ABBREV)
    except Exception:  # a family that does not import: labels fall back to the full shape label
        return {}


def _series_keys(items: Sequence[tuple[str, dict, str]]) -> tuple[list[str], list[float], list[str | None]]:
    """For (op, params, group) items: a series key, the sweep value, and the sweep field of each item.

    Per op the sweep is the field of SWEEPS that joins the most items into lines of two or more points."""
    keys: list[str] = [""] * len(items)
    orders: list[float] = [0.0] * len(items)
    sweeps: list[str | None] = [None] * len(items)
    by_op: dict[str, list[int]] = {}
    for i, (op, _, _) in enumerate(items):
        by_op.setdefault(op, []).append(i)
    for idx in by_op.values():
        best, best_score = None, 0
        for sweep in SWEEPS:
            groups: dict[str, int] = {}
            for i in idx:
                params = items[i][1]
                if sweep in params:
                    k = repr(sorted((f, v) for f, v in params.items() if f != sweep)) + items[i][2]
                    groups[k] = groups.get(k, 0) + 1
            score = sum(n for n in groups.values() if n > 1)
            if score > best_score:
                best, best_score = sweep, score
        for i in idx:
            op_, params, group = items[i]
            if best and best in params:
                keys[i] = f"{op_}|{group}|" + repr(sorted((f, v) for f, v in params.items() if f != best))
                orders[i] = float(params[best])
                sweeps[i] = best
            else:
                keys[i] = f"{op_}|{group}|{i}"
    return keys, orders, sweeps


def _end_labels(points: list[ChartPoint], texts: dict[str, str],
                sweep_tags: dict[str, str] | None = None) -> list[ChartPoint]:
    """Label only the last point (largest sweep value) of each series, with the sweep's range when known."""
    last: dict[str, ChartPoint] = {}
    span: dict[str, tuple[float, float]] = {}
    for p in points:
        if p.series:
            lo, hi = span.get(p.series, (p.order, p.order))
            span[p.series] = (min(lo, p.order), max(hi, p.order))
            if p.series not in last or p.order >= last[p.series].order:
                last[p.series] = p
    out = []
    for p in points:
        text = None
        if p.series in last and last[p.series] is p:
            text = texts.get(p.series)
            tag = (sweep_tags or {}).get(p.series)
            lo, hi = span[p.series]
            if text and tag and hi > lo:
                text += f" {tag}{_count(lo)}–{_count(hi)}"
        out.append(ChartPoint(**{**p.__dict__, "label": text}))
    return out


def _count(n: float) -> str:
    n = int(n)
    return f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else str(n)


def _short(label: str, op: str, sweep: str | None) -> str:
    tag = _abbrev(op).get(sweep or "", None)
    parts = [t for t in label.split("-") if not (tag and t.startswith(tag) and t[len(tag):].isdigit())]
    return "-".join(parts)


# --------------------------------------------------------------------------------------------------
# Analytic charts
# --------------------------------------------------------------------------------------------------
def placement_points(placements: Sequence[Placement], device: Device, *, group_by: str = "op") -> list[ChartPoint]:
    """Chart points of analytic placements on ``device`` (coloured by op, or by any params field / 'dtype')."""
    groups = [p.op if group_by == "op" else str(p.dtype if group_by == "dtype" else p.params.get(group_by))
              for p in placements]
    keys, orders, sweeps = _series_keys([(p.op, dict(p.params), g) for p, g in zip(placements, groups)])
    points = [ChartPoint(x=p.roofline.intensity, y=p.roofline.attainable, op=p.op, group=g, series=k, order=o,
                         sfu_ceiling=sfu_flop_equivalent(device, p.flops, p.transcendentals))
              for p, g, k, o in zip(placements, groups, keys, orders)]
    texts = {k: _short(p.label, p.op, s) for p, k, s in zip(placements, keys, sweeps)}
    tags = {k: _abbrev(p.op).get(s or "", "") for p, k, s in zip(placements, keys, sweeps)}
    return _end_labels(points, texts, tags)


def grid_placements(device: Device, ops: Iterable[str] | None = None, grid: str = "paper") -> list[Placement]:
    """Every config of each family's ``grid`` placed on ``device``; families that do not import are logged."""
    from ..kernels import get, names

    placements = []
    for name in ops or names():
        try:
            op = get(name)
        except ImportError as exc:
            log.warning("roofline: op family %s skipped: %s", name, exc)
            continue
        if grid not in op.grids:
            log.warning("roofline: op family %s has no %r grid; skipped", name, grid)
            continue
        for config in op.grid(grid):
            params = dict(config)
            dtype = params.pop("dtype", "bf16")
            placements.append(place(name, params, device, dtype))
    return placements


# --------------------------------------------------------------------------------------------------
# Measured charts
# --------------------------------------------------------------------------------------------------
def run_points(points: Sequence[MeasuredPoint], device: Device) -> list[ChartPoint]:
    """Measured points on their own device (filled) and projected from other devices (hollow + range)."""
    keys, orders, sweeps = _series_keys([(p.op, dict(p.params), f"{p.impl}|{p.device}") for p in points])
    chart = []
    for p, k, o in zip(points, keys, orders):
        sfu = sfu_flop_equivalent(device, p.flops, p.transcendentals)
        if p.device == device.id:
            chart.append(ChartPoint(x=p.intensity, y=p.achieved_flop_per_s, op=p.op, group=p.impl, series=k,
                                    order=o, sfu_ceiling=sfu))
        else:
            proj = project(p, device)
            chart.append(ChartPoint(x=p.intensity, y=p.flops / proj.estimate_s, op=p.op,
                                    group=f"{p.impl} (from {p.device})", series=k, order=o, sfu_ceiling=sfu,
                                    hollow=True, y_range=(p.flops / proj.high_s, p.flops / proj.low_s)))
    texts = {k: _short(p.label, p.op, s) for p, k, s in zip(points, keys, sweeps)}
    tags = {k: _abbrev(p.op).get(s or "", "") for p, k, s in zip(points, keys, sweeps)}
    return _end_labels(chart, texts, tags)


def hierarchical_points(points: Sequence[MeasuredPoint]) -> list[ChartPoint]:
    """ncu points: one marker per memory level, joined per kernel, labelled at the DRAM point."""
    chart = []
    for p in points:
        key = "|".join(p.kernel_key)
        chart.append(ChartPoint(x=p.intensity, y=p.achieved_flop_per_s, op=p.op, group=p.impl, series=key,
                                order=LEVELS.index(p.level), marker_group=p.level,
                                label=f"{p.op} {p.label}" if p.level == "dram" else None))
    return chart


def plot_run(run: Run, devices: Sequence[Device | str], out_dir: str | Path) -> list[Path]:
    """``<device>_roofline.{png,svg}`` per device, and ``<device>_hierarchical`` where ncu points exist."""
    out: list[Path] = []
    for device in map(get_device, devices):
        if run.points:
            pts = run_points(run.points, device)
            parts = ["measured here"] if device.id in run.devices else []
            others = [d for d in run.devices if d != device.id]
            if others:
                parts.append(f"projected from {', '.join(others)} (hollow; bar = range)")
            sub = f"run {run.path.name}: " + "; ".join(parts)
            fig = roofline_chart(device, pts, title=f"{device.name}", subtitle=sub)
            out += save_figure(fig, out_dir, f"{device.id}_roofline")
        ncu = [p for p in run.ncu_points if p.device == device.id]
        if ncu:
            fig = roofline_chart(device, hierarchical_points(ncu), title=f"{device.name}: hierarchical (ncu)",
                                 levels=("dram", "l2", "l1"), extra_ceilings=run.ncu_ceilings.get(device.id),
                                 marker_map=LEVEL_MARKERS, marker_title="memory level",
                                 subtitle="one kernel = L1, L2 and DRAM points joined; x = FLOPs / bytes at that level")
            out += save_figure(fig, out_dir, f"{device.id}_hierarchical")
    return out


def plot_grid(devices: Sequence[Device | str], out_dir: str | Path, ops: Iterable[str] | None = None,
              grid: str = "paper") -> list[Path]:
    """Analytic charts of the families' ``grid`` configs, one per device."""
    out: list[Path] = []
    for device in map(get_device, devices):
        placements = grid_placements(device, ops, grid)
        if not placements:
            continue
        fig = roofline_chart(device, placement_points(placements, device), title=f"{device.name}",
                             group_title="op", subtitle=f"analytic floors of the `{grid}` grid (no measurements)")
        out += save_figure(fig, out_dir, f"{device.id}_{grid}_grid")
    return out
