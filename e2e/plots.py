"""The paper's figures from a run directory: TTFT and TPOT against prompt length per model, stacked memory bars
(measured where the rows have it, else analytic), energy per token and average power, and stacked operator
breakdowns. Each figure is written as PNG and SVG."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .breakdown import CLASSES  # noqa: E402
from .memory import memory_parts  # noqa: E402
from .models import get_model  # noqa: E402

MEASURED_STACK = (("weights_B", "weights"), ("workspace_B", "workspace (cuBLAS …)"),
                  ("cache_B", "KV cache + SSM/conv state"), ("logits_B", "logits"),
                  ("activations_B", "activations"), ("allocator_overhead_B", "allocator overhead"))
ANALYTIC_STACK = (("weights", "weights"), ("kv_cache", "KV cache"), ("ssm_state", "SSM state"),
                  ("conv_state", "conv state"), ("logits_all", "logits (every position)"))


def _ok(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("status", "ok") == "ok"]


def _label(r: dict[str, Any]) -> str:
    return r["model"] + (f" ({r['backend']})" if r.get("backend", "hf") != "hf" else "")


def plot_latency(rows: Sequence[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """TTFT and TPOT against prompt length, one line per model (log-log); an x marks where a model ran out of
    memory, a dotted line of the same colour the bare prefill forward (TTFT without the generate loop). Where
    the curves cross is visible."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for label in sorted({_label(r) for r in rows}):
        pts = sorted(((r["seqlen"], r["ttft_s"], r["tpot_s"]) for r in _ok(rows) if _label(r) == label),
                     key=lambda p: p[0])
        ooms = sorted(r["seqlen"] for r in rows if _label(r) == label and r.get("status") == "oom")
        for ax, i in ((axes[0], 1), (axes[1], 2)):
            shown = [p for p in pts if p[i] is not None]  # a TPOT lost in the timing noise is None: no point
            line = ax.plot([p[0] for p in shown], [p[i] * 1e3 for p in shown], marker="o", label=label)[0]
            if ooms and shown:
                ax.plot(ooms[:1], [shown[-1][i] * 1e3], marker="x", ms=10, color=line.get_color(), ls="none")
        bare = sorted((r["seqlen"], r["prefill_s"]) for r in _ok(rows) if _label(r) == label and r.get("prefill_s"))
        if bare:
            axes[0].plot([p[0] for p in bare], [p[1] * 1e3 for p in bare], ls=":", color=line.get_color())
    for ax, title in zip(axes, ("time to first token (dotted: bare prefill forward)", "time per output token")):
        ax.set(xscale="log", yscale="log", xlabel="prompt length (tokens)", ylabel="ms", title=title)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, Path(out_dir) / "latency")


def plot_memory_measured(rows: Sequence[dict[str, Any]], out_dir: str | Path, seqlen: int | None = None) -> list[Path]:
    """Stacked measured memory per model at ``seqlen`` (default: each model's longest measured prompt)."""
    picked: dict[str, dict[str, Any]] = {}
    for r in _ok(rows):
        mem = r.get("memory")
        if not mem or (seqlen is not None and r["seqlen"] != seqlen):
            continue
        if _label(r) not in picked or r["seqlen"] > picked[_label(r)]["seqlen"]:
            picked[_label(r)] = r
    if not picked:
        return []
    labels = list(picked)
    unit, scale = _unit(max(sum(picked[m]["memory"].get(k) or 0 for k, _ in MEASURED_STACK) for m in labels))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(labels) + 2), 4.5))
    bottom = [0.0] * len(labels)
    for key, name in MEASURED_STACK:
        heights = [(picked[m]["memory"].get(key) or 0) / scale for m in labels]
        ax.bar(labels, heights, bottom=bottom, label=name)
        bottom = [b + h for b, h in zip(bottom, heights)]
    ticks = [f"{m}\nL={picked[m]['seqlen']}" for m in labels]
    ax.set_xticks(range(len(labels)), ticks, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel=f"{unit} (measured, one prefill)", title="peak memory of a prefill, by part")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, Path(out_dir) / "memory_measured")


def plot_memory(models: Sequence[str], seqlen: int, out_dir: str | Path, batch: int = 1) -> list[Path]:
    """Stacked analytic memory per model at one length: weights, KV cache, SSM + conv state, full logits."""
    parts = {m: memory_parts(get_model(m), seqlen, batch=batch).as_dict() for m in models}
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(models) + 2), 4.5))
    bottom = [0.0] * len(models)
    for key, label in ANALYTIC_STACK:
        heights = [parts[m][key] / 2**30 for m in models]
        ax.bar(models, heights, bottom=bottom, label=label)
        bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set(ylabel="GiB (analytic; activations need a measurement)",
           title=f"memory at L = {seqlen} (batch {batch}, bf16, transformers)")
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, Path(out_dir) / f"memory_L{seqlen}")


def plot_energy(rows: Sequence[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """Energy per generated token and average power against prompt length, per model."""
    rows = [r for r in _ok(rows) if r.get("energy_J") is not None]
    if not rows:
        return []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for label in sorted({_label(r) for r in rows}):
        pts = sorted((r["seqlen"], r["energy_per_token_J"], r.get("avg_power_W")) for r in rows if _label(r) == label)
        axes[0].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        axes[1].plot([p[0] for p in pts if p[2]], [p[2] for p in pts if p[2]], marker="o", label=label)
    axes[0].set(xscale="log", yscale="log", xlabel="prompt length (tokens)", ylabel="J / generated token",
                title="energy per token")
    axes[1].set(xscale="log", xlabel="prompt length (tokens)", ylabel="W", title="average power (generation)")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, Path(out_dir) / "energy")


def plot_breakdown(rows: Sequence[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """Stacked share of device time per operator class, one bar per (model, prompt length)."""
    rows = [r for r in _ok(rows) if r.get("shares")]
    if not rows:
        return []
    rows = sorted(rows, key=lambda r: (_label(r), r["seqlen"]))
    labels = [f"{_label(r)}\nL={r['seqlen']}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(rows) + 2), 4.8))
    bottom = [0.0] * len(rows)
    for cls in CLASSES:
        heights = [r["shares"].get(cls, 0.0) * 100 for r in rows]
        ax.bar(range(len(rows)), heights, bottom=bottom, label=cls)
        bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set_xticks(range(len(rows)), labels, rotation=30, ha="right", fontsize=8)
    source = rows[0].get("time_source", "device kernels")
    ax.set(ylabel=f"% of prefill time ({source})", ylim=(0, 100), title="operator breakdown")
    ax.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    return _save(fig, Path(out_dir) / "breakdown")


def _unit(largest: float) -> tuple[str, float]:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if largest >= scale:
            return unit, scale
    return "B", 1.0


def _save(fig, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path in paths:
        fig.savefig(path, dpi=150)
    plt.close(fig)
    return paths
