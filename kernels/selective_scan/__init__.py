"""selective_scan — Mamba-1's selective state space scan (S6) over a whole sequence (Gu & Dao, 2023).

    δ = softplus(delta + delta_bias)                   (bias and softplus optional)
    h_t = exp(δ_t·A) ⊙ h_{t-1} + δ_t·u_t·B_t           h: [D, N] per batch element, h_0 = 0
    y_t = Σ_n h_t·C_t + D·u_t,   out = y · silu(z)    (D and z optional)

Official signature (mamba_ssm 2.3.2): ``selective_scan_fn(u, delta, A, B, C, D=None, z=None,
delta_bias=None, delta_softplus=False)`` with u/delta/z [B, D, L], A [D, N] fp32 (real), B/C [B, G, N, L]
(time-varying, G groups, channel d reads group d // (D/G)), D/delta_bias [D] fp32; u/delta/z/B/C in fp32,
fp16 or bf16; out [B, D, L] in u's dtype.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..op import DTYPE_BYTES, Cost, Impl, Op, Shape, ShapeError, randn, uniform

MAX_DSTATE = 256  # official: TORCH_CHECK(dstate <= 256) in csrc/selective_scan/selective_scan.cpp; ours too
OFFICIAL_CHUNK = 2048  # official: per-chunk states x [B, D, ceil(L/2048), N] of float2 (selective_scan.cpp)
CUDA_GRID_YZ = 65535


@dataclass(frozen=True)
class ScanShape(Shape):
    """B, D (channels = d_inner), N (dstate), L, G (B/C groups), and which optional inputs are present."""

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
        if self.dim % self.groups:
            raise ShapeError(f"selective_scan: dim {self.dim} must be divisible by groups {self.groups}")


def _inv_softplus(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log(-torch.expm1(-y))


def generate(shape: ScanShape, dtype: torch.dtype, device: torch.device, gen: torch.Generator) -> dict[str, Any]:
    """Mamba-1's initialisation ranges. A[d, n] = −(n+1)·U(0.5, 1.5) (S4D-real, jittered); per channel a
    step size Δ0[d] log-uniform in [1e-3, 0.1]; the effective δ = softplus(delta + delta_bias) (or
    delta + delta_bias) lands around Δ0 for every flag combination: with softplus, delta_bias =
    softplus⁻¹(Δ0) and delta ~ N(0, 0.5²) (without the bias flag the bias is folded into delta); without
    softplus, delta = Δ0/2·exp(N(0, 0.5²)) and delta_bias = Δ0/2. So channels mix memories of ~10 to ~10⁴
    steps, which exercises the state carried across chunks. u, B, C, z, D ~ N(0, 1).
    """
    b, d, n, l, g = shape.batch, shape.dim, shape.dstate, shape.seqlen, shape.groups
    f32 = torch.float32
    step = torch.exp(uniform((d,), gen, math.log(1e-3), math.log(0.1), dtype=f32, device=torch.device("cpu")))
    noise = torch.randn((b, d, l), generator=gen) * 0.5
    if shape.softplus:
        bias = _inv_softplus(step)
        delta = noise + (0.0 if shape.delta_bias else bias[:, None])
    else:
        bias = step / 2
        delta = bias[:, None] * torch.exp(noise)
    A = -uniform((d, n), gen, 0.5, 1.5, dtype=f32, device=device) * torch.arange(1, n + 1, dtype=f32, device=device)
    return {
        "u": randn((b, d, l), gen, dtype=dtype, device=device),
        "delta": delta.to(device=device, dtype=dtype),
        "A": A,
        "B": randn((b, g, n, l), gen, dtype=dtype, device=device),
        "C": randn((b, g, n, l), gen, dtype=dtype, device=device),
        "D": randn((d,), gen, dtype=f32, device=device) if shape.D else None,
        "z": randn((b, d, l), gen, dtype=dtype, device=device) if shape.z else None,
        "delta_bias": bias.to(device) if shape.delta_bias else None,
        "delta_softplus": shape.softplus,
    }


def cost(shape: ScanShape, dtype: str) -> Cost:
    """Counted per state element (b, d, l, n) and per channel step (b, d, l); an FMA is 2 FLOPs.

    Per state element: δ·A (1), its exp (1 transcendental), (δ·u)·B (1), h = a·h + x (FMA, 2),
    y += h·C (FMA, 2): 6 FLOPs and 1 exp, B·D·L·N times. This is the op's bulk: nothing is matrix shaped
    (tensor_flops = 0), and one exp per 6 FLOPs makes the MUFU rate a possible bound.
    Per channel step: δ·u (1); + delta_bias (1); softplus = log1p(exp(x)) (1 add, 2 transcendentals);
    y + D·u (FMA, 2); y·silu(z) = y·z/(1+exp(−z)) (negate, add, divide, multiply: 4, plus 1 exp).
    Minimum DRAM bytes, each tensor once: u, delta, z read and out written ([B, D, L], input dtype),
    B and C read ([B, G, N, L], input dtype), A [D, N], D and delta_bias [D] in fp32.

    impl_bytes["official"] (csrc/selective_scan/selective_scan.cpp, selective_scan_fwd_kernel.cuh): with z
    the kernel stores both ``out`` (y + D·u, kept for the backward) and ``out_z`` (the returned result),
    one extra [B, D, L] write; it always stores the running scan prefix (a, h) as a float2 per
    (b, d, chunk of 2048 steps, n) into ``x`` [B, D, ceil(L/2048), 2N] fp32, i.e. 8·B·D·ceil(L/2048)·N
    bytes. Each block (one channel) also re-reads its group's B and C, D/G times in all, which L2 absorbs
    (L2 traffic, not DRAM). Our Triton kernel moves exactly the minimum, so it has no entry.
    """
    b, d, n, l, g = shape.batch, shape.dim, shape.dstate, shape.seqlen, shape.groups
    e = DTYPE_BYTES[dtype]
    steps, states = b * d * l, b * d * l * n
    flops_per_step = (1 + (1 if shape.delta_bias else 0) + (1 if shape.softplus else 0)
                      + (2 if shape.D else 0) + (4 if shape.z else 0))
    exps_per_step = (2 if shape.softplus else 0) + (1 if shape.z else 0)
    parts = {
        "u": steps * e, "delta": steps * e, "z": steps * e if shape.z else 0, "out": steps * e,
        "B": b * g * n * l * e, "C": b * g * n * l * e,
        "A": d * n * 4, "D": d * 4 if shape.D else 0, "delta_bias": d * 4 if shape.delta_bias else 0,
    }
    minimum = sum(parts.values())
    official = minimum + (steps * e if shape.z else 0) + 8 * b * d * math.ceil(l / OFFICIAL_CHUNK) * n
    return Cost(
        flops=float(6 * states + flops_per_step * steps),
        transcendentals=float(states + exps_per_step * steps),
        bytes={k: float(v) for k, v in parts.items()},
        tensor_flops=0.0,
        impl_bytes={"official": float(official)},
    )


def official_supports(shape: ScanShape, dtype: str) -> str | None:
    """Limits of mamba_ssm 2.3.2's selective_scan_cuda.fwd (csrc/selective_scan/)."""
    if dtype not in ("fp32", "fp16", "bf16"):
        return f"official dispatches fp32, fp16 and bf16 inputs only, got {dtype}"
    if shape.dstate > MAX_DSTATE:
        return f"official supports dstate <= {MAX_DSTATE} (TORCH_CHECK in selective_scan.cpp), got {shape.dstate}"
    if shape.dim > CUDA_GRID_YZ:
        return f"official puts one block per channel on gridDim.y: dim <= {CUDA_GRID_YZ}, got {shape.dim}"
    chunks = math.ceil(shape.seqlen / OFFICIAL_CHUNK)
    if shape.batch * shape.dim * chunks * shape.dstate >= 2 ** 31:
        return "official indexes its chunk states with 32-bit ints: B·D·ceil(L/2048)·N must be < 2^31"
    return None


def triton_supports(shape: ScanShape, dtype: str) -> str | None:
    if shape.dstate > MAX_DSTATE:
        return f"ours keeps a channel's whole state row in one tile: dstate <= {MAX_DSTATE}, got {shape.dstate}"
    return None


FLAG_NAMES = ("D", "z", "delta_bias", "softplus")


def _grid_small() -> list[dict[str, Any]]:
    """CPU / interpreter grid (18 configs): per dtype, lengths 1, 7, 33, 130 (several chunks, a ragged
    tail) with dstate 4, 16, 1, 8, groups 1 and 2, odd dims; one config per dtype without D (so the scan
    alone makes the output); then six more flag combinations in fp32 at D 8, L 70 (two chunks), N 5, G 2."""
    grid = []
    for dtype in ("fp32", "fp16", "bf16"):
        for i, (seqlen, dstate, groups, dim) in enumerate(((1, 4, 1, 6), (7, 16, 2, 6), (33, 1, 1, 5),
                                                           (130, 8, 2, 10))):
            grid.append(dict(batch=2, dim=dim, dstate=dstate, seqlen=seqlen, groups=groups, D=i != 3,
                             dtype=dtype))
    combos = [dict(zip(FLAG_NAMES, bits)) for bits in
              ((False, False, False, False), (True, False, True, False), (False, True, False, True),
               (False, True, True, False), (True, True, False, True), (False, False, True, True))]
    grid += [dict(batch=1, dim=8, dstate=5, seqlen=70, groups=2, dtype="fp32", **flags) for flags in combos]
    return grid


def _grid_upstream() -> list[dict[str, Any]]:
    """mamba's tests/ops/test_selective_scan.py::test_selective_scan (the test is not in the sdist; read from
    the state-spaces/mamba repository): batch 2, dim 4, dstate 8, seqlen {128, 256, 512, 1024, 2048, 4096},
    variable B and C with groups {1, 2}, has_D = has_z = has_delta_bias = delta_softplus = True (the other
    values are commented out upstream), itype fp32/fp16/bf16, wtype fp32. 36 configs."""
    return [dict(batch=2, dim=4, dstate=8, seqlen=seqlen, groups=groups, dtype=dtype)
            for dtype in ("fp32", "fp16", "bf16")
            for seqlen in (128, 256, 512, 1024, 2048, 4096)
            for groups in (1, 2)]


MAMBA1_DIMS = (1536, 2048, 3072, 4096, 5120)  # d_inner = 2·d_model of Mamba-130M, 370M, 790M, 1.4B, 2.8B


def _grid_paper() -> list[dict[str, Any]]:
    """Mamba-130M…2.8B (d_inner 1536…5120, dstate 16), batch 1, L 1K…64K, bf16, every flag on (as the
    Mamba block calls it); and larger states (64, 128, 256) at Mamba-370M's width, L 4K and 16K."""
    grid = [dict(batch=1, dim=dim, dstate=16, seqlen=seqlen, dtype="bf16")
            for dim in MAMBA1_DIMS for seqlen in (1024, 4096, 16384, 65536)]
    grid += [dict(batch=1, dim=2048, dstate=n, seqlen=seqlen, dtype="bf16")
             for n in (64, 128, 256) for seqlen in (4096, 16384)]
    return grid


OP = Op(
    name="selective_scan",
    summary="Mamba-1 selective scan (S6) prefill: exp(δA) decay, time-varying B/C, D skip, silu(z) gate",
    shape_type=ScanShape,
    generate=generate,
    cost=cost,
    impls={
        "ref": Impl("ref", "ssmscope.kernels.selective_scan.ref:selective_scan", "reference",
                    "PyTorch, one step at a time (fp32 / fp64)"),
        "triton": Impl("triton", "ssmscope.kernels.selective_scan.triton_kernel_v6:selective_scan", "ours",
                       "Triton v6: one pass, a warp per channel, lanes along time, a warp-wide scan per state, "
                       "two states in flight", supports=triton_supports),
        "triton_v5": Impl("triton_v5", "ssmscope.kernels.selective_scan.triton_kernel:selective_scan", "previous",
                          "Triton v5: [D, N, 4-step] tiles, the steps one FMA each on in-register phases, "
                          "sequence split into segments", supports=triton_supports),
        "triton_v4": Impl("triton_v4", "ssmscope.kernels.selective_scan.triton_kernel:selective_scan_v4", "previous",
                          "Triton v4: [D, N, 4-step] tiles, an associative scan along each chunk inside the thread",
                          supports=triton_supports),
        "triton_v3": Impl("triton_v3", "ssmscope.kernels.selective_scan.triton_kernel_v3:selective_scan", "previous",
                          "Triton v3: one step at a time on a [D, N] state tile, sequence split into segments",
                          supports=triton_supports),
        "triton_v2": Impl("triton_v2", "ssmscope.kernels.selective_scan.triton_kernel_v2:selective_scan", "previous",
                          "Triton v2: chunked tl.associative_scan over [BLOCK_D, N, BLOCK_L] tiles",
                          supports=triton_supports),
        "official": Impl("official", "ssmscope.kernels.selective_scan.official:selective_scan", "official",
                         "mamba_ssm selective_scan_fn (selective_scan_cuda, CUDA)", needs_cuda=True,
                         supports=official_supports),
    },
    # Relative error against float64 on the same (already rounded) inputs. Every kernel computes in fp32,
    # so fp32 sees only arithmetic error (exp/exp2, the scan's order of products: ~1e-7 measured, bounded
    # since the decays are < 1). Half types are dominated by rounding the output once, unit roundoff
    # 2^-11 (fp16) and 2^-8 (bf16): the norm-wise error lands near 0.5-1 of it (2e-4 and 3.5e-3 measured),
    # and the bounds leave 3-10x of margin. (Triton's CPU interpreter truncates fp32 -> bf16 instead of
    # rounding to nearest, which doubles the bf16 error there.)
    tolerance={"fp32": 2e-5, "fp16": 2e-3, "bf16": 1e-2},
    # mamba's test_selective_scan: fp32 (6e-4, 2e-3), fp16 (3e-3, 5e-3), bf16 (3e-2, 5e-2).
    upstream_tolerance={"fp32": (6e-4, 2e-3), "fp16": (3e-3, 5e-3), "bf16": (3e-2, 5e-2)},
    grids={"small": _grid_small, "upstream": _grid_upstream, "paper": _grid_paper},
)
