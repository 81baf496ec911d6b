"""`ssmscope e2e …`: the paper's models and the kernel calls they make (thin CLI over ssmscope.e2e.models)."""
from __future__ import annotations

import json

import click

from .models import registry


@click.group()
def e2e() -> None:
    """End-to-end model profiles tied back to the kernels."""


@e2e.command("models")
@click.option("--seqlen", type=int, default=4096, show_default=True, help="Length for the kernel calls shown.")
@click.option("--phase", type=click.Choice(["prefill", "decode"]), default="prefill", show_default=True)
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models_cmd(seqlen: int, phase: str, batch: int, as_json: bool) -> None:
    """List the model registry (with sources) and each model's kernel calls at one length."""
    listing = []
    for m in registry().values():
        calls = [{"op": c.op, "params": dict(c.params), "count": c.count, "where": c.where}
                 for c in m.op_calls(seqlen, batch=batch, phase=phase)]
        listing.append({"model": m.name, "hf_id": m.hf_id, "family": m.family, "params": m.params,
                        "unconfirmed": list(m.unconfirmed), "source": m.source, "calls": calls})
    if as_json:
        click.echo(json.dumps(listing, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"models: kernel calls per forward ({phase}, L={seqlen}, batch {batch})")
    for col in ("model", "family", "params", "kernel calls", "unconfirmed fields"):
        table.add_column(col)
    for m in listing:
        calls = ", ".join(f"{c['op']}×{c['count']}" for c in m["calls"])
        table.add_row(m["model"], m["family"], f"{m['params'] / 1e6:.0f}M" if m["params"] else "-", calls,
                      str(len(m["unconfirmed"])))
    Console().print(table)


@e2e.command("memory")
@click.argument("model")
@click.option("--seqlen", default="1024,4096,16384,32768,65536", show_default=True,
              help="Comma-separated prompt lengths.")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp32"]), default="bf16", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def memory_cmd(model: str, seqlen: str, batch: int, dtype: str, as_json: bool) -> None:
    """Analytic memory of MODEL per prompt length: weights, KV cache, SSM/conv state, and logits."""
    from .memory import memory_parts
    from .models import get_model

    try:
        spec = get_model(model)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    rows = [{"seqlen": int(s), **memory_parts(spec, int(s), batch=batch, dtype=dtype).as_dict()}
            for s in seqlen.split(",")]
    if as_json:
        click.echo(json.dumps({"model": model, "batch": batch, "dtype": dtype, "rows": rows}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{model}: analytic memory (GB), batch {batch}, {dtype}; activations and allocator "
                        "overhead need a measurement")
    cols = ("weights", "kv_cache", "ssm_state", "conv_state", "logits_all", "logits_last")
    for col in ("L", *cols):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["seqlen"]), *(f"{r[c] / 1e9:.3g}" for c in cols))
    Console().print(table)


@e2e.command("run")
@click.argument("model")
@click.option("--seqlen", default="1024", show_default=True,
              help="Comma-separated prompt lengths, or 'paper' for the paper's schedule (1K…220K).")
@click.option("--gen", "gen_len", type=int, default=256, show_default=True, help="New tokens per generation.")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--layers", type=int, default=None, help="Build only the first N layers (quick runs).")
@click.option("--device", default=None, help="cuda or cpu (default: cuda when present).")
@click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp32"]), default="bf16", show_default=True)
@click.option("--attn", "attn_implementation", default="sdpa", show_default=True,
              help="transformers attention implementation (sdpa | eager | flash_attention_2).")
@click.option("--reps", type=int, default=3, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Append rows to OUT/e2e_rows.jsonl.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def run_cmd(model: str, seqlen: str, gen_len: int, batch: int, layers: int | None, device: str | None, dtype: str,
            attn_implementation: str, reps: int, out: str | None, as_json: bool) -> None:
    """TTFT, TPOT and peak memory of MODEL (random weights) over prompt lengths; one row per length."""
    import torch

    from .build import Unbuildable, attention_backend, build_model
    from .models import get_model
    from .run import measure_generation

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        spec = get_model(model)
        net = build_model(spec, layers=layers, dtype=dtype, device=device, attn_implementation=attn_implementation)
    except (ValueError, Unbuildable) as exc:
        raise click.ClickException(str(exc)) from None
    from .frontier import paper_schedule

    lengths = paper_schedule() if seqlen == "paper" else [int(s) for s in seqlen.split(",")]
    rows = []
    for length in lengths:
        base = {"model": model, "layers": layers or "all", "device": device, "dtype": dtype,
                "attn": attention_backend(net)}
        try:
            row = {**base, "status": "ok", **measure_generation(net, seqlen=length, gen_len=gen_len, batch=batch,
                                                               reps=reps)}
        except torch.cuda.OutOfMemoryError:
            row = {**base, "status": "oom", "seqlen": length}
            torch.cuda.empty_cache()
        rows.append(row)
        if out:
            from pathlib import Path

            Path(out).mkdir(parents=True, exist_ok=True)
            with open(Path(out) / "e2e_rows.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        if r["status"] != "ok":
            click.echo(f"{model} L={r['seqlen']}: {r['status']}")
            continue
        click.echo(f"{model} L={r['seqlen']} ({r['attn']}, {device}): TTFT {r['ttft_s'] * 1e3:.2f} ms, "
                   f"TPOT {r['tpot_s'] * 1e3:.3f} ms, {r['decode_tokens_per_s']:.1f} tok/s decode")


@e2e.command("breakdown")
@click.argument("model")
@click.option("--seqlen", type=int, default=4096, show_default=True)
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--layers", type=int, default=None, help="Build only the first N layers (quick runs).")
@click.option("--device", default=None, help="cuda or cpu (default: cuda when present).")
@click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp32"]), default="bf16", show_default=True)
@click.option("--roofline-device", default=None,
              help="Device id for the floors (default: the GPU at hand, recognised; none on CPU).")
@click.option("--trace", type=click.Path(dir_okay=False), default=None, help="Write the Chrome trace here.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def breakdown_cmd(model: str, seqlen: int, batch: int, layers: int | None, device: str | None, dtype: str,
                  roofline_device: str | None, trace: str | None, as_json: bool) -> None:
    """Operator breakdown of one prefill (device time per class), tied back to the kernel families."""
    import torch

    from .build import Unbuildable, build_model
    from .models import get_model
    from .profile import profile_prefill, tie_back

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        spec = get_model(model)
        net = build_model(spec, layers=layers, dtype=dtype, device=device)
    except (ValueError, Unbuildable) as exc:
        raise click.ClickException(str(exc)) from None
    result = profile_prefill(net, seqlen=seqlen, batch=batch, trace=trace)
    if roofline_device is None and device == "cuda":
        from ..roofline import match_device

        roofline_device = match_device(torch.cuda.get_device_name()).id
    if roofline_device and layers is None:
        result["tie_back"] = tie_back(spec, result, roofline_device, dtype)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    click.echo(f"{model} prefill L={seqlen} on {device} ({result['time_source']}): "
               f"{result['device_s'] * 1e3:.2f} ms in kernels, {result['wall_s'] * 1e3:.2f} ms wall")
    for cls, share in sorted(result["shares"].items(), key=lambda kv: -kv[1]):
        if share:
            click.echo(f"  {cls:<14} {share:6.1%}  {result['classes'][cls] * 1e3:9.3f} ms")
    for op, t in result.get("tie_back", {}).items():
        gap = f"{t['floor_gap']:.1f}x its floor" if t["floor_gap"] else "no floor"
        click.echo(f"  {op:<22} {t['share']:6.1%} of kernel time, {gap}, "
                   f"Amdahl speed-up at the floor {t['amdahl_speedup'] or 1:.2f}x")


def _parse_bytes(text: str) -> float:
    units = {"gib": 2**30, "gb": 1e9, "mib": 2**20, "mb": 1e6}
    low = text.strip().lower()
    for unit, scale in units.items():
        if low.endswith(unit):
            return float(low[: -len(unit)]) * scale
    return float(low)


@e2e.command("frontier")
@click.argument("model")
@click.option("--memory-budget", default="24GiB", show_default=True,
              help="Cap this process's GPU memory to emulate a smaller GPU (24GiB: RTX 4090, 8GiB: Orin Nano).")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--layers", type=int, default=None, help="Build only the first N layers.")
@click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp32"]), default="bf16", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def frontier_cmd(model: str, memory_budget: str, batch: int, layers: int | None, dtype: str, as_json: bool) -> None:
    """The largest prefill of MODEL that fits the memory budget, and what dominates memory there."""
    import torch

    from .build import Unbuildable, build_model
    from .frontier import cap_memory, largest_fitting, prefill_fits
    from .memory import memory_parts
    from .models import get_model

    if not torch.cuda.is_available():
        raise click.ClickException("the OOM frontier needs a CUDA GPU (it runs real prefills until one fails)")
    budget = _parse_bytes(memory_budget)
    try:
        spec = get_model(model)
        fraction = cap_memory(budget)
        net = build_model(spec, layers=layers, dtype=dtype, device="cuda")
    except (ValueError, Unbuildable) as exc:
        raise click.ClickException(str(exc)) from None
    except torch.cuda.OutOfMemoryError:
        raise click.ClickException(f"{model}: the weights alone exceed {memory_budget}") from None
    frontier = largest_fitting(lambda n: prefill_fits(net, n, batch))
    parts = memory_parts(spec, max(frontier, 1), batch=batch, dtype=dtype).as_dict() if layers is None else {}
    dominant = max(parts, key=parts.get) if parts else None
    row = {"model": model, "memory_budget_B": budget, "fraction": fraction, "batch": batch, "dtype": dtype,
           "frontier_tokens": frontier, "memory_parts_at_frontier_B": parts, "dominant_part": dominant}
    if as_json:
        click.echo(json.dumps(row, indent=2))
    else:
        click.echo(f"{model}: largest prefill under {memory_budget} = {frontier} tokens"
                   + (f"; largest analytic part there: {dominant} ({parts[dominant] / 1e9:.2f} GB)" if dominant else ""))


@e2e.command("plot")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--memory-models", default="qwen2.5-0.5b,mamba2-780m,falcon-h1-0.5b-base,mamba-790m,zamba2-1.2b",
              show_default=True, help="Models for the stacked memory bars.")
@click.option("--memory-seqlen", type=int, default=32768, show_default=True)
def plot_cmd(run_dir: str, memory_models: str, memory_seqlen: int) -> None:
    """TTFT/TPOT against length from RUN_DIR/e2e_rows.jsonl, and stacked memory bars; PNG and SVG."""
    from .plots import load_rows, plot_latency, plot_memory

    paths = []
    try:
        paths += plot_latency(load_rows(run_dir), run_dir)
    except FileNotFoundError as exc:
        click.echo(f"latency: skipped ({exc})")
    paths += plot_memory(memory_models.split(","), memory_seqlen, run_dir)
    for p in paths:
        click.echo(str(p))
