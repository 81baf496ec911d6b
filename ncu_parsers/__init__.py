"""Nsight Compute counters -> per-kernel and per-operator records for the roofline stage.

    >>> from ssmscope import ncu_parsers
    >>> kernels = ncu_parsers.parse_file("RUN/ncu_raw.csv")          # raw or details CSV, or .ncu-rep
    >>> points = ncu_parsers.attribute(kernels, ncu_parsers.load_rows("RUN/rows.jsonl"))
    >>> points[0]["flops_tensor"], points[0]["dram_bytes"], points[0]["ceilings"]["dram"]

``collect(op, bench_args, run_dir)`` runs ``ssmscope bench`` under ncu with :func:`metric_set` and writes
``RUN/ncu_points.jsonl``; ``ssmscope ncu`` is the command line over these calls.
"""
from __future__ import annotations

from .attribute import attribute, load_rows, short_name
from .collect import build_command, collect
from .metrics import kernel_summary, metric_set
from .parse import KernelRecord, NcuError, parse_csv, parse_file

__all__ = ["KernelRecord", "NcuError", "attribute", "build_command", "collect", "kernel_summary", "load_rows",
           "metric_set", "parse_csv", "parse_file", "short_name"]
