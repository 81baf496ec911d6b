"""`ssmscope e2e …`: end-to-end model profiles (thin CLI over ssmscope.e2e).

    ssmscope e2e models [--json]                               the registry and each model's kernel calls
    ssmscope e2e memory MODEL --seqlen 4K,32K                  analytic memory parts
    ssmscope e2e run MODEL --seqlen paper --out RUN            TTFT/TPOT/memory/energy per length
    ssmscope e2e sweep qwen2.5-0.5b,mamba2-780m --out RUN      several models; unbuildable / OOM recorded
    ssmscope e2e breakdown MODEL --seqlen 8K --trace t.json    operator classes, kernel paths, roofline tie-back
    ssmscope e2e frontier MODEL --memory-budget 24GiB          largest prefill that fits, what dominates there
    ssmscope e2e plot RUN                                      the figures
"""
from __future__ import annotations

import json
import time
from typing import Any, Callable

import click

from .models import registry


@click.group()
def e2e() -> None:
    """End-to-end model profiles tied back to the kernels."""


def _build_options(fn: Callable) -> Callable:
    """The options every command that builds a model shares."""
    options = [
        click.option("--layers", type=int, default=None, help="Build only the first N layers (quick runs)."),
        click.option("--tiny", is_flag=True, help="A CPU-sized model of the same architecture (smoke runs)."),
        click.option("--device", default=None, help="cuda or cpu (default: cuda when present)."),
        click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp32"]), default="bf16", show_default=True),
        click.option("--backend", type=click.Choice(["hf", "mamba_ssm"]), default="hf", show_default=True,
                     help="transformers, or mamba_ssm's MambaLMHeadModel (Mamba/Mamba-2, CUDA-graph decode)."),
        click.option("--attn", "attn_implementation", type=click.Choice(["sdpa", "eager", "flash_attention_2"]),
                     default="sdpa", show_default=True, help="transformers attention implementation."),
        click.option("--checkpoint", type=click.Path(exists=True, file_okay=False), default=None,
                     help="Load weights from a local checkpoint folder instead of random weights."),
        click.option("--out", type=click.Path(file_okay=False), default=None,
                     help="Run directory: rows appended to OUT/e2e_<kind>.jsonl and .csv."),
        click.option("--json", "as_json", is_flag=True, help="Machine-readable output."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _spec(model: str, layers: int | None = None, tiny: bool = False):
    from .models import get_model, tiny as shrink

    try:
        spec = get_model(model)
        if tiny:
            return shrink(spec, layers=layers or 2)
        return spec.derive(layers=layers) if layers else spec
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _device(device: str | None) -> str:
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise click.ClickException("--device cuda: no CUDA GPU here (use --device cpu)")
    return device


def _base(built, model: str, device: str, layers: int | None, tiny: bool) -> dict[str, Any]:
    return {"model": model, "backend": built.backend, "attn": built.attn, "device": device, "dtype": built.dtype,
            "layers": layers or "all", "tiny": tiny, "params": built.spec.params}


def _emit(rows: list[dict[str, Any]], as_json: bool, out: str | None, kind: str,
          text: Callable[[dict[str, Any]], str]) -> None:
    if out:
        from .rows import write_rows

        write_rows(out, kind, rows)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
    else:
        for r in rows:
            click.echo(text(r))


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
        listing.append({"model": m.name, "hf_id": m.hf_id, "family": m.family, "hf_class": m.hf_class,
                        "params": m.params, "unconfirmed": list(m.unconfirmed), "source": m.source, "calls": calls})
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
        table.add_row(m["model"], m["family"], f"{m['params'] / 1e6:.0f}M", calls, str(len(m["unconfirmed"])))
    Console().print(table)


@e2e.command("memory")
@click.argument("model")
@click.option("--seqlen", default="1024,4096,16384,32768,65536", show_default=True,
              help="Comma-separated prompt lengths (4K style allowed), or 'paper'.")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp32"]), default="bf16", show_default=True)
@click.option("--backend", type=click.Choice(["hf", "mamba_ssm"]), default="hf", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def memory_cmd(model: str, seqlen: str, batch: int, dtype: str, backend: str, as_json: bool) -> None:
    """Analytic memory of MODEL per prompt length: weights, KV cache, SSM/conv state, and logits."""
    from .frontier import parse_lengths
    from .memory import memory_parts

    spec = _spec(model)
    try:
        rows = [{"seqlen": n, **memory_parts(spec, n, batch=batch, dtype=dtype, backend=backend).as_dict()}
                for n in parse_lengths(seqlen)]
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"model": model, "batch": batch, "dtype": dtype, "backend": backend, "rows": rows},
                              indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{model}: analytic memory (GiB), batch {batch}, {dtype}, {backend}; activations and "
                        "allocator overhead need a measurement (e2e run)")
    cols = ("weights", "kv_cache", "ssm_state", "conv_state", "logits_all", "logits_last")
    for col in ("L", *cols):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["seqlen"]), *(f"{r[c] / 2**30:.3g}" for c in cols))
    Console().print(table)


def _run_model(model: str, lengths: list[int], *, gen_len: int, batch: int, reps: int, layers: int | None,
               tiny: bool, device: str, dtype: str, backend: str, attn_implementation: str, checkpoint: str | None,
               memory: bool, decode_profile: bool, energy: bool,
               on_row: Callable[[dict[str, Any]], None] = lambda row: None) -> list[dict[str, Any]]:
    """One model over ``lengths``; an unbuildable model gives one 'unbuildable' row, an OOM or a CUDA fault
    ends its sweep with an 'oom' / 'fault' row.
    ``on_row`` sees each row as soon as it is measured (so an interrupted sweep keeps what it measured)."""
    from .build import Unbuildable, build
    from ..kernels.op import first_line
    from .frontier import is_kernel_fault, is_oom
    from .memory import measure_memory
    from .profile import profile_decode, profile_prefill
    from .run import measure_generation

    spec = _spec(model, layers, tiny)
    try:
        built = build(spec, backend=backend, dtype=dtype, device=device, attn_implementation=attn_implementation,
                      checkpoint=checkpoint)
    except Unbuildable as exc:
        row = {"model": model, "backend": backend, "device": device, "status": "unbuildable", "reason": str(exc)}
        on_row(row)
        return [row]
    base = _base(built, model, device, layers, tiny)
    paths = profile_prefill(built, seqlen=min(lengths[0], 1024), batch=batch, reps=1)["kernel_paths"]
    rows = []
    for n in lengths:
        start = time.perf_counter()
        try:
            row = {**base, "status": "ok", **measure_generation(built, seqlen=n, gen_len=gen_len, batch=batch,
                                                                 reps=reps, energy=energy)}
            if memory:
                row["memory"] = measure_memory(built, n, batch)
            if decode_profile:
                row.update(profile_decode(built, seqlen=n, gen_len=min(gen_len, 32), batch=batch))
            row["kernel_paths"] = paths
        except Exception as exc:  # noqa: BLE001 - OOM and CUDA faults are results; anything else propagates
            if is_oom(exc):
                rows.append({**base, "status": "oom", "seqlen": n, "batch": batch})
            elif is_kernel_fault(exc):  # the CUDA context is lost: nothing more can run in this process
                rows.append({**base, "status": "fault", "seqlen": n, "batch": batch,
                             "reason": first_line(exc)})
            else:
                raise
            on_row(rows[-1])
            break
        row["measure_s"] = round(time.perf_counter() - start, 2)
        rows.append(row)
        on_row(row)
    return rows


def _run_text(r: dict[str, Any]) -> str:
    if r["status"] != "ok":
        return f"{r['model']} L={r.get('seqlen', '-')}: {r['status']} {r.get('reason', '')}".rstrip()
    text = (f"{r['model']} L={r['seqlen']} ({r['backend']}/{r['attn']}, {r['device']}): TTFT {r['ttft_s'] * 1e3:.2f} ms "
            + (f"(prefill forward {r['prefill_s'] * 1e3:.2f}), " if r.get("prefill_s") is not None else ", ")
            + (f"TPOT {r['tpot_s'] * 1e3:.3f} ms, {r['decode_tokens_per_s'] or 0:.1f} tok/s decode"
               if r.get("tpot_s") is not None else "TPOT not measurable (decode below the timing noise)"))
    if r.get("device_busy") is not None:
        text += f", GPU busy {r['device_busy']:.0%} of a decode step"
    if r.get("memory", {}).get("dominant"):
        text += f"; memory dominated by {r['memory']['dominant']}"
    return text


_RUN_OPTIONS = [
    click.option("--seqlen", default="1024", show_default=True,
                 help="Comma-separated prompt lengths (4K style allowed), 'paper' (1K…208K) or 'paper:64K'."),
    click.option("--gen", "gen_len", type=int, default=256, show_default=True, help="New tokens per generation."),
    click.option("--batch", type=int, default=1, show_default=True),
    click.option("--reps", type=int, default=3, show_default=True, help="Timed repetitions (median)."),
    click.option("--memory/--no-memory", default=True, show_default=True, help="Measured memory breakdown."),
    click.option("--decode-profile/--no-decode-profile", default=True, show_default=True,
                 help="Device vs wall time per decode step (profiler)."),
    click.option("--energy/--no-energy", default=True, show_default=True, help="NVML energy of a generation."),
]


def _run_options(fn: Callable) -> Callable:
    for option in reversed(_RUN_OPTIONS):
        fn = option(fn)
    return _build_options(fn)


@e2e.command("run")
@click.argument("model")
@_run_options
def run_cmd(model: str, seqlen: str, device: str | None, out: str | None, as_json: bool, **kw: Any) -> None:
    """TTFT, TPOT, throughput, memory breakdown and energy of MODEL (random weights) over prompt lengths."""
    _sweep([model], seqlen, device, out, as_json, kw)


@e2e.command("sweep")
@click.argument("models")
@_run_options
def sweep_cmd(models: str, seqlen: str, device: str | None, out: str | None, as_json: bool, **kw: Any) -> None:
    """`run` over MODELS (comma-separated, or 'all'); unbuildable models and OOMs are recorded, the sweep goes on."""
    names = list(registry()) if models == "all" else [m.strip() for m in models.split(",") if m.strip()]
    _sweep(names, seqlen, device, out, as_json, kw)


def _sweep(names: list[str], seqlen: str, device: str | None, out: str | None, as_json: bool,
           kw: dict[str, Any]) -> None:
    from .frontier import parse_lengths

    try:
        lengths = parse_lengths(seqlen)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    from .rows import write_rows

    device = _device(device)

    def finished(row: dict[str, Any]) -> None:
        if out:
            write_rows(out, "run", [row])  # as each point finishes: an interrupted sweep keeps what it measured
        if not as_json:
            click.echo(_run_text(row) + (f"  [{row['measure_s']} s]" if "measure_s" in row else ""))

    rows = []
    for name in names:
        rows += _run_model(name, lengths, device=device, on_row=finished, **kw)
        _free(device)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))


def _free(device: str) -> None:
    import gc

    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


@e2e.command("breakdown")
@click.argument("model")
@click.option("--seqlen", default="4096", show_default=True, help="Comma-separated prompt lengths.")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--roofline-device", default=None,
              help="Device id for the floors (default: the GPU at hand, recognised; none on CPU).")
@click.option("--trace", type=click.Path(dir_okay=False), default=None,
              help="Write the Chrome trace here (one file per length: the length is appended).")
@_build_options
def breakdown_cmd(model: str, seqlen: str, batch: int, roofline_device: str | None, trace: str | None,
                  layers: int | None, tiny: bool, device: str | None, dtype: str, backend: str,
                  attn_implementation: str, checkpoint: str | None, out: str | None, as_json: bool) -> None:
    """Operator breakdown of one prefill (device time per class), the kernel path each op took, and the tie-back
    to the kernel families: share of the prefill, roofline floor, Amdahl speed-up at the floor."""
    from .build import Unbuildable, build
    from .frontier import parse_lengths
    from .profile import profile_prefill, tie_back

    device = _device(device)
    spec = _spec(model, layers, tiny)
    try:
        lengths = parse_lengths(seqlen)
        built = build(spec, backend=backend, dtype=dtype, device=device, attn_implementation=attn_implementation,
                      checkpoint=checkpoint)
    except (ValueError, Unbuildable) as exc:
        raise click.ClickException(str(exc)) from None
    roofline_device = roofline_device or _local_roofline_device(device)
    rows = []
    for n in lengths:
        path = None
        if trace:
            path = trace if len(lengths) == 1 else trace.replace(".json", f"_L{n}.json")
        result = profile_prefill(built, seqlen=n, batch=batch, trace=path)
        if roofline_device:
            result["roofline_device"] = roofline_device
            result["tie_back"] = tie_back(spec, result, roofline_device, dtype)
        rows.append({**_base(built, model, device, layers, tiny), "status": "ok", **result})
        if out:
            from .rows import write_rows

            write_rows(out, "breakdown", rows[-1:])  # per length: an interrupted sweep keeps what it measured
    _emit(rows, as_json, None, "breakdown", _breakdown_text)


def _local_roofline_device(device: str) -> str | None:
    if not device.startswith("cuda"):
        return None
    try:
        import torch

        from ..roofline import match_device

        return match_device(torch.cuda.get_device_name()).id
    except Exception:  # noqa: BLE001 - no recognised device (or no roofline stage): no floors
        return None


def _breakdown_text(r: dict[str, Any]) -> str:
    lines = [f"{r['model']} prefill L={r['seqlen']} on {r['device']} ({r['time_source']}): "
             f"{r['device_s'] * 1e3:.2f} ms in kernels, {r['wall_s'] * 1e3:.2f} ms wall"]
    for cls, share in sorted(r["shares"].items(), key=lambda kv: -kv[1]):
        if share:
            lines.append(f"  {cls:<14} {share:6.1%}  {r['classes'][cls] * 1e3:9.3f} ms")
    for op, path in r["kernel_paths"].items():
        lines.append(f"  {op:<22} ran as {path}")
    for op, t in r.get("tie_back", {}).items():
        gap = f"{t['floor_gap']:.1f}x its floor" if t["floor_gap"] else "no floor"
        lines.append(f"  {op:<22} {t['share']:6.1%} of kernel time, {gap}, "
                     f"Amdahl speed-up at the floor {t['amdahl_speedup'] or 1:.2f}x")
    return "\n".join(lines)


@e2e.command("frontier")
@click.argument("model")
@click.option("--memory-budget", default="24GiB", show_default=True,
              help="Cap this process's GPU memory to emulate a smaller GPU (24GiB: RTX 4090, 8GiB: Orin Nano).")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--logits", type=click.Choice(["last", "all"]), default="last", show_default=True,
              help="Prefill keeping last-position logits (generation) or every position's (a plain forward).")
@click.option("--limit", default="1M", show_default=True, help="Longest prompt tried.")
@_build_options
def frontier_cmd(model: str, memory_budget: str, batch: int, logits: str, limit: str, layers: int | None, tiny: bool,
                 device: str | None, dtype: str, backend: str, attn_implementation: str, checkpoint: str | None,
                 out: str | None, as_json: bool) -> None:
    """The largest prefill of MODEL that fits the memory budget, and what dominates memory there."""
    import torch

    from .build import Unbuildable, build
    from .frontier import cap_memory, find_frontier, parse_bytes, parse_tokens

    if not torch.cuda.is_available() or (device and not device.startswith("cuda")):
        raise click.ClickException("the OOM frontier needs a CUDA GPU (it runs real prefills until one fails)")
    spec = _spec(model, layers, tiny)
    try:
        cap = cap_memory(parse_bytes(memory_budget))
        built = build(spec, backend=backend, dtype=dtype, device="cuda", attn_implementation=attn_implementation,
                      checkpoint=checkpoint)
        result = find_frontier(built, batch=batch, logits=logits, limit=parse_tokens(limit))
    except (ValueError, Unbuildable) as exc:
        raise click.ClickException(str(exc)) from None
    except torch.cuda.OutOfMemoryError:
        raise click.ClickException(f"{model}: the weights alone exceed {memory_budget}") from None
    status = "fault" if result["stopped_by"] else "ok"
    row = {**_base(built, model, "cuda", layers, tiny), "status": status, **cap, **result}
    _emit([row], as_json, out, "frontier", lambda r: (
        f"{r['model']}: largest prefill under {memory_budget} = {r['frontier_tokens']} tokens"
        + (f"; memory there dominated by {r['dominant']}" if r.get("dominant") else "")
        + (f"; search stopped by a CUDA fault, not OOM ({r['stopped_by']})" if r["stopped_by"] else "")))


@e2e.command("plot")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--memory-models", default="qwen2.5-0.5b,mamba2-780m,falcon-h1-0.5b-base,mamba-790m,zamba2-1.2b",
              show_default=True, help="Models for the analytic stacked memory bars.")
@click.option("--memory-seqlen", type=int, default=32768, show_default=True)
def plot_cmd(run_dir: str, memory_models: str, memory_seqlen: int) -> None:
    """The figures of RUN_DIR (latency, measured memory, energy, breakdown) and analytic memory bars; PNG + SVG."""
    from .plots import plot_breakdown, plot_energy, plot_latency, plot_memory, plot_memory_measured
    from .rows import load_rows

    runs, breakdowns = load_rows(run_dir, "run"), load_rows(run_dir, "breakdown")
    paths = []
    if runs:
        paths += plot_latency(runs, run_dir) + plot_memory_measured(runs, run_dir) + plot_energy(runs, run_dir)
    if breakdowns:
        paths += plot_breakdown(breakdowns, run_dir)
    if not runs and not breakdowns:
        click.echo(f"{run_dir}: no e2e rows (run `ssmscope e2e run MODEL --out {run_dir}` first); "
                   "analytic memory bars only")
    try:
        paths += plot_memory([m.strip() for m in memory_models.split(",")], memory_seqlen, run_dir)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    for p in paths:
        click.echo(str(p))
