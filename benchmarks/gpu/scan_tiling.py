"""Our selective scan (v4) across tile shapes on the GPU: error against the official kernel (when installed)
and the float64 reference, and the cold-L2 graph-replay median, for each (chunk, elements per thread,
num_warps) next to the default tiling. The compile-time view of the same tilings (instructions per
element, barriers, registers) comes from benchmarks/compile_sm90.py; this is what they cost.

    python benchmarks/gpu/scan_tiling.py [--seqlen 16384] [--dstate 16 64]
"""
from __future__ import annotations

import argparse

import torch

from ssmscope import kernels
from ssmscope.kernels.check import relative_error
from ssmscope.kernels.selective_scan import triton_kernel as ours
from ssmscope.kernels.selective_scan.ref import selective_scan as ref_scan
from ssmscope.microbench.timing import time_callable

TILINGS = [(2, 32, 4), (4, 32, 4), (2, 32, 8), (4, 64, 4), (8, 64, 4), (2, 16, 4)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seqlen", type=int, nargs="+", default=[16384])
    parser.add_argument("--dstate", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--dim", type=int, default=1536)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    op = kernels.get("selective_scan")
    try:
        official = op.impls["official"].load()
    except Exception as exc:  # noqa: BLE001 - report and go on with the reference only
        print(f"official unavailable: {exc}")
        official = None
    for dstate in args.dstate:
        for seqlen in args.seqlen:
            kw = op.make_inputs(batch=1, dim=args.dim, dstate=dstate, seqlen=seqlen, dtype="bf16", device=args.device,
                                seed=7)
            short = {k: (v[..., :2048] if isinstance(v, torch.Tensor) and v.dim() >= 3 else v) for k, v in kw.items()}
            ref = ref_scan(**{k: v.double() if isinstance(v, torch.Tensor) else v for k, v in short.items()})
            rows = []
            if official is not None:
                t = time_callable(lambda: official(**kw), device=args.device, cache="cold", budget_s=0.5)
                rows.append(("official", relative_error(official(**short), ref), t.median_ms))
            default = ours.default_tiling(dstate)
            for chunk, per_thread, warps in [(*default, 4)] + [t for t in TILINGS if t != (*default, 4)]:
                knobs = dict(chunk=chunk, per_thread=per_thread, num_warps=warps)
                try:
                    err = relative_error(ours.selective_scan(**short, **knobs), ref)
                    t = time_callable(lambda: ours.selective_scan(**kw, **knobs), device=args.device, cache="cold",
                                      budget_s=0.5)
                    rows.append((f"chunk{chunk} ept{per_thread} w{warps}", err, t.median_ms))
                except Exception as exc:  # noqa: BLE001 - one tiling failing must not hide the others
                    print(f"  chunk{chunk} ept{per_thread} w{warps}: {type(exc).__name__}: {str(exc)[:200]}")
            if not rows:
                print(f"B1 D{args.dim} N{dstate} L{seqlen}: no implementation ran")
                continue
            base = rows[0][2]
            print(f"B1 D{args.dim} N{dstate} L{seqlen} bf16")
            for name, err, ms in rows:
                print(f"  {name:22s} err {err:.2e}  {ms * 1e3:9.1f} us  x{base / ms:.2f} vs {rows[0][0]}")


if __name__ == "__main__":
    main()
