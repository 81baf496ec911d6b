"""`ssmscope roofline paper`: every op family at the model shapes of arXiv 2507.12442 on the paper's devices.

The shapes come from the e2e stage's model registry: ``get_model(name).op_calls(seqlen, batch=1, phase=...)``
lists the kernel calls of one forward pass (prefill over ``seqlen`` tokens, or one decode step with ``seqlen``
tokens of context) as OpCall(op, params, count, where). Each call is placed analytically on each device; the
floor of a forward pass is the sum over calls of count x floor (kernels run one after another).

Writes to DIR: ``table.csv`` / ``table.json`` (one row per call x device), ``table.md`` (per-model totals with
the dominant op, then every call), and ``<device>_<phase>.png/.svg`` charts.
"""
from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .charts import placement_points
from .core import place
from .devices import Device
from .plot import ChartPoint, roofline_chart, save_figure

log = logging.getLogger(__name__)

DEFAULT_DEVICES = ("rtx4090", "orin-nano")
DEFAULT_MODELS = ("mamba-130m", "mamba-370m", "mamba-790m", "mamba-1.4b", "mamba-2.8b",
                  "mamba2-130m", "mamba2-370m", "mamba2-780m", "mamba2-1.3b", "mamba2-2.7b", "qwen2.5-0.5b")
DEFAULT_LENGTHS = (1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 225280)  # 1K … 220K
FAMILY_MARKERS = {"mamba": "o", "mamba2": "s", "transformer": "^", "hybrid": "D"}


class PaperError(ValueError):
    """The model registry is missing, or a model id is unknown (the message lists the known ones)."""


@dataclass
class PaperResult:
    rows: list[dict[str, Any]]
    notes: list[str]
    paths: list[Path] = field(default_factory=list)
    summary: str = ""


def _registry():
    try:
        from ..e2e import models
    except ImportError as exc:
        raise PaperError(f"the e2e model registry (ssmscope.e2e.models) is not importable: {exc}") from None
    reg = models.registry() if callable(models.registry) else models.registry
    items = reg.keys() if isinstance(reg, Mapping) else reg
    return [str(getattr(x, "name", x)) for x in items], models.get_model


def _family(name: str, spec: Any) -> str:
    family = getattr(spec, "family", None)
    if family:
        return str(family)
    return "mamba2" if name.startswith("mamba2") else "mamba" if name.startswith("mamba") else "transformer"


def _label(seqlen: int) -> str:
    return f"{seqlen // 1024}K" if seqlen % 1024 == 0 else str(seqlen)


def paper_rows(devices: Sequence[Device], models: Sequence[str], lengths: Sequence[int],
               phases: Sequence[str] = ("prefill", "decode"), dtype: str = "bf16",
               batch: int = 1) -> tuple[list[dict[str, Any]], list[str], dict]:
    """One row per (model, phase, seqlen, op call, device); notes say what was skipped and why."""
    from ..kernels import get

    known, get_model = _registry()
    unknown = [m for m in models if m not in known]
    if unknown:
        raise PaperError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(known)}")
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    skipped: dict[str, str] = {}
    # (device, phase) -> [(placement, model, family, where, model seqlen)]
    placements: dict[tuple[str, str], list] = {}
    for model in models:
        spec = get_model(model)
        family = _family(model, spec)
        for phase in phases:
            for seqlen in lengths:
                for call in spec.op_calls(seqlen, batch=batch, phase=phase):
                    op_name = call.op
                    if op_name in skipped:
                        continue
                    try:
                        get(op_name)
                    except ImportError as exc:  # a family whose module is not written yet: say so, loudly
                        skipped[op_name] = str(exc)
                        log.warning("roofline paper: op family %s skipped: %s", op_name, exc)
                        continue
                    params = call.params.params() if hasattr(call.params, "params") else dict(call.params)
                    call_dtype = params.pop("dtype", dtype)
                    try:
                        get(op_name).shape(**params)
                    except ValueError as exc:  # the registry and the family disagree on a shape: report it
                        notes.append(f"{model} {phase} L={seqlen}: {op_name} not placed ({exc})")
                        log.warning("roofline paper: %s", notes[-1])
                        continue
                    for device in devices:
                        p = place(op_name, params, device, call_dtype)
                        r = p.roofline
                        count = int(getattr(call, "count", 1))
                        rows.append({
                            "model": model, "family": family, "phase": phase, "seqlen": seqlen, "op": op_name,
                            "where": str(getattr(call, "where", "")), "count": count, "shape": p.label,
                            "dtype": call_dtype, "device": device.id, "flops": p.flops,
                            "tensor_flops": p.tensor_flops, "transcendentals": p.transcendentals, "bytes": p.bytes,
                            "intensity": r.intensity, "bound": r.bound, "floor_ms": r.floor_s * 1e3,
                            "floor_ms_total": r.floor_s * 1e3 * count,
                            **{f"t_{k}_ms": v * 1e3 for k, v in r.times_s.items()}})
                        placements.setdefault((device.id, phase), []).append(
                            (p, model, family, rows[-1]["where"], seqlen))
    for op_name, reason in sorted(skipped.items()):
        notes.append(f"op family {op_name} skipped: its module does not import ({reason})")
    return rows, notes, placements


def _totals(rows: Sequence[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """(model, phase, seqlen, device) -> total floor, and floor by op."""
    out: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        key = (r["model"], r["phase"], r["seqlen"], r["device"])
        t = out.setdefault(key, {"total_ms": 0.0, "by_op": {}, "bounds": {}})
        t["total_ms"] += r["floor_ms_total"]
        op = f"{r['op']}" + (f" ({r['where']})" if r["where"] else "")
        t["by_op"][op] = t["by_op"].get(op, 0.0) + r["floor_ms_total"]
        t["bounds"][op] = r["bound"]
    return out


def markdown(rows: Sequence[dict[str, Any]], devices: Sequence[Device], notes: Sequence[str]) -> str:
    totals = _totals(rows)
    lines = ["# Roofline floors at the paper's model shapes", "",
             "Analytic floors (no measurement): for each kernel call, max(DRAM bytes / bandwidth, FLOPs / peak, "
             "exps / SFU rate) on the device's datasheet numbers (`ssmscope roofline devices ID` shows each source); "
             "a forward pass's floor is the sum over its calls. Real kernels are slower: see the measured points.", ""]
    if notes:
        lines += ["**Notes**", ""] + [f"- {n}" for n in notes] + [""]
    for device in devices:
        lines += [f"## {device.name} (`{device.id}`)", "",
                  "| model | phase | L | floor (ms) | largest share | bounds |",
                  "| --- | --- | ---: | ---: | --- | --- |"]
        for (model, phase, seqlen, dev), t in totals.items():
            if dev != device.id:
                continue
            top, top_ms = max(t["by_op"].items(), key=lambda kv: kv[1])
            share = top_ms / t["total_ms"] if t["total_ms"] else 0.0
            bounds = ", ".join(f"{op}: {b}" for op, b in t["bounds"].items())
            lines.append(f"| {model} | {phase} | {_label(seqlen)} | {t['total_ms']:.4g} | {top} {share:.0%} "
                         f"| {bounds} |")
        lines.append("")
    lines += ["## Every call", "", "Floor per call in µs; `x n` = calls per forward pass.", "",
              "| model | phase | L | op | where | x n | shape | FLOP/B | " +
              " | ".join(f"{d.id} bound | {d.id} µs" for d in devices) + " |",
              "| --- | --- | ---: | --- | --- | ---: | --- | ---: | "
              + " | ".join("--- | ---:" for _ in devices) + " |"]
    grouped: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        grouped.setdefault((r["model"], r["phase"], r["seqlen"], r["op"], r["where"], r["shape"]), {})[r["device"]] = r
    for (model, phase, seqlen, op, where, shape), per_dev in grouped.items():
        first = next(iter(per_dev.values()))
        cells = " | ".join(f"{per_dev[d.id]['bound']} | {per_dev[d.id]['floor_ms'] * 1e3:.4g}" if d.id in per_dev
                           else "- | -" for d in devices)
        lines.append(f"| {model} | {phase} | {_label(seqlen)} | {op} | {where} | {first['count']} | {shape} | "
                     f"{first['intensity']:.3g} | {cells} |")
    return "\n".join(lines) + "\n"


def run_paper(out_dir: str | Path, devices: Sequence[Device], models: Sequence[str] = DEFAULT_MODELS,
              lengths: Sequence[int] = DEFAULT_LENGTHS, phases: Sequence[str] = ("prefill", "decode"),
              dtype: str = "bf16") -> PaperResult:
    """Tables and plots of the paper's shapes on ``devices``, written to ``out_dir``."""
    for phase in phases:
        if phase not in ("prefill", "decode"):
            raise PaperError(f"unknown phase {phase!r}; use prefill and/or decode")
    rows, notes, placements = paper_rows(devices, models, lengths, phases, dtype)
    if not rows:
        raise PaperError("no op call could be placed (" + "; ".join(notes) + ")" if notes else "no op calls")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "table.csv", out / "table.json", out / "table.md"]
    with paths[0].open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    paths[1].write_text(json.dumps({"devices": [d.as_dict() for d in devices], "models": list(models),
                                    "lengths": list(lengths), "phases": list(phases), "dtype": dtype,
                                    "notes": notes, "rows": rows}, indent=1))
    paths[2].write_text(markdown(rows, devices, notes))
    for device in devices:
        for phase in phases:
            items = placements.get((device.id, phase), [])
            if items:
                paths += _chart(device, phase, items, out)
    return PaperResult(rows=rows, notes=notes, paths=paths, summary=_summary(rows, devices))


def _chart(device: Device, phase: str, items: list, out: Path) -> list[Path]:
    """Colour = op family, marker = model family; one line per (model, op, where) as the model's L grows."""
    seen: dict[tuple, Any] = {}
    for p, model, family, where, seqlen in items:  # identical calls within a model: one marker
        seen.setdefault((model, p.op, where, seqlen), (p, model, family, where, seqlen))
    unique = list(seen.values())
    base = placement_points([p for p, *_ in unique], device)
    points = []
    for cp, (p, model, family, where, seqlen) in zip(base, unique):
        # the line follows the model's sequence length (for decode steps: the context length)
        points.append(ChartPoint(**{**cp.__dict__, "series": f"{model}|{p.op}|{where}", "order": float(seqlen),
                                    "label": None, "marker_group": family}))
    # label one trajectory per op, at its longest point, with the range of lengths
    ends: dict[str, ChartPoint] = {}
    first: dict[str, float] = {}
    for q in points:
        first[q.op] = min(first.get(q.op, q.order), q.order)
        if q.op not in ends or q.order > ends[q.op].order:
            ends[q.op] = q
    points = [ChartPoint(**{**q.__dict__, "label": f"{q.op} L{_label(int(first[q.op]))}→{_label(int(q.order))}"})
              if ends.get(q.op) is q else q for q in points]
    fig = roofline_chart(device, points, title=f"{device.name}: {phase}", group_title="op",
                         marker_title="model family", marker_map=FAMILY_MARKERS,
                         subtitle=f"analytic floors at the paper's model shapes, {phase}; lines join lengths")
    return save_figure(fig, out, f"{device.id}_{phase}")


def _summary(rows: Sequence[dict[str, Any]], devices: Sequence[Device]) -> str:
    totals = _totals(rows)
    out = []
    for device in devices:
        for (model, phase, seqlen, dev), t in totals.items():
            if dev == device.id and seqlen == max(r["seqlen"] for r in rows):
                top, top_ms = max(t["by_op"].items(), key=lambda kv: kv[1])
                out.append(f"{device.id:<16} {model:<14} {phase:<8} L={_label(seqlen):<6} floor "
                           f"{t['total_ms']:10.4g} ms  largest: {top} ({top_ms / t['total_ms']:.0%})")
    return "\n".join(out)
