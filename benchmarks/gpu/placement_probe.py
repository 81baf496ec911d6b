"""Is a kernel's time a property of the kernel, or of where its tensors landed? Times one impl of one op
several ways in one process on the same inputs: fresh graph captures in a row, after the baseline, with a
block of memory held (the next allocations land elsewhere), on a second copy of the inputs, and eagerly
(no graph, the output allocated per call). A spread well past the run-to-run noise (~1 %) that follows the
placement, not the code, means the bench's number for this shape depends on the allocator's state.

    python benchmarks/gpu/placement_probe.py causal_conv1d --shape dim=3328,seqlen=65536,channel_last=true
"""
from __future__ import annotations

import argparse

import torch

from ssmscope import kernels
from ssmscope.kernels.check import clone_inputs
from ssmscope.microbench.timing import time_callable
from knob_sweep import shape_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("op")
    parser.add_argument("--impl", default="triton")
    parser.add_argument("--shape", default="")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--budget", type=float, default=0.3)
    parser.add_argument("--hold-mb", type=int, default=436, help="memory held for the 'held' variants")
    parser.add_argument("--precalls", action="store_true",
                        help="first call both impls on copies of the inputs and keep the baseline's output, as "
                             "knob_sweep.py does before it times anything")
    args = parser.parse_args()
    op = kernels.get(args.op)
    ours, base = op.impls[args.impl].load(), op.impls[op.baseline].load()
    config = shape_config(op, args.dtype, args.shape)
    kw = op.make_inputs(**config, device="cuda", seed=0)
    print(" ".join(f"{k}={v}" for k, v in config.items()) + (" (after knob_sweep's precalls)" if args.precalls else ""))
    if args.precalls:
        pristine = clone_inputs(kw)
        expected = base(**clone_inputs(pristine))  # noqa: F841 - held, as knob_sweep holds it
        ours(**clone_inputs(pristine))

    def report(label: str, fn, **timing) -> None:
        t = time_callable(fn, device="cuda", cache="cold", budget_s=args.budget, **timing)
        print(f"  {label:44s} {t.median_ms * 1e3:9.1f} us  ({t.timer})", flush=True)

    for i in range(3):
        report(f"{args.impl}, capture {i + 1}", lambda: ours(**kw))
    report(f"{op.baseline}", lambda: base(**kw))
    report(f"{args.impl}, after the baseline", lambda: ours(**kw))
    held = torch.empty(args.hold_mb << 20, dtype=torch.uint8, device="cuda")
    report(f"{args.impl}, {args.hold_mb} MB held", lambda: ours(**kw))
    del held
    kw2 = op.make_inputs(**config, device="cuda", seed=0)
    report(f"{args.impl}, a second copy of the inputs", lambda: ours(**kw2))
    report(f"{op.baseline}, a second copy of the inputs", lambda: base(**kw2))
    report(f"{args.impl}, eager (output allocated per call)", lambda: ours(**kw), use_graph=False)
    report(f"{op.baseline}, eager", lambda: base(**kw), use_graph=False)


if __name__ == "__main__":
    main()
