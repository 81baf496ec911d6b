"""A run directory: one JSON-lines file per kind of row (run, breakdown, frontier) and a CSV twin of each.

``RUN/e2e_run.jsonl`` holds the full rows (nested dicts kept); ``RUN/e2e_run.csv`` the same rows flattened with
dotted column names (``memory.cache_B``), rewritten from the JSON lines after every append so both always agree.
A committed run may keep the JSON lines gzipped (``e2e_run.jsonl.gz``, as bench runs do): they are read from
there, and unpacked back to ``.jsonl`` before anything is appended.
"""
from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..microbench.rows import numbered_jsonl, stored

KINDS = ("run", "breakdown", "frontier")


def _path(run_dir: str | Path, kind: str, suffix: str) -> Path:
    if kind not in KINDS:
        raise ValueError(f"row kind must be one of {KINDS}, got {kind!r}")
    return Path(run_dir) / f"e2e_{kind}.{suffix}"


def write_rows(run_dir: str | Path, kind: str, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Append ``rows`` to RUN/e2e_<kind>.jsonl and rewrite RUN/e2e_<kind>.csv; returns the JSONL path."""
    path = _path(run_dir, kind, "jsonl")
    path.parent.mkdir(parents=True, exist_ok=True)
    found = stored(path)
    if found is not None and found != path:  # only the gzipped copy: append to its rows, not beside them
        path.write_bytes(gzip.decompress(found.read_bytes()))
        found.unlink()
    with path.open("a") as f:
        for row in rows:
            f.write(json.dumps(row, default=str) + "\n")
    _write_csv(_path(run_dir, kind, "csv"), [flatten(r) for r in load_rows(run_dir, kind)])
    return path


def load_rows(run_dir: str | Path, kind: str = "run") -> list[dict[str, Any]]:
    """The rows of RUN/e2e_<kind>.jsonl or its .gz copy ([] when there are none)."""
    return [row for _, row in numbered_jsonl(_path(run_dir, kind, "jsonl"))]


def flatten(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"memory": {"cache_B": 1}} -> {"memory.cache_B": 1}; lists become JSON text."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(value, default=str)
        else:
            flat[name] = value
    return flat


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
