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
