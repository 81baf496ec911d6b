"""Scaling charts from a bench run: latency against one shape field, a line per impl (and per setting of the
other fields), one log-log panel per op. Wrong points are drawn with a red cross; only timed rows are plotted."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from .rows import TIMED_STATUSES, load_rows

MARKERS = "osD^v<>ph*"
LINESTYLES = ("-", "--", ":", "-.")
LEGEND_ROWS = 14  # settings per legend column


def scaling_series(rows: Sequence[Mapping[str, Any]], x: str) -> dict[str, dict[tuple, list[tuple[float, float, str]]]]:
    """op -> line key (impl, dtype, the other params) -> sorted [(x value, device_ms, status)].

    Rows without a time, or whose params lack ``x``, are left out, and so are lines of a single point (an op
    whose ``x`` never varies has no panel). Repeated points keep the last row.
    """
    series: dict[str, dict[tuple, dict[float, tuple[float, float, str]]]] = {}
    for row in rows:
        params = row.get("params") or {}
        ms = row.get("device_ms")
        if row.get("status") not in TIMED_STATUSES or not ms or x not in params:
            continue
        xv = params[x]
        if isinstance(xv, bool) or not isinstance(xv, (int, float)) or xv <= 0:
            continue
        fixed = tuple(sorted((k, v) for k, v in params.items() if k != x))
        key = (row["impl"], row.get("dtype"), fixed)
        series.setdefault(row["op"], {}).setdefault(key, {})[float(xv)] = (float(xv), float(ms), row["status"])
    # A line needs two x values: decode steps have seqlen 1 everywhere, so they appear on --x batch, not here.
    kept = {op: {k: sorted(pts.values()) for k, pts in lines.items() if len(pts) > 1} for op, lines in series.items()}
    return {op: lines for op, lines in kept.items() if lines}


def _setting_labels(keys: list[tuple]) -> dict[tuple, str]:
    """(dtype, params) of each line -> the dtype and the params that differ between an op's lines (the ones that
    tell them apart); "" when there is only one setting."""
    varying = set()
    dtypes = {k[1] for k in keys}
    for name in {n for k in keys for n, _ in k[2]}:
        if len({dict(k[2]).get(name) for k in keys}) > 1:
            varying.add(name)
    labels = {}
    for _, dtype, fixed in keys:
        parts = ([dtype] if len(dtypes) > 1 else []) + [f"{n}={v}" for n, v in fixed if n in varying]
        labels[(dtype, fixed)] = " ".join(str(p) for p in parts)
    return labels


def plot_scaling(run_dir: str | Path, x: str = "seqlen", *, out: str | Path | None = None,
                 ops: Sequence[str] | None = None, title: str | None = None) -> list[Path]:
    """Write ``scaling_<x>.png`` and ``.svg`` (into ``out``, default the run directory); returns the paths.

    Raises ValueError when no timed row has the field ``x``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = load_rows(run_dir)
    series = scaling_series(rows, x)
    if ops:
        series = {op: s for op, s in series.items() if op in ops}
    if not series:
        raise ValueError(f"no timed rows with a numeric {x!r} field in {run_dir} (statuses ok/wrong with device_ms)")
    n = len(series)
    cols = min(n, 2)
    nrows = math.ceil(n / cols)
    # Each panel keeps room on its right for its legends (outside the axes, so they never hide a line).
    wide = any(len({key[1:] for key in lines}) > LEGEND_ROWS for lines in series.values())  # two-column legend
    fig, axes = plt.subplots(nrows, cols, figsize=((13.0 if wide else 10.0) * cols, 4.8 * nrows), squeeze=False,
                             layout="constrained")  # constrained layout makes room for the outside legends
    for ax, (op, lines) in zip(axes.flat, sorted(series.items())):
        _panel(ax, op, lines, x)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    gpu = next((r.get("gpu") for r in rows if r.get("gpu")), "")
    cache = sorted({str(r.get("cache")) for r in rows if r.get("device_ms")})
    fig.suptitle(title or f"latency vs {x} — {gpu} ({'/'.join(cache)} cache)", fontsize=12)
    out_dir = Path(out) if out else Path(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"scaling_{x}.png", out_dir / f"scaling_{x}.svg"]
    for p in paths:
        fig.savefig(p, dpi=150 if p.suffix == ".png" else None)
    plt.close(fig)
    return paths


def _panel(ax: Any, op: str, lines: Mapping[tuple, list[tuple[float, float, str]]], x: str) -> None:
    """One op: a color per impl, a marker and dash style per setting of the other fields."""
    from matplotlib.ticker import FuncFormatter

    impls = sorted({key[0] for key in lines})
    settings = sorted({key[1:] for key in lines}, key=str)
    colors = {impl: f"C{i % 10}" for i, impl in enumerate(impls)}
    wrong = []
    for key, pts in lines.items():
        j = settings.index(key[1:])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colors[key[0]], linestyle=_style(j),
                marker=MARKERS[j % len(MARKERS)], markersize=4, linewidth=1.4)
        wrong += [(p[0], p[1]) for p in pts if p[2] == "wrong"]
    if wrong:
        ax.scatter(*zip(*wrong), marker="x", s=70, color="red", zorder=5)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(_size_label))
    ax.set_xlabel(x)
    ax.set_ylabel("device time per call (ms)")
    ax.set_title(op)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    _legends(ax, impls, colors, settings, _setting_labels(list(lines)), bool(wrong))


def _style(j: int) -> str:
    return LINESTYLES[j % len(LINESTYLES)]


def _legends(ax: Any, impls: list[str], colors: Mapping[str, str], settings: list[tuple],
             setting_labels: Mapping[tuple, str], wrong: bool) -> None:
    """Two legends beside the panel: the impl of each color, and the setting of each marker and dash (a
    legend entry per line would list impls × settings)."""
    from matplotlib.lines import Line2D

    by_color = [Line2D([], [], color=colors[i], linewidth=2, label=i) for i in impls]
    if wrong:
        by_color.append(Line2D([], [], color="red", marker="x", linestyle="", label="wrong result (timed, flagged)"))
    first = ax.legend(handles=by_color, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="impl",
                      title_fontsize=7, framealpha=0.85)
    if len(settings) > 1:
        ax.add_artist(first)
        by_style = [Line2D([], [], color="0.35", linestyle=_style(j), marker=MARKERS[j % len(MARKERS)],
                           markersize=4, label=setting_labels[st]) for j, st in enumerate(settings)]
        ax.legend(handles=by_style, fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 0.62), framealpha=0.85,
                  ncol=2 if len(settings) > LEGEND_ROWS else 1)


def _size_label(value: float, _pos: Any = None) -> str:
    """Tick labels 512, 1K, 64K, 1M instead of powers of two."""
    v = int(round(value))
    if v >= 1 << 20 and v % (1 << 20) == 0:
        return f"{v >> 20}M"
    if v >= 1024 and v % 1024 == 0:
        return f"{v >> 10}K"
    return f"{value:g}"
