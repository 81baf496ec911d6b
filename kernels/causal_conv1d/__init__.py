"""causal_conv1d — depthwise causal 1-D convolution over the sequence, the short conv in every Mamba block.

    out[b, d, t] = act( bias[d] + sum_{k=0}^{W-1} weight[d, k] * x[b, d, t - (W-1) + k] )   (x[t<0] = 0)

Official signature (causal_conv1d 1.7.0): ``causal_conv1d_fn(x, weight, bias=None, activation=None)`` with
x [B, D, L] (channel-first, contiguous) or a [B, L, D] tensor transposed to [B, D, L] (channel-last,
``x.stride(1) == 1``), weight [D, W], bias [D], activation None | "silu". The output has x's layout.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..op import DTYPE_BYTES, Cost, Impl, Op, Shape, ShapeError, randn

MAX_WIDTH = 4  # the official kernel is templated for widths 2, 3, 4


@dataclass(frozen=True)
class ConvShape(Shape):
    batch: int = 1
    dim: int = 1536
    seqlen: int = 4096
    width: int = 4
    bias: bool = True
    silu: bool = True
    channel_last: bool = False

    ABBREV = {"batch": "B", "dim": "D", "seqlen": "L", "width": "W"}

    def validate(self) -> None:
        super().validate()
        if not 2 <= self.width <= MAX_WIDTH:
            raise ShapeError(f"causal_conv1d: width must be in 2..{MAX_WIDTH}, got {self.width}")


def generate(shape: ConvShape, dtype: torch.dtype, device: torch.device, gen: torch.Generator) -> dict[str, Any]:
    """x ~ N(0, 1); weight ~ N(0, 1/W) so outputs stay O(1); bias ~ N(0, 0.1). Weight/bias in x's dtype."""
    B, D, L, W = shape.batch, shape.dim, shape.seqlen, shape.width
    if shape.channel_last:
        x = randn((B, L, D), gen, dtype=dtype, device=device).transpose(1, 2)
    else:
        x = randn((B, D, L), gen, dtype=dtype, device=device)
    return {
        "x": x,
        "weight": randn((D, W), gen, dtype=dtype, device=device, scale=W ** -0.5),
        "bias": randn((D,), gen, dtype=dtype, device=device, scale=0.1) if shape.bias else None,
        "activation": "silu" if shape.silu else None,
    }


def cost(shape: ConvShape, dtype: str) -> Cost:
    """Per output element: W multiply-adds (2W FLOPs), + 1 add for the bias; silu(y) = y·sigmoid(y) costs
    one exp (transcendental), one add, one division (counted as 1 FLOP each) and one multiply: 4 FLOPs.
    Minimum bytes: x read once and out written once (B·D·L elements each), weight D·W and bias D.
    """
    n_out = shape.batch * shape.dim * shape.seqlen
    e = DTYPE_BYTES[dtype]
    flops = n_out * (2 * shape.width + (1 if shape.bias else 0) + (4 if shape.silu else 0))
    return Cost(
        flops=float(flops),
        transcendentals=float(n_out if shape.silu else 0),
        bytes={
            "x": float(n_out * e),
            "out": float(n_out * e),
            "weight": float(shape.dim * shape.width * e),
            "bias": float(shape.dim * e if shape.bias else 0),
        },
    )


def _grid_small() -> list[dict[str, Any]]:
    """CPU / interpreter grid: odd lengths, every width, both layouts, every dtype."""
    grid = []
    for dtype in ("fp32", "fp16", "bf16"):
        for width in (2, 3, 4):
            for seqlen, channel_last in ((1, False), (37, True), (129, False)):
                grid.append(dict(batch=2, dim=24, seqlen=seqlen, width=width, bias=width != 3,
                                 silu=width != 2, channel_last=channel_last, dtype=dtype))
    return grid


def _grid_upstream() -> list[dict[str, Any]]:
    """causal-conv1d's tests/test_causal_conv1d.py: seqlen {1,2,8,16,32,64,128,129,130,151,256,372,512,784,
    1024,1134,2048,4096}, width {2,3,4}, dim {64, 4096+32}, silu {no, yes}, bias {no, yes}, both layouts, batch 2."""
    lengths = (1, 2, 8, 16, 32, 64, 128, 129, 130, 151, 256, 372, 512, 784, 1024, 1134, 2048, 4096)
    grid = []
    for dtype in ("fp32", "fp16", "bf16"):
        for seqlen in lengths:
            for width in (2, 3, 4):
                for dim in (64, 4096 + 32):
                    for channel_last in (False, True):
                        grid.append(dict(batch=2, dim=dim, seqlen=seqlen, width=width, bias=True, silu=True,
                                         channel_last=channel_last, dtype=dtype))
    return grid


def _grid_paper() -> list[dict[str, Any]]:
    """Mamba-130M…2.8B inner dims (2·d_model), batch 1, lengths 1K…64K, bf16."""
    return [dict(batch=1, dim=dim, seqlen=seqlen, width=4, dtype="bf16")
            for dim in (1536, 2048, 3072, 4096, 5120) for seqlen in (1024, 4096, 16384, 65536)]


OP = Op(
    name="causal_conv1d",
    summary="depthwise causal conv1d (width 2-4, bias, silu), Mamba's short conv",
    shape_type=ConvShape,
    generate=generate,
    cost=cost,
    impls={
        "ref": Impl("ref", "ssmscope.kernels.causal_conv1d.ref:causal_conv1d", "reference", "PyTorch conv1d"),
    },
    # Relative error against float64: fp32 accumulates exactly enough; half types are limited by output rounding.
    tolerance={"fp32": 1e-5, "fp16": 2e-3, "bf16": 1e-2},
    # causal-conv1d's tests: fp32 (3e-4, 1e-3), fp16 (1e-2, 5e-3) … bf16 (1e-2, 5e-2)
    upstream_tolerance={"fp32": (3e-4, 1e-3), "fp16": (1e-2, 5e-3), "bf16": (1e-2, 5e-2)},
    grids={"small": _grid_small, "upstream": _grid_upstream, "paper": _grid_paper},
)
