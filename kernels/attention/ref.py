"""Reference attention in plain PyTorch (flash_attn_func's signature), float64-capable, bounded memory."""
from __future__ import annotations

import math

import torch

from ..op import ShapeError

# Scores of one query block hold at most this many elements (256 MiB in float64), whatever L is.
MAX_SCORE_ELEMENTS = 1 << 25


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, who: str) -> tuple[int, int, int, int, int]:
    """Validate q [B, L, Hq, d], k/v [B, L, Hkv, d]; return (B, L, Hq, Hkv, d)."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ShapeError(f"{who}: q, k, v must be 4-D [B, L, H, d], got {tuple(q.shape)}, {tuple(k.shape)}, "
                         f"{tuple(v.shape)}")
    B, L, Hq, d = q.shape
    if k.shape != v.shape or k.shape[0] != B or k.shape[3] != d:
        raise ShapeError(f"{who}: k and v must be [B={B}, L, Hkv, d={d}], got {tuple(k.shape)} and {tuple(v.shape)}")
    if k.shape[1] != L:
        raise ShapeError(f"{who}: seqlen_k ({k.shape[1]}) must equal seqlen_q ({L})")
    Hkv = k.shape[2]
    if Hkv == 0 or Hq % Hkv:
        raise ShapeError(f"{who}: q heads ({Hq}) must be a multiple of kv heads ({Hkv})")
    return B, L, Hq, Hkv, d


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, softmax_scale: float | None = None,
              causal: bool = False) -> torch.Tensor:
    """q [B, L, Hq, d], k/v [B, L, Hkv, d] -> out [B, L, Hq, d] in q's dtype.

    softmax(q·kᵀ·scale + causal mask)·v, with q head h reading kv head h // (Hq/Hkv). Computed in float64
    for float64 inputs and in float32 otherwise, one block of queries at a time so that the score block
    stays under ``MAX_SCORE_ELEMENTS`` at any L.
    """
    B, L, Hq, Hkv, d = check_qkv(q, k, v, "attention ref")
    scale = d ** -0.5 if softmax_scale is None else float(softmax_scale)
    compute = torch.float64 if q.dtype == torch.float64 else torch.float32
    group = Hq // Hkv
    qg = q.reshape(B, L, Hkv, group, d)
    kc, vc = k.to(compute), v.to(compute)
    out = torch.empty(B, L, Hq, d, dtype=q.dtype, device=q.device)
    block = max(1, min(L, MAX_SCORE_ELEMENTS // max(1, B * Hq * L)))
    for i0 in range(0, L, block):
        i1 = min(L, i0 + block)
        kend = i1 if causal else L  # causal rows of this block never see keys >= i1
        scores = torch.einsum("bqhgd,bkhd->bhgqk", qg[:, i0:i1].to(compute), kc[:, :kend]) * scale
        if causal:
            rows = torch.arange(i0, i1, device=q.device)[:, None]
            cols = torch.arange(kend, device=q.device)[None, :]
            scores.masked_fill_(cols > rows, -math.inf)
        probs = torch.softmax(scores, dim=-1)
        block_out = torch.einsum("bhgqk,bkhd->bqhgd", probs, vc[:, :kend])
        out[:, i0:i1] = block_out.reshape(B, i1 - i0, Hq, d).to(q.dtype)
    return out
