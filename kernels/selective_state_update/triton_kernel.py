"""Our selective_state_update in Triton: one decode step, the state tile updated in registers.

One program owns (batch b, head h, BLOCK_M rows of the head's P channels) and the whole state row of N:
it reads the [BLOCK_M, N] state once, applies exp(δ·A) and adds δ·x·B, writes it back in place and reduces
against C for the output. Per-head parameters given as stride-0 expansions (Mamba-2) are read through their
strides, so they cost one load per head.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..op import ShapeError


@triton.jit
def _state_update_kernel(
    state_ptr, x_ptr, dt_ptr, bias_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, out_ptr,
    dim, dstate, heads_per_group,
    stride_sb, stride_sh, stride_sp, stride_sn,
    stride_xb, stride_xh, stride_xp,
    stride_tb, stride_th, stride_tp,
    stride_bias_h, stride_bias_p,
    stride_ah, stride_ap, stride_an,
    stride_bb, stride_bg, stride_bn,
    stride_cb, stride_cg, stride_cn,
    stride_dh, stride_dp,
    stride_zb, stride_zh, stride_zp,
    stride_ob, stride_oh, stride_op,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    b = tl.program_id(0)
    h = tl.program_id(1)
    p = tl.program_id(2) * BLOCK_M + tl.arange(0, BLOCK_M)
    n = tl.arange(0, BLOCK_N)
    p_ok = p < dim
    n_ok = n < dstate
    m2 = p_ok[:, None] & n_ok[None, :]
    g = h // heads_per_group

    s_ptrs = state_ptr + b * stride_sb + h * stride_sh + p[:, None] * stride_sp + n[None, :] * stride_sn
    s = tl.load(s_ptrs, mask=m2, other=0.0).to(tl.float32)
    x = tl.load(x_ptr + b * stride_xb + h * stride_xh + p * stride_xp, mask=p_ok, other=0.0).to(tl.float32)
    dt = tl.load(dt_ptr + b * stride_tb + h * stride_th + p * stride_tp, mask=p_ok, other=0.0).to(tl.float32)
    if HAS_BIAS:
        dt += tl.load(bias_ptr + h * stride_bias_h + p * stride_bias_p, mask=p_ok, other=0.0).to(tl.float32)
    if SOFTPLUS:
        dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(dt)), dt)
    A = tl.load(A_ptr + h * stride_ah + p[:, None] * stride_ap + n[None, :] * stride_an, mask=m2,
                other=0.0).to(tl.float32)
    Bv = tl.load(B_ptr + b * stride_bb + g * stride_bg + n * stride_bn, mask=n_ok, other=0.0).to(tl.float32)
    Cv = tl.load(C_ptr + b * stride_cb + g * stride_cg + n * stride_cn, mask=n_ok, other=0.0).to(tl.float32)

    s = s * tl.exp(A * dt[:, None]) + (dt * x)[:, None] * Bv[None, :]
    tl.store(s_ptrs, s.to(state_ptr.dtype.element_ty), mask=m2)
    out = tl.sum(s * Cv[None, :], axis=1)
    if HAS_D:
        out += x * tl.load(D_ptr + h * stride_dh + p * stride_dp, mask=p_ok, other=0.0).to(tl.float32)
    if HAS_Z:
        z = tl.load(z_ptr + b * stride_zb + h * stride_zh + p * stride_zp, mask=p_ok, other=0.0).to(tl.float32)
        out *= z / (1.0 + tl.exp(-z))
    tl.store(out_ptr + b * stride_ob + h * stride_oh + p * stride_op, out.to(out_ptr.dtype.element_ty), mask=p_ok)


def _as_heads(t: torch.Tensor | None, ndim: int, axis: int) -> torch.Tensor | None:
    """Mamba-1 tensors gain a unit head axis (a view, no copy)."""
    return t if t is None or t.dim() == ndim else t.unsqueeze(axis)


def selective_state_update(state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor,
                           B: torch.Tensor, C: torch.Tensor, D: torch.Tensor | None = None,
                           z: torch.Tensor | None = None, dt_bias: torch.Tensor | None = None,
                           dt_softplus: bool = False) -> torch.Tensor:
    """One selective-scan step with the official signature; ``state`` is updated in place.

    Mamba-1: state [B, D, N], x/dt/z [B, D], A [D, N], B/C [B, N], D/dt_bias [D].
    Mamba-2: state [B, H, P, N], x/dt/z [B, H, P], A [H, P, N], B/C [B, G, N], D/dt_bias [H, P].
    """
    heads = state.dim() == 4
    s = _as_heads(state, 4, 1)
    x_, dt_, z_ = (_as_heads(t, 3, 1) for t in (x, dt, z))
    A_ = _as_heads(A, 3, 0)
    B_, C_ = (_as_heads(t, 3, 1) for t in (B, C))
    D_, bias_ = (_as_heads(t, 2, 0) for t in (D, dt_bias))
    batch, nheads, dim, dstate = s.shape
    groups = B_.shape[1]
    if nheads % groups:
        raise ShapeError(f"selective_state_update: nheads {nheads} not divisible by ngroups {groups}")
    if x_.shape != (batch, nheads, dim) or dt_.shape != x_.shape or A_.shape != (nheads, dim, dstate):
        raise ShapeError("selective_state_update: x/dt/A shapes do not match the state")
    out = torch.empty_like(x_)
    block_n = max(triton.next_power_of_2(dstate), 2)
    block_m = max(1, min(64, 2048 // block_n))
    zz = z_ if z_ is not None else x_
    dd = D_ if D_ is not None else A_[:, :, 0]
    bb = bias_ if bias_ is not None else A_[:, :, 0]
    grid = (batch, nheads, triton.cdiv(dim, block_m))
    _state_update_kernel[grid](
        s, x_, dt_, bb, A_, B_, C_, dd, zz, out,
        dim, dstate, nheads // groups,
        *s.stride(), *x_.stride(), *dt_.stride(), *bb.stride(), *A_.stride(), *B_.stride(), *C_.stride(),
        *dd.stride(), *zz.stride(), *out.stride(),
        HAS_D=D_ is not None, HAS_Z=z_ is not None, HAS_BIAS=bias_ is not None, SOFTPLUS=bool(dt_softplus),
        BLOCK_M=block_m, BLOCK_N=block_n, num_warps=4,
    )
    return out if heads else out.squeeze(1)
