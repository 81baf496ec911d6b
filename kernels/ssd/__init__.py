"""ssd — Mamba-2's scan (state space duality; Dao & Gu, 2024), the chunked form of a scalar-decay SSM.

Per head h (group g = h // (H/G)):
    δ = softplus(dt + dt_bias);  h_t = exp(δ_t·A_h) · h_{t-1} + δ_t · x_t ⊗ B_t   (h: [P, N])
    y_t = h_t · C_t + D_h · x_t;  out = y · silu(z)

Official (mamba_ssm 2.3.2, five Triton kernels): ``mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size,
D=None, z=None, dt_bias=None, dt_softplus=False, ...)`` with x/z [B, L, H, P], dt [B, L, H], A [H],
B/C [B, L, G, N], D [H] or [H, P], dt_bias [H]; out [B, L, H, P].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..op import DTYPE_BYTES, Cost, Impl, Op, Shape, ShapeError, randn, uniform


@dataclass(frozen=True)
class SSDShape(Shape):
    batch: int = 1
    seqlen: int = 4096
    nheads: int = 24
    headdim: int = 64
    dstate: int = 128
    ngroups: int = 1
    chunk_size: int = 256
    D: bool = True
    z: bool = True
    dt_bias: bool = True
    softplus: bool = True

    ABBREV = {"batch": "B", "seqlen": "L", "nheads": "H", "headdim": "P", "dstate": "N", "ngroups": "G",
              "chunk_size": "Q"}

    def validate(self) -> None:
        super().validate()
        if self.nheads % self.ngroups:
            raise ShapeError(f"ssd: nheads {self.nheads} must be divisible by ngroups {self.ngroups}")
        if self.dstate > 256:
            raise ShapeError(f"ssd: dstate {self.dstate} exceeds the limit of 256")
        if self.chunk_size & (self.chunk_size - 1) or self.chunk_size < 16:
            raise ShapeError(f"ssd: chunk_size must be a power of two >= 16, got {self.chunk_size}")


def generate(shape: SSDShape, dtype: torch.dtype, device: torch.device, gen: torch.Generator) -> dict[str, Any]:
    """As Mamba-2 at initialisation: A = −U(1, 16) per head, dt_bias = softplus⁻¹ of dt ∈ U(1e-3, 0.1),
    dt ~ N(0, 1) raw (before bias and softplus), x, B, C, z ~ N(0, 1), D ~ N(0, 1) per head."""
    b, l, h, p, n, g = shape.batch, shape.seqlen, shape.nheads, shape.headdim, shape.dstate, shape.ngroups
    f32 = torch.float32
    dt_init = uniform((h,), gen, 1e-3, 0.1, dtype=f32, device=device)
    return {
        "x": randn((b, l, h, p), gen, dtype=dtype, device=device),
        "dt": randn((b, l, h), gen, dtype=dtype, device=device, scale=0.5),
        "A": -uniform((h,), gen, 1.0, 16.0, dtype=f32, device=device),
        "B": randn((b, l, g, n), gen, dtype=dtype, device=device),
        "C": randn((b, l, g, n), gen, dtype=dtype, device=device),
        "chunk_size": shape.chunk_size,
        "D": randn((h,), gen, dtype=f32, device=device) if shape.D else None,
        "z": randn((b, l, h, p), gen, dtype=dtype, device=device) if shape.z else None,
        "dt_bias": (dt_init + torch.log(-torch.expm1(-dt_init))) if shape.dt_bias else None,
        "dt_softplus": shape.softplus,
    }


def cost(shape: SSDShape, dtype: str) -> Cost:
    """FLOPs of the chunked SSD algorithm (chunk Q = chunk_size, c = ⌈L/Q⌉ chunks, per batch and head):
      CBᵀ per chunk and group: 2·Q²·N per chunk  → 2·L·Q·N per group          (tensor)
      intra-chunk (W x), causal half kept:          2·L·Q·P/2·2 = 2·L·Q·P   … counted as the full Q×Q
                                                    product the kernels issue: 2·L·Q·P       (tensor)
      chunk states Bᵀ(x∘w):                         2·L·P·N                  (tensor)
      inter-chunk C·hᵀ:                             2·L·P·N                  (tensor)
      state passing between chunks:                 2·c·P·N
      elementwise: decay mask exp and scaling ~4·L·Q per head, D·x and silu(z) gate ~6 per (l, h, p).
    Transcendentals: one exp per (l, h) for the decay, L·Q exps per head for the decay mask (the kernels
    evaluate the full Q×Q block), softplus 2 per (l, h), silu 1 per (l, h, p).
    Minimum bytes: x, z read and out written [B, L, H, P]; dt [B, L, H]; B, C [B, L, G, N]; A, D, dt_bias [H].
    Official extra (ssd_combined.py): dA_cumsum and processed dt [B, H, c, Q] fp32 written once and read 3 and
    2 times; chunk states [B, c, H, P, N] fp32 written by chunk_state, read and rewritten by state_passing,
    read by chunk_scan; CB [B, c, G, Q, Q] fp32 written and read; x, B, C each read twice; with z the ungated
    out_x [B, L, H, P] is written too.
    """
    b, l, h, p, n, g, q = (shape.batch, shape.seqlen, shape.nheads, shape.headdim, shape.dstate, shape.ngroups,
                           shape.chunk_size)
    e = DTYPE_BYTES[dtype]
    c = -(-l // q)
    tensor = b * (g * 2 * l * q * n + h * (2 * l * q * p + 4 * l * p * n))
    elementwise = b * h * (2 * c * p * n + 4 * l * q) + b * l * h * p * ((2 if shape.D else 0) + (4 if shape.z else 0))
    trans = b * h * (l + l * q + (2 * l if shape.softplus else 0)) + (b * l * h * p if shape.z else 0)
    xe = b * l * h * p * e
    bytes_ = {"x": xe, "out": xe, "z": xe if shape.z else 0, "dt": b * l * h * e,
              "B": b * l * g * n * e, "C": b * l * g * n * e,
              "A": h * 4, "D": h * 4 if shape.D else 0, "dt_bias": h * 4 if shape.dt_bias else 0}
    minimum = sum(bytes_.values())
    aux = b * h * c * q * 4
    states = b * c * h * p * n * 4
    official = (minimum + xe + 2 * b * l * g * n * e  # x, B, C read a second time
                + aux * (1 + 3) + aux * (1 + 2)          # dA_cumsum, dt: written, re-read
                + states * 4                             # chunk states: write, read, rewrite, read
                + 2 * b * c * g * q * q * 4              # CB: write, read
                + (xe if shape.z else 0))                # ungated out_x
    return Cost(flops=float(tensor + elementwise), tensor_flops=float(tensor), transcendentals=float(trans),
                bytes={k: float(v) for k, v in bytes_.items()}, impl_bytes={"official": float(official)})


def _flags():
    for D in (False, True):
        for z in (False, True):
            for bias in (False, True):
                yield dict(D=D, z=z, dt_bias=bias, softplus=bias)


def _grid_small() -> list[dict[str, Any]]:
    """Interpreter-sized: lengths not divisible by the block (17, 100), groups 1/2, tiny P and N (padded)."""
    grid = []
    for dtype in ("fp32", "fp16", "bf16"):
        grid.append(dict(batch=2, seqlen=17, nheads=2, headdim=8, dstate=4, chunk_size=16, dtype=dtype))
        grid.append(dict(batch=1, seqlen=100, nheads=4, headdim=16, dstate=16, ngroups=2, chunk_size=32,
                         dtype=dtype))
    grid += [dict(batch=1, seqlen=70, nheads=2, headdim=16, dstate=16, chunk_size=32, dtype="fp32", **f)
             for f in _flags()]
    return grid


def _grid_upstream() -> list[dict[str, Any]]:
    """No test of the combined SSD call ships with mamba_ssm 2.3.2's sdist; this grid covers its supported
    space the way its kernel tests vary it: lengths incl. ones not divisible by the chunk (1000, 2047),
    chunk 64/256, dstate 64/128, ngroups 1/2, headdim 64, every flag, every dtype."""
    return [dict(batch=2, seqlen=l, nheads=8, headdim=64, dstate=n, ngroups=g, chunk_size=q, dtype=dtype, **f)
            for dtype in ("fp32", "fp16", "bf16")
            for l, q in ((256, 64), (1000, 256), (2047, 64), (4096, 256))
            for n, g in ((64, 1), (128, 2))
            for f in ((dict()), dict(D=False, z=False, dt_bias=False, softplus=False))]


def _grid_paper() -> list[dict[str, Any]]:
    """Mamba-2 130M…2.7B: d_model 768…2560, expand 2, headdim 64 → nheads 24, 32, 48, 64, 80; dstate 128,
    ngroups 1, chunk 256; batch 1; lengths 1K…64K; bf16."""
    return [dict(batch=1, seqlen=l, nheads=h, headdim=64, dstate=128, ngroups=1, chunk_size=256, dtype="bf16")
            for h in (24, 32, 48, 64, 80) for l in (1024, 4096, 16384, 65536)]


OP = Op(
    name="ssd",
    summary="Mamba-2 chunked scan (SSD)",
    shape_type=SSDShape,
    generate=generate,
    cost=cost,
    impls={
        "ref": Impl("ref", "ssmscope.kernels.ssd.ref:ssd", "reference", "PyTorch, one step at a time"),
        "triton": Impl("triton", "ssmscope.kernels.ssd.triton_kernel:ssd", "ours",
                       "one fused kernel, blocks of 32-64 steps on tensor cores, state in registers"),
        "official": Impl("official", "ssmscope.kernels.ssd.official:ssd", "official",
                         "mamba_ssm mamba_chunk_scan_combined (5 Triton kernels)", needs_cuda=True),
    },
    # fp32: ieee dots in ours (the official uses TF32, ~1e-3); half types: operands rounded for tensor cores.
    tolerance={"fp32": 1e-4, "fp16": 5e-3, "bf16": 3e-2},
    # our choice (no upstream test of the combined call ships): TF32 in the official kernels sets fp32's
    upstream_tolerance={"fp32": (5e-3, 5e-3), "fp16": (1e-2, 1e-2), "bf16": (5e-2, 5e-2)},
    grids={"small": _grid_small, "upstream": _grid_upstream, "paper": _grid_paper},
)
