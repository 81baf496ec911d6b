"""torch.nn.functional.scaled_dot_product_attention behind flash_attn_func's signature and layout.

SDPA picks one of several backends (flash, memory-efficient, cuDNN, math, flash-CPU) at call time; a
timing is only meaningful with the backend named, so the function carries ``describe(**kwargs)``, which
asks torch's own dispatcher (``torch._fused_sdp_choice``) which backend these inputs would run on.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

# enable_gqa (k/v with fewer heads, no copy) arrived in torch 2.5; older torch repeats k/v per q head.
HAS_ENABLE_GQA = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 5)


def sdpa_args(q: torch.Tensor, k: torch.Tensor,
              v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """[B, L, H, d] views -> SDPA's [B, H, L, d] views (no copy), plus the GQA keyword or repeated k/v."""
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if qt.shape[1] == kt.shape[1]:
        return qt, kt, vt, {}
    if HAS_ENABLE_GQA:
        return qt, kt, vt, {"enable_gqa": True}
    group = qt.shape[1] // kt.shape[1]
    return qt, kt.repeat_interleave(group, dim=1), vt.repeat_interleave(group, dim=1), {}


def backend_name(qt: torch.Tensor, kt: torch.Tensor, vt: torch.Tensor, *, is_causal: bool,
                 scale: float | None, extra: dict) -> str:
    """The SDPA backend torch would dispatch these [B, H, L, d] inputs to, e.g. 'FLASH_ATTENTION'."""
    choose: Callable | None = getattr(torch, "_fused_sdp_choice", None)
    if choose is None:
        return "unknown"
    try:
        index = choose(qt, kt, vt, None, 0.0, is_causal, scale=scale, **extra)
    except Exception:  # private API: any signature drift means we cannot tell
        return "unknown"
    try:
        from torch.nn.attention import SDPBackend
        return SDPBackend(index).name
    except (ImportError, ValueError):
        return f"backend#{index}"


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, softmax_scale: float | None = None,
              causal: bool = False) -> torch.Tensor:
    """q [B, L, Hq, d], k/v [B, L, Hkv, d] -> out [B, L, Hq, d] (a transposed view of SDPA's output)."""
    qt, kt, vt, extra = sdpa_args(q, k, v)
    out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal, scale=softmax_scale, **extra)
    return out.transpose(1, 2)


def describe(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, softmax_scale: float | None = None,
             causal: bool = False) -> str:
    """Name of the SDPA backend that ``attention`` runs on these inputs ('unknown' if torch cannot say)."""
    qt, kt, vt, extra = sdpa_args(q, k, v)
    return backend_name(qt, kt, vt, is_causal=causal, scale=softmax_scale, extra=extra)


attention.describe = describe  # type: ignore[attr-defined]
