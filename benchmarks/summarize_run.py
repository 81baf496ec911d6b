"""A Markdown summary of a bench run (RUN/rows.jsonl): per (op, impl) the points by status, the correctness
verdicts, the speedup against the op's baseline (geometric mean, range, and the shapes at both ends), the share
of launch-bound points and the median fraction of the device's DRAM and compute peaks.

    usage: python benchmarks/summarize_run.py RUN_DIR   (writes RUN_DIR/SUMMARY.md)
"""
from __future__ import annotations

import json
import math
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path

from ssmscope.microbench.rows import load_rows

COLUMNS = ["op", "impl", "points", "check", "speedup (geomean)", "range", "slowest at", "fastest at",
           "launch-bound", "DRAM of peak (median)", "compute of peak (median)"]


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.0%}" if values else "–"


def _cells(op: str, impl: str, rows: list[dict], baseline: str | None) -> list[str]:
    statuses = Counter(r["status"] for r in rows)
    timed = [r for r in rows if r.get("device_ms")]
    checks = Counter(str(r["check_status"]) for r in timed if r.get("check_status"))
    speed = [(r["speedup_vs_baseline"], r["config_id"]) for r in timed if r.get("speedup_vs_baseline")]
    geo = math.exp(sum(math.log(s) for s, _ in speed) / len(speed)) if speed else None
    lo, hi = (min(speed, key=lambda p: p[0]), max(speed, key=lambda p: p[0])) if speed else (None, None)
    bound = sum(1 for r in timed if r.get("launch_bound"))
    compute = [r["frac_peak_flops"] for r in timed if r.get("frac_peak_flops") is not None]
    if impl == baseline:  # its speedups are 1 by definition
        speed_cells = ["baseline", "–", "–", "–"]
    else:
        speed_cells = [f"{geo:.2f}×" if geo else "–", f"{lo[0]:.2f}–{hi[0]:.2f}×" if speed else "–",
                       lo[1] if speed else "–", hi[1] if speed else "–"]
    return [op, impl, ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())),
            ", ".join(f"{n} {s}" for s, n in sorted(checks.items())) or "–", *speed_cells,
            f"{bound}/{len(timed)}" if timed else "–",
            _median([r["frac_peak_dram"] for r in timed if r.get("frac_peak_dram") is not None]), _median(compute)]


def summarize(run: Path) -> str:
    rows = load_rows(run)
    env = json.loads((run / "env.json").read_text()) if (run / "env.json").exists() else {}
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["op"], r["impl"])].append(r)
    baselines = {r["op"]: r.get("baseline") for r in rows if r.get("baseline")}
    lines = [f"# bench summary: {run.name}", "",
             f"{len(rows)} rows on {env.get('gpu', {}).get('name') if isinstance(env.get('gpu'), dict) else env.get('gpu', '?')}; "
             f"cache {'/'.join(sorted({str(r.get('cache')) for r in rows if r.get('device_ms')}))}; speedup = "
             "baseline time / this impl's time (" + ", ".join(f"{op}: {b}" for op, b in sorted(baselines.items()))
             + "). Regenerate: `python benchmarks/summarize_run.py " + str(run) + "`.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for (op, impl), group in sorted(groups.items()):
        lines.append("| " + " | ".join(_cells(op, impl, group, baselines.get(op))) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    run = Path(sys.argv[1])
    (run / "SUMMARY.md").write_text(summarize(run))
    print(run / "SUMMARY.md")


if __name__ == "__main__":
    main()
