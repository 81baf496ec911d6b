"""Read Nsight Compute output into one :class:`KernelRecord` per profiled kernel.

Three inputs, one result:

* ``--csv --page raw``: one row per kernel, one column per metric, a units row under the header.
* ``--csv --page details``: one row per kernel x metric (``Metric Name``, ``Metric Unit``, ``Metric Value``).
* ``.ncu-rep``: through Nsight Compute's own Python module ``ncu_report`` (found next to ``ncu``).

Captured stdout carries ``==PROF==`` lines (and, without ``--log-file``, the application's own output)
around the CSV; only lines that start with a quote are CSV. The NVTX push/pop column holds the thread id
then one quoted ``Domain:Range:PL_Type:PL_Value:CLR_Type:Color:Msg_Type:Msg`` entry per open range,
outermost first.
"""
from __future__ import annotations

import csv
import glob
import importlib
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .units import Value, normalize


class NcuError(RuntimeError):
    """A problem with Nsight Compute or its output, in one line."""


@dataclass(frozen=True)
class KernelRecord:
    """One profiled kernel launch. ``metrics`` maps a metric name to (value in base unit, base unit):
    ns, byte, Hz, inst, ... (see :mod:`.units`); a value is None where ncu printed n/a."""

    id: int
    name: str
    block: tuple[int, int, int] | None
    grid: tuple[int, int, int] | None
    device: str
    cc: str
    nvtx: list[str] = field(default_factory=list)
    metrics: Mapping[str, tuple[Value, str]] = field(default_factory=dict)

    def value(self, metric: str) -> float | None:
        """The numeric value of ``metric``, None when absent, n/a or not a number."""
        v = self.metrics.get(metric, (None, ""))[0]
        return v if isinstance(v, float) else None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "block": self.block, "grid": self.grid, "device": self.device,
                "cc": self.cc, "nvtx": list(self.nvtx), "metrics": {k: list(v) for k, v in self.metrics.items()}}


# Raw-page columns that describe the launch rather than measure it.
_ID_COLUMNS = {"ID", "Process ID", "Process Name", "Host Name", "Kernel Name", "Context", "Stream",
               "Block Size", "Grid Size", "Device", "CC", "Section Name", "Metric Name", "Metric Unit",
               "Metric Value"}
_NVTX_PUSH_POP = "thread Domain:Push/Pop_Range"
_NVTX_START_END = "Id:Domain:Start/Stop_Range"
_QUOTED = re.compile(r'"([^"]*)"')


def parse_nvtx_stack(cell: str) -> list[str]:
    """``'466  "<default domain>:ssmscope:none:…"  "<default domain>:sdpa:none:…" '`` -> ["ssmscope", "sdpa"].

    Each entry is ``domain:name`` followed by six ``:``-separated payload/colour/message fields, so the
    name is what lies between the first ``:`` and the sixth ``:`` from the right (names may contain ``:``).
    """
    names = []
    for entry in _QUOTED.findall(cell):
        _, _, rest = entry.partition(":")
        parts = rest.rsplit(":", 6)
        names.append(parts[0] if len(parts) == 7 else rest)
    return names


def _dims(text: str) -> tuple[int, int, int] | None:
    nums = [int(n.replace(",", "")) for n in re.findall(r"[\d,]+", text or "") if n.strip(",")]
    return tuple((nums + [1, 1, 1])[:3]) if nums else None  # type: ignore[return-value]


def _csv_rows(text: str) -> list[list[str]]:
    """The CSV rows from the header on: ncu's rows always start with a quote, other lines are not ncu's."""
    lines = [line for line in text.splitlines() if line.startswith('"')]
    start = next((i for i, line in enumerate(lines) if line.startswith('"ID"')), None)
    if start is None:
        raise NcuError('no Nsight Compute CSV found (expected a header line starting with "ID"; '
                       'was it written with --csv --page raw or --page details?)')
    return list(csv.reader(lines[start:]))


def _record(row: Mapping[str, str], metrics: dict[str, tuple[Value, str]]) -> KernelRecord:
    nvtx_col = next((c for c in row if c.startswith(_NVTX_PUSH_POP)), None)
    return KernelRecord(
        id=int(row["ID"]),
        name=row.get("Kernel Name", ""),
        block=_dims(row.get("Block Size", "")),
        grid=_dims(row.get("Grid Size", "")),
        device=row.get("Device", ""),
        cc=row.get("CC", ""),
        nvtx=parse_nvtx_stack(row[nvtx_col]) if nvtx_col else [],
        metrics=metrics,
    )


def _is_metric(column: str) -> bool:
    return column not in _ID_COLUMNS and not column.startswith((_NVTX_PUSH_POP, _NVTX_START_END))


def parse_raw(rows: list[list[str]]) -> list[KernelRecord]:
    """``--page raw``: header, units row (its ID cell is empty), then one row per kernel."""
    header, units = rows[0], [""] * len(rows[0])
    records = []
    for cells in rows[1:]:
        if cells == header:  # repeated by some ncu versions per process
            continue
        if cells and cells[0] == "":
            units = cells
            continue
        row = dict(zip(header, cells))
        metrics = {col: normalize(val, unit) for col, val, unit in zip(header, cells, units) if _is_metric(col)}
        records.append(_record(row, metrics))
    return records


def parse_details(rows: list[list[str]]) -> list[KernelRecord]:
    """``--page details``: one row per kernel x metric, grouped back by kernel ID. Rows of ``--metrics`` carry
    metric names; those of ``--section`` carry labels ("Duration"), which nothing here derives from."""
    header, body = rows[0], rows[1:]
    by_id: dict[str, tuple[dict[str, str], dict[str, tuple[Value, str]]]] = {}
    for cells in body:
        row = dict(zip(header, cells))
        _, metrics = by_id.setdefault(row["ID"], (row, {}))
        metrics[row["Metric Name"]] = normalize(row["Metric Value"], row.get("Metric Unit", ""))
    return [_record(row, metrics) for row, metrics in by_id.values()]


def parse_csv(text: str) -> list[KernelRecord]:
    """Kernels from ncu CSV output (raw or details page), ``==PROF==`` and application lines skipped."""
    rows = _csv_rows(text)
    return parse_details(rows) if "Metric Name" in rows[0] else parse_raw(rows)


# --------------------------------------------------------------------------------------------------
# .ncu-rep through Nsight Compute's Python report interface
# --------------------------------------------------------------------------------------------------
def find_ncu(explicit: str | None = None, fallback_dirs: Iterable[str] | None = None) -> str | None:
    """Path of the ``ncu`` executable: ``explicit``, PATH, $CUDA_HOME/bin, /usr/local/cuda/bin."""
    if explicit:
        return explicit if Path(explicit).is_file() else shutil.which(explicit)
    found = shutil.which("ncu")
    if found:
        return found
    dirs = fallback_dirs if fallback_dirs is not None else _default_ncu_dirs()
    for d in dirs:
        candidate = Path(d) / "ncu"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _default_ncu_dirs() -> list[str]:
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    return [*([f"{cuda_home}/bin"] if cuda_home else []), "/usr/local/cuda/bin"]


def _report_module_dirs(ncu: str | None) -> list[Path]:
    """Where ncu_report.py may live: beside the real ncu binary (ncu on PATH is often a symlink or a
    wrapper under cuda/bin), in cuda/nsight-compute-*/, or under /opt/nvidia/nsight-compute/<version>/."""
    dirs = []
    if ncu:
        real = Path(ncu).resolve().parent
        dirs += [real / "extras" / "python", *map(Path, sorted(glob.glob(str(real.parent / "nsight-compute*" /
                                                                              "extras" / "python")), reverse=True))]
    dirs += map(Path, sorted(glob.glob("/opt/nvidia/nsight-compute/*/extras/python"), reverse=True))
    return [d for d in dirs if (d / "ncu_report.py").is_file()]


def load_report_module(ncu: str | None = None) -> Any:
    """Import ``ncu_report`` (already importable, or from the Nsight Compute install of ``ncu``)."""
    try:
        return importlib.import_module("ncu_report")
    except ImportError:
        pass
    for d in _report_module_dirs(ncu or find_ncu()):
        sys.path.insert(0, str(d))
        try:
            return importlib.import_module("ncu_report")
        except ImportError:
            sys.path.remove(str(d))
    raise NcuError("cannot read .ncu-rep: Nsight Compute's Python module ncu_report was not found (looked next "
                   "to ncu and in /opt/nvidia/nsight-compute/*/extras/python); export a CSV with "
                   "`ncu -i FILE --csv --page raw --log-file FILE.csv` and parse that instead")


def parse_report(path: str | Path, module: Any = None) -> list[KernelRecord]:
    """Kernels of an ``.ncu-rep`` file, read with ``ncu_report`` (pass ``module`` to use a given one)."""
    ncu_report = module or load_report_module()
    ctx = ncu_report.load_report(str(path))
    records = []
    for r in range(ctx.num_ranges()):
        rng = ctx.range_by_idx(r)
        for a in range(rng.num_actions()):
            records.append(_action_record(ncu_report, rng.action_by_idx(a), len(records)))
    return records


def _action_record(ncu_report: Any, action: Any, index: int) -> KernelRecord:
    metrics = {}
    for name in action.metric_names():
        m = action.metric_by_name(name)
        metrics[name] = normalize(m.value(), m.unit() or "")
    nvtx: list[str] = []
    state = action.nvtx_state()
    if state is not None:
        for domain_id in state.domains():
            nvtx.extend(state.domain_by_id(domain_id).push_pop_ranges())

    def num(name: str) -> int:
        v = metrics.get(name, (None, ""))[0]
        return int(v) if isinstance(v, float) else 0

    def dims(kind: str) -> tuple[int, int, int] | None:
        d = tuple(num(f"launch__{kind}_dim_{a}") for a in "xyz")
        return d if any(d) else None  # type: ignore[return-value]

    major, minor = (num(f"device__attribute_compute_capability_{p}") for p in ("major", "minor"))
    return KernelRecord(
        id=index,
        name=action.name(ncu_report.IAction.NameBase_DEMANGLED),
        block=dims("block"), grid=dims("grid"),
        device=str(num("launch__device_id")), cc=f"{major}.{minor}" if major else "",
        nvtx=nvtx, metrics=metrics,
    )


def parse_file(path: str | Path) -> list[KernelRecord]:
    """Kernels from an ``.ncu-rep`` report or a CSV export (raw or details page)."""
    path = Path(path)
    if not path.is_file():
        raise NcuError(f"{path}: no such file")
    if path.suffix == ".ncu-rep":
        return parse_report(path)
    return parse_csv(path.read_text(errors="replace"))
