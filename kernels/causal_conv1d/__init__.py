"""causal_conv1d — depthwise causal 1-D convolution over the sequence, the short conv in every Mamba block.

    out[b, d, t] = act( bias[d] + sum_{k=0}^{W-1} weight[d, k] * x[b, d, t - (W-1) + k] )   (x[t<0] = 0)

Official signature (causal_conv1d 1.7.0): ``causal_conv1d_fn(x, weight, bias=None, activation=None)`` with
x [B, D, L] (channel-first, x.stride(2) == 1) or a [B, L, D] tensor transposed to [B, D, L] (channel-last,
``x.stride(1) == 1``), weight [D, W], bias [D] in the weight's dtype, activation None | "silu". The output
has x's layout. The official function also takes seq_idx / initial_states / final states (channel-last
only); they are not part of this op.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..op import DTYPE_BYTES, Cost, Impl, Op, Shape, ShapeError, randn

MAX_WIDTH = 4  # the official kernels are templated for widths 2, 3, 4
CUDA_GRID_YZ = 65535  # CUDA's limit on gridDim.y and gridDim.z


@dataclass(frozen=True)
class ConvShape(Shape):
    """B, D, L, W plus: bias / silu present, x channel-last ([B, L, D] transposed), weight and bias in fp32
    (the upstream tests' choice) instead of x's dtype (Mamba's: the conv weights share the model dtype)."""

    batch: int = 1
    dim: int = 1536
    seqlen: int = 4096
    width: int = 4
    bias: bool = True
    silu: bool = True
    channel_last: bool = False
    weight_fp32: bool = False

    ABBREV = {"batch": "B", "dim": "D", "seqlen": "L", "width": "W"}

    def validate(self) -> None:
        super().validate()
        if not 2 <= self.width <= MAX_WIDTH:
            raise ShapeError(f"causal_conv1d: width must be in 2..{MAX_WIDTH}, got {self.width}")


def weight_dtype(shape: ConvShape, dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if shape.weight_fp32 else dtype


def generate(shape: ConvShape, dtype: torch.dtype, device: torch.device, gen: torch.Generator) -> dict[str, Any]:
    """x ~ N(0, 1); weight ~ N(0, 1/W) so outputs stay O(1); bias ~ N(0, 0.1)."""
    B, D, L, W = shape.batch, shape.dim, shape.seqlen, shape.width
    wdtype = weight_dtype(shape, dtype)
    if shape.channel_last:
        x = randn((B, L, D), gen, dtype=dtype, device=device).transpose(1, 2)
    else:
        x = randn((B, D, L), gen, dtype=dtype, device=device)
    return {
        "x": x,
        "weight": randn((D, W), gen, dtype=wdtype, device=device, scale=W ** -0.5),
        "bias": randn((D,), gen, dtype=wdtype, device=device, scale=0.1) if shape.bias else None,
        "activation": "silu" if shape.silu else None,
    }


def cost(shape: ConvShape, dtype: str) -> Cost:
    """FLOPs per output element: W multiplies and W-1 adds (2W-1), +1 add for the bias; silu(y) =
    y / (1 + exp(-y)) is a negation, an exp, an add and a division: 4 FLOPs, the exp also counted as one
    transcendental. Minimum bytes: x read once and out written once (B·D·L elements each, x's dtype),
    weight D·W and bias D (the weight's dtype).

    The official kernels move exactly this at DRAM, so there is no ``impl_bytes`` entry: the channel-first
    kernel streams each (b, d) row once in chunks and hands the last W-1 values of a chunk to the next one
    through shared memory; the channel-last kernel re-reads W-1 halo rows per 64-step chunk, which are the
    previous chunk's rows and hit L2 (an L2 excess of (W-1)/64 of x, not a DRAM one). Our Triton kernel
    re-reads one 16-byte vector of halo per group of steps (channel-first) or the W-1 rows before each
    segment of steps a thread walks (channel-last, 3 per 16 rows at long L), from L1/L2.
    """
    n_out = shape.batch * shape.dim * shape.seqlen
    e = DTYPE_BYTES[dtype]
    ew = 4 if shape.weight_fp32 else e
    flops = n_out * (2 * shape.width - 1 + (1 if shape.bias else 0) + (4 if shape.silu else 0))
    return Cost(
        flops=float(flops),
        transcendentals=float(n_out if shape.silu else 0),
        bytes={
            "x": float(n_out * e),
            "out": float(n_out * e),
            "weight": float(shape.dim * shape.width * ew),
            "bias": float(shape.dim * ew if shape.bias else 0),
        },
    )


def official_supports(shape: ConvShape, dtype: str) -> str | None:
    """Limits of causal-conv1d 1.7.0's forward (csrc/causal_conv1d.cpp and causal_conv1d_fwd.cu)."""
    if dtype not in ("fp32", "fp16", "bf16"):
        return f"official dispatches fp32, fp16 and bf16 only, got {dtype}"
    numel = shape.batch * shape.dim * shape.seqlen
    if numel >= 2 ** 32:
        return f"official computes offsets in 32-bit unsigned ints: B·D·L must be < 2^32, got {numel}"
    if not shape.channel_last:
        if shape.dim > CUDA_GRID_YZ:
            return f"official channel-first kernel puts one block per channel on gridDim.y: dim <= {CUDA_GRID_YZ}"
        return None
    if shape.dim % 8:
        return ("official channel-last kernel moves 16-byte vectors of channels: dim must be a multiple of 8, "
                f"got {shape.dim}")
    chunk_c = 128 // DTYPE_BYTES[dtype]  # one 128-byte row of channels per block
    if math.ceil(shape.seqlen / 64) > CUDA_GRID_YZ:
        return f"official channel-last grid has ceil(L/64) blocks on gridDim.y: L <= {64 * CUDA_GRID_YZ}"
    if math.ceil(shape.dim / chunk_c) > CUDA_GRID_YZ:
        return f"official channel-last grid has ceil(D/{chunk_c}) blocks on gridDim.z: D <= {chunk_c * CUDA_GRID_YZ}"
    return None


def _grid_small() -> list[dict[str, Any]]:
    """CPU / interpreter grid: every dtype x width x length (1, 37, 130) x layout (54 configs), with dims
    (40; 19 odd; 136 several channel tiles), bias, silu and fp32 weights rotating across them."""
    grid = []
    for dtype in ("fp32", "fp16", "bf16"):
        for width in (2, 3, 4):
            for seqlen in (1, 37, 130):
                for channel_last in (False, True):
                    i = len(grid)
                    grid.append(dict(batch=2, dim=(40, 19, 136)[i % 3], seqlen=seqlen, width=width,
                                     bias=i % 4 != 1, silu=i % 5 != 2, channel_last=channel_last,
                                     weight_fp32=i % 7 == 3, dtype=dtype))
    return grid


def _grid_upstream() -> list[dict[str, Any]]:
    """causal-conv1d 1.7.0 tests/test_causal_conv1d.py::test_causal_conv1d (forward part): batch 2,
    seqlen {1,2,8,16,32,64,128,129,130,151,256,372,512,784,1024,1134,2048,4096}, width {2,3,4},
    dim {64, 4096+32}, bias and silu on/off, both layouts, x in fp32/fp16/bf16 with fp32 weight and bias.
    (Upstream slices x out of a wider tensor; the strided case is covered by our tests, not by this grid.)"""
    lengths = (1, 2, 8, 16, 32, 64, 128, 129, 130, 151, 256, 372, 512, 784, 1024, 1134, 2048, 4096)
    return [dict(batch=2, dim=dim, seqlen=seqlen, width=width, bias=bias, silu=silu,
                 channel_last=channel_last, weight_fp32=True, dtype=dtype)
            for dtype in ("fp32", "fp16", "bf16") for seqlen in lengths for width in (2, 3, 4)
            for dim in (64, 4096 + 32) for channel_last in (False, True) for bias in (False, True)
            for silu in (False, True)]


# Mamba-1 130M…2.8B: d_inner = 2·d_model, x a channel-first slice of in_proj's output. Mamba-2 (same
# sizes, d_state 128, 1 group): the conv runs channel-last over xBC, d_inner + 2·128 channels.
MAMBA1_DIMS = (1536, 2048, 3072, 4096, 5120)
MAMBA2_CONV_DIMS = (1792, 2304, 3328, 4352, 5376)


def _grid_paper() -> list[dict[str, Any]]:
    """Mamba-1 (channel-first) and Mamba-2 (channel-last) conv dims, batch 1, lengths 1K…64K, bf16."""
    lengths = (1024, 4096, 16384, 65536)
    return ([dict(batch=1, dim=dim, seqlen=seqlen, width=4, dtype="bf16") for dim in MAMBA1_DIMS for seqlen in lengths]
            + [dict(batch=1, dim=dim, seqlen=seqlen, width=4, channel_last=True, dtype="bf16")
               for dim in MAMBA2_CONV_DIMS for seqlen in lengths])


OP = Op(
    name="causal_conv1d",
    summary="depthwise causal conv1d (width 2-4, bias, silu), Mamba's short conv",
    shape_type=ConvShape,
    generate=generate,
    cost=cost,
    impls={
        "ref": Impl("ref", "ssmscope.kernels.causal_conv1d.ref:causal_conv1d", "reference",
                    "PyTorch conv1d (fp32 / fp64 accumulation)"),
        "triton": Impl("triton", "ssmscope.kernels.causal_conv1d.triton_kernel:causal_conv1d", "ours",
                       "Triton, 16-byte vectors, taps in registers (a tile and its one-vector halo; "
                       "channel-last: a window of W-1 rows per thread)"),
        "triton_v1": Impl("triton_v1", "ssmscope.kernels.causal_conv1d.triton_kernel_v1:causal_conv1d", "previous",
                          "Triton v1, one program per (L block, D block, batch), W shifted loads"),
        "official": Impl("official", "ssmscope.kernels.causal_conv1d.official:causal_conv1d", "official",
                         "causal_conv1d.causal_conv1d_fn (causal-conv1d 1.7.0, CUDA)", needs_cuda=True,
                         supports=official_supports),
    },
    # Relative error against float64: fp32 accumulation is exact enough; half types are limited by the
    # rounding of the output (unit roundoff bf16 2^-8, fp16 2^-11 per element).
    tolerance={"fp32": 1e-5, "fp16": 2e-3, "bf16": 1e-2},
    # causal-conv1d's tests: fp32 (3e-4, 1e-3), fp16 (3e-3, 5e-3), bf16 (1e-2, 5e-2).
    upstream_tolerance={"fp32": (3e-4, 1e-3), "fp16": (3e-3, 5e-3), "bf16": (1e-2, 5e-2)},
    grids={"small": _grid_small, "upstream": _grid_upstream, "paper": _grid_paper},
)
