"""flash-attn's ``flash_attn_func`` (a library baseline; not installed on every machine).

The import happens at module level: the Impl loader turns the ImportError into an 'unavailable' reason.
"""
from __future__ import annotations

import torch

try:
    from flash_attn import flash_attn_func as _flash_attn_func
except ImportError as exc:  # re-raised with the reason the report should show
    raise ImportError(f"flash_attn is not installed ({exc})") from exc


def flash_attn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, softmax_scale: float | None = None,
               causal: bool = False) -> torch.Tensor:
    """q [B, L, Hq, d], k/v [B, L, Hkv, d] (fp16/bf16, CUDA) -> out [B, L, Hq, d]."""
    out = _flash_attn_func(q, k, v, softmax_scale=softmax_scale, causal=causal)
    return out[0] if isinstance(out, tuple) else out  # FA3's interface also returns the LSE
