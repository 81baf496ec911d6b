"""Roofline charts: log-log, one per device, PNG and SVG.

* Ceilings: DRAM (and L2 / L1 where the device file or the ncu run knows them) as slopes, the FP32 CUDA-core
  peak and the BF16 tensor peak as horizontals, each labelled on the line.
* The special-function unit has no place on a FLOP/s axis of its own: an exp costs no FLOPs. We draw it as a
  FLOP/s-equivalent ceiling per op, ``sfu_op_per_s x (op FLOPs / op transcendentals)``: the FLOP/s the op
  reaches when its exps saturate the SFU. It is a dash-dot horizontal spanning that op's points, so an
  exp-bound op visibly sits under a roof lower than the FP32 one.
* Points are coloured by implementation (or by op, for analytic charts), marked by op, joined along a sweep
  (sequence length or state size) and labelled sparingly by a greedy non-overlapping placer; the legend
  carries the rest.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from .core import sfu_flop_equivalent
from .devices import Device

MARKERS = {"selective_scan": "o", "causal_conv1d": "s", "ssd": "D", "attention": "^",
           "selective_state_update": "v", "causal_conv1d_update": "P", "attention_decode": "X"}
FALLBACK_MARKERS = ("h", "p", "*", "<", ">", "d", "8")
LEVEL_MARKERS = {"l1": "^", "l2": "s", "dram": "o"}
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f")
CEILING_COLOR = "#333333"
SFU_COLOR = "#b5651d"


@dataclass(frozen=True)
class ChartPoint:
    """One marker. ``series`` joins markers into a line (in ``order``); ``label`` is drawn if it fits."""

    x: float                       # FLOP/byte
    y: float                       # FLOP/s
    op: str
    group: str                     # colour key
    series: str | None = None
    order: float = 0.0
    label: str | None = None
    sfu_ceiling: float | None = None   # the op's SFU roof in FLOP/s-equivalent (None: no exps)
    hollow: bool = False           # projected / analytic-on-another-device markers
    y_range: tuple[float, float] | None = None  # projection range, drawn as an error bar
    marker_group: str | None = None  # marker key when it is not the op (memory level, model family)


def marker_for(op: str, seen: dict[str, str]) -> str:
    if op in MARKERS:
        return MARKERS[op]
    if op not in seen:
        seen[op] = FALLBACK_MARKERS[len(seen) % len(FALLBACK_MARKERS)]
    return seen[op]


def _ceilings(device: Device, levels: Sequence[str], extra: Mapping[str, float] | None):
    """[(name, bandwidth B/s)], [(name, FLOP/s)] for the chart."""
    extra = extra or {}
    bw = [("DRAM", device.dram_bandwidth_B_per_s)]
    known = {"l2": (device.l2_bandwidth_B_per_s, "L2"), "l1": (device.l1_bandwidth_B_per_s, "L1/shared")}
    for level in levels:
        if level in known:
            value, name = known[level]
            if value is None and f"{level}_B_per_s" in extra:
                value, name = extra[f"{level}_B_per_s"], f"{name} (ncu)"
            if value:
                bw.append((name, value))
    compute = [("FP32 (CUDA cores)", device.fp32_flop_per_s),
               ("BF16 tensor (FP32 acc.)", device.tensor_bf16_f32acc_flop_per_s)]
    return bw, compute


def roofline_chart(device: Device, points: Sequence[ChartPoint], *, title: str | None = None,
                   levels: Sequence[str] = ("dram", "l2"), extra_ceilings: Mapping[str, float] | None = None,
                   group_title: str = "implementation", marker_title: str = "op",
                   marker_key: Callable[[ChartPoint], str] | None = None,
                   marker_map: Mapping[str, str] | None = None, subtitle: str | None = None, max_labels: int = 8):
    """A matplotlib Figure of ``points`` under ``device``'s ceilings (no pyplot state is touched).

    At most ``max_labels`` point labels are drawn, taken round-robin over the colour groups."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(7.2, 5.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    bw, compute = _ceilings(device, levels, extra_ceilings)
    xlim, ylim = _limits(points, bw, compute)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("performance (FLOP/s)")
    ax.grid(True, which="major", color="#dddddd", lw=0.6)
    ax.grid(True, which="minor", color="#f0f0f0", lw=0.4)
    ax.set_axisbelow(True)
    ax.set_title(title or f"{device.name}", fontsize=11)
    if subtitle:
        fig.text(0.5, 0.005, subtitle, ha="center", va="bottom", fontsize=7, color="#555555")

    peak = max(v for _, v in compute)
    ceiling_labels = []
    for i, (name, value) in enumerate(bw):
        knee = peak / value
        line_x = [xlim[0], min(knee, xlim[1])]
        ax.plot(line_x, [value * x for x in line_x], color=CEILING_COLOR, lw=1.6 if i == 0 else 1.0,
                ls="-" if i == 0 else "--", zorder=2)
        ceiling_labels.append(("slope", name, value, f"{name} {_fmt(value, 'B/s')}"))
    for name, value in sorted(compute, key=lambda c: c[1]):
        knee = value / bw[0][1]
        ax.plot([max(knee, xlim[0]), xlim[1]], [value, value], color=CEILING_COLOR,
                lw=1.6 if value == peak else 1.0, ls="-" if value == peak else "--", zorder=2)
        ceiling_labels.append(("flat", name, value, f"{name} {_fmt(value, 'FLOP/s')}"))
    sfu_labels = _draw_sfu_ceilings(ax, device, points, peak)

    colors: dict[str, str] = {}
    for p in points:
        colors.setdefault(p.group, PALETTE[len(colors) % len(PALETTE)])
    seen: dict[str, str] = {}
    key = marker_key or (lambda p: p.marker_group or p.op)
    mmap = dict(marker_map or {})

    def mk(p: ChartPoint) -> str:
        k = key(p)
        return mmap[k] if k in mmap else marker_for(k, seen)

    series: dict[str, list[ChartPoint]] = {}
    for p in points:
        if p.series:
            series.setdefault(p.series, []).append(p)
    for members in series.values():
        members = sorted(members, key=lambda p: p.order)
        if len(members) > 1:
            ax.plot([p.x for p in members], [p.y for p in members], color=colors[members[0].group], lw=0.9,
                    alpha=0.55, zorder=3, ls=":" if members[0].hollow else "-")
    for p in points:
        c = colors[p.group]
        if p.y_range:
            ax.plot([p.x, p.x], list(p.y_range), color=c, lw=0.8, alpha=0.7, zorder=3)
        ax.scatter([p.x], [p.y], marker=mk(p), s=34, zorder=4, linewidths=1.0,
                   facecolors="white" if p.hollow else c, edgecolors=c)

    if all(p.group == key(p) for p in points):  # colour and marker encode the same thing: one legend entry each
        handles = [Line2D([], [], color=c, marker=mk(next(p for p in points if p.group == g)), ls="", label=g)
                   for g, c in colors.items()]
        title = f"colour, marker: {group_title}"
    else:
        handles = [Line2D([], [], color=c, marker="o", ls="", label=g) for g, c in colors.items()]
        marker_keys = list(dict.fromkeys(key(p) for p in points))
        handles += [Line2D([], [], color="#555555", marker=mk_, ls="", mfc="none", label=LEVEL_NAMES.get(k, k))
                    for k, mk_ in ((k, mmap.get(k) or marker_for(k, seen)) for k in marker_keys)]
        title = f"colour: {group_title} · marker: {marker_title}"
    if any(p.hollow for p in points):
        handles.append(Line2D([], [], color="#555555", marker="o", ls="", mfc="white", label="projected / floor"))
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="lower right", framealpha=0.92, ncol=1 if len(handles) < 9 else 2,
                  title=title, title_fontsize=7)
    fig.tight_layout(rect=(0, 0.02 if subtitle else 0, 1, 1))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    taken, line_boxes = _obstacles(ax, renderer)
    taken += _obstacles(ax, renderer, only_gid="sfu-roof")[1]
    _label_ceilings(ax, ceiling_labels, taken)  # appends the boxes of its labels to `taken`
    point_labels = _round_robin([p for p in points if p.label], max_labels)
    _place_labels(ax, sfu_labels + [(p.x, p.y, p.label, colors[p.group]) for p in point_labels],
                  taken + line_boxes)
    return fig


def _round_robin(points: Sequence[ChartPoint], limit: int) -> list[ChartPoint]:
    """Up to ``limit`` points, alternating between colour groups so that every group gets a label first."""
    queues: dict[str, list[ChartPoint]] = {}
    for p in points:
        queues.setdefault(p.group, []).append(p)
    out: list[ChartPoint] = []
    while len(out) < limit and any(queues.values()):
        for q in queues.values():
            if q and len(out) < limit:
                out.append(q.pop(0))
    return out


def _draw_sfu_ceilings(ax, device: Device, points: Sequence[ChartPoint], peak: float) -> list:
    """One dash-dot FLOP/s-equivalent SFU roof per op, spanning that op's points (see module docstring);
    returns the labels for the placer."""
    labels = []
    by_op: dict[str, list[ChartPoint]] = {}
    for p in points:
        if p.sfu_ceiling:
            by_op.setdefault(p.op, []).append(p)
    roofs: list[tuple[float, float, float, list[str]]] = []  # value, lo, hi, ops (ops within 5 % merge)
    for op, members in sorted(by_op.items()):
        values = sorted(p.sfu_ceiling for p in members)
        value = values[len(values) // 2]
        if value >= peak * 1.5:
            continue  # far above every compute roof: it cannot bind, drawing it only adds clutter
        lo, hi = min(p.x for p in members) / 2.5, max(p.x for p in members) * 2.5
        for i, (v, v_lo, v_hi, ops) in enumerate(roofs):
            if abs(v - value) < 0.05 * v:
                roofs[i] = (v, min(v_lo, lo), max(v_hi, hi), ops + [op])
                break
        else:
            roofs.append((value, lo, hi, [op]))
    for value, lo, hi, ops in roofs:
        ax.plot([lo, hi], [value, value], color=SFU_COLOR, lw=1.1, ls="-.", zorder=2, gid="sfu-roof")
        text = f"exp/SFU roof · {', '.join(ops)}" if len(ops) < 2 else "exp/SFU roof ·\n" + ",\n".join(ops)
        labels.append(((lo, math.sqrt(lo * hi), hi), value, text, SFU_COLOR))
    return labels


def _limits(points: Sequence[ChartPoint], bw, compute) -> tuple[tuple[float, float], tuple[float, float]]:
    peak = max(v for _, v in compute)
    dram = bw[0][1]
    knee = peak / dram
    xs = [p.x for p in points if p.x > 0 and math.isfinite(p.x)] or [knee]
    ys = [p.y for p in points if p.y > 0] + [r for p in points if p.y_range for r in p.y_range if r > 0]
    x_lo = min(min(xs) / 3, knee / 100)
    x_hi = max(max(xs) * 3, knee * 8)
    y_lo = min(min(ys, default=peak) / 4, dram * x_lo * 2)
    return (10 ** math.floor(math.log10(x_lo)), 10 ** math.ceil(math.log10(x_hi))), (y_lo, peak * 3)


def _fmt(value: float, unit: str) -> str:
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _label_ceilings(ax, labels, taken: list) -> None:
    """Flats: right-aligned above the line. Slopes: along the line, rotated to its on-screen angle and lifted
    off it, at the first of a few positions whose box is clear of the markers."""
    renderer = ax.figure.canvas.get_renderer()
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    peak = max((v for kind, _, v, _ in labels if kind == "flat"), default=y1)
    for kind, _name, value, text in labels:
        if kind == "flat":  # right end, middle or just right of the knee; above or below the line
            knee = value / labels[0][2] if labels[0][0] == "slope" else x0
            mid = math.sqrt(max(knee, x0) * x1)
            spots = [(x, value * f, ha, "bottom" if f > 1 else "top")
                     for f in (1.08, 1 / 1.08, 1.35, 1 / 1.35)
                     for x, ha in ((x1 / 1.15, "right"), (mid, "center"), (knee * 1.6, "left"))]
            best = None  # (overlaps, text, box): the first clear spot, else the least crowded one
            for x, y, ha, va in spots:
                t = ax.text(x, y, text, fontsize=7.5, ha=ha, va=va, color=CEILING_COLOR)
                box = t.get_window_extent(renderer)
                hits = sum(box.overlaps(o) for o in taken)
                if best is None or hits < best[0]:
                    if best is not None:
                        best[1].remove()
                    best = (hits, t, box)
                else:
                    t.remove()
                if hits == 0:
                    break
            taken.append(best[2])
            continue
        x_in, x_knee = max(x0, y0 / value), min(x1, peak / value)
        if x_knee <= x_in:
            continue
        for frac in (0.2, 0.35, 0.5, 0.08, 0.65):
            x = x_in * (x_knee / x_in) ** frac
            y = value * x
            p0 = ax.transData.transform((x, y))
            p1 = ax.transData.transform((x * 10, y * 10))
            angle = math.atan2(p1[1] - p0[1], p1[0] - p0[0])
            ann = ax.annotate(text, (x, y), xytext=(-4 * math.sin(angle), 4 * math.cos(angle)),
                              textcoords="offset points", fontsize=7.5, rotation=math.degrees(angle),
                              rotation_mode="anchor", ha="left", va="bottom", color=CEILING_COLOR)
            box = ann.get_window_extent(renderer)
            if not any(box.overlaps(t) for t in taken) or frac == 0.65:
                taken.append(box)
                break
            ann.remove()


_OFFSETS = ((6, 6, "left", "bottom"), (6, -6, "left", "top"), (-6, 6, "right", "bottom"),
            (-6, -6, "right", "top"), (0, 9, "center", "bottom"), (0, -9, "center", "top"),
            (10, 0, "left", "center"), (-10, 0, "right", "center"), (14, 14, "left", "bottom"),
            (-14, -14, "right", "top"), (0, 20, "center", "bottom"), (0, -20, "center", "top"),
            (16, -22, "left", "top"), (-16, 22, "right", "bottom"))
LEVEL_NAMES = {"l1": "L1 bytes", "l2": "L2 bytes", "dram": "DRAM bytes"}


def _obstacles(ax, renderer, only_gid: str | None = None) -> tuple[list, list]:
    """Display-space boxes of (markers, texts and the legend), and of every line (sampled every 6 px; only
    the lines with gid ``only_gid`` if given)."""
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    legend = ax.get_legend()
    if legend is not None:
        boxes.append(legend.get_window_extent(renderer))
    for coll in ax.collections:
        for xy in coll.get_offsets():
            px, py = ax.transData.transform(xy)
            boxes.append(_box(px - 4, py - 4, px + 4, py + 4))
    line_boxes = []
    for line in ax.lines:
        if only_gid is not None and line.get_gid() != only_gid:
            continue
        pts = ax.transData.transform(list(zip(line.get_xdata(), line.get_ydata())))
        for (ax_, ay), (bx, by) in zip(pts[:-1], pts[1:]):
            n = max(2, int(math.hypot(bx - ax_, by - ay) / 6))
            for i in range(n + 1):
                px, py = ax_ + (bx - ax_) * i / n, ay + (by - ay) * i / n
                line_boxes.append(_box(px - 1.5, py - 1.5, px + 1.5, py + 1.5))
    return boxes, line_boxes


def _place_labels(ax, items: Iterable[tuple], taken: list) -> None:
    """Greedy placement: for items (x or a tuple of anchor xs, y, text, colour), the first of a few offsets
    around an anchor whose box stays inside the axes and clear of markers, lines and earlier labels; a label
    with no free spot is dropped (the legend has it)."""
    renderer = ax.figure.canvas.get_renderer()
    axes_box = ax.get_window_extent(renderer)
    for xs, y, text, color in items:
        candidates = [(x, off) for x in (xs if isinstance(xs, tuple) else (xs,)) for off in _OFFSETS]
        for x, (dx, dy, ha, va) in candidates:
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                              fontsize=7, color=color)
            box = ann.get_window_extent(renderer).expanded(1.04, 1.15)
            inside = (box.x0 >= axes_box.x0 and box.x1 <= axes_box.x1 and box.y0 >= axes_box.y0
                      and box.y1 <= axes_box.y1)
            if inside and not any(box.overlaps(t) for t in taken):
                taken.append(box)
                break
            ann.remove()


def _box(x0: float, y0: float, x1: float, y1: float):
    from matplotlib.transforms import Bbox

    return Bbox([[x0, y0], [x1, y1]])


def save_figure(fig, out_dir: str | Path, stem: str) -> list[Path]:
    """Write ``stem.png`` (200 dpi) and ``stem.svg`` under ``out_dir``; returns both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"]
    fig.savefig(paths[0], dpi=200)
    fig.savefig(paths[1])
    return paths


def sfu_roof(device: Device, flops: float, transcendentals: float) -> float | None:
    return sfu_flop_equivalent(device, flops, transcendentals)
