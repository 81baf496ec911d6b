"""Turn `ssmscope check --save` files from the GPU machine into committed data: gzipped JSON lines per op
and a SUMMARY.md table.   usage: python benchmarks/summarize_checks.py RESULTS_DIR [OUT_DIR]"""
import gzip
import json
import shutil
import sys
from pathlib import Path

from ssmscope.kernels.check import summarize


def main(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in sorted(src.glob("check_*.jsonl")):
        with path.open("rb") as fin, gzip.open(dst / (path.name + ".gz"), "wb") as fout:
            shutil.copyfileobj(fin, fout)
    for path in sorted(dst.glob("check_*.jsonl.gz")):
        with gzip.open(path, "rt") as f:
            rows += [json.loads(line) for line in f if line.strip()]
    lines = ["| op | impl | dtype | cases | pass | fail | unsupported | unavailable | error | max rel err vs fp64 "
             "| tolerance | within upstream (rtol, atol) of baseline |", "|" + " --- |" * 12]
    for r in summarize(rows):
        err = f"{r['max_rel_err']:.2e}" if r["max_rel_err"] is not None else "-"
        tol = f"{r['tolerance']:.0e}" if r["tolerance"] is not None else "-"
        base = f"{r['within_upstream_tol']}/{r['compared_with_baseline']} ({r['baseline']})" if r["baseline"] else "-"
        lines.append(f"| {r['op']} | {r['impl']} | {r['dtype']} | {r['cases']} | {r['pass']} | {r['fail']} | "
                     f"{r['unsupported']} | {r['unavailable']} | {r['error']} | {err} | {tol} | {base} |")
    (dst / "SUMMARY.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).parent / "check_upstream")
