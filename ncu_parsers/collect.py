"""Run a bench sweep under Nsight Compute and turn its output into ``RUN/ncu_points.jsonl``.

    ncu --nvtx --nvtx-include ssmscope/ --metrics <set> --clock-control none --cache-control all [--set full]
        --csv --page raw --log-file RUN/ncu_raw.csv  <python> -m ssmscope bench OP <flags> --profile --out RUN

``--log-file`` keeps ncu's CSV apart from the bench's own stdout. ``--clock-control none`` lets the GPU
boost as it does in the timed sweep (ncu would lock the base clock: 1.36-1.59 GHz instead of 1.98 on the
H100); the clock ncu saw is recorded per point either way. ``--cache-control all`` flushes the caches
before every replay pass, so each pass sees the same cold start.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .attribute import attribute, load_rows
from .metrics import SM_HZ, metric_set
from .parse import KernelRecord, NcuError, find_ncu, parse_csv

RAW_CSV = "ncu_raw.csv"
REPORT = "profile.ncu-rep"
POINTS = "ncu_points.jsonl"
META = "ncu_meta.json"
ROWS = "rows.jsonl"
PERMISSION_ERROR = "ERR_NVGPUCTRPERM"


@dataclass
class CollectResult:
    run_dir: Path
    command: list[str]
    points: list[dict[str, Any]] = field(default_factory=list)
    n_kernels: int = 0
    n_unattributed: int = 0


def ncu_not_found() -> NcuError:
    return NcuError("ncu (Nsight Compute) not found on PATH, in $CUDA_HOME/bin or /usr/local/cuda/bin; "
                    "install Nsight Compute or pass --ncu /path/to/ncu")


def ncu_args(run_dir: str | Path, *, ncu: str = "ncu", metrics: Sequence[str] | None = None, full: bool = False,
             report: bool = False) -> list[str]:
    """ncu and its options, up to the profiled command: ranges under ``ssmscope``, our metric set, boost
    clocks, caches flushed before every pass; the raw page as CSV in ``RUN/ncu_raw.csv``, or with
    ``report`` a ``RUN/profile.ncu-rep`` instead (:func:`export_command` then makes the CSV)."""
    run_dir = Path(run_dir)
    cmd = [ncu, "--nvtx", "--nvtx-include", "ssmscope/", "--metrics", ",".join(metrics or metric_set()),
           "--clock-control", "none", "--cache-control", "all"]
    if full:
        cmd += ["--set", "full"]
    if report:
        return cmd + ["--export", str(run_dir / REPORT), "--force-overwrite"]
    return cmd + ["--csv", "--page", "raw", "--log-file", str(run_dir / RAW_CSV)]


def build_command(op: str, bench_args: Sequence[str], run_dir: str | Path, *, ncu: str = "ncu",
                  python: str | None = None, metrics: Sequence[str] | None = None, full: bool = False,
                  report: bool = False) -> list[str]:
    """The ncu command line that profiles ``ssmscope bench OP <bench_args> --profile --out RUN``; with
    ``--config`` among the bench arguments the sweep file names the ops, so OP is left out."""
    target = [] if "--config" in bench_args or op == "config" else [op]
    return ncu_args(run_dir, ncu=ncu, metrics=metrics, full=full, report=report) + [
        python or sys.executable, "-m", "ssmscope", "bench", *target, *bench_args, "--profile", "--out", str(run_dir)]


def export_command(ncu: str, run_dir: str | Path) -> list[str]:
    """``ncu -i RUN/profile.ncu-rep`` -> ``RUN/ncu_raw.csv`` (no GPU needed)."""
    run_dir = Path(run_dir)
    return [ncu, "--import", str(run_dir / REPORT), "--csv", "--page", "raw", "--log-file", str(run_dir / RAW_CSV)]


def detect_cc() -> tuple[int, int] | None:
    """Compute capability of GPU 0 from nvidia-smi (no CUDA context in this process); Jetson boards, which
    have no nvidia-smi query, are taken to be Orin (8.7). None when unknown."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        major, minor = out.stdout.split()[0].split(".")
        return int(major), int(minor)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        pass
    return (8, 7) if Path("/etc/nv_tegra_release").exists() else None


def _run(cmd: list[str], echo: bool = True) -> tuple[int, str]:
    """Run ``cmd``, streaming its output, and return (exit status, the last lines of output)."""
    tail: deque[str] = deque(maxlen=400)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line)
            if echo:
                sys.stdout.write(line)
                sys.stdout.flush()
    return proc.returncode, "".join(tail)


def check_output(status: int, output: str, run_dir: Path) -> None:
    """Turn ncu's failure modes into one line; the bench rows already written stay where they are."""
    kept = f" (bench rows kept in {run_dir / ROWS})" if (run_dir / ROWS).exists() else ""
    if PERMISSION_ERROR in output:
        raise NcuError("ncu may not read the GPU performance counters (ERR_NVGPUCTRPERM): run as root or load "
                       "the driver with NVreg_RestrictProfilingToAdminUsers=0, see "
                       f"https://developer.nvidia.com/ERR_NVGPUCTRPERM{kept}")
    errors = [line.strip() for line in output.splitlines() if line.startswith("==ERROR==")]
    if errors:
        raise NcuError(f"ncu: {errors[0].removeprefix('==ERROR==').strip()}{kept}")
    if "No kernels were profiled" in output:
        raise NcuError("ncu profiled no kernels: none ran inside an NVTX range named 'ssmscope' "
                       f"(does `ssmscope bench --profile` push its ranges?){kept}")
    if status != 0:
        raise NcuError(f"ncu or the bench under it exited with status {status} (output above){kept}")


def collect(op: str, bench_args: Sequence[str], run_dir: str | Path, *, ncu: str | None = None,
            metrics: Sequence[str] | None = None, cc: tuple[int, int] | None = None, full: bool = False,
            report: bool = False, echo: bool = True) -> CollectResult:
    """Profile a bench sweep and write ``RUN/ncu_raw.csv``, ``RUN/ncu_points.jsonl`` and ``RUN/ncu_meta.json``."""
    ncu_path = find_ncu(ncu)
    if ncu_path is None:
        raise ncu_not_found()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = list(metrics or metric_set(cc or detect_cc()))
    cmd = build_command(op, bench_args, run_dir, ncu=ncu_path, metrics=metrics, full=full, report=report)
    csv_path = run_dir / RAW_CSV
    csv_path.unlink(missing_ok=True)  # never parse a previous run's capture
    status, output = _run(cmd, echo)
    log = csv_path.read_text(errors="replace") if csv_path.exists() else ""
    check_output(status, output + log, run_dir)
    if report:
        status, output = _run(export_command(ncu_path, run_dir), echo=False)
        check_output(status, output, run_dir)
        log = csv_path.read_text(errors="replace")
    return _finish(run_dir, parse_csv(log), cmd, _version(ncu_path))


def _version(ncu: str) -> str | None:
    try:
        out = subprocess.run([ncu, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[-1] if out.strip() else None


def _finish(run_dir: Path, kernels: list[KernelRecord], cmd: list[str], version: str | None) -> CollectResult:
    """Attribute parsed kernels to the bench rows and write the points and a small metadata file."""
    rows_path = run_dir / ROWS
    rows = load_rows(rows_path) if rows_path.exists() else None
    points = attribute(kernels, rows)
    with open(run_dir / POINTS, "w") as f:
        for p in points:
            f.write(json.dumps(p) + "\n")
    clocks = [k.value(SM_HZ) for k in kernels]
    clocks = [c for c in clocks if c is not None]
    n_attributed = sum(p["n_kernels"] for p in points)
    meta = {"command": shlex.join(cmd), "ncu_version": version,
            "n_kernels": len(kernels), "n_unattributed": len(kernels) - n_attributed,
            "sm_clock_hz": {"min": min(clocks), "max": max(clocks)} if clocks else None,
            "replay_passes": max((p["replay_passes"] or 0 for p in points), default=None)}
    (run_dir / META).write_text(json.dumps(meta, indent=2) + "\n")
    return CollectResult(run_dir, cmd, points, len(kernels), len(kernels) - n_attributed)
