"""Our split-KV ("flash decoding") attention for one query token, flash_attn_with_kvcache's names.

Kernel 1 runs a (B·Hkv, splits) grid. Each program takes the G query heads that share one kv head as the
rows of a [BLOCK_G, d] tile (G padded to 16 so that q·Kᵀ and P·V are tl.dot calls: K/V tiles are read
once per kv head, not once per q head) and folds its chunk of the cache into an online softmax (running
max and sum, fp32 accumulator, exp2 with log2(e) folded into the scale). With one split it normalises and
writes the output directly; otherwise it writes the chunk's normalised partial output and its log2-sum-exp
to fp32 scratch, and kernel 2 (one program per (batch, q head)) merges the splits, each weighted by
2^(lse_split − max lse).
"""
from __future__ import annotations

import functools
import math

import torch
import triton
import triton.language as tl

from ..attention import MAX_HEAD_DIM
from ..attention.triton_kernel import _dot, interpreter_needs_upcast
from ..op import ShapeError
from .ref import check_decode
from .splits import INTERPRETER_SMS, cdiv, gpu_tiles, split_plan

LOG2E = math.log2(math.e)
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
INTERPRETER_BLOCK_N = 16
COMBINE_CHUNK = 16  # splits merged per step of the combine loop (bounds its registers at d = 256)


@triton.jit
def _decode_split_kernel(
    q_ptr, k_ptr, v_ptr, out_ptr, part_out_ptr, part_lse_ptr,
    stride_qb, stride_qh,
    stride_kb, stride_ks, stride_kh,
    stride_vb, stride_vs, stride_vh,
    stride_ob, stride_oh,
    seqlen, n_kv_heads, group_size, keys_per_split, num_splits, qk_scale_log2,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr,
    WRITE_OUT: tl.constexpr, DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    split = tl.program_id(1)
    off_b = (pid_bh // n_kv_heads).to(tl.int64)
    off_hkv = (pid_bh % n_kv_heads).to(tl.int64)

    offs_g = tl.arange(0, BLOCK_G)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    EVEN_D: tl.constexpr = BLOCK_D == HEAD_DIM
    d_mask = offs_d < HEAD_DIM
    row_mask = (offs_g < group_size)[:, None] & d_mask[None, :]
    heads = off_hkv * group_size + offs_g  # the q heads of this kv group
    q = tl.load(q_ptr + off_b * stride_qb + heads[:, None] * stride_qh + offs_d[None, :], mask=row_mask, other=0.0)

    lo = split * keys_per_split
    hi = tl.minimum(lo + keys_per_split, seqlen)  # every split holds >= 1 key (the launcher's plan)
    # Scalar bases; tile pointers are rebuilt per step (a loop-carried tile of 64-bit pointers spills).
    k_base = k_ptr + off_b * stride_kb + off_hkv * stride_kh
    v_base = v_ptr + off_b * stride_vb + off_hkv * stride_vh

    m_i = tl.full([BLOCK_G], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_G], dtype=tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], dtype=tl.float32)
    for start_n in range(lo, hi, BLOCK_N):
        keys = start_n + offs_n
        in_split = keys < hi
        k_ptrs = k_base + keys[:, None] * stride_ks + offs_d[None, :]
        v_ptrs = v_base + keys[:, None] * stride_vs + offs_d[None, :]
        kv_mask = in_split[:, None] if EVEN_D else in_split[:, None] & d_mask[None, :]
        k = tl.load(k_ptrs, mask=kv_mask, other=0.0)
        s = _dot(q, tl.trans(k), None, DOT_PRECISION, UPCAST) * qk_scale_log2
        s = tl.where(in_split[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_ptrs, mask=kv_mask, other=0.0)
        acc = _dot(p.to(v.dtype), v, acc * alpha[:, None], DOT_PRECISION, UPCAST)
        m_i = m_new

    acc = acc / l_i[:, None]
    if WRITE_OUT:
        o_ptrs = out_ptr + off_b * stride_ob + heads[:, None] * stride_oh + offs_d[None, :]
        tl.store(o_ptrs, acc.to(out_ptr.dtype.element_ty), mask=row_mask)
    else:
        rows = (off_b * n_kv_heads * group_size + heads) * num_splits + split  # [B, Hq, splits] order
        tl.store(part_out_ptr + rows[:, None] * HEAD_DIM + offs_d[None, :], acc, mask=row_mask)
        tl.store(part_lse_ptr + rows, m_i + tl.math.log2(l_i), mask=offs_g < group_size)


@triton.jit
def _decode_combine_kernel(
    part_out_ptr, part_lse_ptr, out_ptr,
    stride_ob, stride_oh,
    n_heads, num_splits,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_S: tl.constexpr, CHUNK_S: tl.constexpr,
):
    pid = tl.program_id(0)  # b·Hq + h
    off_b = (pid // n_heads).to(tl.int64)
    off_h = (pid % n_heads).to(tl.int64)
    first_row = pid.to(tl.int64) * num_splits
    offs_s = tl.arange(0, BLOCK_S)
    lse = tl.load(part_lse_ptr + first_row + offs_s, mask=offs_s < num_splits, other=float("-inf"))
    m = tl.max(lse, 0)
    total = tl.sum(tl.math.exp2(lse - m), 0)

    offs_c = tl.arange(0, CHUNK_S)
    offs_d = tl.arange(0, BLOCK_D)
    d_mask = offs_d < HEAD_DIM
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for s0 in range(0, num_splits, CHUNK_S):
        rows = s0 + offs_c
        valid = rows < num_splits
        w = tl.math.exp2(tl.load(part_lse_ptr + first_row + rows, mask=valid, other=float("-inf")) - m)
        part = tl.load(part_out_ptr + (first_row + rows)[:, None] * HEAD_DIM + offs_d[None, :],
                       mask=valid[:, None] & d_mask[None, :], other=0.0)
        acc += tl.sum(part * w[:, None], 0)
    out = acc / total
    tl.store(out_ptr + off_b * stride_ob + off_h * stride_oh + offs_d, out.to(out_ptr.dtype.element_ty), mask=d_mask)


@functools.lru_cache(maxsize=None)
def _num_sms(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def _check_inputs(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor) -> tuple[int, int, int, int, int]:
    B, S, Hq, Hkv, d = check_decode(q, k_cache, v_cache, "attention_decode triton")
    if not (q.dtype == k_cache.dtype == v_cache.dtype) or q.dtype not in SUPPORTED_DTYPES:
        raise ShapeError(f"attention_decode triton: q, k_cache, v_cache must share one dtype of fp16/bf16/fp32, "
                         f"got {q.dtype}, {k_cache.dtype}, {v_cache.dtype}")
    if not (q.device == k_cache.device == v_cache.device):
        raise ShapeError("attention_decode triton: q, k_cache, v_cache must be on one device")
    if d % 8 or d > MAX_HEAD_DIM:
        raise ShapeError(f"attention_decode triton: head_dim must be a multiple of 8 and <= {MAX_HEAD_DIM}, got {d}")
    if S * max(k_cache.stride(1), v_cache.stride(1)) >= 2**31:  # key offsets inside one sequence are int32
        raise ShapeError("attention_decode triton: one sequence of the KV cache must span < 2^31 elements")
    return B, S, Hq, Hkv, d


def attention_decode_fwd(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                         softmax_scale: float | None = None, *, num_splits: int | None = None,
                         block_n: int | None = None) -> torch.Tensor:
    """Launcher: validate, plan the splits, allocate out [B, 1, Hq, d] (and fp32 partials when splitting),
    launch the split kernel on (B·Hkv, splits) and, when splits > 1, the combine kernel on (B·Hq,).

    ``num_splits`` / ``block_n`` override the plan (tests, tuning); by default splits fill the GPU about
    twice over (``splits.split_plan``).
    """
    B, S, Hq, Hkv, d = _check_inputs(q, k_cache, v_cache)
    q, k_cache, v_cache = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k_cache, v_cache))
    out = torch.empty((B, 1, Hq, d), dtype=q.dtype, device=q.device)
    if out.numel() == 0:
        return out
    on_gpu = q.is_cuda
    gpu_block_n, num_stages = gpu_tiles(d, q.element_size())
    block_n = block_n or (gpu_block_n if on_gpu else INTERPRETER_BLOCK_N)
    if num_splits is None:
        sms = _num_sms(q.device.index if q.device.index is not None else torch.cuda.current_device()) \
            if on_gpu else INTERPRETER_SMS
        splits, keys_per_split = split_plan(B, Hkv, S, block_n, sms)
    else:
        keys_per_split = cdiv(cdiv(S, max(1, num_splits)), block_n) * block_n
        splits = cdiv(S, keys_per_split)
    group = Hq // Hkv
    block_d = max(16, triton.next_power_of_2(d))
    if splits > 1:
        part_out = torch.empty((B * Hq * splits, d), dtype=torch.float32, device=q.device)
        part_lse = torch.empty((B * Hq * splits,), dtype=torch.float32, device=q.device)
    else:  # never touched: the split kernel writes out directly
        part_out = part_lse = out
    scale = d ** -0.5 if softmax_scale is None else float(softmax_scale)
    _decode_split_kernel[(B * Hkv, splits)](
        q, k_cache, v_cache, out, part_out, part_lse,
        q.stride(0), q.stride(2),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        out.stride(0), out.stride(2),
        S, Hkv, group, keys_per_split, splits, scale * LOG2E,
        HEAD_DIM=d, BLOCK_D=block_d, BLOCK_G=max(16, triton.next_power_of_2(group)), BLOCK_N=block_n,
        WRITE_OUT=splits == 1, DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        UPCAST=interpreter_needs_upcast(q),
        num_warps=4, num_stages=num_stages if on_gpu else 1,
    )
    if splits > 1:
        _decode_combine_kernel[(B * Hq,)](
            part_out, part_lse, out, out.stride(0), out.stride(2), Hq, splits,
            HEAD_DIM=d, BLOCK_D=block_d, BLOCK_S=triton.next_power_of_2(splits), CHUNK_S=COMBINE_CHUNK,
            num_warps=4,
        )
    return out


def attention_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                     softmax_scale: float | None = None) -> torch.Tensor:
    """One-token attention over a KV cache, as ``flash_attn_with_kvcache`` without cache_seqlens.

    q [B, 1, Hq, d], k_cache/v_cache [B, S, Hkv, d] with Hq % Hkv == 0, d % 8 == 0, d <= 256; fp16, bf16
    or fp32 (fp32 dots in IEEE fp32). softmax_scale defaults to 1/sqrt(d). Returns out [B, 1, Hq, d].
    """
    return attention_decode_fwd(q, k_cache, v_cache, softmax_scale)
