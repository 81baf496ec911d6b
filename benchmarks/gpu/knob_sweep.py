"""Our Triton kernel of one op across its tuning knobs on the GPU, next to the op's baseline (the official
kernel; SDPA for attention): for every combination of the knobs, the error against the baseline's output on
the same inputs and the cold-L2 graph-replay median. The default (no knobs) comes first; the compile-time
view of the same choices (registers, spills, instructions) comes from benchmarks/compile_sm90.py; this is
what they cost.

    python benchmarks/gpu/knob_sweep.py selective_scan --shape dim=2048,dstate=16,seqlen=16384 \
        --knob prefetch=1,2 --knob maxnreg=128,168
    python benchmarks/gpu/knob_sweep.py selective_scan --impl triton_v5 --shape seqlen=16384,dstate=16 \
        --knob chunk=2,4 --knob per_thread=32,64
    python benchmarks/gpu/knob_sweep.py ssd --shape seqlen=16384,nheads=48,dstate=128,chunk_size=256 \
        --knob segment_len=16384,8192,4096,2048

Knobs are keyword arguments of the op's `triton` function (selective_scan: per_thread, lanes, num_warps,
prefetch, maxnreg; ssd: segment_len; selective_state_update: block_m, num_warps; attention: block_m,
block_n, num_warps, num_stages; causal_conv1d, channel-last: cl_design=window|rows, block_d, block_l, num_warps,
and unroll, prefetch (window) or chunks (rows)). Knob values are integers and ranges, true/false or words.
Shape fields not given take the values of the op's paper grid's first config. --impl times another of our impls
with its own knobs instead (selective_scan's triton_v5: chunk, per_thread, num_warps, num_segments,
min_segment, version, prefetch, maxnreg); maxnreg=0 leaves the registers to ptxas. Correctness of the
default is the upstream check's job (`ssmscope check`); here a setting whose output differs from the
baseline's by more than twice the op's tolerance is marked WRONG. --seed repeats each shape on other inputs.
Rank settings within one sweep; cite the bench's rows (benchmarks/NOTES.md: one kernel read 15 % slower here).
"""
from __future__ import annotations

import argparse
import itertools

from ssmscope import kernels
from ssmscope.kernels.check import clone_inputs, relative_error
from ssmscope.microbench.grid import GridError, build_configs, parse_scalar, parse_values
from ssmscope.microbench.timing import time_callable


def parse_assignments(text: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        out[key.strip()] = parse_scalar(value)
    return out


def knob_values(text: str) -> list[int | bool | str]:
    """One knob's values: integers and ranges (``16,32``, ``1:4:x2``), true/false, or words (a design's name,
    ``cl_design=window,rows``)."""
    values: list[int | bool | str] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise GridError(f"empty item in {text!r}")
        values.extend(parse_values(item) if item[:1].isdigit() else [parse_scalar(item)])
    return list(dict.fromkeys(values))


def shape_config(op, dtype: str, text: str) -> dict[str, object]:
    """The op's paper grid's first config with dtype and the ``field=value,...`` of text over it."""
    return {**build_configs(op, grid="paper")[0], "dtype": dtype, **parse_assignments(text)}


def knob_grid(specs: list[str]) -> list[dict[str, int | bool | str]]:
    names, values = [], []
    for spec in specs:
        name, _, text = spec.partition("=")
        names.append(name.strip())
        values.append(knob_values(text))
    return [dict(zip(names, combo)) for combo in itertools.product(*values)] if names else []


def first_output(result):
    return result[0] if isinstance(result, tuple) else result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("op")
    parser.add_argument("--shape", action="append", default=[], help="field=value,... (repeatable: one per shape)")
    parser.add_argument("--knob", action="append", default=[], help="name=v1,v2,... (their product is swept)")
    parser.add_argument("--impl", default="triton", help="which of our impls takes the knobs (e.g. a new version)")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seed", type=int, action="append", default=[],
                        help="input seed (repeatable: each shape once per seed; default 7)")
    args = parser.parse_args()
    op = kernels.get(args.op)
    ours = op.impls[args.impl].load()
    try:
        official = op.impls[op.baseline].load()  # the official kernel, or SDPA for attention
    except Exception as exc:  # noqa: BLE001 - report and compare ours with itself
        print(f"{op.baseline} unavailable: {exc}")
        official = None
    for shape_text, seed in itertools.product(args.shape or [""], args.seed or [7]):
        config = shape_config(op, args.dtype, shape_text)
        kw = op.make_inputs(**config, device=args.device, seed=seed)
        label = " ".join(f"{k}={v}" for k, v in config.items()) + (f" seed={seed}" if args.seed else "")
        if args.op == "causal_conv1d" and args.knob and not config.get("channel_last"):
            print("note: the causal_conv1d knobs tune the channel-last kernel; add channel_last=true to --shape")
        pristine = clone_inputs(kw)  # timing updates in-place state (decode steps): errors start from this copy
        expected = first_output((official or ours)(**clone_inputs(pristine)))
        rows = []
        if official is not None:
            t = time_callable(lambda: official(**kw), device=args.device, cache="cold", budget_s=args.budget)
            rows.append((op.baseline, 0.0, t.median_ms))
        for knobs in [{}] + knob_grid(args.knob):
            name = " ".join(f"{k}={v}" for k, v in knobs.items()) or "ours, default"
            try:
                err = relative_error(first_output(ours(**clone_inputs(pristine), **knobs)), expected)
                t = time_callable(lambda: ours(**kw, **knobs), device=args.device, cache="cold", budget_s=args.budget)
                rows.append((name, err, t.median_ms))
            except Exception as exc:  # noqa: BLE001 - one setting failing must not hide the others
                print(f"  {name}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        print(label)
        limit = 2 * op.tolerance[args.dtype]  # each side may be off the float64 result by the tolerance
        for name, err, ms in rows:
            verdict = "" if err <= limit else " WRONG"  # a NaN error is wrong too
            print(f"  {name:34s} err {err:.2e}{verdict}  {ms * 1e3:9.1f} us  x{rows[0][2] / ms:.2f} vs {rows[0][0]}")


if __name__ == "__main__":
    main()
