"""Reference causal conv1d in plain PyTorch (same signature as the official function)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  activation: str | None = None) -> torch.Tensor:
    """x [B, D, L], weight [D, W], bias [D] -> [B, D, L], computed in x's dtype (float64 in checks)."""
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"activation must be None or 'silu', got {activation!r}")
    dim, width = weight.shape
    seqlen = x.shape[-1]
    out = F.conv1d(x, weight.unsqueeze(1).to(x.dtype), bias.to(x.dtype) if bias is not None else None,
                   padding=width - 1, groups=dim)[..., :seqlen]
    return F.silu(out) if activation else out
