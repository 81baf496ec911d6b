"""Our Triton causal conv1d, v1 (kept as impl "triton_v1"): one program per (block of the sequence, block of channels, batch).

Each program owns a [BLOCK_D, BLOCK_L] tile of the output. The W taps are a static loop of shifted, masked
loads of the same x tile (tap k reads x[t - (W-1) + k]; the W-1 positions before the tile come from the
neighbouring tile through L1/L2, so DRAM still sees x once), accumulated in fp32 with the bias, then silu,
then one store in x's dtype. Both layouts go through strides; the contiguous axis is passed as a constant
(CHANNEL_LAST) so that the compiler can coalesce along it.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..op import ShapeError
from .ref import silu_flag

MAX_WIDTH = 4


# Sizes are not specialized (on == 1 or divisibility by 16): it would only multiply the compiled variants
# across a grid of lengths; strides still are, since they decide vector widths.
@triton.jit(do_not_specialize=["dim", "seqlen"])
def _causal_conv1d_fwd_kernel(
    x_ptr, weight_ptr, bias_ptr, out_ptr,
    dim, seqlen,
    stride_xb, stride_xd, stride_xl,
    stride_wd, stride_wk,
    stride_ob, stride_od, stride_ol,
    WIDTH: tl.constexpr, HAS_BIAS: tl.constexpr, SILU: tl.constexpr, CHANNEL_LAST: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_L: tl.constexpr,
):
    pid_l = tl.program_id(0)
    pid_d = tl.program_id(1)
    pid_b = tl.program_id(2).to(tl.int64)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_l = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    mask_d = offs_d < dim
    mask_l = offs_l < seqlen
    # 64-bit offsets (B·D·L may pass 2^31 elements); the casts act on 1-D vectors, not on the tile.
    d64 = offs_d.to(tl.int64)
    if CHANNEL_LAST:  # unit channel stride, written as a constant so loads and stores vectorize along D
        x_rows = x_ptr + pid_b * stride_xb + d64
        out_rows = out_ptr + pid_b * stride_ob + d64
    else:
        x_rows = x_ptr + pid_b * stride_xb + d64 * stride_xd
        out_rows = out_ptr + pid_b * stride_ob + d64 * stride_od

    acc = tl.zeros([BLOCK_D, BLOCK_L], dtype=tl.float32)
    for k in tl.static_range(WIDTH):
        # Tap k reads x[t - (WIDTH-1) + k]; positions before the start are the causal zero padding.
        src = offs_l - (WIDTH - 1 - k)
        if CHANNEL_LAST:
            src_off = src.to(tl.int64) * stride_xl
        else:
            src_off = src.to(tl.int64)
        mask = mask_d[:, None] & ((src >= 0) & mask_l)[None, :]
        x_k = tl.load(x_rows[:, None] + src_off[None, :], mask=mask, other=0.0).to(tl.float32)
        w_k = tl.load(weight_ptr + offs_d * stride_wd + k * stride_wk, mask=mask_d, other=0.0).to(tl.float32)
        acc += w_k[:, None] * x_k
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)[:, None]
    if SILU:
        acc = acc / (1.0 + tl.exp(-acc))

    if CHANNEL_LAST:
        out_off = offs_l.to(tl.int64) * stride_ol
    else:
        out_off = offs_l.to(tl.int64)
    tl.store(out_rows[:, None] + out_off[None, :], acc.to(out_ptr.dtype.element_ty),
             mask=mask_d[:, None] & mask_l[None, :])


def _block_sizes(dim: int, seqlen: int, channel_last: bool) -> tuple[int, int, int]:
    """(BLOCK_D, BLOCK_L, num_warps): 128 channels x 32 steps (channel-last) or 8 x 256 (channel-first),
    the contiguous axis 256 B wide in bf16; shrunk to the problem for small shapes."""
    if channel_last:
        block_d = min(128, max(16, triton.next_power_of_2(dim)))
        block_l = min(max(2, triton.next_power_of_2(seqlen)), 4096 // block_d)
    else:
        block_l = min(256, max(16, triton.next_power_of_2(seqlen)))
        block_d = min(max(2, triton.next_power_of_2(dim)), 2048 // block_l)
    num_warps = max(1, min(4, block_d * block_l // 512))
    return block_d, block_l, num_warps


def _check_args(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    if x.dim() != 3:
        raise ShapeError(f"causal_conv1d: x must be [B, D, L], got shape {tuple(x.shape)}")
    if weight.dim() != 2 or weight.shape[0] != x.shape[1]:
        raise ShapeError(f"causal_conv1d: weight must be [D={x.shape[1]}, W], got {tuple(weight.shape)}")
    if not 2 <= weight.shape[1] <= MAX_WIDTH:
        raise ShapeError(f"causal_conv1d: width must be in 2..{MAX_WIDTH}, got {weight.shape[1]}")
    if bias is not None and tuple(bias.shape) != (x.shape[1],):
        raise ShapeError(f"causal_conv1d: bias must be [D={x.shape[1]}], got {tuple(bias.shape)}")


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  activation: str | None = None) -> torch.Tensor:
    """Depthwise causal conv1d: x [B, D, L], weight [D, W] (W in 2..4), bias [D] -> out [B, D, L].

    x is channel-first (x.stride(2) == 1) or channel-last (x.stride(1) == 1, a transposed [B, L, D]);
    any other layout is made contiguous first, as the official function does. out has x's dtype and
    layout. activation: None | "silu" | "swish".
    """
    silu = silu_flag(activation)
    _check_args(x, weight, bias)
    if x.stride(2) != 1 and x.stride(1) != 1:
        x = x.contiguous()
    batch, dim, seqlen = x.shape
    channel_last = x.stride(1) == 1 and x.stride(2) != 1
    if channel_last:
        out = torch.empty((batch, seqlen, dim), device=x.device, dtype=x.dtype).transpose(1, 2)
    else:
        out = torch.empty((batch, dim, seqlen), device=x.device, dtype=x.dtype)
    if out.numel() == 0:
        return out
    block_d, block_l, num_warps = _block_sizes(dim, seqlen, channel_last)
    grid = (triton.cdiv(seqlen, block_l), triton.cdiv(dim, block_d), batch)
    _causal_conv1d_fwd_kernel[grid](
        x, weight, bias if bias is not None else weight, out,
        dim, seqlen,
        x.stride(0), x.stride(1), x.stride(2),
        weight.stride(0), weight.stride(1),
        out.stride(0), out.stride(1), out.stride(2),
        WIDTH=weight.shape[1], HAS_BIAS=bias is not None, SILU=silu, CHANNEL_LAST=channel_last,
        BLOCK_D=block_d, BLOCK_L=block_l, num_warps=num_warps,
    )
    return out
