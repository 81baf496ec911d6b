"""`ssmscope roofline …`: a thin click layer over ssmscope.roofline (devices, place, plot, paper, calibrate)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from .devices import SPEC_UNITS, DeviceError, device_ids, get_device, get_devices

DEFAULT_PLOT_DEVICES = "rtx4090,orin-nano,h100-sxm"


def _si(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.4g} {prefix}{unit}"
    return f"{value:.4g} {unit}".strip()


def _seconds(value: float) -> str:
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value * 1e9:.3g} ns"


def _console():
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc)) from None


@click.group(name="roofline")
def roofline() -> None:
    """Rooflines: device ceilings, analytic placement of ops, measured points, projections and plots."""


# --------------------------------------------------------------------------------------------------
@roofline.command("devices")
@click.argument("ids", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def devices_cmd(ids: tuple[str, ...], as_json: bool) -> None:
    """List the known devices, or show every spec of IDS with its source."""
    try:
        devices = get_devices(list(ids)) if ids else [get_device(i) for i in device_ids()]
    except DeviceError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps([d.as_dict() for d in devices], indent=2))
        return
    from rich.table import Table

    console = _console()
    if not ids:
        table = Table(title="ssmscope roofline devices (SI units; `ssmscope roofline devices ID` for sources)")
        for col in ("id", "name", "CC", "SMs", "FP32", "BF16 tensor", "exp/SFU", "DRAM", "L2", "kind"):
            table.add_column(col)
        for d in devices:
            table.add_row(d.id, d.name, d.compute_capability, str(d.sm_count), _si(d.fp32_flop_per_s, "FLOP/s"),
                          _si(d.tensor_bf16_f32acc_flop_per_s, "FLOP/s"), _si(d.sfu_op_per_s, "/s"),
                          _si(d.dram_bandwidth_B_per_s, "B/s"), _si(d.l2_size_B, "B"), d.kind)
        console.print(table)
        return
    for d in devices:
        table = Table(title=f"{d.id}: {d.name} ({d.arch}, CC {d.compute_capability}, {d.kind})", show_lines=True)
        for col in ("spec", "value", "source / note"):
            table.add_column(col, overflow="fold")
        for key, unit in SPEC_UNITS.items():
            s = d.spec(key)
            text = " — ".join(filter(None, [s.source + (f" [formula: {s.derived}]" if s.derived else ""), s.note]))
            value = _si(s.value, unit) if key != "sm_count" else str(int(s.value))
            table.add_row(key, value, text)
        console.print(table)


# --------------------------------------------------------------------------------------------------
@roofline.command("place")
@click.option("--device", "device_list", required=True, help="Device id(s), comma-separated.")
@click.option("--op", "op_name", required=True, help="Op family (see `ssmscope ops`).")
@click.option("--shape", required=True, help="Shape fields, e.g. batch=1,dim=1536,dstate=16,seqlen=4096.")
@click.option("--dtype", default="bf16", show_default=True)
@click.option("--precision", default=None, help="Tensor precision (bf16|fp16|fp16acc16|tf32|fp32; default from dtype).")
@click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A bench run directory: project its measurements of this op and shape onto each device.")
@click.option("--measured-on", default=None, help="Device the run was measured on (default: from its gpu field).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def place_cmd(device_list: str, op_name: str, shape: str, dtype: str, precision: str | None, run_dir: Path | None,
              measured_on: str | None, as_json: bool) -> None:
    """Where OP at SHAPE sits on each device: intensity, bound, floor time (no GPU needed)."""
    from ..kernels.op import ShapeError
    from .core import parse_shape, place
    from .points import load_run, matching_points, project

    try:
        devices = get_devices(device_list)
        params = parse_shape(shape)
        placements = [place(op_name, params, d, dtype, precision) for d in devices]
        measured = matching_points(load_run(run_dir, measured_on), op_name, params, dtype) if run_dir else []
        projections = [project(m, d, precision=precision) for m in measured for d in devices]
    except ImportError as exc:
        _fail(ValueError(f"op family {op_name} is not available here ({exc})"))
    except (DeviceError, ShapeError, ValueError, FileNotFoundError) as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps({"placements": [p.as_dict() for p in placements],
                               "measured": [m.as_dict() for m in measured],
                               "projections": [p.as_dict() for p in projections]}, indent=2))
        return
    from rich.table import Table

    console = _console()
    first = placements[0]
    console.print(f"{op_name} {first.label} {dtype}: {_si(first.flops, 'FLOP')} "
                  f"({_si(first.tensor_flops, 'FLOP')} tensor), {_si(first.bytes, 'B')} minimum DRAM traffic, "
                  f"{_si(first.transcendentals)} transcendentals; intensity {first.roofline.intensity:.3g} FLOP/B",
                  highlight=False)
    table = Table(title="analytic floor")
    for col in ("device", "bound", "floor", "attainable", "t_dram", "t_compute", "t_sfu"):
        table.add_column(col)
    for p in placements:
        r = p.roofline
        table.add_row(p.device, r.bound, _seconds(r.floor_s), _si(r.attainable, "FLOP/s"),
                      *(_seconds(r.times_s[k]) for k in ("dram", "compute", "sfu")))
    console.print(table)
    if run_dir and not measured:
        console.print(f"no measurement of {op_name} {shape} {dtype} in {run_dir}")
    for proj in projections:
        console.print(f"[bold]{proj.impl}[/] measured {_seconds(proj.measured_s)} on {proj.measured_on} -> "
                      f"{proj.target}: ~{_seconds(proj.estimate_s)} ({_seconds(proj.low_s)} – "
                      f"{_seconds(proj.high_s)}), floor {_seconds(proj.target_floor_s)}\n  assumption: "
                      f"{proj.assumption}", highlight=False)


# --------------------------------------------------------------------------------------------------
@roofline.command("plot")
@click.argument("run_dir", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--device", "device_list", default=DEFAULT_PLOT_DEVICES, show_default=True,
              help="Device id(s), comma-separated: one chart each.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: RUN/roofline, or ssmscope-out/roofline without a run).")
@click.option("--measured-on", default=None, help="Device the run was measured on (default: from its gpu field).")
@click.option("--grid", default="paper", show_default=True, help="Without RUN: the op grid to place analytically.")
@click.option("--op", "ops", default=None, help="Without RUN: only these op families (comma-separated).")
def plot_cmd(run_dir: Path | None, device_list: str, out_dir: Path | None, measured_on: str | None, grid: str,
             ops: str | None) -> None:
    """Roofline charts (PNG + SVG): a bench RUN's measured points (projected onto the other devices), its ncu
    hierarchical points, or without RUN the analytic floors of every op family's grid."""
    from .charts import plot_grid, plot_run
    from .points import load_run

    try:
        devices = get_devices(device_list)
        if run_dir:
            run = load_run(run_dir, measured_on)
            paths = plot_run(run, devices, out_dir or run_dir / "roofline")
            for note in run.notes:
                click.echo(f"note: {note}")
        else:
            paths = plot_grid(devices, out_dir or Path("ssmscope-out/roofline"),
                              ops.split(",") if ops else None, grid)
    except (DeviceError, ValueError, FileNotFoundError) as exc:
        _fail(exc)
    if not paths:
        _fail(ValueError("nothing to plot: no points"))
    for path in paths:
        click.echo(str(path))


# --------------------------------------------------------------------------------------------------
@roofline.command("paper")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (tables and plots).")
@click.option("--device", "extra_devices", default="", help="Devices besides rtx4090 and orin-nano (comma-separated).")
@click.option("--models", default=None, help="Model ids (default: the paper's Mamba, Mamba-2 and Qwen2.5-0.5B).")
@click.option("--lengths", default=None, help="Sequence lengths, comma-separated (default 1K…220K; 4k style ok).")
@click.option("--phase", "phases", default="prefill,decode", show_default=True)
@click.option("--dtype", default="bf16", show_default=True)
def paper_cmd(out_dir: Path, extra_devices: str, models: str | None, lengths: str | None, phases: str,
              dtype: str) -> None:
    """Rooflines of every op family at the paper's model shapes (no GPU): markdown/CSV/JSON tables of bounds
    and floor times, and plots, per device."""
    from .core import _scalar
    from .paper import DEFAULT_DEVICES, DEFAULT_LENGTHS, DEFAULT_MODELS, PaperError, run_paper

    try:
        device_names = list(dict.fromkeys([*DEFAULT_DEVICES, *filter(None, extra_devices.split(","))]))
        devices = get_devices(device_names)
        length_list = [int(_scalar(x.strip())) for x in lengths.split(",")] if lengths else list(DEFAULT_LENGTHS)
        result = run_paper(out_dir, devices=devices, models=models.split(",") if models else list(DEFAULT_MODELS),
                           lengths=length_list, phases=phases.split(","), dtype=dtype)
    except (DeviceError, PaperError, ValueError) as exc:
        _fail(exc)
    for note in result.notes:
        click.echo(f"note: {note}")
    click.echo(result.summary)
    for path in result.paths:
        click.echo(str(path))


# --------------------------------------------------------------------------------------------------
@roofline.command("calibrate")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Profile file <device>@<tag>.yaml or a folder (default: ~/.cache/ssmscope/devices).")
@click.option("--device", "device_id", default=None, help="Datasheet device id (default: recognised from the GPU).")
@click.option("--only", default=None, help="Benchmarks (comma-separated): dram,dram_torch,l2,smem,fp32,sfu,gemm.")
@click.option("--reps", default=20, show_default=True, help="Timed repetitions per benchmark (median reported).")
@click.option("--gemm-n", default=8192, show_default=True, help="Size of the bf16 GEMM.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def calibrate_cmd(out: Path | None, device_id: str | None, only: str | None, reps: int, gemm_n: int,
                  as_json: bool) -> None:
    """Measure this GPU's ceilings (DRAM, L2, shared memory, FP32, exp/SFU, BF16 GEMM) and save a measured
    profile beside the datasheet one; each is reported as a fraction of the datasheet."""
    from .calibrate import CalibrationError, profile_from, run_calibration, write_profile

    try:
        cal = run_calibration(device_id, only=only.split(",") if only else None, reps=reps, gemm_n=gemm_n,
                              progress=None if as_json else lambda name: click.echo(f"running {name} …", err=True))
        path = write_profile(profile_from(cal.measurements, cal.device, cal.info), out) if cal.measurements else None
    except (CalibrationError, DeviceError) as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps({"device": cal.device.id, "gpu": cal.gpu_name, "info": cal.info,
                               "measurements": [m.as_dict() for m in cal.measurements], "errors": cal.errors,
                               "profile": str(path) if path else None}, indent=2))
    else:
        _print_calibration(cal, path)
    if cal.errors:
        sys.exit(1)


def _print_calibration(cal: Any, path: Path | None) -> None:
    from rich.table import Table

    table = Table(title=f"calibrate: {cal.gpu_name} vs {cal.device.id} datasheet")
    for col in ("benchmark", "measured", "datasheet", "fraction", "median", "spread", "SM clock", "check", "detail"):
        table.add_column(col, overflow="fold")
    for m in cal.measurements:
        table.add_row(m.name, _si(m.value, m.unit), _si(m.datasheet, m.unit),
                      f"{m.fraction:.0%}" if m.fraction else "-", _seconds(m.median_s), f"{m.spread:.1%}",
                      f"{m.sm_clock_MHz:.0f} MHz" if m.sm_clock_MHz else "-", m.check, m.detail)
    console = _console()
    console.print(table)
    for name, error in cal.errors.items():
        console.print(f"[red]{name} failed:[/] {error}", highlight=False)
    if path:
        console.print(f"measured profile: {path} (load it as device {path.stem!r})", highlight=False)
