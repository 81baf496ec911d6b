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
