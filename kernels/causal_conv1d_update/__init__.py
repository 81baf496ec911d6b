"""causal_conv1d_update — one decode step of Mamba's short conv: S new tokens against a rolling state.

With z = concat(conv_state, x) along time ([B, D, K+S], K = state_len >= W-1):

    out[b, d, t]   = act( bias[d] + sum_{k=0}^{W-1} weight[d, k] * z[b, d, K - (W-1) + t + k] ),  t < S
    conv_state    <- z[:, :, S:]          (in place: rolled left by S, the new tokens at the end)

Official signature (causal_conv1d 1.7.0): ``causal_conv1d_update(x, conv_state, weight, bias=None,
activation=None, cache_seqlens=None, conv_state_indices=None)`` with x [B, D] (S = 1, Mamba's step) or
[B, D, S], conv_state [B, D, K] in x's dtype, weight [D, W] and bias [D] in any of fp32/fp16/bf16; it
returns out with x's shape. Only the plain mode is covered here: the circular-buffer mode
(``cache_seqlens``: the state is written at cache_seqlens % K instead of rolled) and the batch gather
(``conv_state_indices``, continuous batching) are neither generated nor implemented by ours and the ref.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..causal_conv1d import MAMBA1_DIMS, MAX_WIDTH, CUDA_GRID_YZ
from ..op import DTYPE_BYTES, Cost, Impl, Op, Shape, ShapeError, randn


@dataclass(frozen=True)
class ConvUpdateShape(Shape):
    """B, D, W, S new tokens, K = state_len; bias / silu present; channel_last: x and conv_state are
    transposes of [B, S, D] and [B, K, D] (the upstream tests' layout); x2d: x is [B, D] (needs S = 1,
    Mamba's step); weight_fp32: weight and bias in fp32 (upstream) instead of x's dtype (Mamba)."""

    batch: int = 1
    dim: int = 1536
    width: int = 4
    seqlen: int = 1
    state_len: int = 4
    bias: bool = True
    silu: bool = True
    channel_last: bool = False
    x2d: bool = False
    weight_fp32: bool = False

    ABBREV = {"batch": "B", "dim": "D", "width": "W", "seqlen": "S", "state_len": "K"}

    def validate(self) -> None:
        super().validate()
        if not 2 <= self.width <= MAX_WIDTH:
            raise ShapeError(f"causal_conv1d_update: width must be in 2..{MAX_WIDTH}, got {self.width}")
        if self.state_len < self.width - 1:
            raise ShapeError(f"causal_conv1d_update: state_len must be >= width - 1 = {self.width - 1}, "
                             f"got {self.state_len}")
        if self.x2d and self.seqlen != 1:
            raise ShapeError(f"causal_conv1d_update: x2d (x as [B, D]) needs seqlen 1, got {self.seqlen}")


def generate(shape: ConvUpdateShape, dtype: torch.dtype, device: torch.device,
             gen: torch.Generator) -> dict[str, Any]:
    """x and conv_state ~ N(0, 1) (a state full of past inputs); weight ~ N(0, 1/W); bias ~ N(0, 0.1)."""
    B, D, W, S, K = shape.batch, shape.dim, shape.width, shape.seqlen, shape.state_len
    wdtype = torch.float32 if shape.weight_fp32 else dtype
    if shape.x2d:
        x = randn((B, D), gen, dtype=dtype, device=device)
    elif shape.channel_last:
        x = randn((B, S, D), gen, dtype=dtype, device=device).transpose(1, 2)
    else:
        x = randn((B, D, S), gen, dtype=dtype, device=device)
    if shape.channel_last:
        conv_state = randn((B, K, D), gen, dtype=dtype, device=device).transpose(1, 2)
    else:
        conv_state = randn((B, D, K), gen, dtype=dtype, device=device)
    return {
        "x": x,
        "conv_state": conv_state,
        "weight": randn((D, W), gen, dtype=wdtype, device=device, scale=W ** -0.5),
        "bias": randn((D,), gen, dtype=wdtype, device=device, scale=0.1) if shape.bias else None,
        "activation": "silu" if shape.silu else None,
    }


def cost(shape: ConvUpdateShape, dtype: str) -> Cost:
    """FLOPs per output element (B·D·S of them): W multiplies and W-1 adds, +1 for the bias, +4 for silu
    (negation, exp, add, division; the exp also one transcendental), as in causal_conv1d.

    Minimum bytes (e = x's element size, ew = the weight's): x read and out written, B·D·S·e each; the
    state written whole, B·D·K·e (every entry changes); the state read only where still needed: the
    entries that survive the roll (K-S of them) and the W-1 newest that feed the first outputs, i.e.
    max(K-S, W-1) per row, B·D·max(K-S, W-1)·e; weight D·W·ew and bias D·ew.

    The official kernel reads exactly these entries (its shift loop reads K-S-(W-1), its window W-1) and
    writes K per row, so it moves the minimum; so does ours. At DRAM, a channel-first state whose rows are
    shorter than a 32-byte sector (K = 4 in bf16: 8 bytes) is read whole, K per row instead of
    max(K-S, W-1): measured traffic sits above this minimum there.
    """
    B, D, W, S, K = shape.batch, shape.dim, shape.width, shape.seqlen, shape.state_len
    n_out = B * D * S
    e = DTYPE_BYTES[dtype]
    ew = 4 if shape.weight_fp32 else e
    flops = n_out * (2 * W - 1 + (1 if shape.bias else 0) + (4 if shape.silu else 0))
    return Cost(
        flops=float(flops),
        transcendentals=float(n_out if shape.silu else 0),
        bytes={
            "x": float(n_out * e),
            "out": float(n_out * e),
            "state_read": float(B * D * max(K - S, W - 1) * e),
            "state_write": float(B * D * K * e),
            "weight": float(D * W * ew),
            "bias": float(D * ew if shape.bias else 0),
        },
    )


def official_supports(shape: ConvUpdateShape, dtype: str) -> str | None:
    """Limits of causal-conv1d 1.7.0's update (csrc/causal_conv1d.cpp and causal_conv1d_update.cu)."""
    if dtype not in ("fp32", "fp16", "bf16"):
        return f"official dispatches fp32, fp16 and bf16 only, got {dtype}"
    for name, numel in (("x", shape.batch * shape.dim * shape.seqlen),
                        ("conv_state", shape.batch * shape.dim * shape.state_len)):
        if numel >= 2 ** 32:
            return f"official computes offsets in 32-bit unsigned ints: {name} must have < 2^32 elements, got {numel}"
    if math.ceil(shape.dim / 64) > CUDA_GRID_YZ:
        return f"official puts ceil(D/64) blocks on gridDim.y: D <= {64 * CUDA_GRID_YZ}"
    return None


def _grid_small() -> list[dict[str, Any]]:
    """CPU / interpreter grid: every dtype x width x case (36 configs). Cases: Mamba's step (x [B, D],
    K = W), several tokens with the minimal state (K = W-1; S > K for W = 2), the upstream layout
    (channel-last, K = W+9, S = 4), S = 5 channel-first with K = W+2. Dims 19 (odd) and 70 (two channel
    blocks), bias / silu / fp32 weights rotating."""
    cases = (dict(seqlen=1, state_len_extra=1, x2d=True, channel_last=False),
             dict(seqlen=3, state_len_extra=0, x2d=False, channel_last=False),
             dict(seqlen=4, state_len_extra=10, x2d=False, channel_last=True),
             dict(seqlen=5, state_len_extra=3, x2d=False, channel_last=False))
    grid = []
    for dtype in ("fp32", "fp16", "bf16"):
        for width in (2, 3, 4):
            for case in cases:
                i = len(grid)
                grid.append(dict(batch=3, dim=(70, 19)[i % 2], width=width, seqlen=case["seqlen"],
                                 state_len=width - 1 + case["state_len_extra"], bias=i % 3 != 1,
                                 silu=i % 5 != 2, channel_last=case["channel_last"], x2d=case["x2d"],
                                 weight_fp32=i % 4 == 3, dtype=dtype))
    return grid


def _grid_upstream() -> list[dict[str, Any]]:
    """causal-conv1d 1.7.0 tests/test_causal_conv1d.py::test_causal_conv1d_update without cache_seqlens:
    batch 64, dim {2048, 2048+16, 4096}, width {2,3,4}, seqlen {1,4,5}, bias and silu on/off, x in
    fp32/fp16/bf16 with fp32 weight and bias, x and conv_state channel-last, and
    state_len = torch.randint(W-1, W+10) after torch.manual_seed(0), which is W+9 for every width."""
    return [dict(batch=64, dim=dim, width=width, seqlen=seqlen, state_len=width + 9, bias=bias, silu=silu,
                 channel_last=True, weight_fp32=True, dtype=dtype)
            for dtype in ("fp32", "fp16", "bf16") for dim in (2048, 2048 + 16, 4096) for width in (2, 3, 4)
            for seqlen in (1, 4, 5) for bias in (False, True) for silu in (False, True)]


def _grid_paper() -> list[dict[str, Any]]:
    """Mamba-1 decode: x [B, D], conv_state [B, D, 4] (K = W = 4, as mamba_ssm allocates it), bf16,
    d_inner of 130M…2.8B, batch 1…256."""
    return [dict(batch=batch, dim=dim, width=4, seqlen=1, state_len=4, x2d=True, dtype="bf16")
            for dim in MAMBA1_DIMS for batch in (1, 8, 64, 256)]


OP = Op(
    name="causal_conv1d_update",
    summary="causal conv1d decode step: S new tokens, rolling conv_state updated in place",
    shape_type=ConvUpdateShape,
    generate=generate,
    cost=cost,
    impls={
        "ref": Impl("ref", "ssmscope.kernels.causal_conv1d_update.ref:causal_conv1d_update", "reference",
                    "PyTorch cat + conv1d (fp32 / fp64 accumulation)"),
        "triton": Impl("triton", "ssmscope.kernels.causal_conv1d_update.triton_kernel:causal_conv1d_update",
                       "ours", "Triton, one program per (D block, batch), window in registers"),
        "official": Impl("official", "ssmscope.kernels.causal_conv1d_update.official:causal_conv1d_update",
                         "official", "causal_conv1d.causal_conv1d_update (causal-conv1d 1.7.0, CUDA)",
                         needs_cuda=True, supports=official_supports),
    },
    # As causal_conv1d: out is limited by its rounding; the state is a copy and must match exactly.
    tolerance={"fp32": 1e-5, "fp16": 2e-3, "bf16": 1e-2},
    # causal-conv1d's test_causal_conv1d_update: fp32 (3e-4, 1e-3), fp16 (3e-3, 5e-3), bf16 (1e-2, 5e-2).
    upstream_tolerance={"fp32": (3e-4, 1e-3), "fp16": (3e-3, 5e-3), "bf16": (1e-2, 5e-2)},
    grids={"small": _grid_small, "upstream": _grid_upstream, "paper": _grid_paper},
    outputs=lambda result, kwargs: {"out": result, "conv_state": kwargs["conv_state"]},
)
