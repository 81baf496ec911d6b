"""Reference causal conv1d decode step in plain PyTorch (same signature as the official
``causal_conv1d_update``); the plain mode only: no circular buffer (cache_seqlens), no batch gather
(conv_state_indices)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..causal_conv1d.ref import compute_dtype, silu_flag
from ..op import ShapeError


def check_plain_mode(cache_seqlens: torch.Tensor | None, conv_state_indices: torch.Tensor | None) -> None:
    if cache_seqlens is not None or conv_state_indices is not None:
        raise ShapeError("causal_conv1d_update: only the plain mode is covered here; the circular-buffer "
                         "(cache_seqlens) and batch-gather (conv_state_indices) modes are not")


def causal_conv1d_update(x: torch.Tensor, conv_state: torch.Tensor, weight: torch.Tensor,
                         bias: torch.Tensor | None = None, activation: str | None = None,
                         cache_seqlens: torch.Tensor | None = None,
                         conv_state_indices: torch.Tensor | None = None) -> torch.Tensor:
    """x [B, D] or [B, D, S], conv_state [B, D, K] (K >= W-1, updated in place), weight [D, W], bias [D]
    -> out with x's shape and dtype.

    With z = concat(conv_state, x) along time ([B, D, K+S]):
        out[..., t] = act(bias + sum_k weight[:, k] * z[..., K - (W-1) + t + k]),  t < S
        conv_state <- z[..., S:]   (the state rolls left by S and the new tokens enter at the end)
    """
    check_plain_mode(cache_seqlens, conv_state_indices)
    silu = silu_flag(activation)
    squeeze = x.dim() == 2
    x3 = x.unsqueeze(-1) if squeeze else x
    dim, width = weight.shape
    seqlen, state_len = x3.shape[-1], conv_state.shape[-1]
    acc = compute_dtype(x, conv_state, weight, bias)
    z = torch.cat([conv_state.to(acc), x3.to(acc)], dim=-1)
    out = F.conv1d(z[..., state_len - (width - 1):], weight.to(acc).unsqueeze(1),
                   bias.to(acc) if bias is not None else None, groups=dim)
    conv_state.copy_(z[..., seqlen:])
    out = (F.silu(out) if silu else out).to(x.dtype)
    return out.squeeze(-1) if squeeze else out
