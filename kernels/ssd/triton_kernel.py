"""Our SSD (Mamba-2 scan) in Triton: one fused kernel, chunked in time, the state carried in registers.

One program owns (batch b, head h, BLOCK_P of the head's P channels) and walks the sequence in blocks of
BLOCK_T steps. With a = δ·A and its running sum s (``tl.cumsum``) inside the block, each block does the
SSD "dual" form on tensor cores:
    W      = (C Bᵀ) ∘ exp(s_i − s_j)·[i ≥ j] ∘ δ_j            intra-block attention-like weights [T, T]
    y      = W x + exp(s_i) · C hᵀ + D·x                    (then · silu(z))
    h      ← exp(s_T) · h + (x ∘ δ·exp(s_T − s_j))ᵀ B         state [P, N] in fp32 registers
so the only traffic is reading x, dt, B, C, z once and writing y once. Our block BLOCK_T is independent of
``chunk_size``: the function is the same, only the evaluation order differs.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..op import ShapeError


@triton.jit
def _ssd_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr,
    seqlen, nheads, headdim, dstate, heads_per_group,
    stride_xb, stride_xl, stride_xh, stride_xp,
    stride_tb, stride_tl, stride_th,
    stride_bb, stride_bl, stride_bg, stride_bn,
    stride_cb, stride_cl, stride_cg, stride_cn,
    stride_dh, stride_dp,
    stride_zb, stride_zl, stride_zh, stride_zp,
    stride_ob, stride_ol, stride_oh, stride_op,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HALF_DOT: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    b = pid_bh // nheads
    h = pid_bh % nheads
    g = h // heads_per_group
    p = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
    n = tl.arange(0, BLOCK_N)
    t_in = tl.arange(0, BLOCK_T)
    p_ok = p < headdim
    n_ok = n < dstate

    A = tl.load(A_ptr + h).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + h).to(tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + h * stride_dh + p * stride_dp, mask=p_ok, other=0.0).to(tl.float32)
    causal = t_in[:, None] >= t_in[None, :]
    state = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)

    for t0 in range(0, seqlen, BLOCK_T):
        t = t0 + t_in
        t_ok = t < seqlen
        dt = tl.load(dt_ptr + b * stride_tb + t * stride_tl + h * stride_th, mask=t_ok, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dt += bias
        if SOFTPLUS:
            dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(dt)), dt)
        dt = tl.where(t_ok, dt, 0.0)  # steps past the end: no decay, no input
        s = tl.cumsum(dt * A, axis=0)
        s_last = tl.sum(tl.where(t_in == BLOCK_T - 1, s, 0.0), axis=0)

        xm = t_ok[:, None] & p_ok[None, :]
        x = tl.load(x_ptr + b * stride_xb + t[:, None] * stride_xl + h * stride_xh + p[None, :] * stride_xp,
                    mask=xm, other=0.0)
        bm = t_ok[:, None] & n_ok[None, :]
        Bt = tl.load(B_ptr + b * stride_bb + t[:, None] * stride_bl + g * stride_bg + n[None, :] * stride_bn,
                     mask=bm, other=0.0)
        Ct = tl.load(C_ptr + b * stride_cb + t[:, None] * stride_cl + g * stride_cg + n[None, :] * stride_cn,
                     mask=bm, other=0.0)
        if HALF_DOT:  # bf16/fp16 operands on tensor cores, fp32 accumulation (as the official kernels do)
            CB = tl.dot(Ct, tl.trans(Bt))
        else:
            Ct = Ct.to(tl.float32)
            Bt = Bt.to(tl.float32)
            CB = tl.dot(Ct, tl.trans(Bt), input_precision="ieee")
        seg = tl.where(causal, s[:, None] - s[None, :], float("-inf"))
        W = CB * tl.exp(seg) * dt[None, :]
        state_w = dt * tl.exp(s_last - s)  # weight of step j in the block's contribution to the state
        if HALF_DOT:
            y = tl.dot(W.to(x.dtype), x)
            y += tl.dot(Ct, tl.trans(state).to(Ct.dtype)) * tl.exp(s)[:, None]
            xw = (x.to(tl.float32) * state_w[:, None]).to(Bt.dtype)
            state = state * tl.exp(s_last) + tl.dot(tl.trans(xw), Bt)
        else:
            xf = x.to(tl.float32)
            y = tl.dot(W, xf, input_precision="ieee")
            y += tl.dot(Ct, tl.trans(state), input_precision="ieee") * tl.exp(s)[:, None]
            state = state * tl.exp(s_last) + tl.dot(tl.trans(xf * state_w[:, None]), Bt, input_precision="ieee")
        if HAS_D:
            y += x.to(tl.float32) * Dv[None, :]
        if HAS_Z:
            zt = tl.load(z_ptr + b * stride_zb + t[:, None] * stride_zl + h * stride_zh + p[None, :] * stride_zp,
                         mask=xm, other=0.0).to(tl.float32)
            y *= zt / (1.0 + tl.exp(-zt))
        tl.store(out_ptr + b * stride_ob + t[:, None] * stride_ol + h * stride_oh + p[None, :] * stride_op,
                 y.to(out_ptr.dtype.element_ty), mask=xm)


def _blocks(headdim: int, dstate: int) -> tuple[int, int, int, int]:
    """(BLOCK_T, BLOCK_P, BLOCK_N, num_warps); tl.dot needs every dim >= 16."""
    block_n = max(16, triton.next_power_of_2(dstate))
    block_p = max(16, min(64, triton.next_power_of_2(headdim)))
    block_t = 64 if block_n <= 128 else 32
    return block_t, block_p, block_n, 8 if block_n >= 128 else 4


def ssd(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, chunk_size: int,
        D: torch.Tensor | None = None, z: torch.Tensor | None = None, dt_bias: torch.Tensor | None = None,
        dt_softplus: bool = False) -> torch.Tensor:
    """SSD with the official signature (``mamba_chunk_scan_combined``'s leading arguments).

    x, z: [B, L, H, P];  dt: [B, L, H];  A: [H];  B, C: [B, L, G, N];  D: [H] or [H, P];  dt_bias: [H].
    Returns out [B, L, H, P] in x's dtype.
    """
    batch, seqlen, nheads, headdim = x.shape
    groups, dstate = B.shape[2], B.shape[3]
    if nheads % groups:
        raise ShapeError(f"ssd: nheads {nheads} not divisible by ngroups {groups}")
    if dstate > 256:
        raise ShapeError(f"ssd (triton): dstate {dstate} exceeds the limit of 256")
    out = torch.empty_like(x)
    block_t, block_p, block_n, warps = _blocks(headdim, dstate)
    if D is not None:
        d_strides = (D.stride(0), 0) if D.dim() == 1 else tuple(D.stride())
    else:
        d_strides = (0, 0)
    zz = z if z is not None else x
    half_dot = x.is_cuda and x.dtype in (torch.float16, torch.bfloat16)  # the CPU interpreter's half dots are wrong
    grid = (batch * nheads, triton.cdiv(headdim, block_p))
    _ssd_kernel[grid](
        x, dt, A, B, C, D if D is not None else A, zz, dt_bias if dt_bias is not None else A, out,
        seqlen, nheads, headdim, dstate, nheads // groups,
        *x.stride(), *dt.stride(), *B.stride(), *C.stride(), *d_strides, *zz.stride(), *out.stride(),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=dt_bias is not None, SOFTPLUS=bool(dt_softplus),
        HALF_DOT=half_dot, BLOCK_T=block_t, BLOCK_P=block_p, BLOCK_N=block_n, num_warps=warps,
    )
    return out
