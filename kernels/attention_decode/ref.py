"""Reference one-token decode attention in plain PyTorch (flash_attn_with_kvcache's names), float64-capable."""
from __future__ import annotations

import torch

from ..op import ShapeError


def check_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                 who: str) -> tuple[int, int, int, int, int]:
    """Validate q [B, 1, Hq, d], k_cache/v_cache [B, S, Hkv, d]; return (B, S, Hq, Hkv, d)."""
    if q.dim() != 4 or k_cache.dim() != 4 or v_cache.dim() != 4:
        raise ShapeError(f"{who}: q, k_cache, v_cache must be 4-D, got {tuple(q.shape)}, {tuple(k_cache.shape)}, "
                         f"{tuple(v_cache.shape)}")
    B, one, Hq, d = q.shape
    if one != 1:
        raise ShapeError(f"{who}: q must hold one token per sequence, [B, 1, Hq, d]; got {tuple(q.shape)}")
    if k_cache.shape != v_cache.shape or k_cache.shape[0] != B or k_cache.shape[3] != d:
        raise ShapeError(f"{who}: k_cache and v_cache must be [B={B}, S, Hkv, d={d}], got {tuple(k_cache.shape)} "
                         f"and {tuple(v_cache.shape)}")
    S, Hkv = k_cache.shape[1], k_cache.shape[2]
    if S == 0:
        raise ShapeError(f"{who}: the KV cache is empty (S = 0)")
    if Hkv == 0 or Hq % Hkv:
        raise ShapeError(f"{who}: q heads ({Hq}) must be a multiple of kv heads ({Hkv})")
    return B, S, Hq, Hkv, d


def attention_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                     softmax_scale: float | None = None) -> torch.Tensor:
    """q [B, 1, Hq, d], k_cache/v_cache [B, S, Hkv, d] -> out [B, 1, Hq, d] in q's dtype.

    softmax(q·Kᵀ·scale)·V over all S cached tokens, q head h reading kv head h // (Hq/Hkv); float64 for
    float64 inputs, float32 otherwise. Scores are [B, Hq, S]: small at any S.
    """
    B, S, Hq, Hkv, d = check_decode(q, k_cache, v_cache, "attention_decode ref")
    scale = d ** -0.5 if softmax_scale is None else float(softmax_scale)
    compute = torch.float64 if q.dtype == torch.float64 else torch.float32
    qg = q.reshape(B, Hkv, Hq // Hkv, d).to(compute)
    scores = torch.einsum("bhgd,bshd->bhgs", qg, k_cache.to(compute)) * scale
    out = torch.einsum("bhgs,bshd->bhgd", torch.softmax(scores, dim=-1), v_cache.to(compute))
    return out.reshape(B, 1, Hq, d).to(q.dtype)
