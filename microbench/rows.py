"""Bench rows: the schema (README.md documents every key), the append-only writer, loading and export.

``RUN/rows.jsonl`` holds one flat JSON object per (op, impl, config) point, appended, flushed and fsynced as
each point finishes, so a crash loses at most the point that was running. ``RUN/samples.jsonl`` holds the
per-repetition times of each timed point (for bootstrap intervals), keyed like the rows.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

ROWS = "rows.jsonl"
SAMPLES = "samples.jsonl"

STATUSES = ("ok", "wrong", "oom", "unsupported", "unavailable", "error")
TIMED_STATUSES = ("ok", "wrong")

# Every row has every key (None when it does not apply), in this order.
ROW_KEYS: tuple[str, ...] = (
    # identity
    "op", "impl", "impl_kind", "impl_detail", "config_id", "params", "dtype", "device", "gpu", "mode",
    # outcome
    "status", "message",
    # correctness
    "check_status", "rel_err", "tolerance", "check_seqlen", "seed",
    # timing
    "device_ms", "device_ms_iqr", "device_ms_min", "device_ms_cv", "reps", "calls_per_sample", "host_ms",
    "host_issue_ms", "timer", "timer_note", "cache", "flush_ms", "launch_bound",
    # cost model and derived rates
    "flops", "tensor_flops", "min_bytes", "impl_bytes", "transcendentals", "achieved_gbps", "achieved_tflops",
    "achieved_gexps", "frac_peak_dram", "frac_peak_flops", "frac_peak_sfu", "peak_flops_key",
    "baseline", "speedup_vs_baseline", "speedup_ci_low", "speedup_ci_high",
    # GPU state around the samples
    "sm_clock_mhz_before", "sm_clock_mhz_after", "mem_clock_mhz_before", "mem_clock_mhz_after",
    "temp_c_before", "temp_c_after", "power_w_before", "power_w_after", "throttle", "throttle_reasons",
    "timestamp",
)


def make_row(**fields: Any) -> dict[str, Any]:
    """A complete row: every key of :data:`ROW_KEYS`, unknown keys rejected (keeps the schema honest)."""
    unknown = set(fields) - set(ROW_KEYS)
    if unknown:
        raise KeyError(f"not row keys: {', '.join(sorted(unknown))}")
    if fields.get("status") not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {fields.get('status')!r}")
    return {key: fields.get(key) for key in ROW_KEYS}


def point_key(row: Mapping[str, Any]) -> tuple:
    """What makes a point: op, impl, config (shape + dtype), device, cache mode and run mode."""
    return (row.get("op"), row.get("impl"), row.get("config_id"), row.get("device"), row.get("cache"),
            row.get("mode", "time"))


class AppendLog:
    """Append JSON lines durably: each line is flushed and fsynced before :meth:`write` returns."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a")

    def write(self, record: Mapping[str, Any]) -> None:
        self._f.write(json.dumps(record, default=_json_default) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "AppendLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    return str(value)


def stored(path: str | Path) -> Path | None:
    """``path`` if it exists, else its gzipped copy ``path.gz`` (how committed runs keep large files), else None."""
    path = Path(path)
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.exists():
            return candidate
    return None


def numbered_jsonl(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) of a JSON-lines file or its ``.gz`` copy; [] when neither exists. A torn last
    line (a crash mid-write) is skipped, any other bad line is an error."""
    found = stored(path)
    if found is None:
        return []
    text = gzip.decompress(found.read_bytes()).decode() if found.suffix == ".gz" else found.read_text()
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append((i + 1, json.loads(line)))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                continue
            raise ValueError(f"{found}:{i + 1}: not a JSON object") from None
    return out


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The objects of :func:`numbered_jsonl`."""
    return [obj for _, obj in numbered_jsonl(path)]


def load_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of a bench run directory (``RUN/rows.jsonl``), in the order they were measured."""
    run_dir = Path(run_dir)
    if stored(run_dir / ROWS) is None:
        raise FileNotFoundError(f"{run_dir} has no {ROWS} (is it a `ssmscope bench` run directory?)")
    return read_jsonl(run_dir / ROWS)


def load_samples(run_dir: str | Path) -> dict[tuple, list[float]]:
    """point key (see :func:`point_key`) -> per-repetition times in ms."""
    return {point_key(r): r["samples_ms"] for r in read_jsonl(Path(run_dir) / SAMPLES)}


def finished_keys(rows: Iterable[Mapping[str, Any]]) -> set[tuple]:
    """Points that have a final status (every status we write is final: a resumed sweep skips them)."""
    return {point_key(r) for r in rows if r.get("status") in STATUSES}


# --------------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------------
def to_dataframe(rows: list[Mapping[str, Any]]) -> Any:
    """A pandas DataFrame with ``params`` spread into ``param_<field>`` columns (pandas is optional)."""
    try:
        import pandas as pd
    except ImportError:
        raise RuntimeError("exporting needs pandas: pip install pandas (or pip install 'ssmscope[export]')") from None
    flat = []
    for row in rows:
        out = {k: v for k, v in row.items() if k != "params"}
        for name, value in (row.get("params") or {}).items():
            out[f"param_{name}"] = value
        flat.append(out)
    return pd.DataFrame(flat)


def export(run_dir: str | Path, *, csv: bool = False, parquet: bool = False) -> list[Path]:
    """Write ``RUN/rows.csv`` and/or ``RUN/rows.parquet`` (pyarrow needed for the latter)."""
    run_dir = Path(run_dir)
    df = to_dataframe(load_rows(run_dir))
    written = []
    if csv:
        df.to_csv(run_dir / "rows.csv", index=False)
        written.append(run_dir / "rows.csv")
    if parquet:
        if importlib.util.find_spec("pyarrow") is None:
            raise RuntimeError("parquet export needs pyarrow: pip install pyarrow")
        # Mixed-type columns (e.g. a param that is int in one op and bool in another) become strings.
        for col in df.columns:
            kinds = {type(v) for v in df[col] if v is not None and v == v}
            if len(kinds) > 1:
                df[col] = df[col].map(lambda v: None if v is None or v != v else str(v))
        df.to_parquet(run_dir / "rows.parquet", index=False)
        written.append(run_dir / "rows.parquet")
    return written
