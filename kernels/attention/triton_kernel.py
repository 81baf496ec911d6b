"""Our flash-attention forward in Triton: causal prefill with GQA, flash_attn_func's signature.

One program owns BLOCK_M queries of one (batch, q head) and streams BLOCK_N-key tiles of the matching kv
head (q head h reads kv head h // G, in the pointer arithmetic: no repeated K/V). Scores go through an
online softmax (running row max m and row sum l, fp32 accumulator rescaled by 2^(m_old − m_new)); exp2
is used with log2(e) folded into the softmax scale. Causal tiles strictly above the diagonal are never
visited; tiles strictly below it run without masks; only the BLOCK_M/BLOCK_N diagonal tiles are masked.
Programs are launched heaviest (last) query block first so that the causal tail does not straggle.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from ..op import ShapeError
from . import MAX_HEAD_DIM
from .ref import check_qkv

LOG2E = math.log2(math.e)
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@triton.jit
def _dot(a, b, acc, DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """tl.dot, or (UPCAST) the same product on exact fp32 copies: Triton 3.9's CPU interpreter computes
    garbage for bf16 operands, so the launcher sets UPCAST there; it is never set on a GPU."""
    if UPCAST:
        res = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    else:
        res = tl.dot(a, b, acc, input_precision=DOT_PRECISION)
    return res


@triton.jit
def _attention_tiles(acc, m_i, l_i, q, k_base, v_base, stride_kl, stride_vl, lo, hi, offs_m, offs_n, offs_d,
                     seqlen, qk_scale_log2,
                     HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, EVEN_D: tl.constexpr, MASKED: tl.constexpr,
                     IS_CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """Fold key tiles [lo, hi) into (acc, m_i, l_i). MASKED tiles check key < seqlen (and key <= query).

    Tile pointers are rebuilt from the scalar tile start each step instead of being carried through the
    loop: a carried [BLOCK_N, BLOCK_D] tile of 64-bit pointers costs two registers per element and spills.
    """
    d_mask = offs_d[None, :] < HEAD_DIM
    for start_n in range(lo, hi, BLOCK_N):
        keys = start_n + offs_n
        k_ptrs = k_base + keys[:, None] * stride_kl + offs_d[None, :]
        v_ptrs = v_base + keys[:, None] * stride_vl + offs_d[None, :]
        if MASKED:
            kv_mask = keys[:, None] < seqlen
            if not EVEN_D:
                kv_mask = kv_mask & d_mask
            k = tl.load(k_ptrs, mask=kv_mask, other=0.0)
        elif EVEN_D:
            k = tl.load(k_ptrs)
        else:
            k = tl.load(k_ptrs, mask=d_mask, other=0.0)
        s = _dot(q, tl.trans(k), None, DOT_PRECISION, UPCAST) * qk_scale_log2
        if MASKED:
            keep = keys[None, :] < seqlen
            if IS_CAUSAL:
                keep = keep & (keys[None, :] <= offs_m[:, None])
            s = tl.where(keep, s, float("-inf"))
        # Every row sees at least one unmasked key in its first tile, so m_new is finite.
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        if MASKED:
            v = tl.load(v_ptrs, mask=kv_mask, other=0.0)
        elif EVEN_D:
            v = tl.load(v_ptrs)
        else:
            v = tl.load(v_ptrs, mask=d_mask, other=0.0)
        acc = _dot(p.to(v.dtype), v, acc * alpha[:, None], DOT_PRECISION, UPCAST)
        m_i = m_new
    return acc, m_i, l_i


@triton.jit
def _attention_fwd_kernel(
    q_ptr, k_ptr, v_ptr, out_ptr,
    stride_qb, stride_ql, stride_qh,
    stride_kb, stride_kl, stride_kh,
    stride_vb, stride_vl, stride_vh,
    stride_ob, stride_ol, stride_oh,
    seqlen, n_heads, group_size, qk_scale_log2,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    IS_CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    start_m = tl.num_programs(1) - 1 - tl.program_id(1)  # heaviest causal blocks first
    off_b = (pid_bh // n_heads).to(tl.int64)
    off_h = pid_bh % n_heads
    off_hkv = (off_h // group_size).to(tl.int64)
    off_h = off_h.to(tl.int64)

    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_mask = offs_d < HEAD_DIM
    EVEN_D: tl.constexpr = BLOCK_D == HEAD_DIM
    row_mask = offs_m < seqlen

    q_rows = q_ptr + off_b * stride_qb + off_h * stride_qh + offs_m.to(tl.int64)[:, None] * stride_ql
    q = tl.load(q_rows + offs_d[None, :], mask=row_mask[:, None] & d_mask[None, :], other=0.0)
    k_base = k_ptr + off_b * stride_kb + off_hkv * stride_kh  # scalar bases: see _attention_tiles
    v_base = v_ptr + off_b * stride_vb + off_hkv * stride_vh

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    if IS_CAUSAL:
        full_hi = start_m * BLOCK_M  # keys below this block's first query: no mask needed
        hi = tl.minimum((start_m + 1) * BLOCK_M, seqlen)
    else:
        full_hi = (seqlen // BLOCK_N) * BLOCK_N
        hi = seqlen
    acc, m_i, l_i = _attention_tiles(acc, m_i, l_i, q, k_base, v_base, stride_kl, stride_vl, 0, full_hi,
                                     offs_m, offs_n, offs_d, seqlen, qk_scale_log2,
                                     HEAD_DIM, BLOCK_N, EVEN_D, False, IS_CAUSAL, DOT_PRECISION, UPCAST)
    acc, m_i, l_i = _attention_tiles(acc, m_i, l_i, q, k_base, v_base, stride_kl, stride_vl, full_hi, hi,
                                     offs_m, offs_n, offs_d, seqlen, qk_scale_log2,
                                     HEAD_DIM, BLOCK_N, EVEN_D, True, IS_CAUSAL, DOT_PRECISION, UPCAST)

    out = acc / l_i[:, None]
    o_rows = out_ptr + off_b * stride_ob + off_h * stride_oh + offs_m.to(tl.int64)[:, None] * stride_ol
    tl.store(o_rows + offs_d[None, :], out.to(out_ptr.dtype.element_ty),
             mask=row_mask[:, None] & d_mask[None, :])


def interpreter_needs_upcast(x: torch.Tensor) -> bool:
    """bf16 operands of tl.dot under the CPU interpreter (see ``_dot``)."""
    return not x.is_cuda and x.dtype == torch.bfloat16


class TileConfig(NamedTuple):
    block_m: int
    block_n: int
    num_warps: int
    num_stages: int


def tile_config(head_dim: int, dtype: torch.dtype, on_gpu: bool) -> TileConfig:
    """Tiles per (head_dim, dtype), chosen on sm_90 to stay within 255 registers/thread (checked with ptxas
    -v: no spills except 64 B at d = 256) and well inside 228 KB of shared memory. fp32 (IEEE FMA dots,
    no tensor cores) needs smaller tiles. The interpreter gets 32x16 tiles so that small CPU cases still
    cover full, diagonal and skipped tiles.
    """
    if not on_gpu:
        return TileConfig(32, 16, 4, 1)
    block_d = max(16, triton.next_power_of_2(head_dim))
    if dtype == torch.float32:
        return TileConfig(64, 32, 8, 2) if block_d <= 128 else TileConfig(16, 16, 4, 2)
    if block_d <= 128:  # d128 on the H100, L16K H12/2 (knob_sweep): 1618 µs; 64x64/4 warps 1711; 128x32 2160
        return TileConfig(128, 64, 8, 3)
    return TileConfig(64, 32, 8, 2)


def _is_pow2_tile(n: int) -> bool:
    return n >= 16 and n & (n - 1) == 0


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[int, int, int, int, int]:
    B, L, Hq, Hkv, d = check_qkv(q, k, v, "attention triton")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in SUPPORTED_DTYPES:
        raise ShapeError(f"attention triton: q, k, v must share one dtype of fp16/bf16/fp32, got "
                         f"{q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ShapeError("attention triton: q, k, v must be on one device")
    if d % 8 or d > MAX_HEAD_DIM:
        raise ShapeError(f"attention triton: head_dim must be a multiple of 8 and <= {MAX_HEAD_DIM}, got {d}")
    if L * max(k.stride(1), v.stride(1)) >= 2**31:  # key offsets inside one sequence are int32
        raise ShapeError("attention triton: one sequence of k/v must span < 2^31 elements")
    return B, L, Hq, Hkv, d


def attention_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, softmax_scale: float | None = None,
                  causal: bool = False, config: TileConfig | None = None) -> torch.Tensor:
    """Launcher: validate, allocate out [B, L, Hq, d], launch a (B·Hq, ⌈L/BLOCK_M⌉) grid.

    ``config`` overrides the tile heuristic (tuning sweeps, tests): powers of two >= 16, BLOCK_M >= BLOCK_N.
    """
    B, L, Hq, Hkv, d = _check_inputs(q, k, v)
    q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
    out = torch.empty((B, L, Hq, d), dtype=q.dtype, device=q.device)
    if out.numel() == 0:
        return out
    cfg = config or tile_config(d, q.dtype, q.is_cuda)
    if not _is_pow2_tile(cfg.block_m) or not _is_pow2_tile(cfg.block_n) or cfg.block_m < cfg.block_n:
        raise ShapeError(f"attention triton: tiles must be powers of two >= 16 with BLOCK_M >= BLOCK_N, got "
                         f"{cfg.block_m}x{cfg.block_n}")
    scale = d ** -0.5 if softmax_scale is None else float(softmax_scale)
    grid = (B * Hq, triton.cdiv(L, cfg.block_m))
    _attention_fwd_kernel[grid](
        q, k, v, out,
        q.stride(0), q.stride(1), q.stride(2),
        k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        out.stride(0), out.stride(1), out.stride(2),
        L, Hq, Hq // Hkv, scale * LOG2E,
        HEAD_DIM=d, BLOCK_D=max(16, triton.next_power_of_2(d)), BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
        IS_CAUSAL=bool(causal), DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        UPCAST=interpreter_needs_upcast(q),
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    return out


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, softmax_scale: float | None = None,
              causal: bool = False, *, block_m: int | None = None, block_n: int | None = None,
              num_warps: int | None = None, num_stages: int | None = None) -> torch.Tensor:
    """Causal (or full) attention with GQA, as ``flash_attn_func``.

    q [B, L, Hq, d], k/v [B, L, Hkv, d] with Hq % Hkv == 0, d % 8 == 0, d <= 256; fp16, bf16 or fp32
    (fp32 dots in IEEE fp32, not TF32). softmax_scale defaults to 1/sqrt(d). Returns out [B, L, Hq, d]
    in q's dtype. Causal masking aligns query i with key i (seqlen_q == seqlen_k). The keyword-only knobs
    override single fields of the tile heuristic (benchmarks/gpu/knob_sweep.py).
    """
    knobs = dict(block_m=block_m, block_n=block_n, num_warps=num_warps, num_stages=num_stages)
    config = None
    if any(v is not None for v in knobs.values()):
        base = tile_config(q.shape[-1], q.dtype, q.is_cuda)
        config = base._replace(**{k: v for k, v in knobs.items() if v is not None})
    return attention_fwd(q, k, v, softmax_scale, causal, config)
