"""torch SDPA behind flash_attn_with_kvcache's names: one query token, non-causal over the whole cache.

Like the prefill adapter it carries ``describe(**kwargs)`` naming the backend SDPA dispatches to.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..attention.sdpa import backend_name, sdpa_args


def attention_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                     softmax_scale: float | None = None) -> torch.Tensor:
    """q [B, 1, Hq, d], k_cache/v_cache [B, S, Hkv, d] -> out [B, 1, Hq, d] (a transposed view)."""
    qt, kt, vt, extra = sdpa_args(q, k_cache, v_cache)
    return F.scaled_dot_product_attention(qt, kt, vt, scale=softmax_scale, **extra).transpose(1, 2)


def describe(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
             softmax_scale: float | None = None) -> str:
    """Name of the SDPA backend that ``attention_decode`` runs on these inputs ('unknown' if torch cannot say)."""
    qt, kt, vt, extra = sdpa_args(q, k_cache, v_cache)
    return backend_name(qt, kt, vt, is_causal=False, scale=softmax_scale, extra=extra)


attention_decode.describe = describe  # type: ignore[attr-defined]
