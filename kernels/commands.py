"""`ssmscope ops` and `ssmscope check`: thin CLI over ssmscope.kernels and ssmscope.kernels.check."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import all_ops, get, names
from .op import ShapeError, default_device


def _select_ops(op_name: str) -> list:
    return all_ops() if op_name == "all" else [get(op_name)]


@click.command()
@click.option("--device", default=None, help="cpu or cuda (default: cuda when present).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def ops(device: str | None, as_json: bool) -> None:
    """List operator families, their implementations and whether each can run here."""
    device = device or default_device()
    listing = []
    for name in names():
        try:
            op = get(name)
        except Exception as exc:  # a broken family must not hide the others
            listing.append({"op": name, "summary": f"failed to load: {type(exc).__name__}: {exc}", "impls": []})
            continue
        impls = []
        for impl in op.impls.values():
            ok, why = impl.availability(device)
            impls.append({"name": impl.name, "kind": impl.kind, "available": ok, "detail": why,
                          "description": impl.description})
        listing.append({"op": op.name, "summary": op.summary, "baseline": op.baseline,
                        "shape_fields": op.shape_type.field_names(), "grids": list(op.grids), "impls": impls})
    if as_json:
        click.echo(json.dumps({"device": device, "ops": listing}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ssmscope ops (device: {device})")
    for col in ("op", "impl", "kind", "available", "detail"):
        table.add_column(col)
    for entry in listing:
        if not entry["impls"]:
            table.add_row(entry["op"], "-", "-", "no", entry["summary"])
        for i, impl in enumerate(entry["impls"]):
            table.add_row(entry["op"] if i == 0 else "", impl["name"], impl["kind"],
                          "yes" if impl["available"] else "no", impl["detail"])
        table.add_section()
    Console().print(table)


@click.command()
@click.argument("op_name", metavar="OP", type=click.Choice(["all", *names()]))
@click.option("--impl", "impl_names", default=None, help="Comma-separated implementations (default: all but ref).")
@click.option("--grid", default="small", show_default=True, help="small | paper | upstream.")
@click.option("--device", default=None, help="cpu or cuda (default: cuda when present).")
@click.option("--seed", type=int, default=None, help="Base seed (default: fresh, recorded in the output).")
@click.option("--against", default=None, help="Also compare with this impl using the upstream (rtol, atol) "
              "(default: the op's baseline, e.g. official).")
@click.option("--limit", type=int, default=None, help="Check only the first N configs of the grid.")
@click.option("--where", default=None, help="Keep grid configs whose fields equal these values, e.g. "
              "'dtype=bf16,z=True'.")
@click.option("--save", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write every result as JSON lines to this file.")
def check(op_name: str, impl_names: str | None, grid: str, device: str | None, seed: int | None,
          against: str | None, limit: int | None, where: str | None, json_path: Path | None) -> None:
    """Compare implementations of OP with the float64 reference (and with the official kernel).

    Exits non-zero when any case fails (error above tolerance, NaN, crash, or outside the upstream
    tolerance against the official kernel).
    """
    from rich.console import Console
    from rich.table import Table

    from .check import check as run_check

    console = Console(width=None if sys.stdout.isatty() else 160)
    results = []
    sink = json_path.open("w") if json_path else None
    try:
        for op in _select_ops(op_name):
            impls = impl_names.split(",") if impl_names else None
            if impls and op_name == "all":
                impls = [i for i in impls if i in op.impls]
                if not impls:
                    continue
            configs = _filter(op, op.grid(grid), where)[:limit]
            for res in run_check(op, impls, grid=grid, configs=configs, device=device, seed=seed, against=against):
                results.append(res)
                if sink:
                    sink.write(json.dumps(res.as_dict()) + "\n")
                    sink.flush()
                mark = {"pass": "[green]pass[/]", "fail": "[red]FAIL[/]", "error": "[red]ERROR[/]"}.get(
                    res.status, res.status)
                if res.baseline_ok is False:
                    mark += f" [red](≠ {res.baseline})[/]"
                err = f"{res.rel_err:.2e}" if res.rel_err is not None else "-"
                console.print(f"{res.op:<22} {res.impl:<10} {res.config:<40} {res.dtype:<5} {err:>9} {mark} {res.message}",
                              highlight=False)
    except ShapeError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if sink:
            sink.close()
    _summary(console, results)
    if any(r.failed for r in results):
        sys.exit(1)


def _filter(op, configs: list[dict], where: str | None) -> list[dict]:
    """Configs whose shape fields (defaults included) and dtype match every ``key=value`` of ``where``."""
    if not where:
        return configs
    wanted = dict(item.split("=", 1) for item in where.split(","))

    def fields(config: dict) -> dict:
        shape, dtype = op.split_config(config)
        return {**shape.params(), "dtype": dtype}

    return [c for c in configs if all(str(fields(c).get(k)) == v for k, v in wanted.items())]


def _summary(console, results) -> None:
    from rich.table import Table

    from .check import summarize

    table = Table(title="check summary")
    cols = ("op", "impl", "dtype", "pass", "fail", "unsupported", "unavailable", "oom", "error", "max rel err",
            "vs baseline")
    for col in cols:
        table.add_column(col)
    for row in summarize(results):
        err = f"{row['max_rel_err']:.2e}" if row["max_rel_err"] is not None else "-"
        vs = (f"{row['within_upstream_tol']}/{row['compared_with_baseline']} within upstream tol of {row['baseline']}"
              if row["compared_with_baseline"] else "-")
        table.add_row(row["op"], row["impl"], row["dtype"], *(str(row[s]) for s in cols[3:9]), err, vs)
    console.print(table)
    if results:
        console.print(f"seed of the first case: {results[0].seed}")
