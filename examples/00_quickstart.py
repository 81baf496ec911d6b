"""Quickstart: one op end to end — inputs, our kernel vs the reference, its cost, its roofline floor.

    python examples/00_quickstart.py            # CPU: our Triton kernel runs in the interpreter
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before any kernel module is imported

from ssmscope import kernels  # noqa: E402
from ssmscope.kernels.check import check  # noqa: E402
from ssmscope import roofline  # noqa: E402

device = "cuda" if torch.cuda.is_available() else "cpu"
op = kernels.get("selective_scan")

# 1. Inputs with the official argument names; any kernel with selective_scan_fn's signature drops in.
kw = op.make_inputs(batch=1, dim=8, dstate=16, seqlen=64, dtype="fp32", device=device, seed=0)
ours, ref = op.impls["triton"](**kw), op.impls["ref"](**kw)
print("max |ours - ref| =", (ours - ref).abs().max().item())

# 2. The correctness gate: float64 reference, NaN-poisoned allocations, tolerance per dtype.
for r in check(op, ["triton"], configs=[dict(batch=1, dim=8, dstate=16, seqlen=64, dtype="bf16")],
               device=device, seed=0):
    print(r.impl, r.config, r.dtype, r.status, f"rel err {r.rel_err:.1e}")

# 3. The cost model and the roofline floor at Mamba-130M's width on an RTX 4090 and a Jetson Orin Nano.
params = dict(batch=1, dim=1536, dstate=16, seqlen=4096)
cost = op.cost(op.shape(**params), "bf16")
print(f"{cost.flops:.3g} FLOPs, {cost.transcendentals:.3g} exps, {cost.min_bytes:.3g} B minimum")
for device_id in ("rtx4090", "orin-nano"):
    line = roofline.place("selective_scan", params, device_id).roofline
    print(f"{device_id}: bound by {line.bound}, floor {line.floor_s * 1e6:.1f} µs")
