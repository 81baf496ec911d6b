"""Compile our Triton kernels for sm_90 on a machine without a GPU: compile errors and shared memory per config.

Each op's launcher runs as usual on CPU tensors, but every ``@triton.jit`` kernel it launches is intercepted:
the launch's arguments become a signature and constexprs, and ``triton.compile`` builds the kernel for the
H100 (frontend + ptxas) instead of running it. This catches compile errors before any device time is spent.
Registers and spills are read when the kernel is loaded, which needs a driver: they print as None here.

    python benchmarks/compile_sm90.py [--grid upstream|paper|small] [--per-op 6] [OP ...]
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

os.environ.pop("TRITON_INTERPRET", None)  # we want real JIT functions, not the interpreter

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402

from ssmscope import kernels  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)
TYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64",
              torch.int32: "i32", torch.int64: "i64", torch.bool: "i1"}


class Capture:
    """Stands in for a JIT kernel: ``kernel[grid](*args, **kw)`` compiles for sm_90 and records the result."""

    def __init__(self, fn, results: list):
        self.fn, self.results = fn, results

    def __getitem__(self, grid):
        return lambda *args, **kw: self._compile(args, kw)

    def _compile(self, args, kw):
        names = self.fn.arg_names
        options = {k: kw.pop(k) for k in ("num_warps", "num_stages") if k in kw}
        values = dict(zip(names, args)) | kw
        signature, constexprs = {}, {}
        for i, name in enumerate(names):
            v = values.get(name)
            if name in kw and not isinstance(v, torch.Tensor) or v is None or i in self.fn.constexprs:
                signature[name] = "constexpr"
                constexprs[(i,)] = v
            elif isinstance(v, torch.Tensor):
                signature[name] = "*" + TYPE_NAMES[v.dtype]
            elif isinstance(v, bool):
                signature[name] = "i1"
            elif isinstance(v, int):
                signature[name] = "i64" if abs(v) >= 2**31 else "i32"
            else:
                signature[name] = "fp32"
        src = triton.compiler.ASTSource(fn=self.fn, signature=signature, constexprs=constexprs)
        try:
            k = triton.compile(src, target=TARGET, options=options)
            self.results.append((self.fn.__name__, "ok", getattr(k, "n_regs", None), getattr(k, "n_spills", None),
                                 k.metadata.shared, options))
        except Exception as exc:  # report and carry on with the other configs
            self.results.append((self.fn.__name__, f"FAILED {type(exc).__name__}: {str(exc)[-600:]}", None, None,
                                 None, options))


def intercept(module) -> list:
    """Swap the launched JIT kernels (``*_kernel``; helpers they call stay) of ``module`` for Captures;
    returns the list that results are appended to."""
    results: list = []
    for name in dir(module):
        obj = getattr(module, name)
        if isinstance(obj, triton.runtime.JITFunction) and name.endswith("_kernel"):
            setattr(module, name, Capture(obj, results))
    return results


# Configs compiled in addition to the grid's: (op, shape, dtype, launcher kwargs). ssd: the paper shape at
# B1 L16K H48 (seqlen capped like the grid's) with a forced sequence split, so the segment kernel compiles too.
EXTRA = {"ssd": [(dict(batch=1, seqlen=16384, nheads=48, headdim=64, dstate=128, ngroups=1, chunk_size=256,
                       final_states=True), "bf16", {"segment_len": 64})],
         # selective_scan: forced sequence split (state, carry and output passes), N16 and N64.
         "selective_scan": [(dict(batch=1, dim=1536, dstate=16, seqlen=256), "bf16", {"num_segments": 4}),
                            (dict(batch=1, dim=1536, dstate=64, seqlen=256), "bf16", {"num_segments": 2}),
                            (dict(batch=2, dim=64, dstate=16, seqlen=256, groups=2), "fp32",
                             {"num_segments": 2, "chunk": 8})]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ops", nargs="*", default=kernels.names())
    parser.add_argument("--grid", default="upstream")
    parser.add_argument("--per-op", type=int, default=6, help="configs per op (spread over the grid)")
    args = parser.parse_args()
    failures = 0
    for op_name in args.ops:
        op = kernels.get(op_name)
        module = importlib.import_module(op.impls["triton"].target.split(":")[0])
        results = intercept(module)
        grid = op.grid(args.grid)
        step = max(1, len(grid) // args.per_op)
        configs = [(c, {}) for c in grid[::step][: args.per_op]]
        configs += [(dict(shape, dtype=dtype), extra) for shape, dtype, extra in EXTRA.get(op_name, [])]
        for config, extra in configs:
            shape, dtype = op.split_config(config)
            small = {f: (min(v, 256) if f in ("seqlen",) else v) for f, v in shape.params().items()}
            kw = op.make_inputs(dtype=dtype, device="cpu", seed=0, **small)
            before = len(results)
            try:
                op.impls["triton"].load()(**kw, **extra)
            except Exception as exc:  # the launcher itself rejected the config
                print(f"{op_name:24} {shape.label():44} {dtype:5} launcher: {type(exc).__name__}: {exc}")
                failures += 1
                continue
            for fn, status, regs, spills, shared, options in results[before:]:
                failures += status != "ok"
                print(f"{op_name:24} {shape.label():44} {dtype:5} {fn:32} {status:6} regs={regs} spills={spills} "
                      f"smem={shared} {options}")
    print(f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
