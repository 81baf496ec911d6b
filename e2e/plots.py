"""The paper's figures from e2e rows: TTFT and TPOT against prompt length per model, and stacked memory bars."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .memory import memory_parts  # noqa: E402
from .models import get_model  # noqa: E402


def load_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "e2e_rows.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no e2e rows (run `ssmscope e2e run MODEL --out {run_dir}` first)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_latency(rows: Iterable[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """TTFT and TPOT against prompt length, one line per model (log-log); where curves cross is visible."""
    ok = [r for r in rows if r.get("status") == "ok"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for model in sorted({r["model"] for r in ok}):
        pts = sorted((r["seqlen"], r["ttft_s"], r["tpot_s"]) for r in ok if r["model"] == model)
        xs = [p[0] for p in pts]
        axes[0].plot(xs, [p[1] * 1e3 for p in pts], marker="o", label=model)
        axes[1].plot(xs, [p[2] * 1e3 for p in pts], marker="o", label=model)
    for ax, title in zip(axes, ("time to first token", "time per output token")):
        ax.set(xscale="log", yscale="log", xlabel="prompt length (tokens)", ylabel="ms", title=title)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, Path(out_dir) / "latency")


def plot_memory(models: Sequence[str], seqlen: int, out_dir: str | Path, batch: int = 1) -> list[Path]:
    """Stacked analytic memory per model at one length: weights, KV cache, SSM + conv state, full logits."""
    parts = {m: memory_parts(get_model(m), seqlen, batch=batch).as_dict() for m in models}
    stack = (("weights", "weights"), ("kv_cache", "KV cache"), ("ssm_state", "SSM state"),
             ("conv_state", "conv state"), ("logits_all", "logits (all positions, fp32)"))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(models) + 2), 4.5))
    bottom = [0.0] * len(models)
    for key, label in stack:
        heights = [parts[m][key] / 1e9 for m in models]
        ax.bar(models, heights, bottom=bottom, label=label)
        bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set(ylabel="GB (analytic; activations not shown)", title=f"memory at L = {seqlen} (batch {batch}, bf16)")
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, Path(out_dir) / f"memory_L{seqlen}")


def _save(fig, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path in paths:
        fig.savefig(path, dpi=150)
    plt.close(fig)
    return paths
