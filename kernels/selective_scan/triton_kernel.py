"""Our selective scan in Triton: a chunked parallel scan, state carried in registers across chunks.

One program owns (batch b, BLOCK_D channels) and walks the sequence in chunks of BLOCK_L steps. Within a
chunk it forms the decays a = exp(δ·A) and inputs x = δ·u·B on a [BLOCK_D, N, BLOCK_L] tile and runs a
parallel ``tl.associative_scan`` along L with the affine combine (a1, x1) ∘ (a2, x2) = (a1·a2, a2·x1 + x2);
the state entering the chunk is folded in as h = a_cum·h_in + x_cum, and y = Σ_n h·C. All math is fp32.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..op import ShapeError


@triton.jit
def _affine_combine(a1, x1, a2, x2):
    return a1 * a2, a2 * x1 + x2


@triton.jit
def _selective_scan_kernel(
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
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):
    pid_b = tl.program_id(0)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    d_ok = d < dim
    n_ok = n < dstate
    g = d // dim_per_group  # B/C group of each channel

    A = tl.load(A_ptr + d[:, None] * stride_ad + n[None, :] * stride_an,
                mask=d_ok[:, None] & n_ok[None, :], other=0.0).to(tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + d, mask=d_ok, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d, mask=d_ok, other=0.0).to(tl.float32)

    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    last = (tl.arange(0, BLOCK_L) == BLOCK_L - 1)[None, None, :]
    u_base = u_ptr + pid_b * stride_ub + d[:, None] * stride_ud
    dl_base = delta_ptr + pid_b * stride_db + d[:, None] * stride_dd
    bc_off = g[:, None, None] * stride_bg + n[None, :, None] * stride_bn
    cc_off = g[:, None, None] * stride_cg + n[None, :, None] * stride_cn
    for l0 in range(0, seqlen, BLOCK_L):
        l = l0 + tl.arange(0, BLOCK_L)
        l_ok = l < seqlen
        m2 = d_ok[:, None] & l_ok[None, :]
        u = tl.load(u_base + l[None, :] * stride_ul, mask=m2, other=0.0).to(tl.float32)
        dt = tl.load(dl_base + l[None, :] * stride_dl, mask=m2, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dt += bias[:, None]
        if SOFTPLUS:
            dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(dt)), dt)
        m3 = d_ok[:, None, None] & n_ok[None, :, None] & l_ok[None, None, :]
        Bt = tl.load(B_ptr + pid_b * stride_bb + bc_off + l[None, None, :] * stride_bl, mask=m3, other=0.0)
        Ct = tl.load(C_ptr + pid_b * stride_cb + cc_off + l[None, None, :] * stride_cl, mask=m3, other=0.0)
        # Steps past the end are identities (decay 1, input 0), so the last lane carries the final state.
        decay = tl.where(l_ok[None, None, :], tl.exp(dt[:, None, :] * A[:, :, None]), 1.0)
        x = (dt * u)[:, None, :] * Bt.to(tl.float32)
        a_cum, x_cum = tl.associative_scan((decay, x), 2, _affine_combine)
        hs = a_cum * h[:, :, None] + x_cum
        y = tl.sum(hs * Ct.to(tl.float32), axis=1)
        h = tl.sum(tl.where(last, hs, 0.0), axis=2)
        if HAS_D:
            y += Dv[:, None] * u
        if HAS_Z:
            zt = tl.load(z_ptr + pid_b * stride_zb + d[:, None] * stride_zd + l[None, :] * stride_zl,
                         mask=m2, other=0.0).to(tl.float32)
            y *= zt / (1.0 + tl.exp(-zt))
        tl.store(out_ptr + pid_b * stride_ob + d[:, None] * stride_od + l[None, :] * stride_ol,
                 y.to(out_ptr.dtype.element_ty), mask=m2)


def _tile(dstate: int) -> tuple[int, int, int]:
    """(BLOCK_D, BLOCK_N, BLOCK_L): keep the [D, N, L] tile near 4K elements so it stays in registers."""
    block_n = max(triton.next_power_of_2(dstate), 2)
    block_l = 32 if block_n <= 16 else 16
    block_d = max(1, min(16, 4096 // (block_n * block_l)))
    return block_d, block_n, block_l


MAX_DSTATE = 256


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                   delta_bias: torch.Tensor | None = None, delta_softplus: bool = False) -> torch.Tensor:
    """Selective scan with the official signature.

    u, delta, z: [B, D, L];  A: [D, N] (real);  B, C: [B, G, N, L] (time-varying, G groups, D % G == 0);
    D, delta_bias: [D].  Returns out [B, D, L] in u's dtype.
    """
    if B.dim() != 4 or C.dim() != 4:
        raise ShapeError("selective_scan (triton): B and C must be time-varying [B, G, N, L]")
    batch, dim, seqlen = u.shape
    groups, dstate = B.shape[1], A.shape[1]
    if dstate > MAX_DSTATE:
        raise ShapeError(f"selective_scan (triton): dstate {dstate} exceeds the limit of {MAX_DSTATE}")
    if dim % groups:
        raise ShapeError(f"selective_scan: dim {dim} is not divisible by the {groups} B/C groups")
    out = torch.empty_like(u, memory_format=torch.contiguous_format)
    block_d, block_n, block_l = _tile(dstate)
    zz = z if z is not None else u  # placeholders never read: HAS_Z / HAS_D / HAS_BIAS are compile-time off
    grid = (batch, triton.cdiv(dim, block_d))
    _selective_scan_kernel[grid](
        u, delta, A, B, C, D if D is not None else A, zz, delta_bias if delta_bias is not None else A, out,
        dim, seqlen, dstate, dim // groups,
        *u.stride(), *delta.stride(), *A.stride(), *B.stride(), *C.stride(), *zz.stride(), *out.stride(),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus),
        BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_L=block_l, num_warps=4,
    )
    return out
