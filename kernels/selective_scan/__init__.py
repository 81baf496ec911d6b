"""selective_scan — Mamba-1's selective state space (S6) prefill scan (Gu & Dao, 2023).

    δ = softplus(delta + delta_bias)                  (each step optional)
    h_t = exp(δ_t · A) ⊙ h_{t-1} + δ_t · u_t · B_t    h: [D, N] per batch element
    y_t = h_t · C_t + D · u_t,   out = y · silu(z)

Official signature (mamba_ssm 2.3.2): ``selective_scan_fn(u, delta, A, B, C, D=None, z=None,
delta_bias=None, delta_softplus=False)`` with u/delta/z [B, D, L], A [D, N] fp32, B/C [B, G, N, L]
(time-varying, G groups), D/delta_bias [D] fp32. u/delta/z/B/C are fp32, fp16 or bf16.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..op import DTYPE_BYTES, Cost, Impl, Op, Shape, ShapeError, randn, uniform

MAX_DSTATE = 256  # the official CUDA kernel's limit (and ours)


@dataclass(frozen=True)
class ScanShape(Shape):
    batch: int = 1
    dim: int = 1536
    dstate: int = 16
    seqlen: int = 4096
    groups: int = 1
    D: bool = True
    z: bool = True
    delta_bias: bool = True
    softplus: bool = True

    ABBREV = {"batch": "B", "dim": "D", "dstate": "N", "seqlen": "L", "groups": "G"}

    def validate(self) -> None:
        super().validate()
        if self.dstate > MAX_DSTATE:
            raise ShapeError(f"selective_scan: dstate {self.dstate} exceeds the limit of {MAX_DSTATE}")
        if self.dim % self.groups:
            raise ShapeError(f"selective_scan: dim {self.dim} must be divisible by groups {self.groups}")


def generate(shape: ScanShape, dtype: torch.dtype, device: torch.device, gen: torch.Generator) -> dict[str, Any]:
    """delta ~ U(0, 0.5) and delta_bias ~ U(0, 0.5) as in mamba's test; A ~ -U(0.5, 1.5) (mamba's test uses
    -0.5·U(0, 1), which barely decays: ours forgets within tens of steps, like trained models); the rest
    N(0, 1)."""
    b, d, n, l, g = shape.batch, shape.dim, shape.dstate, shape.seqlen, shape.groups
    f32 = torch.float32
    return {
        "u": randn((b, d, l), gen, dtype=dtype, device=device),
        "delta": uniform((b, d, l), gen, 0.0, 0.5, dtype=dtype, device=device),
        "A": -uniform((d, n), gen, 0.5, 1.5, dtype=f32, device=device),
        "B": randn((b, g, n, l), gen, dtype=dtype, device=device),
        "C": randn((b, g, n, l), gen, dtype=dtype, device=device),
        "D": randn((d,), gen, dtype=f32, device=device) if shape.D else None,
        "z": randn((b, d, l), gen, dtype=dtype, device=device) if shape.z else None,
        "delta_bias": uniform((d,), gen, 0.0, 0.5, dtype=f32, device=device) if shape.delta_bias else None,
        "delta_softplus": shape.softplus,
    }


def cost(shape: ScanShape, dtype: str) -> Cost:
    """Counted per (b, d, l, n) state element and per (b, d, l) channel step.

    Per state element: δ·A (1 mul) and its exp (1 transcendental), (δ·u)·B (1 mul), h = a·h + x (1 FMA = 2),
    y += h·C (1 FMA = 2): 6 FLOPs, 1 exp.
    Per channel step: δ·u (1), + delta_bias (1), softplus = log1p(exp(x)) (2 transcendentals + 1 add),
    + D·u (1 FMA = 2), silu(z)·y = y·z/(1+exp(-z)) (1 exp; negate, add, divide, multiply = 4).
    Minimum bytes: u, delta, z read and out written once ([B, D, L] in the input dtype), B and C read once
    ([B, G, N, L]), A [D, N], D and delta_bias [D] in fp32.
    Official extra (csrc/selective_scan/selective_scan.cpp): with z it writes both ``out`` and ``out_z``
    (one more [B, D, L]), and it always writes the chunk states x [B, D, ceil(L/2048), 2N] fp32.
    """
    b, d, n, l, g = shape.batch, shape.dim, shape.dstate, shape.seqlen, shape.groups
    e = DTYPE_BYTES[dtype]
    steps, states = b * d * l, b * d * l * n
    per_step = 1 + (1 if shape.delta_bias else 0) + (1 if shape.softplus else 0) + (2 if shape.D else 0) \
        + (4 if shape.z else 0)
    exps_per_step = (2 if shape.softplus else 0) + (1 if shape.z else 0)
    bytes_ = {
        "u": steps * e, "delta": steps * e, "out": steps * e,
        "z": steps * e if shape.z else 0,
        "B": b * g * n * l * e, "C": b * g * n * l * e,
        "A": d * n * 4, "D": d * 4 if shape.D else 0, "delta_bias": d * 4 if shape.delta_bias else 0,
    }
    minimum = float(sum(bytes_.values()))
    n_chunks = -(-l // 2048)
    official = minimum + (steps * e if shape.z else 0) + b * d * n_chunks * 2 * n * 4
    return Cost(
        flops=float(6 * states + per_step * steps),
        transcendentals=float(states + exps_per_step * steps),
        bytes={k: float(v) for k, v in bytes_.items()},
        impl_bytes={"official": float(official)},
    )


def _official_supports(shape: ScanShape, dtype: str) -> str | None:
    if dtype not in ("fp32", "fp16", "bf16"):
        return f"the official kernel takes fp32/fp16/bf16 inputs, not {dtype}"
    return None


def _flag_combos():
    for D in (False, True):
        for z in (False, True):
            for bias in (False, True):
                for softplus in (False, True):
                    yield dict(D=D, z=z, delta_bias=bias, softplus=softplus)


def _grid_small() -> list[dict[str, Any]]:
    """Interpreter-sized: odd lengths (1, 7, 33, 130 spans several chunks), dstate 1…16, groups 1/2."""
    grid = []
    for dtype in ("fp32", "fp16", "bf16"):
        for seqlen, dstate, groups in ((1, 4, 1), (7, 16, 2), (33, 1, 1), (130, 8, 2)):
            grid.append(dict(batch=2, dim=6, dstate=dstate, seqlen=seqlen, groups=groups, dtype=dtype))
    grid += [dict(batch=1, dim=4, dstate=5, seqlen=40, groups=2, dtype="fp32", **flags) for flags in _flag_combos()]
    return grid


def _grid_upstream() -> list[dict[str, Any]]:
    """mamba's tests/ops/test_selective_scan.py::test_selective_scan (not shipped in the sdist; from the
    mamba repository): batch 2, dim 4, dstate 8, seqlen {128, 256, 512, 1024, 2048, 4096}, variable B and C
    with {1, 2} groups, has_D, has_z, has_delta_bias, delta_softplus each on/off, itype fp32/fp16/bf16."""
    return [dict(batch=2, dim=4, dstate=8, seqlen=seqlen, groups=groups, dtype=dtype, **flags)
            for dtype in ("fp32", "fp16", "bf16")
            for seqlen in (128, 256, 512, 1024, 2048, 4096)
            for groups in (1, 2)
            for flags in _flag_combos()]


def _grid_paper() -> list[dict[str, Any]]:
    """Mamba-130M…2.8B (d_inner = 2·d_model: 1536, 2048, 3072, 4096, 5120; dstate 16), batch 1, 1K…64K;
    and larger states at Mamba-790M's width."""
    grid = [dict(batch=1, dim=dim, dstate=16, seqlen=l, dtype="bf16")
            for dim in (1536, 2048, 3072, 4096, 5120) for l in (1024, 4096, 16384, 65536)]
    grid += [dict(batch=1, dim=3072, dstate=n, seqlen=l, dtype="bf16") for n in (64, 128, 256) for l in (4096, 16384)]
    return grid


OP = Op(
    name="selective_scan",
    summary="Mamba-1 selective scan (S6) prefill",
    shape_type=ScanShape,
    generate=generate,
    cost=cost,
    impls={
        "ref": Impl("ref", "ssmscope.kernels.selective_scan.ref:selective_scan", "reference",
                    "PyTorch, one step at a time"),
        "triton": Impl("triton", "ssmscope.kernels.selective_scan.triton_kernel:selective_scan", "ours",
                       "chunked associative scan, state in registers"),
        "official": Impl("official", "ssmscope.kernels.selective_scan.official:selective_scan", "official",
                         "mamba_ssm selective_scan_cuda", needs_cuda=True, supports=_official_supports),
    },
    # fp32 math throughout: fp32 inputs land near 1e-6; half inputs are limited by the output rounding
    # (2^-11 fp16, 2^-8 bf16 relative) plus the rounding of u·D and z feeding long recurrences.
    tolerance={"fp32": 1e-4, "fp16": 3e-3, "bf16": 2e-2},
    # mamba's test_selective_scan: (6e-4, 2e-3) fp32, (3e-3, 5e-3) fp16, (3e-2, 5e-2) bf16
    upstream_tolerance={"fp32": (6e-4, 2e-3), "fp16": (3e-3, 5e-3), "bf16": (3e-2, 5e-2)},
    grids={"small": _grid_small, "upstream": _grid_upstream, "paper": _grid_paper},
)
