"""Our selective scan in Triton: a chunked parallel scan, the state carried in registers across chunks.

One program owns (BLOCK_D channels, batch element b) and walks the sequence in chunks of BLOCK_L steps.
Within a chunk it forms, on a [BLOCK_D, N, BLOCK_L] tile, the decays a_t = exp(δ_t·A) and the inputs
x_t = δ_t·u_t·B_t, and runs a parallel ``tl.associative_scan`` along L with the affine combine
(a1, x1) ∘ (a2, x2) = (a1·a2, a2·x1 + x2) (log2(BLOCK_L) depth, no thread walks the sequence alone). The
state entering the chunk folds in as h_t = a_cum,t·h_in + x_cum,t, y_t = Σ_n h_t·C_t is a reduction over
N, and the chunk's last h is the next chunk's h_in. All math is fp32; every input is read once and the
output written once (no intermediate tensors in DRAM).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .ref import optional_args, ours_output, scan_args


@triton.jit
def _affine_combine(a1, x1, a2, x2):
    # h -> a1·h + x1, then h -> a2·h + x2, composed: h -> (a1·a2)·h + (a2·x1 + x2)
    return a1 * a2, a2 * x1 + x2


@triton.jit
def _softplus(x):
    """log1p(exp(x)) for x <= 20, x above (the official kernels' threshold). log1p(e) uses Goldberg's
    trick, log(1+e)·e/((1+e)-1), so that small results keep full fp32 relative precision."""
    e = tl.exp(tl.minimum(x, 20.0))
    w = 1.0 + e
    log1p = tl.where(w == 1.0, e, tl.log(w) * (e / (w - 1.0)))
    return tl.where(x <= 20.0, log1p, x)


# Sizes are not specialized (== 1, divisible by 16): that would only multiply compiled variants across a
# grid of lengths; strides still are (a unit stride along L lets loads vectorize).
@triton.jit(do_not_specialize=["dim", "seqlen", "dstate", "dim_per_group"])
def _selective_scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr,
    dim, seqlen, dstate, dim_per_group,
    stride_ub, stride_ud, stride_ul,
    stride_db, stride_dd, stride_dl,
    stride_ad, stride_an,
    stride_bb, stride_bg, stride_bn, stride_bl,
    stride_cb, stride_cg, stride_cn, stride_cl,
    stride_zb, stride_zd, stride_zl,
    stride_ob, stride_od, stride_ol,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    ONE_GROUP: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    offs_t = tl.arange(0, BLOCK_L)
    mask_d = offs_d < dim
    mask_n = offs_n < dstate
    d64 = offs_d.to(tl.int64)  # 64-bit row offsets: B·D·L may pass 2^31 elements

    # A pre-scaled by log2(e) so that each decay is one exp2 (padded states: A = 0, decay 1, input 0).
    A = tl.load(A_ptr + d64[:, None] * stride_ad + offs_n[None, :] * stride_an,
                mask=mask_d[:, None] & mask_n[None, :], other=0.0).to(tl.float32) * 1.4426950408889634
    if HAS_D:
        D = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)

    u_rows = u_ptr + pid_b * stride_ub + d64 * stride_ud
    dt_rows = delta_ptr + pid_b * stride_db + d64 * stride_dd
    z_rows = z_ptr + pid_b * stride_zb + d64 * stride_zd
    out_rows = out_ptr + pid_b * stride_ob + d64 * stride_od
    if ONE_GROUP:  # the block's channels share one group: load B/C as [N, L] and broadcast over channels
        g = (pid_d * BLOCK_D) // dim_per_group
        B_rows = B_ptr + pid_b * stride_bb + g * stride_bg + offs_n * stride_bn
        C_rows = C_ptr + pid_b * stride_cb + g * stride_cg + offs_n * stride_cn
    else:
        g = (offs_d // dim_per_group).to(tl.int64)
        B_rows = B_ptr + pid_b * stride_bb + g[:, None] * stride_bg + offs_n[None, :] * stride_bn
        C_rows = C_ptr + pid_b * stride_cb + g[:, None] * stride_cg + offs_n[None, :] * stride_cn

    h = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    is_last = (offs_t == BLOCK_L - 1)[None, None, :]
    for t0 in range(0, seqlen, BLOCK_L):
        t = t0 + offs_t
        mask_t = t < seqlen
        mask_dt = mask_d[:, None] & mask_t[None, :]
        u = tl.load(u_rows[:, None] + t[None, :] * stride_ul, mask=mask_dt, other=0.0).to(tl.float32)
        dt = tl.load(dt_rows[:, None] + t[None, :] * stride_dl, mask=mask_dt, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dt += bias[:, None]
        if SOFTPLUS:
            dt = _softplus(dt)
        # Padded steps get δ = 0: decay 1 and input 0, identities of the scan, so the last lane of the
        # chunk holds the state after the last real step.
        dt = tl.where(mask_dt, dt, 0.0)
        if ONE_GROUP:
            mask_nt = mask_n[:, None] & mask_t[None, :]
            Bt = tl.load(B_rows[:, None] + t[None, :] * stride_bl, mask=mask_nt, other=0.0).to(tl.float32)[None, :, :]
            Ct = tl.load(C_rows[:, None] + t[None, :] * stride_cl, mask=mask_nt, other=0.0).to(tl.float32)[None, :, :]
        else:
            mask_dnt = mask_d[:, None, None] & mask_n[None, :, None] & mask_t[None, None, :]
            Bt = tl.load(B_rows[:, :, None] + t[None, None, :] * stride_bl, mask=mask_dnt, other=0.0).to(tl.float32)
            Ct = tl.load(C_rows[:, :, None] + t[None, None, :] * stride_cl, mask=mask_dnt, other=0.0).to(tl.float32)

        decay = tl.exp2(dt[:, None, :] * A[:, :, None])  # [BLOCK_D, BLOCK_N, BLOCK_L]
        x = (dt * u)[:, None, :] * Bt
        a_cum, x_cum = tl.associative_scan((decay, x), 2, _affine_combine)
        hs = a_cum * h[:, :, None] + x_cum
        y = tl.sum(hs * Ct, axis=1)  # [BLOCK_D, BLOCK_L]
        h = tl.sum(tl.where(is_last, hs, 0.0), axis=2)

        if HAS_D:
            y += D[:, None] * u
        if HAS_Z:
            zt = tl.load(z_rows[:, None] + t[None, :] * stride_zl, mask=mask_dt, other=0.0).to(tl.float32)
            y *= zt / (1.0 + tl.exp(-zt))
        tl.store(out_rows[:, None] + t[None, :] * stride_ol, y.to(out_ptr.dtype.element_ty), mask=mask_dt)


def _block_sizes(dim: int, dstate: int, seqlen: int) -> tuple[int, int, int, int]:
    """(BLOCK_D, BLOCK_N, BLOCK_L, num_warps) for a [BLOCK_D, BLOCK_N, BLOCK_L] tile of about 2K fp32
    elements per 4 warps (16 per thread for each of the ~6 live tiles: decay, input, both scan outputs, C,
    their product), 4K with 8 warps from N = 128. BLOCK_L shrinks as N grows (64, 32, 16) and BLOCK_D takes
    what is left (N = 16: 2 channels x 64 steps; N = 64: 1 x 32; N = 256: 1 x 16)."""
    block_n = max(4, triton.next_power_of_2(dstate))
    if block_n <= 16:
        block_l, tile, num_warps = 64, 2048, 4
    elif block_n <= 64:
        block_l, tile, num_warps = 32, 2048, 4
    else:
        block_l, tile, num_warps = 16, 4096, 8
    block_l = min(block_l, max(4, triton.next_power_of_2(seqlen)))
    block_d = max(1, min(tile // (block_n * block_l), triton.next_power_of_2(dim)))
    return block_d, block_n, block_l, num_warps


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                   delta_bias: torch.Tensor | None = None, delta_softplus: bool = False) -> torch.Tensor:
    """Selective scan (Mamba-1 S6 forward) with the official signature.

    u, delta, z: [B, D, L] (fp32/fp16/bf16, any strides);  A: [D, N] real, N <= 256;
    B, C: [B, G, N, L] time-varying (or [B, N, L], G = 1), D % G == 0;  D, delta_bias: [D] (fp32).
    Returns out [B, D, L] (contiguous) in u's dtype: (Σ_n h·C + D·u)·silu(z).
    """
    B, C = scan_args(u, delta, A, B, C, D, z, delta_bias)
    batch, dim, seqlen = u.shape
    groups, dstate = B.shape[1], A.shape[1]
    out = ours_output(u, A)
    if out.numel() == 0:
        return out
    block_d, block_n, block_l, num_warps = _block_sizes(dim, dstate, seqlen)
    dim_per_group = dim // groups
    # Placeholders for absent tensors are never read (HAS_Z / HAS_D / HAS_BIAS are constexpr); the
    # [D]-vectors are read with unit stride.
    zz, dd, bb = optional_args(u, A, z, D, delta_bias)
    grid = (triton.cdiv(dim, block_d), batch)
    _selective_scan_fwd_kernel[grid](
        u, delta, A, B, C, dd, zz, bb, out,
        dim, seqlen, dstate, dim_per_group,
        *u.stride(), *delta.stride(), *A.stride(), *B.stride(), *C.stride(), *zz.stride(), *out.stride(),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
        SOFTPLUS=bool(delta_softplus), ONE_GROUP=groups == 1 or dim_per_group % block_d == 0,
        BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_L=block_l, num_warps=num_warps,
    )
    return out
