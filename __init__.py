"""ssmscope: why is this SSM slow at long context, which kernel is the bottleneck, how far from the hardware limit.

Stages, one folder each: ``kernels`` (ops: references, our Triton kernels, the official kernels, cost models)
-> ``microbench`` (timing sweeps) -> ``ncu_parsers`` (Nsight Compute counters) -> ``roofline`` (devices,
placement, plots) -> ``e2e`` (whole-model profiles tied back to the kernels).
"""

__version__ = "0.1.0"
