"""`ssmscope ncu`: profile a bench sweep under Nsight Compute, or parse ncu output from anywhere.

    ssmscope ncu selective_scan --seqlen 4k        # = ssmscope ncu collect selective_scan --seqlen 4k
    ssmscope ncu parse RUN/ncu_raw.csv --rows RUN/rows.jsonl --json
"""
from __future__ import annotations

import json
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import click

from .attribute import attribute, load_rows, range_key, short_name
from .collect import build_command, collect as run_collect, detect_cc
from .metrics import kernel_summary, metric_set
from .parse import NcuError, find_ncu, parse_file


class _CollectByDefault(click.Group):
    """A group whose unknown first argument is an op name for ``collect``: ``ssmscope ncu OP …``."""

    def resolve_command(self, ctx: click.Context,
                        args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            return "collect", self.commands["collect"], args
        return super().resolve_command(ctx, args)


@click.group(cls=_CollectByDefault)
def ncu() -> None:
    """Nsight Compute counters per kernel and per operator point.

    `ssmscope ncu OP [bench flags]` profiles `ssmscope bench OP … --profile` (the `collect` command);
    `ssmscope ncu parse FILE` reads ncu CSV or .ncu-rep output on any machine.
    """


def _arch(text: str | None) -> tuple[int, int] | None:
    """``sm_90`` / ``90`` / ``9.0`` -> (9, 0)."""
    if text is None:
        return None
    m = re.fullmatch(r"(?:sm_?)?(\d+)\.?(\d)", text.strip())
    if not m:
        raise click.BadParameter(f"expected an arch like sm_90, sm_87 or 8.9, got {text!r}", param_hint="--ncu-arch")
    return int(m.group(1)), int(m.group(2))


@ncu.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("op_name", metavar="OP")
@click.option("--out", "run_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder for rows.jsonl, ncu_raw.csv, ncu_points.jsonl (default: runs/ncu-OP-<time>).")
@click.option("--ncu", "ncu_path", default=None,
              help="ncu executable (default: PATH, $CUDA_HOME/bin, /usr/local/cuda/bin).")
@click.option("--ncu-metrics", default=None, help="Comma-separated metrics instead of the roofline set.")
@click.option("--ncu-arch", default=None,
              help="Metric set for this arch (sm_90, sm_89, sm_87) instead of nvidia-smi's.")
@click.option("--full-set", is_flag=True, help="Add ncu's full section set (many more replay passes).")
@click.option("--save-report", is_flag=True, help="Keep RUN/profile.ncu-rep (the CSV is then exported from it).")
@click.option("--dry-run", is_flag=True, help="Print the ncu command line and exit.")
@click.argument("bench_args", nargs=-1, type=click.UNPROCESSED)
def collect(op_name: str, run_dir: Path | None, ncu_path: str | None, ncu_metrics: str | None, ncu_arch: str | None,
            full_set: bool, save_report: bool, dry_run: bool, bench_args: tuple[str, ...]) -> None:
    """Profile `ssmscope bench OP [bench flags] --profile` under ncu and attribute kernels to points.

    OP is an op name, `all`, or `config` with `--config sweep.yaml` (the sweep file names the ops). Every flag that is not one of the options below goes to `ssmscope bench` unchanged. Writes
    RUN/ncu_raw.csv, RUN/ncu_points.jsonl (one record per op x impl x config) and RUN/ncu_meta.json.
    """
    from ..kernels import names

    if op_name not in ("all", "config", *names()):
        raise click.BadParameter(f"unknown op {op_name!r}; ops are all, config (with --config FILE), "
                                 f"{', '.join(names())}", param_hint="OP")
    run_dir = run_dir or Path("runs") / f"ncu-{op_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    metrics = ncu_metrics.split(",") if ncu_metrics else None
    cc = _arch(ncu_arch)
    try:
        if dry_run:
            cmd = build_command(op_name, bench_args, run_dir, ncu=find_ncu(ncu_path) or "ncu",
                                metrics=metrics or metric_set(cc or detect_cc()), full=full_set, report=save_report)
            click.echo(shlex.join(cmd))
            return
        result = run_collect(op_name, bench_args, run_dir, ncu=ncu_path, metrics=metrics, cc=cc, full=full_set,
                             report=save_report)
    except NcuError as exc:
        raise click.ClickException(str(exc)) from None
    _print_points(result.points)
    click.echo(f"{result.n_kernels} kernels ({result.n_unattributed} outside ssmscope ranges) -> "
               f"{result.run_dir / 'ncu_points.jsonl'}")


@ncu.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--rows", "rows_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Bench rows (RUN/rows.jsonl): dtype, shape and the cost model's minimum bytes per point.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output: points and unattributed kernels.")
def parse(file: Path, rows_path: Path | None, as_json: bool) -> None:
    """Read ncu output (--csv --page raw or details, or .ncu-rep) and attribute kernels to points."""
    try:
        kernels = parse_file(file)
    except NcuError as exc:
        raise click.ClickException(str(exc)) from None
    points = attribute(kernels, load_rows(rows_path) if rows_path else None)
    outside = [kernel_summary(k, short_name) for k in kernels if range_key(k.nvtx) is None]
    if as_json:
        click.echo(json.dumps({"file": str(file), "points": points, "unattributed": outside}, indent=2))
        return
    _print_points(points)
    if outside:
        click.echo(f"{len(outside)} kernels ran outside any 'ssmscope' NVTX range (see --json)")


@ncu.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def fidelity(run_dir: Path, as_json: bool) -> None:
    """Our timer against ncu's gpu__time_duration for the points RUN both timed and profiled; writes
    RUN/fidelity.jsonl. Expect a ratio near 1 for single-kernel points over ~50 µs."""
    import statistics

    from ..microbench.fidelity import compare_with_ncu

    try:
        records = compare_with_ncu(run_dir)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    with open(run_dir / "fidelity.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    for r in records:
        click.echo(f"{r['op']:<24} {r['impl']:<9} {r['config_id']:<48} ours {r['device_ms'] * 1e3:9.1f} µs  "
                   f"ncu {r['ncu_ms'] * 1e3:9.1f} µs  ratio {r['ratio']:.3f}  kernels {r['n_kernels']}")
    single = [r["ratio"] for r in records if r["n_kernels"] == 1 and r["ncu_ms"] >= 0.05]
    if single:
        click.echo(f"single-kernel points >= 50 µs: {len(single)}, median ratio {statistics.median(single):.3f}, "
                   f"range {min(single):.3f}-{max(single):.3f}")
    click.echo(f"{len(records)} point(s) -> {run_dir / 'fidelity.jsonl'}")


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------
def _si(value: float | None, scale: float, digits: int = 1) -> str:
    return "-" if value is None else f"{value / scale:,.{digits}f}"


def _print_points(points: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ncu: per operator point (kernels indented)")
    for col in ("point / kernel", "time µs", "SM GHz", "TFLOP/s", "tensor TFLOP/s", "DRAM GB/s", "FLOP/B DRAM",
                "DRAM / model", "passes"):
        table.add_column(col, justify="left" if col == "point / kernel" else "right")
    for p in points:
        label = " ".join(str(x) for x in (p["op"], p["impl"], p["config_id"]) if x)
        table.add_row(f"[bold]{label}[/]", *_cells(p), _si(p["dram_excess_ratio"], 1, 2),
                      _si(p["replay_passes"], 1, 0))
        if p["n_kernels"] > 1:
            for k in p["kernels"]:
                table.add_row(f"  {k['short_name']}", *_cells(k), "", "")
    Console(width=None if sys.stdout.isatty() else 160).print(table)


def _cells(s: dict[str, Any]) -> list[str]:
    rate = s["flops_per_s"]
    return [_si(s["gpu_time_ns"], 1e3), _si(s["sm_clock_hz"], 1e9, 2), _si(rate["total"], 1e12, 2),
            _si(rate["tensor"], 1e12, 2), _si(s["bytes_per_s"]["dram"], 1e9, 0), _si(s["ai_dram"], 1, 2)]


__all__ = ["ncu"]
