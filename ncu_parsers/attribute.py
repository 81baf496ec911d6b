"""Kernels -> operator points: who launched each kernel (NVTX), and the sums over an operator's kernels.

``ssmscope bench … --profile`` runs each point once inside nested NVTX ranges
``"ssmscope" -> op -> impl -> config_id`` (config_id = ``f"{shape.label()}-{dtype}"``), so a kernel's
push/pop stack names its point. Multi-kernel operators (the official SSD call is five Triton kernels)
are summed per range, with the per-kernel breakdown kept under ``kernels``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from . import metrics as M
from .parse import KernelRecord

ROOT_RANGE = "ssmscope"

# Kernel roles by name pattern, checked in order on the bare function name. The official SSD forward
# (mamba_ssm.ops.triton.ssd_combined) launches _chunk_cumsum_fwd_kernel, _chunk_state_fwd_kernel,
# _state_passing_fwd_kernel, _bmm_chunk_fwd_kernel and _chunk_scan_fwd_kernel.
KERNEL_ROLES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), role) for p, role in (
    (r"chunk_cumsum", "chunk_cumsum"),
    (r"chunk_state", "chunk_state"),
    (r"state_passing", "state_passing"),
    (r"bmm_chunk", "bmm_chunk"),
    (r"chunk_scan", "chunk_scan"),
    # mamba_ssm's decode kernel is `_selective_scan_update_kernel`: match it before the prefill scan.
    (r"selective_scan_update|selective_state_update", "selective_state_update"),
    (r"selective_scan", "selective_scan"),
    (r"causal_conv1d.*update", "causal_conv1d_update"),
    (r"causal_conv1d", "causal_conv1d"),
))

_SUMMED = ("gpu_time_ns", "flops_fp32", "flops_fp16", "flops_fp64", "flops_tensor", "flops_total", "sfu_ops",
           "dram_bytes", "dram_bytes_read", "dram_bytes_write", "l2_bytes", "l1_bytes", "shared_bytes")


def base_name(kernel_name: str) -> str:
    """``void at::vectorized_elementwise_kernel<4, …>(int, T2, T3)`` -> ``vectorized_elementwise_kernel``."""
    s = re.sub(r"^void\s+", "", kernel_name.strip())
    cut = re.search(r"[<(]", s[1:])  # s[1:]: a name may start with "(anonymous namespace)"
    head = s[: cut.start() + 1] if cut else s
    return head.rsplit("::", 1)[-1].strip() or s


def short_name(kernel_name: str) -> str:
    """The kernel's role in its operator (``chunk_scan``) when a pattern knows it, else its bare name."""
    base = base_name(kernel_name)
    return next((role for pattern, role in KERNEL_ROLES if pattern.search(base)), base)


def range_key(nvtx: Iterable[str]) -> tuple[str | None, str | None, str | None] | None:
    """(op, impl, config_id) from a push/pop stack ``[…, "ssmscope", op, impl, config_id, …]``; missing
    levels are None; None when the kernel ran outside any ``ssmscope`` range."""
    stack = list(nvtx)
    if ROOT_RANGE not in stack:
        return None
    rest = stack[stack.index(ROOT_RANGE) + 1:][:3]
    return tuple(rest + [None] * (3 - len(rest)))  # type: ignore[return-value]


def load_rows(path: str | Path) -> list[dict[str, Any]]:
    """Bench rows (``RUN/rows.jsonl``, one JSON object a line)."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def attribute(kernels: Iterable[KernelRecord],
              rows: Iterable[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One record per (op, impl, config_id) range, in launch order; kernels outside ``ssmscope`` are left out.

    ``rows`` (bench rows) supply dtype and shape params, and with them the cost model's minimum bytes.
    """
    groups: dict[tuple, list[KernelRecord]] = {}
    for k in kernels:
        key = range_key(k.nvtx)
        if key is not None:
            groups.setdefault(key, []).append(k)
    index = _index_rows(rows) if rows is not None else {}
    return [_operator_point(key, ks, index.get(key)) for key, ks in groups.items()]


def _operator_point(key: tuple, kernels: list[KernelRecord], row: Mapping[str, Any] | None) -> dict[str, Any]:
    """The flat record the roofline stage reads (README.md lists every key)."""
    op, impl, config_id = key
    summaries = [M.kernel_summary(k, short_name) for k in kernels]
    point: dict[str, Any] = {"op": op, "impl": impl, "config_id": config_id,
                             "dtype": row.get("dtype") if row else _dtype_suffix(config_id),
                             "params": dict(row["params"]) if row else {},
                             "kernels": summaries, "n_kernels": len(summaries)}
    point["gpu"] = (row or {}).get("gpu") or next((k["gpu"] for k in summaries if k["gpu"]), None)
    point.update(_aggregate(summaries))
    point.update(_model(point))
    seconds = point["gpu_time_ns"] * 1e-9 if point["gpu_time_ns"] else None
    point.update(M.rates(point, seconds))
    return point


def _total(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(sum(present)) if present else None


def _time_weighted(pairs: list[tuple[float | None, float | None]]) -> float | None:
    """Mean of values weighted by kernel time (a clock or ceiling over an operator's kernels)."""
    pairs = [(v, t) for v, t in pairs if v is not None and t]
    weight = sum(t for _, t in pairs)
    return sum(v * t for v, t in pairs) / weight if weight else None


def _aggregate(ks: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {f: _total(k[f] for k in ks) for f in _SUMMED}
    precisions = {p for k in ks for p in k["flops_tensor_by_precision"]}
    out["flops_tensor_by_precision"] = {p: _total(k["flops_tensor_by_precision"].get(p) for k in ks)
                                        for p in sorted(precisions)}
    wgmma = [(k["tensor_wgmma_fraction"], k["flops_tensor"]) for k in ks]
    out["tensor_wgmma_fraction"] = _time_weighted(wgmma)  # weighted by tensor FLOPs here
    t = [k["gpu_time_ns"] for k in ks]
    out["sm_clock_hz"] = _time_weighted([(k["sm_clock_hz"], ti) for k, ti in zip(ks, t)])
    names = {n for k in ks for n in k["ceilings"]}
    out["ceilings"] = {n: _time_weighted([(k["ceilings"].get(n), ti) for k, ti in zip(ks, t)])
                       for n in sorted(names)}
    passes = [k["replay_passes"] for k in ks if k["replay_passes"] is not None]
    out["replay_passes"] = max(passes) if passes else None
    sources = {k["dram_source"] for k in ks if k["dram_source"]}
    out["dram_source"] = sources.pop() if len(sources) == 1 else ("mixed" if sources else None)
    out["missing_metrics"] = sorted({m for k in ks for m in k["missing_metrics"]})
    return out


# --------------------------------------------------------------------------------------------------
# Bench rows and the cost model
# --------------------------------------------------------------------------------------------------
def _dtype_suffix(config_id: str | None) -> str | None:
    from ..kernels.op import DTYPES

    suffix = (config_id or "").rsplit("-", 1)[-1]
    return suffix if suffix in DTYPES else None


def _registry_op(name: str | None) -> Any:
    """The registry's op called ``name``; None for other names (a fixture's "gemm") or a family that is
    registered but not importable here."""
    from .. import kernels

    if name not in kernels.names():
        return None
    try:
        return kernels.get(name)
    except ImportError:
        return None


def _split(op: Any, params: Mapping[str, Any], dtype: str | None) -> tuple[Any, str] | None:
    """(validated shape, dtype name), None when the params do not make a valid shape of ``op``."""
    from ..kernels.op import ShapeError

    try:
        return op.split_config({**params, "dtype": dtype or "bf16"})
    except (ShapeError, TypeError):
        return None


def _index_rows(rows: Iterable[Mapping[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """(op, impl, config_id) -> the first bench row of that point, with ``params`` (its ``params`` or
    ``shape`` dict, else its shape-field columns) and ``dtype`` filled in; config_id is rebuilt from the
    shape when a row does not carry it."""
    index: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        op = _registry_op(row.get("op"))
        params = next((dict(row[k]) for k in ("params", "shape") if isinstance(row.get(k), Mapping)), None)
        if params is None:
            params = {f: row[f] for f in op.shape_type.field_names() if f in row} if op else {}
        config_id, dtype = row.get("config_id"), row.get("dtype")
        if not config_id and op and (split := _split(op, params, dtype)):
            config_id = f"{split[0].label()}-{split[1]}"
        if config_id:
            key = (row.get("op"), row.get("impl"), config_id)
            index.setdefault(key, {**row, "params": params, "dtype": dtype or _dtype_suffix(config_id)})
    return index


def _model(point: dict[str, Any]) -> dict[str, Any]:
    """Cost-model terms of the point's shape and the ratio of measured DRAM bytes to the minimum."""
    out: dict[str, Any] = dict.fromkeys(("model_flops", "model_tensor_flops", "model_transcendentals",
                                         "model_min_bytes", "model_impl_bytes", "dram_excess_ratio"))
    cost = _cost(point)
    if cost is None:
        return out
    out.update(model_flops=cost.flops, model_tensor_flops=cost.tensor_flops,
               model_transcendentals=cost.transcendentals, model_min_bytes=cost.min_bytes,
               model_impl_bytes=cost.impl_bytes.get(point["impl"]))
    if point["dram_bytes"] is None:  # no counter at all: the model's minimum stands in, labelled as such
        out.update(dram_bytes=cost.min_bytes, dram_source="cost_model")
    elif cost.min_bytes:
        out["dram_excess_ratio"] = point["dram_bytes"] / cost.min_bytes
    return out


def _cost(point: dict[str, Any]) -> Any:
    op = _registry_op(point["op"]) if point["params"] else None
    split = _split(op, point["params"], point["dtype"]) if op else None
    return op.cost(*split) if split else None
