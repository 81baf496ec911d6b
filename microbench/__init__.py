"""Microbenchmarks: check, time and profile every (op, impl, config) point; validate a user's kernel.

    >>> from ssmscope import microbench
    >>> rows = microbench.run_sweep("causal_conv1d", ["triton", "official"],
    ...                             [{"batch": 1, "dim": 1536, "seqlen": 4096}], "runs/conv", device="cuda")
    >>> microbench.load_rows("runs/conv")[0]["device_ms"]

Stages: ``grid`` (value syntax, configs), ``timing`` (the one timing function), ``sweep`` (check -> time ->
row), ``rows`` (schema, durable append, export), ``metrics`` (rates), ``nvtx`` (ranges for Nsight Compute),
``validate`` (a user's kernel vs the reference and a baseline), ``plots`` (scaling charts), ``fidelity``
(our device time vs Nsight Compute's for the same points).
README.md documents the row schema and the measurement method.
"""
from __future__ import annotations

from .fidelity import compare_with_ncu
from .grid import GridError, build_configs, parse_values, sweep_fields
from .nvtx import config_id, nvtx_ranges
from .rows import ROW_KEYS, STATUSES, export, load_rows, load_samples
from .stats import SpeedupCI, bootstrap_speedup, summarize
from .sweep import Settings, SweepError, run_sweep
from .timing import Timing, time_callable
from .validate import CallableImpl, ValidateResult, load_candidate, validate


def plot_scaling(*args, **kwargs):
    """Latency vs a shape field per impl, one log-log panel per op (see :func:`plots.plot_scaling`)."""
    from .plots import plot_scaling as _plot  # matplotlib is imported only when plotting

    return _plot(*args, **kwargs)


__all__ = ["CallableImpl", "GridError", "ROW_KEYS", "STATUSES", "Settings", "SpeedupCI", "SweepError", "Timing",
           "ValidateResult", "bootstrap_speedup", "build_configs", "compare_with_ncu", "config_id", "export", "load_candidate",
           "load_rows", "load_samples", "nvtx_ranges", "parse_values", "plot_scaling", "run_sweep", "summarize",
           "sweep_fields", "time_callable", "validate"]
