"""Our Triton causal conv1d decode step: one program per (block of channels, batch element).

Each program (1) loads the last W-1 state entries of its channels into registers (the conv window, fp32),
(2) rolls its rows of the state left by S in place, tile by tile: new[j] = concat(state, x)[S + j], with a
barrier between a tile's loads and its store because another thread of the program may own the entry it
overwrites, and (3) runs the S new tokens through the register window: out[t] = act(bias + w·window),
then the window shifts by one. The state is copied in its own dtype, so it stays bit-exact.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..causal_conv1d.ref import silu_flag
from ..causal_conv1d.triton_kernel import MAX_WIDTH
from ..op import ShapeError
from .ref import check_plain_mode


@triton.jit(do_not_specialize=["dim", "seqlen", "state_len"])  # one compiled variant for every S and K
def _causal_conv1d_update_kernel(
    x_ptr, state_ptr, weight_ptr, bias_ptr, out_ptr,
    dim, seqlen, state_len,
    stride_xb, stride_xd, stride_xl,
    stride_sb, stride_sd, stride_sl,
    stride_wd, stride_wk,
    stride_ob, stride_od, stride_ol,
    WIDTH: tl.constexpr, HAS_BIAS: tl.constexpr, SILU: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < dim
    x_rows = x_ptr + pid_b * stride_xb + offs_d * stride_xd
    s_rows = state_ptr + pid_b * stride_sb + offs_d * stride_sd
    out_rows = out_ptr + pid_b * stride_ob + offs_d * stride_od
    w_rows = weight_ptr + offs_d * stride_wd

    # (1) The conv window, oldest to newest: win0 = state[K-3], win1 = state[K-2], win2 = state[K-1];
    # widths below 4 leave the oldest slots at zero and never read them.
    zero = tl.zeros([BLOCK_D], dtype=tl.float32)
    win0 = zero
    win1 = zero
    win2 = tl.load(s_rows + (state_len - 1) * stride_sl, mask=mask_d, other=0.0).to(tl.float32)
    if WIDTH >= 3:
        win1 = tl.load(s_rows + (state_len - 2) * stride_sl, mask=mask_d, other=0.0).to(tl.float32)
    if WIDTH >= 4:
        win0 = tl.load(s_rows + (state_len - 3) * stride_sl, mask=mask_d, other=0.0).to(tl.float32)

    # (2) Roll the state left by S in place. Tiles go left to right: tile j0 reads entries >= j0 + S,
    # which no earlier tile wrote, and the window above was read before the first barrier.
    offs_k = tl.arange(0, BLOCK_K)
    for j0 in range(0, state_len, BLOCK_K):
        j = j0 + offs_k
        src = j + seqlen
        in_state = src < state_len
        valid = mask_d[:, None] & (j < state_len)[None, :]
        old = tl.load(s_rows[:, None] + (src * stride_sl)[None, :], mask=valid & in_state[None, :], other=0.0)
        new = tl.load(x_rows[:, None] + ((src - state_len) * stride_xl)[None, :],
                      mask=valid & ~in_state[None, :], other=0.0)
        rolled = tl.where(in_state[None, :], old, new.to(old.dtype))
        tl.debug_barrier()  # every source of this tile is read before any thread overwrites it
        tl.store(s_rows[:, None] + (j * stride_sl)[None, :], rolled, mask=valid)

    # (3) The S new tokens through the register window; weight[:, W-1] multiplies the newest input.
    w_new = tl.load(w_rows + (WIDTH - 1) * stride_wk, mask=mask_d, other=0.0).to(tl.float32)
    w2 = tl.load(w_rows + (WIDTH - 2) * stride_wk, mask=mask_d, other=0.0).to(tl.float32)
    w1 = zero
    w0 = zero
    if WIDTH >= 3:
        w1 = tl.load(w_rows + (WIDTH - 3) * stride_wk, mask=mask_d, other=0.0).to(tl.float32)
    if WIDTH >= 4:
        w0 = tl.load(w_rows + (WIDTH - 4) * stride_wk, mask=mask_d, other=0.0).to(tl.float32)
    bias = zero
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    for t in range(seqlen):
        x_t = tl.load(x_rows + t * stride_xl, mask=mask_d, other=0.0).to(tl.float32)
        acc = bias + w_new * x_t + w2 * win2
        if WIDTH >= 3:
            acc += w1 * win1
        if WIDTH >= 4:
            acc += w0 * win0
        if SILU:
            acc = acc / (1.0 + tl.exp(-acc))
        tl.store(out_rows + t * stride_ol, acc.to(out_ptr.dtype.element_ty), mask=mask_d)
        win0 = win1
        win1 = win2
        win2 = x_t


def _check_args(x: torch.Tensor, conv_state: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None) -> None:
    if x.dim() != 3:
        raise ShapeError(f"causal_conv1d_update: x must be [B, D] or [B, D, S], got shape {tuple(x.shape)}")
    batch, dim, _ = x.shape
    if weight.dim() != 2 or weight.shape[0] != dim:
        raise ShapeError(f"causal_conv1d_update: weight must be [D={dim}, W], got {tuple(weight.shape)}")
    width = weight.shape[1]
    if not 2 <= width <= MAX_WIDTH:
        raise ShapeError(f"causal_conv1d_update: width must be in 2..{MAX_WIDTH}, got {width}")
    if conv_state.dim() != 3 or tuple(conv_state.shape[:2]) != (batch, dim) or conv_state.shape[2] < width - 1:
        raise ShapeError(f"causal_conv1d_update: conv_state must be [B={batch}, D={dim}, K >= W-1={width - 1}], "
                         f"got {tuple(conv_state.shape)}")
    if conv_state.dtype != x.dtype:
        raise ShapeError(f"causal_conv1d_update: conv_state dtype {conv_state.dtype} must be x's ({x.dtype})")
    if bias is not None and tuple(bias.shape) != (dim,):
        raise ShapeError(f"causal_conv1d_update: bias must be [D={dim}], got {tuple(bias.shape)}")


def causal_conv1d_update(x: torch.Tensor, conv_state: torch.Tensor, weight: torch.Tensor,
                         bias: torch.Tensor | None = None, activation: str | None = None,
                         cache_seqlens: torch.Tensor | None = None,
                         conv_state_indices: torch.Tensor | None = None) -> torch.Tensor:
    """One decode step of the causal conv1d: x [B, D] or [B, D, S] (S new tokens), conv_state [B, D, K]
    (K >= W-1, x's dtype, any strides; rolled left by S in place, the new tokens at the end),
    weight [D, W] (W in 2..4), bias [D] -> out with x's shape, dtype and strides.

    Plain mode only: cache_seqlens (circular buffer) and conv_state_indices (batch gather) raise ShapeError.
    """
    check_plain_mode(cache_seqlens, conv_state_indices)
    silu = silu_flag(activation)
    squeeze = x.dim() == 2
    x3 = x.unsqueeze(-1) if squeeze else x
    _check_args(x3, conv_state, weight, bias)
    batch, dim, seqlen = x3.shape
    state_len = conv_state.shape[2]
    out = torch.empty_like(x3)
    if out.numel() > 0:
        block_d = min(64, max(16, triton.next_power_of_2(dim)))
        block_k = min(16, max(2, triton.next_power_of_2(state_len)))
        grid = (triton.cdiv(dim, block_d), batch)
        _causal_conv1d_update_kernel[grid](
            x3, conv_state, weight, bias if bias is not None else weight, out,
            dim, seqlen, state_len,
            x3.stride(0), x3.stride(1), x3.stride(2),
            conv_state.stride(0), conv_state.stride(1), conv_state.stride(2),
            weight.stride(0), weight.stride(1),
            out.stride(0), out.stride(1), out.stride(2),
            WIDTH=weight.shape[1], HAS_BIAS=bias is not None, SILU=silu,
            BLOCK_D=block_d, BLOCK_K=block_k, num_warps=2,
        )
    return out.squeeze(-1) if squeeze else out
