"""Call one implementation of an op a few times on one set of inputs, and nothing else: the program to put
under Nsight Compute when the question is *why* a kernel takes its time (stall reasons, pipe utilization,
occupancy), which the bench's metric set does not answer:

    ncu --clock-control none --section WarpStateStats --section ComputeWorkloadAnalysis \
        -k regex:_selective_scan_fwd --launch-skip 2 --launch-count 2 \
        python benchmarks/gpu/profile_once.py selective_scan --shape seqlen=16384,dstate=16 --calls 4

Shape fields not given take the values of the op's paper grid's first config; --knob passes keyword
arguments to our Triton impls (one value each).
"""
from __future__ import annotations

import argparse

import torch

from ssmscope import kernels
from knob_sweep import parse_assignments, shape_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("op")
    parser.add_argument("--impl", default="triton")
    parser.add_argument("--shape", default="", help="field=value,...")
    parser.add_argument("--knob", default="", help="name=value,... (our impls only)")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    op = kernels.get(args.op)
    fn = op.impls[args.impl].load()
    config = shape_config(op, args.dtype, args.shape)
    kw = op.make_inputs(**config, device=args.device, seed=7)
    knobs = parse_assignments(args.knob)
    for _ in range(args.calls):
        fn(**kw, **knobs)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    print(args.op, args.impl, config, knobs, "done")


if __name__ == "__main__":
    main()
