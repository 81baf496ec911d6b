"""ssd — Mamba-2's scan (state space duality; Dao & Gu, 2024): a scalar-decay SSM per head, chunked.

Per head h (group g = h // (H/G)), δ = clamp(softplus(dt + dt_bias), *dt_limit):
    h_t = exp(δ_t·A_h)·h_{t-1} + δ_t·x_t ⊗ B_t       (h: [P, N], h_0 = initial_states or 0)
    y_t = h_t·C_t + D_h·x_t,   out = y·silu(z)

Official (mamba_ssm 2.3.2.post1, five Triton kernels): ``mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size,
D=None, z=None, dt_bias=None, initial_states=None, seq_idx=None, cu_seqlens=None, dt_softplus=False,
dt_limit=(0.0, inf), return_final_states=False, ...)`` with x/z [B, L, H, P], dt [B, L, H], A [H] (< 0),
B/C [B, L, G, N], D [H] or [H, P], dt_bias [H], initial_states [B, H, P, N]; out [B, L, H, P] in x's dtype
(and final states [B, H, P, N] fp32). seq_idx / cu_seqlens (packed variable-length batches) are not part
of this op.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from ..op import DTYPE_BYTES, Cost, Impl, Op, Shape, ShapeError, randn, uniform

MAX_DSTATE = 256  # ours keeps the [BLOCK_P, N] fp32 state in registers (triton_kernel.py)


@dataclass(frozen=True)
class SSDShape(Shape):
    """B, L, H, P (headdim), N (dstate), G (groups of B/C), Q (chunk_size) and the optional inputs. The
    defaults are Mamba-2's call in prefill: D per head, dt_bias, softplus, no z (the gate goes to the
    gated RMSNorm), no initial state, final states returned only when ``final_states``."""

    batch: int = 1
    seqlen: int = 4096
    nheads: int = 24
    headdim: int = 64
    dstate: int = 128
    ngroups: int = 1
    chunk_size: int = 256
    D: bool = True
    D_headdim: bool = False  # D is [H, P] instead of [H]
    z: bool = False
    dt_bias: bool = True
    softplus: bool = True
    init_states: bool = False
    final_states: bool = False

    ABBREV = {"batch": "B", "seqlen": "L", "nheads": "H", "headdim": "P", "dstate": "N", "ngroups": "G",
              "chunk_size": "Q"}

    def validate(self) -> None:
        super().validate()
        if self.nheads % self.ngroups:
            raise ShapeError(f"ssd: nheads {self.nheads} must be divisible by ngroups {self.ngroups}")
        if self.D_headdim and not self.D:
            raise ShapeError("ssd: D_headdim (D of shape [H, P]) needs D")


def _inv_softplus(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log(-torch.expm1(-y))


def generate(shape: SSDShape, dtype: torch.dtype, device: torch.device, gen: torch.Generator) -> dict[str, Any]:
    """Mamba-2's initialisation ranges: A = −U(1, 16) per head; a step size Δ0[h] log-uniform in [1e-3, 0.1];
    the effective δ lands around Δ0 for every flag combination: with softplus, dt_bias = softplus⁻¹(Δ0) and
    dt ~ N(0, 0.5²) (without the bias flag the bias is folded into dt); without softplus dt = Δ0/2·exp(N(0,
    0.5²)) and dt_bias = Δ0/2 (dt must stay >= 0: the official clamps δ to dt_limit = [0, ∞)). Heads thus
    remember from ~1 to ~10³ steps, which exercises the state carried across blocks. x, B, C, z ~ N(0, 1),
    D ~ N(0, 1), initial states ~ N(0, 1); dt in x's dtype, A / D / dt_bias / states in fp32.
    """
    b, l, h, p, n, g = shape.batch, shape.seqlen, shape.nheads, shape.headdim, shape.dstate, shape.ngroups
    f32, cpu = torch.float32, torch.device("cpu")
    step = torch.exp(uniform((h,), gen, math.log(1e-3), math.log(0.1), dtype=f32, device=cpu))
    noise = torch.randn((b, l, h), generator=gen) * 0.5
    if shape.softplus:
        bias = _inv_softplus(step)
        dt = noise + (0.0 if shape.dt_bias else bias)
    else:
        bias = step / 2
        dt = bias * torch.exp(noise)
    return {
        "x": randn((b, l, h, p), gen, dtype=dtype, device=device),
        "dt": dt.to(device=device, dtype=dtype),
        "A": -uniform((h,), gen, 1.0, 16.0, dtype=f32, device=device),
        "B": randn((b, l, g, n), gen, dtype=dtype, device=device),
        "C": randn((b, l, g, n), gen, dtype=dtype, device=device),
        "chunk_size": shape.chunk_size,
        "D": randn((h, p) if shape.D_headdim else (h,), gen, dtype=f32, device=device) if shape.D else None,
        "z": randn((b, l, h, p), gen, dtype=dtype, device=device) if shape.z else None,
        "dt_bias": bias.to(device) if shape.dt_bias else None,
        "initial_states": randn((b, h, p, n), gen, dtype=f32, device=device) if shape.init_states else None,
        "dt_softplus": shape.softplus,
        "return_final_states": shape.final_states,
    }


def causal_pairs(seqlen: int, chunk: int) -> int:
    """Π = Σ_chunks q(q+1)/2: the (i >= j) pairs inside the chunks (the last chunk may be short)."""
    full, rest = divmod(seqlen, chunk)
    return full * chunk * (chunk + 1) // 2 + rest * (rest + 1) // 2


def cost(shape: SSDShape, dtype: str) -> Cost:
    """The chunked SSD algorithm at the shape's chunk Q; per batch element, c = ⌈L/Q⌉ chunks and
    Π = causal_pairs(L, Q) = Σ_chunks q(q+1)/2 pairs (i >= j) inside chunks.

    tensor_flops (matrix-shaped, 2 per multiply-add):
      C Bᵀ on the causal pairs, per group            2·N·Π·G
      (C Bᵀ ∘ decay ∘ δ) x, per head                 2·P·Π·H
      chunk states Bᵀ(x ∘ w), every step             2·P·N·L·H
      C · stateᵀ for the state entering each chunk   2·P·N·L·H
    Elementwise flops:
      per (l, h): + dt_bias (1), softplus's add (1), δ·A (1), cumsum (1), state weight δ_j·exp(s_last − s_j) (2)
      per causal pair and head: s_i − s_j, ·CB, ·δ_j (3)
      per (l, h, p): x ∘ w (1), exp(s_i)·(C h) and its add to the intra-chunk part (2); D·x + (2); z: silu 4
        and the product 1 (5)
      per (chunk, h, p, n): the state passing h ← exp(s_last)·h + h_chunk (2)
      (the dt_limit clamp is compares only, not counted)
    Transcendentals (what the chunked form evaluates; the recurrence would need one exp(δA) per (l, h), the
    chunked form needs these instead): per (l, h) exp(s_i) and exp(s_last − s_i) (2) plus exp and log of the
    softplus (2); one decay-mask exp per causal pair and head (Π·H); exp(s_last) per (chunk, h); silu's exp
    per (l, h, p) with z.
    Minimum bytes: x, z read and out written [B, L, H, P]; dt [B, L, H]; B, C [B, L, G, N] (all x's dtype);
    A, D ([H] or [H, P]) and dt_bias in fp32; initial / final states [B, H, P, N] fp32 when present.

    impl_bytes["official"] (ssd_combined.py: _chunk_cumsum_fwd, _chunk_state_fwd, _state_passing_fwd,
    _bmm_chunk_fwd, _chunk_scan_fwd), every kernel's operands counted from DRAM (true when the intermediates
    outgrow the 50 MB L2 — long L; at L ≤ 4K part of them stays in L2): the minimum, plus
      δ and dA_cumsum [B, H, c, Q] fp32: each written once, read by chunk_state and chunk_scan; dA_cumsum's
        last column [B, H, c] read by state_passing;
      chunk states [B, c, H, P, N]: written fp32 (chunk_state), read fp32 and written in C's dtype
        (state_passing), read in C's dtype (chunk_scan); final states [B, H, P, N] fp32 always written;
      CB [B, c, G, Q, Q] fp32 written (bmm, the full Q×Q) and read (chunk_scan; its causal loop skips blocks
        above the diagonal, reading ½ + BLOCK_M/2Q of it, counted whole — an upper bound);
      x, B, C each read a second time (chunk_scan, bmm, chunk_scan);
      with z, the ungated out_x [B, L, H, P] written for the backward pass.
    Our Triton kernel moves the minimum (plus, when it splits the sequence into S segments, a second read of
    x, dt and B for all but the last segment and S fp32 states per head).
    """
    b, l, h, p, n, g, q = (shape.batch, shape.seqlen, shape.nheads, shape.headdim, shape.dstate, shape.ngroups,
                           shape.chunk_size)
    c = math.ceil(l / q)
    pairs = causal_pairs(l, q)
    tensor = b * (2 * n * pairs * g + 2 * p * pairs * h + 4 * p * n * l * h)
    per_lh = 4 + (1 if shape.dt_bias else 0) + (1 if shape.softplus else 0)
    per_lhp = 3 + (2 if shape.D else 0) + (5 if shape.z else 0)
    elementwise = b * (per_lh * l * h + 3 * pairs * h + per_lhp * l * h * p + 2 * c * h * p * n)
    trans = b * ((2 + (2 if shape.softplus else 0)) * l * h + pairs * h + c * h + (l * h * p if shape.z else 0))

    e = DTYPE_BYTES[dtype]
    xe = b * l * h * p * e
    bc = b * l * g * n * e
    state = b * h * p * n * 4
    parts = {"x": xe, "z": xe if shape.z else 0, "out": xe, "dt": b * l * h * e, "B": bc, "C": bc,
             "A": h * 4, "D": (h * p if shape.D_headdim else h) * 4 if shape.D else 0,
             "dt_bias": h * 4 if shape.dt_bias else 0,
             "initial_states": state if shape.init_states else 0, "final_states": state if shape.final_states else 0}
    minimum = sum(parts.values())
    aux = b * h * c * q * 4
    chunk_states = b * c * h * p * n
    official = (minimum
                + 2 * aux + 2 * 2 * aux + b * h * c * 4           # δ, dA_cumsum: written, read twice; last column
                + chunk_states * (4 + 4 + e + e)                   # fp32 write + read, C-dtype write + read
                + (0 if shape.final_states else state)             # final states, always written
                + 2 * b * c * g * q * q * 4                        # CB written and read
                + xe + 2 * bc                                      # x, B, C read twice
                + (xe if shape.z else 0))                          # out_x
    return Cost(flops=float(tensor + elementwise), tensor_flops=float(tensor), transcendentals=float(trans),
                bytes={k: float(v) for k, v in parts.items()}, impl_bytes={"official": float(official)})


def outputs(result: Any, kwargs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    if isinstance(result, tuple):
        return {"out": result[0], "final_states": result[1]}
    return {"out": result}


def official_supports(shape: SSDShape, dtype: str) -> str | None:
    if dtype not in ("fp32", "fp16", "bf16"):
        return f"official runs fp32, fp16 and bf16 only, got {dtype}"
    return None


def triton_supports(shape: SSDShape, dtype: str) -> str | None:
    if shape.dstate > MAX_DSTATE:
        return f"ours keeps the [P, N] state in registers: dstate <= {MAX_DSTATE}, got {shape.dstate}"
    if dtype not in ("fp32", "fp16", "bf16"):
        return f"ours runs fp32, fp16 and bf16 only, got {dtype}"
    return None


# Flag sets the small grid rotates through: Mamba-2's call, everything off, every optional input.
_FLAGS = (
    dict(),
    dict(D=False, dt_bias=False, softplus=False),
    dict(D_headdim=True, z=True, dt_bias=False),
    dict(D=False, z=True, softplus=False, init_states=True, final_states=True),
    dict(z=True, final_states=True),
    dict(D_headdim=True, init_states=True),
)


def _grid_small() -> list[dict[str, Any]]:
    """Interpreter-sized: lengths 1, 17, 64, 77, 100, 130 against chunks of 16-64 (not divisible, shorter than a
    block, several blocks), 1, 2 or one group per head, P 12 / N 8 and N 24 padded up, P 80 in two blocks;
    every dtype; the six flag sets rotate by two per dtype, so each (shape, flags) pair differs per dtype."""
    shapes = (
        dict(batch=2, seqlen=17, nheads=2, headdim=16, dstate=16, ngroups=1, chunk_size=16),
        dict(batch=1, seqlen=100, nheads=4, headdim=16, dstate=16, ngroups=2, chunk_size=32),
        dict(batch=1, seqlen=64, nheads=2, headdim=12, dstate=8, ngroups=2, chunk_size=16),
        dict(batch=1, seqlen=1, nheads=3, headdim=16, dstate=16, ngroups=1, chunk_size=16),
        dict(batch=1, seqlen=77, nheads=4, headdim=80, dstate=24, ngroups=4, chunk_size=32),
        dict(batch=2, seqlen=130, nheads=2, headdim=16, dstate=32, ngroups=1, chunk_size=64),
    )
    return [dict(shp, dtype=dtype, **_FLAGS[(i + 2 * k) % len(_FLAGS)])
            for k, dtype in enumerate(("fp32", "fp16", "bf16")) for i, shp in enumerate(shapes)]


def _grid_upstream() -> list[dict[str, Any]]:
    """No test of the combined forward ships with mamba_ssm 2.3.2.post1 (its sdist has tests/test_determinism.py
    and tests/test_generation.py only); its GitHub tests give the shapes:
      * tests/ops/triton/test_ssd.py::test_chunk_state_varlen: fp32/fp16/bf16 × chunk 64/128 × ngroups
        1/2/8/max, dim 4096 = 64 heads of 64, dstate 32, sequences of 1-199 steps, δ given (no softplus,
        bias, D or z), final states compared, rtol 1e-2 / atol 3e-3 -> batch 3, L 199, final states;
      * tests/test_determinism.py combined cases: batch 2, L 2048, 8 heads of 64/128, dstate 64, chunk 256,
        D per head or per (head, dim), dt_bias + softplus, bf16.
    """
    varlen = [dict(batch=3, seqlen=199, nheads=64, headdim=64, dstate=32, ngroups=g, chunk_size=q, D=False,
                   dt_bias=False, softplus=False, final_states=True, dtype=dtype)
              for dtype in ("fp32", "fp16", "bf16") for q in (64, 128) for g in (1, 2, 8, 64)]
    determinism = [dict(batch=2, seqlen=2048, nheads=8, headdim=p, dstate=64, ngroups=1, chunk_size=256,
                        D_headdim=d_hdim, dtype="bf16")
                   for p in (64, 128) for d_hdim in (False, True)]
    return varlen + determinism


def _grid_paper() -> list[dict[str, Any]]:
    """Mamba-2 130M…2.7B in prefill: d_model 768/1024/1536/2048/2560, expand 2, headdim 64 -> 24, 32, 48,
    64, 80 heads; dstate 128, 1 group, chunk 256; D per head, dt_bias, softplus, no z, final states
    returned (the cache for decoding); batch 1; L 1K…64K; bf16."""
    return [dict(batch=1, seqlen=l, nheads=h, headdim=64, dstate=128, ngroups=1, chunk_size=256,
                 final_states=True, dtype="bf16")
            for h in (24, 32, 48, 64, 80) for l in (1024, 4096, 16384, 65536)]


OP = Op(
    name="ssd",
    summary="Mamba-2 chunked scan (SSD): scalar-decay SSM per head, groups of B/C",
    shape_type=SSDShape,
    generate=generate,
    cost=cost,
    impls={
        "ref": Impl("ref", "ssmscope.kernels.ssd.ref:ssd", "reference", "PyTorch recurrence, one step at a time"),
        "triton": Impl("triton", "ssmscope.kernels.ssd.triton_kernel:ssd", "ours",
                       "v2: one fused pass, blocks of 16-32 steps (4 warps, 2 programs per SM) in dual form on tensor cores, state in registers, "
                       "sequence split into segments when B·H is small", supports=triton_supports),
        "triton_v1": Impl("triton_v1", "ssmscope.kernels.ssd.triton_kernel_v1:ssd", "previous",
                          "v1: one fused pass, no prefetch, 1 CTA/SM at N=128 (255 registers + spills), segments for "
                          "about two programs per SM", supports=triton_supports),
        "official": Impl("official", "ssmscope.kernels.ssd.official:ssd", "official",
                         "mamba_ssm mamba_chunk_scan_combined (five Triton kernels)", needs_cuda=True,
                         supports=official_supports),
    },
    # Relative L2 error against float64. fp32 admits the official's TF32 dots (1.1e-3 measured on the H100,
    # benchmarks/check_upstream); ours is near 1e-6 (tf32x3) and its tests hold it to 2e-5. Half types: the
    # operands rounded for tensor cores (W, x∘w, the state) and the output's rounding (ours: ≤ 7e-3 on CPU,
    # where the interpreter truncates to bf16 instead of rounding).
    tolerance={"fp32": 5e-3, "fp16": 3e-3, "bf16": 2e-2},
    # Ours vs official, elementwise (rtol, atol): fp16 upstream test_ssd.py's (1e-2, 3e-3); bf16 the selective
    # scan's (3e-2, 5e-2); fp32 (3e-2, 2e-2) because the official's dots are TF32 (10-bit mantissa). Emulating
    # both kernels' rounding points on the upstream grid (chunk 128/256 against our 64-step blocks) needs atol
    # 7e-4 (fp16, rtol 1e-2), 5.7e-3 (bf16, rtol 3e-2) and 5.6e-3 (fp32 with truncating TF32, rtol 3e-2).
    upstream_tolerance={"fp32": (3e-2, 2e-2), "fp16": (1e-2, 3e-3), "bf16": (3e-2, 5e-2)},
    grids={"small": _grid_small, "upstream": _grid_upstream, "paper": _grid_paper},
    outputs=outputs,
)
