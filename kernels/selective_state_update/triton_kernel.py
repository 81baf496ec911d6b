"""Our selective_state_update in Triton (v2): one decode step, the state tile updated in registers.

One program owns (BLOCK_M rows of one head's P channels, batch element b, head h) and the whole state row
of N for each: it reads the [BLOCK_M, N] state tile once, decays it by exp(δ·A), adds (δ·x) ⊗ B, writes
it back in place and reduces it against C for the output, all in fp32. The step is a few µs, bound by the
latency of its DRAM round trips, so v2 (against v1, impl "triton_v1"):
  * issues every load (D and z included) before the state store: the compiler cannot move a load above a
    store to a pointer that may alias, so v1's D / z loads after the store cost a second round trip;
  * keeps the state, A, B and C loads vectors: the unit stride along N is a constexpr and, when
    N is a power of two, the N mask is dropped (v1's ``offs_n < dstate`` with an unspecialized dstate
    made every state element a separate 2-byte load and store);
  * halves the row block while there are fewer programs than SMs (Mamba-1 at batch 1: 96, not 48).
Mamba-2 passes dt, A, D and dt_bias as stride-0 expansions of per-head values; when dt, A and dt_bias are
tied that way (TIE_HDIM), δ and the decay are scalars per program. Any other strides, stride-0 included,
are followed as given. The launcher runs no torch op besides the output's allocation: one kernel.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..op import ShapeError, check_powers_of_two
from .ref import HeadArgs, head_layout


@triton.jit
def _softplus(x):
    """log1p(exp(x)) for x <= 20, x above (the official kernels' threshold). log1p(e) uses Goldberg's
    trick, log(1+e)·e/((1+e)-1), so that small results keep full fp32 relative precision. (The same as
    selective_scan's helper, kept here so that this kernel does not depend on that module.)"""
    e = tl.exp(tl.minimum(x, 20.0))
    w = 1.0 + e
    log1p = tl.where(w == 1.0, e, tl.log(w) * (e / (w - 1.0)))
    return tl.where(x <= 20.0, log1p, x)


@triton.jit(do_not_specialize=["dim", "dstate", "heads_per_group"])
def _selective_state_update_kernel(
    state_ptr, x_ptr, dt_ptr, bias_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, out_ptr,
    dim, dstate, heads_per_group,
    stride_sb, stride_sh, stride_sp, stride_sn,
    stride_xb, stride_xh, stride_xp,
    stride_tb, stride_th, stride_tp,
    stride_biash, stride_biasp,
    stride_ah, stride_ap, stride_an,
    stride_bb, stride_bg, stride_bn,
    stride_cb, stride_cg, stride_cn,
    stride_dh, stride_dp,
    stride_zb, stride_zh, stride_zp,
    stride_ob, stride_oh, stride_op,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    TIE_HDIM: tl.constexpr, EVEN_N: tl.constexpr, STATE_UNIT_N: tl.constexpr, A_UNIT_N: tl.constexpr,
    BC_UNIT_N: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)  # 64-bit: B·H·P·N may pass 2^31 at large decode batches
    pid_h = tl.program_id(2)
    g = pid_h // heads_per_group
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    mask_m = offs_m < dim
    if EVEN_N:  # N == BLOCK_N: no mask along the state row, so its loads and stores stay vectors
        mask_n = offs_n < BLOCK_N
        mask = mask_m[:, None]
    else:
        mask_n = offs_n < dstate
        mask = mask_m[:, None] & mask_n[None, :]
    if STATE_UNIT_N:  # the unit stride as a constant: the row of N is provably contiguous
        s_ptrs = (state_ptr + pid_b * stride_sb + pid_h * stride_sh
                  + offs_m[:, None] * stride_sp + offs_n[None, :])
    else:
        s_ptrs = (state_ptr + pid_b * stride_sb + pid_h * stride_sh
                  + offs_m[:, None] * stride_sp + offs_n[None, :] * stride_sn)

    # Every load is issued before the state is stored: the pointers may alias as far as the compiler
    # knows, so a load written after the store (v1 loaded D and z there) waits for it, a second DRAM
    # round trip on the critical path of this latency-bound kernel.
    s = tl.load(s_ptrs, mask=mask, other=0.0).to(tl.float32)
    x = tl.load(x_ptr + pid_b * stride_xb + pid_h * stride_xh + offs_m * stride_xp,
                mask=mask_m, other=0.0).to(tl.float32)
    if BC_UNIT_N:
        B_ptrs = B_ptr + pid_b * stride_bb + g * stride_bg + offs_n
        C_ptrs = C_ptr + pid_b * stride_cb + g * stride_cg + offs_n
    else:
        B_ptrs = B_ptr + pid_b * stride_bb + g * stride_bg + offs_n * stride_bn
        C_ptrs = C_ptr + pid_b * stride_cb + g * stride_cg + offs_n * stride_cn
    Bv = tl.load(B_ptrs, mask=mask_n, other=0.0).to(tl.float32)
    Cv = tl.load(C_ptrs, mask=mask_n, other=0.0).to(tl.float32)
    if TIE_HDIM:  # one δ and one decay for the whole head
        dt = tl.load(dt_ptr + pid_b * stride_tb + pid_h * stride_th).to(tl.float32)
        if HAS_BIAS:
            dt += tl.load(bias_ptr + pid_h * stride_biash).to(tl.float32)
        A = tl.load(A_ptr + pid_h * stride_ah).to(tl.float32)
    else:
        dt = tl.load(dt_ptr + pid_b * stride_tb + pid_h * stride_th + offs_m * stride_tp,
                     mask=mask_m, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dt += tl.load(bias_ptr + pid_h * stride_biash + offs_m * stride_biasp,
                          mask=mask_m, other=0.0).to(tl.float32)
        if A_UNIT_N:
            A_ptrs = A_ptr + pid_h * stride_ah + offs_m[:, None] * stride_ap + offs_n[None, :]
        else:
            A_ptrs = A_ptr + pid_h * stride_ah + offs_m[:, None] * stride_ap + offs_n[None, :] * stride_an
        A = tl.load(A_ptrs, mask=mask, other=0.0).to(tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + pid_h * stride_dh + offs_m * stride_dp, mask=mask_m, other=0.0).to(tl.float32)
    if HAS_Z:
        z = tl.load(z_ptr + pid_b * stride_zb + pid_h * stride_zh + offs_m * stride_zp,
                    mask=mask_m, other=0.0).to(tl.float32)

    if SOFTPLUS:
        dt = _softplus(dt)
    if TIE_HDIM:
        s = s * tl.exp(A * dt) + (dt * x)[:, None] * Bv[None, :]
    else:
        s = s * tl.exp(A * dt[:, None]) + (dt * x)[:, None] * Bv[None, :]
    tl.store(s_ptrs, s.to(state_ptr.dtype.element_ty), mask=mask)

    y = tl.sum(s * Cv[None, :], axis=1)
    if HAS_D:
        y += x * Dv
    if HAS_Z:
        y *= z / (1.0 + tl.exp(-z))
    tl.store(out_ptr + pid_b * stride_ob + pid_h * stride_oh + offs_m * stride_op,
             y.to(out_ptr.dtype.element_ty), mask=mask_m)


def _block_sizes(batch: int, nheads: int, dim: int, dstate: int) -> tuple[int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps): the full state row (BLOCK_N = N rounded up to a power of two) and
    BLOCK_M rows for a tile of about 512 elements (N = 16: 32 rows; N = 128: 4); while that leaves fewer
    programs than an H100 has SMs (132; Mamba-1 at batch 1: 48), the rows are halved down to a 256-element
    tile, so that more SMs issue the loads of this latency-bound step. One warp per 512 elements (16 per
    thread: two 16-byte vectors of bf16), 1 to 4 (8 once a single row passes 512 elements): on the H100 at
    B64 D1536 N16, 32 rows × 16 took 8.0 µs with 1 warp, 8.3 with 2 and 10.0 with 4 (v2's one warp per 128
    elements), the official 8.4 (benchmarks/gpu/knob_sweep.py, 2026-11-23)."""
    block_n = max(2, triton.next_power_of_2(dstate))
    block_m = max(1, min(512 // block_n, triton.next_power_of_2(dim)))
    while block_m > 1 and block_m * block_n > 256 and batch * nheads * triton.cdiv(dim, block_m) < 132:
        block_m //= 2
    if block_n > 512:
        return block_m, block_n, 8
    return block_m, block_n, max(1, min(4, block_m * block_n // 512))


def _is_tied(a: HeadArgs) -> bool:
    """dt, A and dt_bias are stride-0 expansions over the head's channels (A also over N), as mamba_ssm's
    Mamba2.step builds them: then δ and the decay are one value per (batch, head)."""
    return (a.A.stride(1) == 0 and a.A.stride(2) == 0 and a.dt.stride(2) == 0
            and (a.dt_bias is None or a.dt_bias.stride(1) == 0))


def selective_state_update(state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor,
                           B: torch.Tensor, C: torch.Tensor, D: torch.Tensor | None = None,
                           z: torch.Tensor | None = None, dt_bias: torch.Tensor | None = None,
                           dt_softplus: bool = False, block_m: int | None = None,
                           num_warps: int | None = None) -> torch.Tensor:
    """One selective-scan step with the official signature; ``state`` is updated in place.

    Mamba-1: state [B, D, N], x/dt/z [B, D], A [D, N], B/C [B, N], D/dt_bias [D].
    Mamba-2: state [B, H, P, N], x/dt/z [B, H, P], A [H, P, N], B/C [B, G, N] (H % G == 0),
    D/dt_bias [H, P]; any strides (stride-0 per-head expansions included). state/x/dt/z/B/C in fp32, fp16
    or bf16. Returns out with x's shape and dtype. ``block_m`` (rows per program, a power of two) and
    ``num_warps`` override the tiling `_block_sizes` picks (for tuning: benchmarks/gpu/knob_sweep.py).
    """
    a = head_layout(state, x, dt, A, B, C, D, z, dt_bias)
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ShapeError(f"selective_state_update (triton): x must be fp32, fp16 or bf16, got {x.dtype}")
    batch, nheads, dim, dstate = a.state.shape
    out = torch.empty(a.x.shape, device=x.device, dtype=x.dtype)
    if out.numel() == 0:
        return out if a.heads else out.squeeze(1)
    auto_m, block_n, auto_warps = _block_sizes(batch, nheads, dim, dstate)
    check_powers_of_two("selective_state_update (triton)", block_m=block_m, num_warps=num_warps)
    block_m, num_warps = block_m or auto_m, num_warps or auto_warps
    zz = a.z if a.z is not None else a.x  # placeholders are never read: HAS_Z / HAS_D / HAS_BIAS are constexpr
    dd = a.D if a.D is not None else a.A[:, :, 0]
    bb = a.dt_bias if a.dt_bias is not None else a.A[:, :, 0]
    grid = (triton.cdiv(dim, block_m), batch, nheads)
    _selective_state_update_kernel[grid](
        a.state, a.x, a.dt, bb, a.A, a.B, a.C, dd, zz, out,
        dim, dstate, nheads // a.B.shape[1],
        *a.state.stride(), *a.x.stride(), *a.dt.stride(), *bb.stride(), *a.A.stride(), *a.B.stride(),
        *a.C.stride(), *dd.stride(), *zz.stride(), *out.stride(),
        HAS_D=a.D is not None, HAS_Z=a.z is not None, HAS_BIAS=a.dt_bias is not None,
        SOFTPLUS=bool(dt_softplus), TIE_HDIM=_is_tied(a), EVEN_N=dstate == block_n,
        STATE_UNIT_N=a.state.stride(3) == 1, A_UNIT_N=a.A.stride(2) == 1,
        BC_UNIT_N=a.B.stride(2) == 1 and a.C.stride(2) == 1,
        BLOCK_M=block_m, BLOCK_N=block_n, num_warps=num_warps,
    )
    return out if a.heads else out.squeeze(1)
