"""Compile our Triton kernels for sm_90 on a machine without a GPU: compile errors and shared memory per config.

Each op's launcher runs as usual on CPU tensors, but every ``@triton.jit`` kernel it launches is intercepted:
the launch's arguments become a signature and constexprs, and ``triton.compile`` builds the kernel for the
H100 (frontend + ptxas) instead of running it. This catches compile errors before any device time is spent.
Arguments are specialized as the JIT would (ints equal to 1 become constants, 16-divisible pointers and ints
carry tt.divisibility), so the IR is the one the GPU will run, for the Triton installed here: print the PTX
counts that matter (barriers and shared memory inside loops are layout conversions, shuffles are cross-lane
reductions) and with --dump keep the TTGIR and PTX. Registers and spills come from Triton's bundled ptxas.

    python benchmarks/compile_sm90.py [--grid upstream|paper|small] [--per-op 6] [--impl triton] [--dump DIR] [OP ...]
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
import sys
import tempfile

os.environ.pop("TRITON_INTERPRET", None)  # we want real JIT functions, not the interpreter

import torch  # noqa: E402
import triton  # noqa: E402
try:  # the JIT's own argument specialization (Triton >= 3.5); without it the IR is not the one the GPU runs
    from triton._C.libtriton import native_specialize_impl  # noqa: E402
except ImportError:
    sys.exit(f"benchmarks/compile_sm90.py needs Triton >= 3.5 (native_specialize_impl); found {triton.__version__}")
from triton.backends.compiler import BaseBackend, GPUTarget  # noqa: E402

from ssmscope import kernels  # noqa: E402
from ssmscope.microbench.grid import parse_scalar  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)

class Capture:
    """Stands in for a JIT kernel: ``kernel[grid](*args, **kw)`` compiles for sm_90 and records the result."""

    def __init__(self, fn, results: list):
        self.fn, self.results = fn, results

    def __getitem__(self, grid):
        return lambda *args, **kw: self._compile(args, kw)

    def _compile(self, args, kw):
        names = self.fn.arg_names
        options = {k: kw.pop(k) for k in ("num_warps", "num_stages", "maxnreg") if k in kw}
        values = dict(zip(names, args)) | kw
        signature, constexprs, attrs = {}, {}, {}
        for i, param in enumerate(self.fn.params):
            v = values.get(param.name, param.default if param.has_default else None)
            if param.is_constexpr:
                signature[param.name], constexprs[(i,)] = "constexpr", v
                continue
            # The JIT's own specialization: ints equal to 1 become constants, pointers and ints divisible
            # by 16 carry tt.divisibility (unless do_not_specialize): without it the IR is not the GPU's.
            kind, attr = native_specialize_impl(BaseBackend, v, param.is_const, not param.do_not_specialize,
                                                not param.do_not_specialize_on_alignment)
            signature[param.name] = kind
            if kind == "constexpr":
                constexprs[(i,)] = v
            elif isinstance(attr, str):
                attrs[(i,)] = BaseBackend.parse_attr(attr)
        src = triton.compiler.ASTSource(fn=self.fn, signature=signature, constexprs=constexprs, attrs=attrs)
        try:
            k = triton.compile(src, target=TARGET, options=options)
            if DUMP_DIR:
                stem = os.path.join(DUMP_DIR, f"{self.fn.__name__}-{len(self.results)}")
                for ext in ("ttgir", "ptx"):
                    with open(f"{stem}.{ext}", "w") as f:
                        f.write(k.asm[ext])
                write_sass(k.asm["ptx"], f"{stem}.sass")
        except Exception as exc:  # report and carry on with the other configs
            self.results.append((self.fn.__name__, f"FAILED {type(exc).__name__}: {str(exc)[-600:]}", None, None,
                                 options))
            return
        self.results.append((self.fn.__name__, "ok", ptx_counts(k.asm["ptx"]), k.metadata.shared, options))


# PTX instructions worth counting before any GPU time: barriers and shared-memory traffic inside a loop mean
# layout conversions; shuffles mean cross-lane reductions; ex2 is the exp unit's work.
PTX_COUNTED = {"bar": r"\bbar\.sync\b", "st.shared": r"\bst\.shared", "ld.shared": r"\bld\.shared",
               "shfl": r"\bshfl\.", "ld.global": r"\bld\.global", "ex2": r"\bex2\."}


def ptx_counts(ptx: str) -> dict[str, int]:
    counts = {name: len(re.findall(pattern, ptx)) for name, pattern in PTX_COUNTED.items()}
    return counts | ptxas_usage(ptx)


def ptxas_usage(ptx: str) -> dict[str, int]:
    """Registers and spill bytes from the ptxas Triton itself uses for sm_90 (`ptxas -v`), no driver needed;
    -1 (and a note on stderr) when ptxas cannot say."""
    try:
        from triton.backends.nvidia.compiler import get_ptxas

        ptxas = get_ptxas(TARGET.arch).path
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "k.ptx")
            with open(src, "w") as f:
                f.write(ptx)
            run = subprocess.run([ptxas, f"-arch=sm_{TARGET.arch}a", "-v", src, "-o", os.devnull],
                                 capture_output=True, text=True, timeout=120)
    except (ImportError, OSError, subprocess.SubprocessError) as exc:
        print(f"ptxas: {type(exc).__name__}: {exc}", file=sys.stderr)
        return {"regs": -1, "spill_B": -1}
    if run.returncode != 0:
        print(f"ptxas exited {run.returncode}: {run.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
    regs = re.search(r"Used (\d+) registers", run.stderr)
    spills = re.search(r"(\d+) bytes spill stores", run.stderr)
    return {"regs": int(regs.group(1)) if regs else -1, "spill_B": int(spills.group(1)) if spills else -1}


def write_sass(ptx: str, path: str) -> None:
    """The SASS ptxas makes of this PTX (Triton's bundled ptxas and nvdisasm): what the SM runs."""
    try:
        from triton.backends.nvidia.compiler import get_ptxas

        ptxas = get_ptxas(TARGET.arch).path
        nvdisasm = os.path.join(os.path.dirname(ptxas), "nvdisasm")
        with tempfile.TemporaryDirectory() as tmp:
            src, cubin = os.path.join(tmp, "k.ptx"), os.path.join(tmp, "k.cubin")
            with open(src, "w") as f:
                f.write(ptx)
            subprocess.run([ptxas, f"-arch=sm_{TARGET.arch}a", src, "-o", cubin], check=True, capture_output=True,
                           timeout=120)
            sass = subprocess.run([nvdisasm, "-c", "-g", cubin], check=True, capture_output=True, text=True,
                                  timeout=120).stdout
    except (ImportError, OSError, subprocess.SubprocessError) as exc:
        print(f"sass: {type(exc).__name__}: {exc}", file=sys.stderr)
        return
    with open(path, "w") as f:
        f.write(sass)


DUMP_DIR: str | None = None


def intercept(module) -> list:
    """Swap the launched JIT kernels (``*_kernel``; helpers they call stay) of ``module`` for Captures;
    returns the list that results are appended to."""
    results: list = []
    for name in dir(module):
        obj = getattr(module, name)
        if isinstance(obj, triton.runtime.JITFunction) and name.endswith("_kernel"):
            setattr(module, name, Capture(obj, results))
    return results


# Configs compiled in addition to the grid's, per (op, impl): (shape, dtype, launcher kwargs). ssd: the paper
# shape at B1 L16K H48 (seqlen capped like the grid's) with a forced sequence split, so the segment kernel
# compiles too. selective_scan v6: an odd N (the states left after the groups of S), 128 registers (D2048: the
# rule's second cap), four states in flight. v5: a forced sequence split (state, carry and output passes).
EXTRA = {("ssd", "triton"): [(dict(batch=1, seqlen=16384, nheads=48, headdim=64, dstate=128, ngroups=1,
                                   chunk_size=256, final_states=True), "bf16", {"segment_len": 64})],
         ("selective_scan", "triton"): [(dict(batch=1, dim=1536, dstate=5, seqlen=256), "bf16", {}),
                                        (dict(batch=1, dim=2048, dstate=16, seqlen=256), "bf16", {}),
                                        (dict(batch=1, dim=1536, dstate=7, seqlen=256), "bf16", {"prefetch": 4})],
         ("selective_scan", "triton_v5"): [
             (dict(batch=1, dim=1536, dstate=16, seqlen=256), "bf16", {"num_segments": 4}),
             (dict(batch=1, dim=1536, dstate=64, seqlen=256), "bf16", {"num_segments": 2}),
             (dict(batch=2, dim=64, dstate=16, seqlen=256, groups=2), "fp32", {"num_segments": 2, "chunk": 8})]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ops", nargs="*", default=kernels.names())
    parser.add_argument("--grid", default="upstream")
    parser.add_argument("--per-op", type=int, default=6, help="configs per op (spread over the grid)")
    parser.add_argument("--impl", default="triton", help="which of our impls (e.g. a previous version)")
    parser.add_argument("--dump", metavar="DIR", help="write each compiled kernel's TTGIR, PTX and SASS here")
    parser.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                        help="a keyword of the triton function for every config, e.g. prefetch=true, per_thread=32")
    args = parser.parse_args()
    knobs = {name: parse_scalar(value) for name, _, value in (k.partition("=") for k in args.knob)}
    global DUMP_DIR
    if args.dump:
        DUMP_DIR = args.dump
        os.makedirs(DUMP_DIR, exist_ok=True)
    failures = 0
    for op_name in args.ops:
        op = kernels.get(op_name)
        if args.impl not in op.impls:
            print(f"{op_name:24} has no impl {args.impl}")
            continue
        impl = op.impls[args.impl]
        module = importlib.import_module(impl.target.split(":")[0])
        results = intercept(module)
        grid = op.grid(args.grid)
        step = max(1, len(grid) // max(1, args.per_op))
        configs = [(c, {}) for c in grid[::step][: args.per_op]] if args.per_op > 0 else []
        configs += [(dict(shape, dtype=dtype), extra) for shape, dtype, extra in EXTRA.get((op_name, args.impl), [])]
        for config, extra in configs:
            shape, dtype = op.split_config(config)
            small = {f: (min(v, 256) if f in ("seqlen",) else v) for f, v in shape.params().items()}
            kw = op.make_inputs(dtype=dtype, device="cpu", seed=0, **small)
            before = len(results)
            launcher = impl.load()
            try:
                launcher(**kw, **extra, **knobs)
            except Exception as exc:  # the launcher itself rejected the config
                print(f"{op_name:24} {shape.label():44} {dtype:5} launcher: {type(exc).__name__}: {exc}")
                failures += 1
                continue
            for fn, status, counts, shared, options in results[before:]:
                failures += status != "ok"
                shown = " ".join(f"{k}={v}" for k, v in (counts or {}).items())
                print(f"{op_name:24} {shape.label():44} {dtype:5} {fn:32} {status:6} {shown} smem={shared} {options}")
    print(f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
