"""flash-attn's ``flash_attn_with_kvcache`` (a library baseline; not installed on every machine).

The import happens at module level: the Impl loader turns the ImportError into an 'unavailable' reason.
"""
from __future__ import annotations

import torch

try:
    from flash_attn import flash_attn_with_kvcache as _flash_attn_with_kvcache
except ImportError as exc:  # re-raised with the reason the report should show
    raise ImportError(f"flash_attn is not installed ({exc})") from exc


def flash_attn_with_kvcache(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                            softmax_scale: float | None = None) -> torch.Tensor:
    """q [B, 1, Hq, d], k_cache/v_cache [B, S, Hkv, d] (fp16/bf16, CUDA) -> out [B, 1, Hq, d], attending to
    all S cached tokens (no cache_seqlens, no new k/v appended)."""
    out = _flash_attn_with_kvcache(q, k_cache, v_cache, softmax_scale=softmax_scale)
    return out[0] if isinstance(out, tuple) else out
