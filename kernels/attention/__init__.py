"""attention — causal prefill attention with grouped-query heads (GQA), the transformer layers of hybrid LMs.

    out[b, i, h] = sum_{j <= i} softmax_j( scale · q[b, i, h] · k[b, j, h // G] ) · v[b, j, h // G]

with G = heads / kv_heads query heads sharing one key/value head and scale = 1/sqrt(d) by default.

Signature and layouts are flash-attn's ``flash_attn_func(q, k, v, softmax_scale=None, causal=False)``:
q [B, L, Hq, d], k and v [B, L, Hkv, d] (token-major, heads inside), out [B, L, Hq, d] in q's dtype, so
that any flash_attn_func-compatible kernel drops in as an implementation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..op import DTYPE_BYTES, Cost, Impl, Op, Shape, ShapeError, randn

MAX_HEAD_DIM = 256  # flash-attn's limit, and the largest tile our Triton kernel is configured for


@dataclass(frozen=True)
class AttentionShape(Shape):
    batch: int = 1
    seqlen: int = 4096
    heads: int = 14
    kv_heads: int = 2
    head_dim: int = 64
    causal: bool = True

    ABBREV = {"batch": "B", "seqlen": "L", "heads": "H", "kv_heads": "Hkv", "head_dim": "d"}

    def validate(self) -> None:
        super().validate()
        if self.heads % self.kv_heads:
            raise ShapeError(f"attention: heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if self.head_dim > MAX_HEAD_DIM:
            raise ShapeError(f"attention: head_dim must be <= {MAX_HEAD_DIM}, got {self.head_dim}")


def generate(shape: AttentionShape, dtype: torch.dtype, device: torch.device, gen: torch.Generator) -> dict[str, Any]:
    """q, k, v ~ N(0, 1) as in flash-attn's tests: scores q·k/sqrt(d) are then ~N(0, 1), softmax neither
    one-hot nor flat. softmax_scale is left at its default (1/sqrt(d))."""
    B, L, H, Hkv, d = shape.batch, shape.seqlen, shape.heads, shape.kv_heads, shape.head_dim
    return {
        "q": randn((B, L, H, d), gen, dtype=dtype, device=device),
        "k": randn((B, L, Hkv, d), gen, dtype=dtype, device=device),
        "v": randn((B, L, Hkv, d), gen, dtype=dtype, device=device),
        "causal": shape.causal,
    }


def kept_pairs(seqlen: int, causal: bool) -> int:
    """(query, key) pairs that enter the softmax per (batch, head): L(L+1)/2 causal, L² otherwise."""
    return seqlen * (seqlen + 1) // 2 if causal else seqlen * seqlen


def cost(shape: AttentionShape, dtype: str) -> Cost:
    """Per (batch, q head), with P kept (query, key) pairs (P = L(L+1)/2 causal, L² otherwise):

    * QKᵀ: one d-long dot product per kept pair, 2·d·P FLOPs; PV: each kept probability scales a d-vector
      and accumulates it, 2·d·P FLOPs. Total 4·d·P, all matrix-multiply shaped (``tensor_flops``).
      (A kernel that skips whole masked tiles still computes the diagonal tiles in full; that excess is
      the implementation's, not the op's.)
    * softmax: one exp per kept pair (``transcendentals``), and 4 elementwise FLOPs per pair (scale and
      subtract the row max as one FMA = 2, the running-max compare 1, the row-sum add 1), plus d per query
      row for the final 1/rowsum scaling. Online-softmax rescales of the accumulator depend on the tile
      size and are not counted.
    * minimum bytes: q and out (B·L·Hq·d elements each) and k, v (B·L·Hkv·d each: GQA shares them) read
      or written once.
    """
    B, L, H, Hkv, d = shape.batch, shape.seqlen, shape.heads, shape.kv_heads, shape.head_dim
    e = DTYPE_BYTES[dtype]
    pairs = B * H * kept_pairs(L, shape.causal)
    tensor_flops = 4 * d * pairs
    softmax_flops = 4 * pairs + B * H * L * d
    return Cost(
        flops=float(tensor_flops + softmax_flops),
        tensor_flops=float(tensor_flops),
        transcendentals=float(pairs),
        bytes={
            "q": float(B * L * H * d * e),
            "k": float(B * L * Hkv * d * e),
            "v": float(B * L * Hkv * d * e),
            "out": float(B * L * H * d * e),
        },
    )


def _grid_small() -> list[dict[str, Any]]:
    """CPU / interpreter grid: odd lengths around the 32/16 interpreter tiles, GQA 4/2 and MHA 2/2, every
    dtype; plus a padded head_dim (40 -> 64 lanes, 8 -> 16), MQA 3/1 and one non-causal case."""
    grid = []
    for dtype in ("fp32", "fp16", "bf16"):
        for seqlen in (1, 17, 64, 100):
            for head_dim in (32, 64):
                for heads, kv_heads in ((4, 2), (2, 2)):
                    grid.append(dict(batch=2, seqlen=seqlen, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                                     dtype=dtype))
    grid += [
        dict(batch=1, seqlen=37, heads=6, kv_heads=2, head_dim=40, dtype="fp16"),
        dict(batch=2, seqlen=50, heads=3, kv_heads=1, head_dim=8, dtype="bf16"),
        dict(batch=1, seqlen=45, heads=4, kv_heads=2, head_dim=32, causal=False, dtype="fp32"),
    ]
    return grid


def _grid_upstream() -> list[dict[str, Any]]:
    """flash-attn's tests/test_flash_attn.py: seqlens of test_flash_attn_qkvpacked (97 … 2048) plus the
    odd 113, 339, 1023 of test_flash_attn_output / _splitkv; 9 q heads with 9 (MHA), 3 (GQA) or 1 (MQA)
    kv heads, batch 16, fp16 and bf16, causal. head_dim from its list, restricted to the multiples of 8
    that the models use (upstream also tries 59 and 111)."""
    seqlens = (97, 113, 128, 200, 257, 339, 384, 768, 1023, 1024, 1025, 2048)
    grid = []
    for dtype in ("fp16", "bf16"):
        for seqlen in seqlens:
            for head_dim in (32, 64, 96, 128, 256):
                for kv_heads in (9, 3, 1):
                    grid.append(dict(batch=16, seqlen=seqlen, heads=9, kv_heads=kv_heads, head_dim=head_dim,
                                     dtype=dtype))
    return grid


# (heads, kv_heads, head_dim, longest context) of the paper's attention models (shared/reference/model_configs.yaml)
PAPER_MODELS: dict[str, tuple[int, int, int, int]] = {
    "qwen2.5-0.5b": (14, 2, 64, 32768),
    "qwen2.5-1.5b": (12, 2, 128, 32768),
    "llama-3.2-1b": (32, 8, 64, 131072),
}


def _grid_paper() -> list[dict[str, Any]]:
    """Qwen2.5-0.5B (14/2, d64), Qwen2.5-1.5B (12/2, d128), Llama-3.2-1B (32/8, d64); batch 1, bf16,
    L = 1K … each model's max_position_embeddings (32K for Qwen2.5, 128K for Llama-3.2)."""
    grid = []
    for heads, kv_heads, head_dim, max_len in PAPER_MODELS.values():
        seqlen = 1024
        while seqlen <= max_len:
            grid.append(dict(batch=1, seqlen=seqlen, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                             dtype="bf16"))
            seqlen *= 2
    return grid


def triton_supports(shape: Shape, dtype: str) -> str | None:
    if shape.head_dim % 8:
        return f"triton: head_dim must be a multiple of 8 (<= {MAX_HEAD_DIM}), got {shape.head_dim}"
    return None


def flash_attn_supports(shape: Shape, dtype: str) -> str | None:
    if dtype not in ("fp16", "bf16"):
        return f"flash_attn: fp16/bf16 only, got {dtype}"
    if shape.head_dim % 8:
        return f"flash_attn: head_dim must be a multiple of 8, got {shape.head_dim}"
    return None


OP = Op(
    name="attention",
    summary="causal prefill attention with GQA (flash_attn_func layout)",
    shape_type=AttentionShape,
    generate=generate,
    cost=cost,
    impls={
        "ref": Impl("ref", "ssmscope.kernels.attention.ref:attention", "reference",
                    "PyTorch softmax(QKᵀ·scale + mask)·V, query blocks of bounded memory"),
        "triton": Impl("triton", "ssmscope.kernels.attention.triton_kernel:attention", "ours",
                       "flash-attention forward: online softmax, causal tile skipping, GQA by pointer",
                       supports=triton_supports),
        "sdpa": Impl("sdpa", "ssmscope.kernels.attention.sdpa:attention", "library",
                     "torch scaled_dot_product_attention (backend recorded by describe())"),
        "flash_attn": Impl("flash_attn", "ssmscope.kernels.attention.official:flash_attn", "library",
                           "flash_attn.flash_attn_func", needs_cuda=True, supports=flash_attn_supports),
    },
    # ‖out − ref‖/‖ref‖ against float64. fp32: exact fp32 arithmetic (our dots run in IEEE fp32, not TF32).
    # Half types: inputs are exact, so the error is the rounding of P to the input dtype before PV and of
    # the output, each ~2^-11 (fp16) / 2^-8 (bf16) relative, well inside these bounds.
    tolerance={"fp32": 1e-5, "fp16": 2e-3, "bf16": 1e-2},
    # flash-attn's own criterion is relative to a PyTorch run in the input dtype (max error <= 2x PyTorch's);
    # as elementwise (rtol, atol) between two fp32-accumulating kernels that both round P and the output:
    # a few output ulps of |out| <~ 4.
    upstream_tolerance={"fp32": (1e-4, 1e-4), "fp16": (4e-3, 4e-3), "bf16": (3e-2, 3e-2)},
    grids={"small": _grid_small, "upstream": _grid_upstream, "paper": _grid_paper},
    baseline="sdpa",
)
