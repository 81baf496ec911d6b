"""`ssmscope bench`, `ssmscope validate` and `ssmscope plot`: a thin click layer over ssmscope.microbench."""
from __future__ import annotations

import datetime as _dt
import json
import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from ..kernels import names as op_names
from ..kernels.op import ShapeError

SHAPE_FLAGS = ("batch", "dim", "dstate", "heads", "headdim", "seqlen")
TIMING_KEYS = {"cache": "cache", "budget": "budget_s", "min_reps": "min_reps", "max_reps": "max_reps",
               "cv": "cv_target"}


def _shape_options(fn):
    for flag in reversed(SHAPE_FLAGS):
        fn = click.option(f"--{flag}", default=None, metavar="VALUES",
                          help=f"The op's {flag} field: 1024,4096 | 1k:128k:x2 | 128:1024:+128 (k = 1024).")(fn)
    return fn


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("targets", nargs=-1, metavar="OP|all|export RUN")
@click.option("--impl", "impl_names", default=None, help="Comma-separated impls (default: all but the reference).")
@_shape_options
@click.option("--dtype", default=None, metavar="DTYPES", help="fp32,fp16,bf16 (default bf16, or the grid's).")
@click.option("--set", "sets", multiple=True, metavar="FIELD=VALUES", help="Sweep any shape field (repeatable).")
@click.option("--grid", default=None, help="paper (default) | quick | upstream; with shape flags: override "
              "those fields in every config of the grid.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A YAML sweep file (ops, impls, grids, --set values, timing).")
@click.option("--where", default=None, help="Keep configs whose fields equal these values, e.g. 'dtype=bf16'.")
@click.option("--limit", type=int, default=None, help="Only the first N configs of each op.")
@click.option("--device", default=None, help="cpu or cuda (default: cuda when present).")
@click.option("--cache", type=click.Choice(["cold", "warm"]), default="cold", show_default=True,
              help="cold: L2 flushed (2x L2 read) before every repetition.")
@click.option("--budget", type=float, default=1.0, show_default=True, help="Seconds of repetitions per point.")
@click.option("--min-reps", type=int, default=10, show_default=True)
@click.option("--max-reps", type=int, default=1000, show_default=True)
@click.option("--cv", type=float, default=0.02, show_default=True, help="Stop once std/mean is at most this.")
@click.option("--no-graph", is_flag=True, help="Time eager launches with CUDA events instead of graph replay.")
@click.option("--baseline", default=None, help="Impl that speedups are relative to (default: the op's).")
@click.option("--check-seqlen", type=int, default=2048, show_default=True,
              help="Check correctness at min(seqlen, this) (the float64 reference is slow at long sequences).")
@click.option("--seed", type=int, default=0, show_default=True, help="Input seed of the first config.")
@click.option("--profile", is_flag=True, help="Run each point once inside NVTX ranges for Nsight Compute (no timing).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory (default runs/<op>-<time>).")
@click.option("--resume", is_flag=True, help="Continue a run: skip points that already have a row.")
@click.option("--peaks", "peaks_device", default=None, help="Roofline device id for peak fractions (e.g. h100-sxm).")
@click.option("--peak", "peak_items", multiple=True, metavar="KEY=VALUE", help="A peak, e.g. "
              "dram_bandwidth_B_per_s=3.35e12 (repeatable; overrides --peaks).")
@click.option("--csv", "to_csv", is_flag=True, help="Also write RUN/rows.csv.")
@click.option("--parquet", "to_parquet", is_flag=True, help="Also write RUN/rows.parquet (needs pyarrow).")
@click.pass_context
def bench(ctx: click.Context, targets: tuple[str, ...], impl_names: str | None, dtype: str | None,
          sets: tuple[str, ...], grid: str | None, config_path: Path | None, where: str | None, limit: int | None,
          device: str | None, cache: str, budget: float, min_reps: int, max_reps: int, cv: float, no_graph: bool,
          baseline: str | None, check_seqlen: int, seed: int, profile: bool, out_dir: Path | None, resume: bool,
          peaks_device: str | None, peak_items: tuple[str, ...], to_csv: bool, to_parquet: bool,
          **shape_flags: str | None) -> None:
    """Check and time OP's implementations over a sweep; rows go to RUN/rows.jsonl as each point finishes.

    \b
    ssmscope bench causal_conv1d --impl triton,official --seqlen 1k:64k:x2 --dim 1536,4096
    ssmscope bench selective_scan --grid quick --set dstate=16,64 --dtype bf16 --out runs/scan
    ssmscope bench all --grid paper --peaks h100-sxm
    ssmscope bench --config sweep.yaml --out runs/sweep
    ssmscope bench export RUN --csv --parquet
    """
    from . import rows as R

    if targets[:1] == ("export",):
        if len(targets) != 2:
            raise click.UsageError("usage: ssmscope bench export RUN [--csv] [--parquet]")
        _export(Path(targets[1]), to_csv or not to_parquet, to_parquet)
        return
    if len(targets) > 1:
        raise click.UsageError(f"one OP (or 'all'), got {' '.join(targets)}")
    op_name = targets[0] if targets else None
    if op_name is None and config_path is None:
        raise click.UsageError("name an OP (or 'all'), or pass --config sweep.yaml")
    if op_name is not None and op_name not in ("all", *op_names()):
        raise click.UsageError(f"unknown op {op_name!r}; ops are all, {', '.join(op_names())}")
    timing = {TIMING_KEYS[k]: ctx.params[k] for k in TIMING_KEYS}
    try:
        ops, impls, configs, timing = _sweep_plan(ctx, op_name, impl_names, shape_flags, dtype, sets, grid,
                                                  config_path, where, limit, timing)
        peaks = _peaks(peaks_device, peak_items)
    except (ShapeError, ValueError, RuntimeError) as exc:
        raise click.UsageError(str(exc)) from None
    run_dir = out_dir or Path("runs") / f"{op_name or config_path.stem}-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    rows = _run(ops, impls, configs, run_dir, resume=resume, device=device, use_graph=not no_graph,
                baseline=baseline, check_seqlen_cap=check_seqlen, seed=seed, profile=profile, peaks=peaks, **timing)
    _summary(rows, profile)
    click.echo(f"{len(rows)} row(s) written to {run_dir / R.ROWS}")
    if to_csv or to_parquet:
        _export(run_dir, to_csv, to_parquet)


def _sweep_plan(ctx: click.Context, op_name: str | None, impl_names: str | None, shape_flags: dict[str, Any],
                dtype: str | None, sets: tuple[str, ...], grid: str | None, config_path: Path | None,
                where: str | None, limit: int | None, timing: dict[str, Any]) -> tuple:
    """(ops, impls, {op: configs}, timing settings) from the flags or the sweep file."""
    from .. import kernels
    from .grid import GridError, build_configs, configs_from_entry, load_sweep_file, sweep_fields

    given = {k: v for k, v in shape_flags.items() if v is not None}
    if config_path is not None:
        if given or sets or dtype or grid or op_name:
            raise GridError("--config holds the whole sweep: drop OP and the shape, --set, --dtype and --grid flags")
        data = load_sweep_file(config_path)
        for key, value in (data.get("timing") or {}).items():
            cli = {v: k for k, v in TIMING_KEYS.items()}.get(key)
            if cli is None:
                raise GridError(f"{config_path}: unknown timing key {key!r} ({', '.join(TIMING_KEYS.values())})")
            if ctx.get_parameter_source(cli) == ParameterSource.DEFAULT:  # flags win over the file
                timing[key] = value
        configs, impls_by_op = {}, {}
        ops = []
        for name, entry in data["ops"].items():
            op = kernels.get(name)
            ops.append(op)
            configs[name] = configs_from_entry(op, entry)
            if entry.get("impl"):
                impls_by_op[name] = entry["impl"] if isinstance(entry["impl"], list) else str(entry["impl"]).split(",")
        return ops, impls_by_op, configs, timing
    ops = kernels.all_ops() if op_name == "all" else [kernels.get(op_name)]
    extra_sets = list(sets) + ([f"dtype={dtype}"] if dtype else [])
    configs, kept = {}, []
    for op in ops:
        try:
            fields = sweep_fields(op, given, extra_sets)
        except GridError:
            if op_name != "all":
                raise
            continue  # `bench all --dstate 16` runs the ops that have a dstate
        configs[op.name] = build_configs(op, grid=grid, fields=fields, where=where, limit=limit)
        kept.append(op)
    if not kept:
        raise GridError(f"no op has all of the fields {', '.join(given) or ''} {' '.join(sets)}".strip())
    impls = impl_names.split(",") if impl_names else None
    return kept, impls, configs, timing


def _peaks(device_id: str | None, items: tuple[str, ...]) -> dict[str, float] | None:
    from .metrics import parse_peaks, peaks_from_device

    peaks = peaks_from_device(device_id) if device_id else {}
    peaks.update(parse_peaks(items))
    return peaks or None


def _run(ops: list, impls: Any, configs: dict, run_dir: Path, *, resume: bool, **settings: Any) -> list[dict]:
    """Run the sweep under a progress bar (shown on a terminal)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .sweep import SweepError, run_sweep

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        transient=True, disable=not sys.stderr.isatty())
    try:
        with progress:
            task = progress.add_task("bench", total=None)

            def on_row(row: dict) -> None:
                progress.update(task, advance=1, description=f"{row['op']} {row['impl']} {row['config_id']}")

            return run_sweep(ops, impls, configs, run_dir, resume=resume, on_row=on_row,
                             on_plan=lambda n: progress.update(task, total=n), **settings)
    except (SweepError, ShapeError) as exc:
        raise click.UsageError(str(exc)) from None
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: every finished point is in {run_dir / 'rows.jsonl'}; "
                   "rerun the same command with --resume to continue", err=True)
        sys.exit(130)


def _summary(rows: list[dict], profile: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    if not rows:
        return
    console = Console(width=None if sys.stdout.isatty() else 200)
    table = Table(title="bench summary" if not profile else "profiled points")
    cols = ["op", "impl", "config", "status"] + ([] if profile else ["ms", "IQR", "GB/s", "TFLOP/s", "speedup",
                                                                     "timer", "launch-bound"]) + ["message"]
    for col in cols:
        table.add_column(col, overflow="fold")
    for r in rows:
        status = {"ok": "[green]ok[/]", "wrong": "[red]WRONG[/]", "error": "[red]error[/]"}.get(r["status"], r["status"])
        cells = [r["op"], r["impl"], r["config_id"], status]
        if not profile:
            sp = _fmt(r["speedup_vs_baseline"], ".3g")
            if r["speedup_ci_low"] is not None:
                sp += f" [{r['speedup_ci_low']:.3g}, {r['speedup_ci_high']:.3g}]"
            cells += [_fmt(r["device_ms"], ".4g"), _fmt(r["device_ms_iqr"], ".3g"), _fmt(r["achieved_gbps"], ".4g"),
                      _fmt(r["achieved_tflops"], ".3g"), sp, r["timer"] or "-",
                      {True: "yes", False: "no"}.get(r["launch_bound"], "-")]
        cells.append((r["message"] or "")[:120])
        table.add_row(*(str(c) for c in cells))
    console.print(table)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    console.print(", ".join(f"{n} {s}" for s, n in counts.items()), highlight=False)


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _export(run_dir: Path, csv: bool, parquet: bool) -> None:
    from .rows import export

    try:
        for path in export(run_dir, csv=csv, parquet=parquet):
            click.echo(f"wrote {path}")
    except (FileNotFoundError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None


# --------------------------------------------------------------------------------------------------
# validate
# --------------------------------------------------------------------------------------------------
@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--candidate", required=True, help="my_pkg.module:function or path/to/file.py:function "
              "(the official signature of --op).")
@click.option("--op", "op_name", required=True, type=click.Choice(op_names()))
@click.option("--baseline", default=None, help="Impl to time against (default: the op's baseline, e.g. official).")
@click.option("--grid", default="quick", show_default=True, help="quick | paper | upstream.")
@click.option("--fail-below", type=float, default=None, help="Fail when a speedup interval's upper bound is below this.")
@click.option("--device", default=None, help="cpu or cuda (default: cuda when present).")
@click.option("--cache", type=click.Choice(["cold", "warm"]), default="cold", show_default=True)
@click.option("--budget", type=float, default=0.5, show_default=True, help="Seconds of repetitions per impl and point.")
@click.option("--min-reps", type=int, default=10, show_default=True)
@click.option("--max-reps", type=int, default=1000, show_default=True)
@click.option("--cv", type=float, default=0.02, show_default=True)
@click.option("--confidence", type=float, default=0.95, show_default=True, help="Bootstrap interval level.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--where", default=None, help="Keep configs whose fields equal these values, e.g. 'dtype=bf16'.")
@click.option("--limit", type=int, default=None, help="Only the first N configs.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def validate(candidate: str, op_name: str, baseline: str | None, grid: str, fail_below: float | None,
             device: str | None, cache: str, budget: float, min_reps: int, max_reps: int, cv: float,
             confidence: float, seed: int, where: str | None, limit: int | None, as_json: bool) -> None:
    """Check a kernel against the float64 reference and time it against the baseline on the same inputs.

    Exits 1 when a point is wrong or crashes, or (with --fail-below) when a speedup interval lies below it.
    """
    from .. import kernels
    from .sweep import SweepError
    from .validate import ValidateError, validate as run_validate

    def show(p) -> None:
        if as_json:
            return
        err = f"{p.rel_err:.2e}" if p.rel_err is not None else "-"
        sp = "-"
        if p.speedup is not None:
            sp = f"{p.speedup:.3f}x" + (f" [{p.ci_low:.3f}, {p.ci_high:.3f}]" if p.ci_low is not None else "")
        times = f"{_fmt(p.candidate_ms, '.4f')} ms vs {_fmt(p.baseline_ms, '.4f')} ms"
        note = "; ".join(x for x in (p.message, p.baseline_message) if x)
        click.echo(f"{p.config_id:<44} err {err:>9} {p.status.upper() if p.status != 'ok' else 'ok':<11} "
                   f"{times:<28} speedup {sp} {note}".rstrip())

    try:
        result = run_validate(kernels.get(op_name), candidate, baseline=baseline, grid=grid, device=device,
                              fail_below=fail_below, cache=cache, budget_s=budget, min_reps=min_reps,
                              max_reps=max_reps, cv_target=cv, confidence=confidence, seed=seed, where=where,
                              limit=limit, on_point=show)
    except (ValidateError, SweepError, ShapeError) as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"op": result.op, "candidate": result.candidate, "baseline": result.baseline,
                               "device": result.device, "passed": result.passed, "failures": result.failures,
                               "points": [p.as_dict() for p in result.points]}, indent=2, default=str))
    else:
        ok = sum(p.status == "ok" for p in result.points)
        click.echo(f"{ok}/{len(result.points)} point(s) correct; baseline {result.baseline}")
        for failure in result.failures:
            click.echo(f"FAIL {failure}")
        click.echo("PASSED" if result.passed else "FAILED")
    if not result.passed:
        sys.exit(1)


# --------------------------------------------------------------------------------------------------
# plot
# --------------------------------------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def plot() -> None:
    """Charts of bench runs."""


@plot.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--x", "xs", multiple=True, default=("seqlen",), show_default=True,
              help="Shape field on the x axis (repeatable: one chart each).")
@click.option("--op", "ops", multiple=True, help="Only these ops (repeatable).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the PNG and SVG go (default: the run directory).")
def scaling(run_dir: Path, xs: tuple[str, ...], ops: tuple[str, ...], out_dir: Path | None) -> None:
    """Latency vs a shape field per impl, log-log, one panel per op (PNG + SVG)."""
    from .plots import plot_scaling

    for x in xs:
        try:
            paths = plot_scaling(run_dir, x, out=out_dir, ops=list(ops) or None)
        except (ValueError, FileNotFoundError) as exc:
            raise click.ClickException(str(exc)) from None
        for p in paths:
            click.echo(f"wrote {p}")
