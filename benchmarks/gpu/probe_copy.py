"""Why graph replay and eager events disagreed on a 512 MiB copy (0.442 vs 0.361 ms, H100, 2026-11-22): time
``copy_`` and an elementwise kernel of the same traffic both ways, and list what the profiler saw run in each
case (a captured device-to-device memcpy may run as a copy-engine node instead of an SM kernel)."""
import torch
from torch.profiler import ProfilerActivity, profile

from ssmscope.microbench.timing import time_callable

src = torch.randn(128 << 20, device="cuda")
dst = torch.empty_like(src)
cases = {"copy_": lambda: dst.copy_(src), "mul": lambda: torch.mul(src, 2.0, out=dst)}
for name, fn in cases.items():
    graph = time_callable(fn, device="cuda", cache="warm", budget_s=0.5)
    eager = time_callable(fn, device="cuda", cache="warm", budget_s=0.5, use_graph=False)
    gbps = 2 * src.numel() * 4 / 1e6
    print(f"{name:6s} graph {graph.median_ms:.4f} ms ({gbps / graph.median_ms:.0f} GB/s, {graph.timer})  "
          f"eager {eager.median_ms:.4f} ms ({gbps / eager.median_ms:.0f} GB/s)")
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    for label, run in (("eager", fn), ("graph", g.replay)):
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            run()
            torch.cuda.synchronize()
        names = sorted({e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA})
        print(f"   {label}: {names}")
