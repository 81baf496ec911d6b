"""attention_decode — one new query token against a KV cache of S tokens: the attention half of TPOT.

    out[b, 0, h] = sum_{j < S} softmax_j( scale · q[b, 0, h] · k_cache[b, j, h // G] ) · v_cache[b, j, h // G]

with G = heads / kv_heads and scale = 1/sqrt(d) by default. Every cached token is attended to (the new
token's own k/v are assumed already appended).

Signature and layouts are flash-attn's ``flash_attn_with_kvcache(q, k_cache, v_cache, softmax_scale=None)``
with no cache_seqlens: q [B, 1, Hq, d], k_cache and v_cache [B, S, Hkv, d], out [B, 1, Hq, d].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..attention import MAX_HEAD_DIM, PAPER_MODELS, flash_attn_supports, triton_supports
from ..op import DTYPE_BYTES, Cost, Impl, Op, Shape, ShapeError, randn
from .splits import H100_SMS, gpu_tiles, split_plan


@dataclass(frozen=True)
class DecodeShape(Shape):
    batch: int = 1
    seqlen: int = 4096  # S: tokens in the cache
    heads: int = 14
    kv_heads: int = 2
    head_dim: int = 64

    ABBREV = {"batch": "B", "seqlen": "S", "heads": "H", "kv_heads": "Hkv", "head_dim": "d"}

    def validate(self) -> None:
        super().validate()
        if self.heads % self.kv_heads:
            raise ShapeError(f"attention_decode: heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if self.head_dim > MAX_HEAD_DIM:
            raise ShapeError(f"attention_decode: head_dim must be <= {MAX_HEAD_DIM}, got {self.head_dim}")


def generate(shape: DecodeShape, dtype: torch.dtype, device: torch.device, gen: torch.Generator) -> dict[str, Any]:
    """q, k_cache, v_cache ~ N(0, 1), as flash-attn's kvcache tests draw them."""
    B, S, H, Hkv, d = shape.batch, shape.seqlen, shape.heads, shape.kv_heads, shape.head_dim
    return {
        "q": randn((B, 1, H, d), gen, dtype=dtype, device=device),
        "k_cache": randn((B, S, Hkv, d), gen, dtype=dtype, device=device),
        "v_cache": randn((B, S, Hkv, d), gen, dtype=dtype, device=device),
    }


def cost(shape: DecodeShape, dtype: str) -> Cost:
    """Per (batch, q head), against S cached tokens:

    * q·kᵀ: S dot products of length d, 2·d·S FLOPs; P·V: S scaled d-vectors accumulated, 2·d·S. Total
      4·B·Hq·d·S. Both are products of the [G, d] query group of a kv head with its [S, d] keys/values,
      so they are counted as ``tensor_flops`` (at G = 1 they are matrix-vector products; decode is
      memory-bound either way).
    * softmax: one exp per (head, token) (``transcendentals`` B·Hq·S); 4 FLOPs per (head, token) (scale and
      subtract the max as an FMA, max compare, sum add) plus d for the final 1/rowsum scaling.
    * minimum bytes: the KV cache read once, 2·B·S·Hkv·d elements (it dominates: intensity is about G
      FLOP/byte in half precision), plus q and out (B·Hq·d each).
    * impl_bytes["triton"]: the minimum plus the split-KV partial results, written and read back in fp32
      (B·Hq·splits·(d + 1) values each way), with the split count our launcher picks on an H100 (132 SMs).
    """
    B, S, H, Hkv, d = shape.batch, shape.seqlen, shape.heads, shape.kv_heads, shape.head_dim
    e = DTYPE_BYTES[dtype]
    tensor_flops = 4 * B * H * d * S
    parts = {
        "k_cache": float(B * S * Hkv * d * e),
        "v_cache": float(B * S * Hkv * d * e),
        "q": float(B * H * d * e),
        "out": float(B * H * d * e),
    }
    splits, _ = split_plan(B, Hkv, S, gpu_tiles(d, e)[0], H100_SMS)
    partials = 2 * B * H * splits * (d + 1) * 4 if splits > 1 else 0
    return Cost(
        flops=float(tensor_flops + 4 * B * H * S + B * H * d),
        tensor_flops=float(tensor_flops),
        transcendentals=float(B * H * S),
        bytes=parts,
        impl_bytes={"triton": float(sum(parts.values()) + partials)},
    )


def _grid_small() -> list[dict[str, Any]]:
    """CPU / interpreter grid: cache lengths 1 … 300 (1, 2 and 3 splits of the interpreter's 16-key tiles),
    GQA groups 1, 2 and 7 (padded to the 16-row tile), every dtype; plus a padded head_dim (40)."""
    grid = []
    for dtype in ("fp32", "fp16", "bf16"):
        for seqlen in (1, 7, 130, 300):
            for heads, kv_heads, head_dim in ((4, 2, 32), (2, 2, 64), (7, 1, 64)):
                grid.append(dict(batch=2, seqlen=seqlen, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                                 dtype=dtype))
    grid.append(dict(batch=1, seqlen=77, heads=6, kv_heads=2, head_dim=40, dtype="fp16"))
    return grid


def _grid_upstream() -> list[dict[str, Any]]:
    """flash-attn's test_flash_attn_kvcache, seqlen_q = 1: cache lengths 1, 7, 128, 339, 1000, 4096 and the
    split-KV 20000; d 64 and 128; GQA groups 1, 4, 7 (8/8, 8/2, 14/2); batch 5 as upstream; fp16, bf16."""
    grid = []
    for dtype in ("fp16", "bf16"):
        for seqlen in (1, 7, 128, 339, 1000, 4096, 20000):
            for head_dim in (64, 128):
                for heads, kv_heads in ((8, 8), (8, 2), (14, 2)):
                    grid.append(dict(batch=5, seqlen=seqlen, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                                     dtype=dtype))
    return grid


def _grid_paper() -> list[dict[str, Any]]:
    """Qwen2.5-0.5B (14/2, d64), Qwen2.5-1.5B (12/2, d128), Llama-3.2-1B (32/8, d64); bf16; batch 1 and 64;
    S = 1K … 128K (a long-context serving cache; the KV cache at B64 S128K is 8.6-17 GB)."""
    grid = []
    for heads, kv_heads, head_dim, _ in PAPER_MODELS.values():
        for batch in (1, 64):
            seqlen = 1024
            while seqlen <= 131072:
                grid.append(dict(batch=batch, seqlen=seqlen, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                                 dtype="bf16"))
                seqlen *= 2
    return grid


OP = Op(
    name="attention_decode",
    summary="one-token attention over a KV cache with GQA (flash_attn_with_kvcache layout)",
    shape_type=DecodeShape,
    generate=generate,
    cost=cost,
    impls={
        "ref": Impl("ref", "ssmscope.kernels.attention_decode.ref:attention_decode", "reference",
                    "PyTorch softmax(q·Kᵀ·scale)·V over the whole cache"),
        "triton": Impl("triton", "ssmscope.kernels.attention_decode.triton_kernel:attention_decode", "ours",
                       "split-KV flash decoding: per-(batch, kv head, split) partials, then a combine kernel",
                       supports=triton_supports),
        "sdpa": Impl("sdpa", "ssmscope.kernels.attention_decode.sdpa:attention_decode", "library",
                     "torch scaled_dot_product_attention (backend recorded by describe())"),
        "flash_attn": Impl("flash_attn", "ssmscope.kernels.attention_decode.official:flash_attn_with_kvcache",
                           "library", "flash_attn.flash_attn_with_kvcache", needs_cuda=True,
                           supports=flash_attn_supports),
    },
    # As for prefill: fp32 exact (IEEE fp32 dots); half types limited by rounding P and the output.
    tolerance={"fp32": 1e-5, "fp16": 2e-3, "bf16": 1e-2},
    upstream_tolerance={"fp32": (1e-4, 1e-4), "fp16": (4e-3, 4e-3), "bf16": (3e-2, 3e-2)},
    grids={"small": _grid_small, "upstream": _grid_upstream, "paper": _grid_paper},
    baseline="sdpa",
)
