"""Reference causal conv1d in plain PyTorch (same signature as the official ``causal_conv1d_fn``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..op import ShapeError


def compute_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    """float64 when any input is float64 (the checker's reference run), else float32 (what the kernels
    accumulate in; PyTorch's CPU conv1d has no half-precision path either)."""
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


def silu_flag(activation: str | None) -> bool:
    """None -> False, "silu" / "swish" -> True (the official names); anything else is a ShapeError."""
    if activation not in (None, "silu", "swish"):
        raise ShapeError(f"activation must be None, 'silu' or 'swish', got {activation!r}")
    return activation is not None


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  activation: str | None = None) -> torch.Tensor:
    """x [B, D, L], weight [D, W], bias [D] -> out [B, D, L] (contiguous) in x's dtype.

    out[b, d, t] = act(bias[d] + sum_k weight[d, k] * x[b, d, t - (W-1) + k]), x[t < 0] = 0; computed in
    float32 (float64 when an input is float64).
    """
    silu = silu_flag(activation)
    dim, width = weight.shape
    seqlen = x.shape[-1]
    acc = compute_dtype(x, weight, bias)
    out = F.conv1d(x.to(acc), weight.to(acc).unsqueeze(1), bias.to(acc) if bias is not None else None,
                   padding=width - 1, groups=dim)[..., :seqlen]
    return (F.silu(out) if silu else out).to(x.dtype)
