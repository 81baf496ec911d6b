"""Our Triton causal conv1d (v2): every global access a 16-byte vector, x read once from DRAM.

Channel-first x ([B, D, L], unit stride along L), ``_conv1d_fwd_cf_kernel``: one program owns a
[BLOCK_D, G, V] output tile, rows of channels × G groups of V consecutive steps, V = 16 bytes of x
(8 bf16/fp16, 4 fp32), so each thread loads and stores whole 16-byte vectors. The W taps need x[t-1..t-3],
which a shifted load ``x + offs - k`` cannot fetch as aligned vectors (v1 issued W scalar 2-byte loads per
element). Instead the program loads two aligned tiles: the tile itself and the tile shifted back by one
group (V steps, the previous vector of each group, mostly an L1 hit), splits both into their V phases with
``tl.reshape`` + ``tl.split`` (register renames: the V elements of a group sit in one thread) and forms
each output phase v from phases v-(W-1)..v, taking the ones below 0 from the previous group. The V output
phases are put back together with ``tl.join`` and stored as vectors. Masks are built per group (the
length mask too, when L % V == 0), so they are constant along the vector and do not block vectorization
(v1's ``offs_l < seqlen`` with an unspecialized seqlen did: every load and store was scalar).

Channel-last x (a transposed [B, L, D], unit stride along D), ``_conv1d_fwd_cl_kernel`` (the default,
``cl_design="window"``): a thread owns one 16-byte vector of channels and walks a segment of consecutive
steps, loading each row once and keeping the last W-1 rows in registers, so the taps are register moves
and x is read once (plus W-1 halo rows per segment). The rows of an iteration play the part of the
channel-first kernel's phases (same ``_phase_out``). No layout conversion inside the loop: loads, math and
stores share the tile's layout.

``_conv1d_fwd_cl_rows_kernel`` (``cl_design="rows"``, the previous channel-last kernel, kept for
comparison): W loads of [BLOCK_L, GD, V] tiles shifted by one row each (the W-1 extra ones hit L1), all W
tap tiles live at once (253 registers on sm_90, 0.42-0.58x the official kernel on an H100).

Both group the channel axis by V, so the mask is constant along each vector when D % V == 0.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..op import ShapeError, check_powers_of_two
from ..phases import join4, join8, split4, split8
from .ref import silu_flag

MAX_WIDTH = 4


@triton.jit
def _taps(weight_ptr, bias_ptr, offs_d, mask_d, stride_wd, stride_wk, WIDTH: tl.constexpr, HAS_BIAS: tl.constexpr):
    """The W tap weights and the bias of channels ``offs_d`` in fp32, in offs_d's shape (taps past WIDTH
    repeat w1 and the bias without HAS_BIAS is w0: placeholders, never used)."""
    w0 = tl.load(weight_ptr + offs_d * stride_wd, mask=mask_d, other=0.0).to(tl.float32)
    w1 = tl.load(weight_ptr + offs_d * stride_wd + stride_wk, mask=mask_d, other=0.0).to(tl.float32)
    w2 = w1
    w3 = w1
    if WIDTH > 2:
        w2 = tl.load(weight_ptr + offs_d * stride_wd + 2 * stride_wk, mask=mask_d, other=0.0).to(tl.float32)
    if WIDTH > 3:
        w3 = tl.load(weight_ptr + offs_d * stride_wd + 3 * stride_wk, mask=mask_d, other=0.0).to(tl.float32)
    bias = w0
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    return w0, w1, w2, w3, bias


@triton.jit
def _sel(j: tl.constexpr, m3, m2, m1, c0, c1, c2, c3, c4, c5, c6, c7):
    """x at phase j of the group, j in -3..7: phases below 0 are the previous group's last ones (m1 = its
    last). A compile-time choice (Triton tensors cannot be indexed by position)."""
    if j == -3:
        r = m3
    elif j == -2:
        r = m2
    elif j == -1:
        r = m1
    elif j == 0:
        r = c0
    elif j == 1:
        r = c1
    elif j == 2:
        r = c2
    elif j == 3:
        r = c3
    elif j == 4:
        r = c4
    elif j == 5:
        r = c5
    elif j == 6:
        r = c6
    else:
        r = c7
    return r


@triton.jit
def _phase_out(v: tl.constexpr, WIDTH: tl.constexpr, m3, m2, m1, c0, c1, c2, c3, c4, c5, c6, c7,
               w0, w1, w2, w3, acc0, SILU: tl.constexpr):
    """Output phase v of a group: acc0 + sum_k w_k x[v - (W-1) + k] in fp32 (phases [R, G], in fp32 or x's
    dtype, converted here; w_k [R, 1]). Channel-last: phase v is row t + v of the window kernel's iteration."""
    acc = acc0 + w0 * _sel(v - (WIDTH - 1), m3, m2, m1, c0, c1, c2, c3, c4, c5, c6, c7).to(tl.float32)
    acc += w1 * _sel(v - (WIDTH - 1) + 1, m3, m2, m1, c0, c1, c2, c3, c4, c5, c6, c7).to(tl.float32)
    if WIDTH > 2:
        acc += w2 * _sel(v - (WIDTH - 1) + 2, m3, m2, m1, c0, c1, c2, c3, c4, c5, c6, c7).to(tl.float32)
    if WIDTH > 3:
        acc += w3 * _sel(v - (WIDTH - 1) + 3, m3, m2, m1, c0, c1, c2, c3, c4, c5, c6, c7).to(tl.float32)
    if SILU:
        acc = acc / (1.0 + tl.exp(-acc))
    return acc


# Sizes are not specialized (divisibility by 16): the masks are built per group and do not need it, and it
# would multiply compiled variants across a grid of lengths; strides are (they decide vector alignment).
@triton.jit(do_not_specialize=["dim", "seqlen"])
def _conv1d_fwd_cf_kernel(
    x_ptr, weight_ptr, bias_ptr, out_ptr,
    dim, seqlen,
    stride_xb, stride_xd,
    stride_wd, stride_wk,
    stride_ob, stride_od,
    WIDTH: tl.constexpr, HAS_BIAS: tl.constexpr, SILU: tl.constexpr, EVEN_L: tl.constexpr,
    BLOCK_D: tl.constexpr, G: tl.constexpr, V: tl.constexpr,
):
    pid_l = tl.program_id(0)
    pid_d = tl.program_id(1)
    pid_b = tl.program_id(2).to(tl.int64)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    grp = pid_l * G + tl.arange(0, G)  # group index along L: steps grp*V .. grp*V + V-1
    mask_d = offs_d < dim
    d64 = offs_d.to(tl.int64)  # 64-bit row offsets (B·D·L may pass 2^31), on a 1-D vector
    x_rows = x_ptr + pid_b * stride_xb + d64 * stride_xd
    out_rows = out_ptr + pid_b * stride_ob + d64 * stride_od
    pos = grp[None, :, None] * V + tl.arange(0, V)[None, None, :]  # [1, G, V], int32 (L < 2^31)
    # Group-level masks are constant along the vector; the element-level one only when L % V != 0.
    in_grp = (grp * V < seqlen)[None, :, None]
    if EVEN_L:
        mask = mask_d[:, None, None] & in_grp
    else:
        mask = mask_d[:, None, None] & (pos < seqlen)
    # The previous group of a group in range is whole; before t = 0 it is the causal zero padding.
    mask_prev = mask_d[:, None, None] & in_grp & (grp >= 1)[None, :, None]
    x_ptrs = x_rows[:, None, None] + pos
    xc = tl.load(x_ptrs, mask=mask, other=0.0).to(tl.float32)
    xp = tl.load(x_ptrs - V, mask=mask_prev, other=0.0).to(tl.float32)

    w0, w1, w2, w3, bias = _taps(weight_ptr, bias_ptr, offs_d, mask_d, stride_wd, stride_wk, WIDTH, HAS_BIAS)
    w0, w1, w2, w3, bias = w0[:, None], w1[:, None], w2[:, None], w3[:, None], bias[:, None]
    acc0 = tl.zeros([BLOCK_D, G], dtype=tl.float32)
    if HAS_BIAS:
        acc0 += bias

    # The V phases of the tile (c*) and the last three of the previous group (m3, m2, m1 = x[t0-3..t0-1]
    # for the group starting at t0).
    if V == 8:
        c0, c1, c2, c3, c4, c5, c6, c7 = split8(xc)
        _p0, _p1, _p2, _p3, _p4, m3, m2, m1 = split8(xp)
        y = join8(_phase_out(0, WIDTH, m3, m2, m1, c0, c1, c2, c3, c4, c5, c6, c7, w0, w1, w2, w3, acc0, SILU),
                   _phase_out(1, WIDTH, m3, m2, m1, c0, c1, c2, c3, c4, c5, c6, c7, w0, w1, w2, w3, acc0, SILU),
                   _phase_out(2, WIDTH, m3, m2, m1, c0, c1, c2, c3, c4, c5, c6, c7, w0, w1, w2, w3, acc0, SILU),
                   _phase_out(3, WIDTH, m3, m2, m1, c0, c1, c2, c3, c4, c5, c6, c7, w0, w1, w2, w3, acc0, SILU),
                   _phase_out(4, WIDTH, m3, m2, m1, c0, c1, c2, c3, c4, c5, c6, c7, w0, w1, w2, w3, acc0, SILU),
                   _phase_out(5, WIDTH, m3, m2, m1, c0, c1, c2, c3, c4, c5, c6, c7, w0, w1, w2, w3, acc0, SILU),
                   _phase_out(6, WIDTH, m3, m2, m1, c0, c1, c2, c3, c4, c5, c6, c7, w0, w1, w2, w3, acc0, SILU),
                   _phase_out(7, WIDTH, m3, m2, m1, c0, c1, c2, c3, c4, c5, c6, c7, w0, w1, w2, w3, acc0, SILU))
    else:  # V == 4 (fp32, fp64); c4..c7 are placeholders, never selected
        c0, c1, c2, c3 = split4(xc)
        _p0, m3, m2, m1 = split4(xp)
        y = join4(_phase_out(0, WIDTH, m3, m2, m1, c0, c1, c2, c3, c3, c3, c3, c3, w0, w1, w2, w3, acc0, SILU),
                   _phase_out(1, WIDTH, m3, m2, m1, c0, c1, c2, c3, c3, c3, c3, c3, w0, w1, w2, w3, acc0, SILU),
                   _phase_out(2, WIDTH, m3, m2, m1, c0, c1, c2, c3, c3, c3, c3, c3, w0, w1, w2, w3, acc0, SILU),
                   _phase_out(3, WIDTH, m3, m2, m1, c0, c1, c2, c3, c3, c3, c3, c3, w0, w1, w2, w3, acc0, SILU))
    tl.store(out_rows[:, None, None] + pos, y.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _cl_row(rows, t, stop, stride, mask_d, RAW: tl.constexpr):
    """Row t of channel-last x at the [GD, 1, V] channel pointers ``rows``, 0 unless 0 <= t < stop (the
    causal padding, the end of x or of the segment); t is [1, S, 1], a step per segment, so the mask is
    constant along each vector when mask_d is. RAW: in x's dtype (converted where used), else fp32."""
    m = ((t >= 0) & (t < stop)) & mask_d
    r = tl.load(rows + t.to(tl.int64) * stride, mask=m, other=0.0)
    if not RAW:
        r = r.to(tl.float32)
    return r


@triton.jit
def _cl_rows(rows, t, stop, stride, mask_d, UNROLL: tl.constexpr, RAW: tl.constexpr):
    """Rows t .. t+UNROLL-1 (UNROLL in 1, 2, 4, 8) as 8 values, padded with copies of the first (never
    selected: _sel only reaches phase UNROLL-1). Independent loads: all UNROLL are in flight at once."""
    r0 = _cl_row(rows, t, stop, stride, mask_d, RAW)
    r1 = r0
    r2 = r0
    r3 = r0
    r4 = r0
    r5 = r0
    r6 = r0
    r7 = r0
    if UNROLL > 1:
        r1 = _cl_row(rows, t + 1, stop, stride, mask_d, RAW)
    if UNROLL > 2:
        r2 = _cl_row(rows, t + 2, stop, stride, mask_d, RAW)
        r3 = _cl_row(rows, t + 3, stop, stride, mask_d, RAW)
    if UNROLL > 4:
        r4 = _cl_row(rows, t + 4, stop, stride, mask_d, RAW)
        r5 = _cl_row(rows, t + 5, stop, stride, mask_d, RAW)
        r6 = _cl_row(rows, t + 6, stop, stride, mask_d, RAW)
        r7 = _cl_row(rows, t + 7, stop, stride, mask_d, RAW)
    return r0, r1, r2, r3, r4, r5, r6, r7


@triton.jit(do_not_specialize=["dim", "seqlen", "seg_len"])
def _conv1d_fwd_cl_kernel(
    x_ptr, weight_ptr, bias_ptr, out_ptr,
    dim, seqlen, seg_len,
    stride_xb, stride_xl,
    stride_wd, stride_wk,
    stride_ob, stride_ol,
    WIDTH: tl.constexpr, HAS_BIAS: tl.constexpr, SILU: tl.constexpr, EVEN_D: tl.constexpr,
    GD: tl.constexpr, S: tl.constexpr, V: tl.constexpr, UNROLL: tl.constexpr, PREFETCH: tl.constexpr,
):
    """Channel-last, window design. One program: GD vectors of V channels × S segments of ``seg_len``
    consecutive steps, a [GD, S, V] tile: a thread owns one 16-byte vector of channels of one segment (the
    channel groups across the lanes, the segments across the warps) and walks the segment's steps in order,
    UNROLL rows per iteration, keeping the last W-1 rows in registers (m3, m2, m1 = x[t-3], x[t-2], x[t-1]).
    Each row of x is loaded once, as one vector per thread; only the W-1 rows before a segment are read
    twice (its halo, also read by the segment before). Output row t+u is _phase_out's phase u: the rows
    of an iteration are the phases of the channel-first kernel's group."""
    pid_l = tl.program_id(0)
    pid_d = tl.program_id(1)
    pid_b = tl.program_id(2).to(tl.int64)
    grp = pid_d * GD + tl.arange(0, GD)
    offs_d = grp[:, None, None] * V + tl.arange(0, V)[None, None, :]  # [GD, 1, V] channels, unit stride
    if EVEN_D:
        mask_d = (grp * V < dim)[:, None, None]  # constant along each vector
    else:
        mask_d = offs_d < dim
    # Weights and bias once per program, in fp32. (They are not contiguous along the channels, so they load
    # in another layout and are converted to the tile's through shared memory: the kernel's only barriers.)
    w0, w1, w2, w3, bias = _taps(weight_ptr, bias_ptr, offs_d, mask_d, stride_wd, stride_wk, WIDTH, HAS_BIAS)
    acc0 = tl.zeros([GD, 1, V], dtype=tl.float32)
    if HAS_BIAS:
        acc0 += bias
    x_rows = x_ptr + pid_b * stride_xb + offs_d
    out_rows = out_ptr + pid_b * stride_ob + offs_d
    t0 = pid_l * S * seg_len  # first step of the program (int32: L < 2^31; row offsets are 64-bit)
    t = t0 + tl.arange(0, S)[None, :, None] * seg_len  # [1, S, 1] next step of each segment
    stop = tl.minimum(t + seg_len, seqlen)  # end of each segment: no row is loaded or stored twice
    # With PREFETCH the rows stay in x's dtype until used: fewer registers across the loop (RAW).
    m3 = tl.zeros([GD, S, V], dtype=tl.float32)
    if PREFETCH:
        m3 = m3.to(x_ptr.dtype.element_ty)
    m2 = m3
    if WIDTH > 3:
        m3 = _cl_row(x_rows, t - 3, stop, stride_xl, mask_d, PREFETCH)
    if WIDTH > 2:
        m2 = _cl_row(x_rows, t - 2, stop, stride_xl, mask_d, PREFETCH)
    m1 = _cl_row(x_rows, t - 1, stop, stride_xl, mask_d, PREFETCH)
    if PREFETCH:
        c0, c1, c2, c3, c4, c5, c6, c7 = _cl_rows(x_rows, t, stop, stride_xl, mask_d, UNROLL, PREFETCH)
    # Every segment takes the first one's trip count; its rows at or past `stop` are masked.
    for _ in range(tl.cdiv(tl.minimum(seg_len, seqlen - t0), UNROLL)):
        if PREFETCH:  # the next iteration's rows are in flight during this one's math
            n0, n1, n2, n3, n4, n5, n6, n7 = _cl_rows(x_rows, t + UNROLL, stop, stride_xl, mask_d, UNROLL,
                                                      PREFETCH)
        else:  # UNROLL loads in flight, then the math
            c0, c1, c2, c3, c4, c5, c6, c7 = _cl_rows(x_rows, t, stop, stride_xl, mask_d, UNROLL, PREFETCH)
        for u in tl.static_range(UNROLL):
            y = _phase_out(u, WIDTH, m3, m2, m1, c0, c1, c2, c3, c4, c5, c6, c7, w0, w1, w2, w3, acc0, SILU)
            tu = t + u
            tl.store(out_rows + tu.to(tl.int64) * stride_ol, y.to(out_ptr.dtype.element_ty),
                     mask=(tu < stop) & mask_d)
        # Shift the window by UNROLL rows (register renames).
        m3, m2, m1 = (_sel(UNROLL - 3, m3, m2, m1, c0, c1, c2, c3, c4, c5, c6, c7),
                      _sel(UNROLL - 2, m3, m2, m1, c0, c1, c2, c3, c4, c5, c6, c7),
                      _sel(UNROLL - 1, m3, m2, m1, c0, c1, c2, c3, c4, c5, c6, c7))
        if PREFETCH:
            c0, c1, c2, c3, c4, c5, c6, c7 = n0, n1, n2, n3, n4, n5, n6, n7
        t += UNROLL


@triton.jit(do_not_specialize=["dim", "seqlen", "chunks"])
def _conv1d_fwd_cl_rows_kernel(
    x_ptr, weight_ptr, bias_ptr, out_ptr,
    dim, seqlen, chunks,
    stride_xb, stride_xl,
    stride_wd, stride_wk,
    stride_ob, stride_ol,
    WIDTH: tl.constexpr, HAS_BIAS: tl.constexpr, SILU: tl.constexpr, EVEN_D: tl.constexpr,
    BLOCK_L: tl.constexpr, GD: tl.constexpr, V: tl.constexpr,
):
    """One program: GD·V channels × ``chunks`` consecutive blocks of BLOCK_L steps (the weights, loaded
    once per program, are reused across the blocks)."""
    pid_l = tl.program_id(0)
    pid_d = tl.program_id(1)
    pid_b = tl.program_id(2).to(tl.int64)
    grp = pid_d * GD + tl.arange(0, GD)
    offs_d = grp[:, None] * V + tl.arange(0, V)[None, :]  # [GD, V] channels, unit stride
    if EVEN_D:
        mask_d = (grp * V < dim)[:, None]  # constant along each vector
    else:
        mask_d = offs_d < dim
    w0, w1, w2, w3, bias = _taps(weight_ptr, bias_ptr, offs_d, mask_d, stride_wd, stride_wk, WIDTH, HAS_BIAS)
    w0, w1, w2, w3, bias = w0[None, :, :], w1[None, :, :], w2[None, :, :], w3[None, :, :], bias[None, :, :]
    acc0 = tl.zeros([BLOCK_L, GD, V], dtype=tl.float32)
    if HAS_BIAS:
        acc0 += bias
    x_base = x_ptr + pid_b * stride_xb + offs_d[None, :, :]
    out_base = out_ptr + pid_b * stride_ob + offs_d[None, :, :]
    for i in range(chunks):
        offs_l = (pid_l * chunks + i) * BLOCK_L + tl.arange(0, BLOCK_L)
        mask_l = offs_l < seqlen
        acc = acc0
        for k in tl.static_range(WIDTH):
            if k == 0:
                w = w0
            elif k == 1:
                w = w1
            elif k == 2:
                w = w2
            else:
                w = w3
            src = offs_l - (WIDTH - 1 - k)  # tap k reads x[t - (W-1) + k]; t < 0 is the causal padding
            m = ((src >= 0) & mask_l)[:, None, None] & mask_d[None, :, :]
            x_k = tl.load(x_base + (src.to(tl.int64) * stride_xl)[:, None, None], mask=m, other=0.0)
            acc += w * x_k.to(tl.float32)
        if SILU:
            acc = acc / (1.0 + tl.exp(-acc))
        tl.store(out_base + (offs_l.to(tl.int64) * stride_ol)[:, None, None], acc.to(out_ptr.dtype.element_ty),
                 mask=mask_l[:, None, None] & mask_d[None, :, :])


def _vector(x: torch.Tensor) -> int:
    """Elements per 16-byte vector, at least 4 (W - 1 <= 3 halo steps must fit in one group)."""
    return max(4, 16 // x.element_size())


def _cf_blocks(dim: int, seqlen: int, v: int) -> tuple[int, int, int]:
    """Channel-first (BLOCK_D, G, num_warps): 2048 outputs per program (1 × 2048 steps down to
    2048 // BLOCK_L rows for short L), i.e. 16 per thread at 4 warps: two 16-byte vectors of bf16 x, two of
    its halo, two stores. Small shapes shrink the tile."""
    block_l = min(2048, max(v, triton.next_power_of_2(seqlen)))
    block_d = min(max(1, triton.next_power_of_2(dim)), max(1, 2048 // block_l))
    groups = block_l // v
    num_warps = max(1, min(4, block_d * groups // 32))
    return block_d, groups, num_warps


def _check_block_d(block_d: int | None, v: int) -> None:
    if block_d is not None and not v <= block_d <= 4096:
        raise ValueError(f"causal_conv1d (triton): block_d must lie in [{v}, 4096] (whole vectors), got {block_d}")


# The window design's segment length (steps a thread walks): about CL_THREADS threads (a few waves of an
# H100 at 16 resident warps per SM), at most CL_MAX_SEG steps. Short segments keep each program short (a
# small tail when the last wave drains) and the halo an L2 hit: the W-1 rows before a segment are read at
# its start and again by the segment before at its end, one program's duration apart.
CL_THREADS = 1 << 17
CL_MAX_SEG = 16


def _cl_window_blocks(batch: int, dim: int, seqlen: int, v: int, block_d: int | None = None,
                      block_l: int | None = None, num_warps: int | None = None, unroll: int | None = None,
                      prefetch: bool | None = None) -> tuple[int, int, int, int, int, bool]:
    """Channel-last, window design (GD, S, seg_len, UNROLL, num_warps, PREFETCH): GD vectors of V channels
    per program (256 bf16 channels: 32 vectors, one per lane), S = 32·num_warps / GD segments (one
    vector of one segment per thread), 4 warps; a thread walks seg_len steps (block_l), UNROLL = 4 rows
    per iteration (unroll), the next iteration's rows loaded ahead (prefetch). seg_len: the power of two
    in [UNROLL, CL_MAX_SEG] that launches about CL_THREADS threads. Arguments other than None are kept."""
    check_powers_of_two("causal_conv1d (triton)", block_d=block_d, block_l=block_l, num_warps=num_warps,
                        unroll=unroll)
    _check_block_d(block_d, v)
    if unroll is not None and unroll > 8:
        raise ValueError(f"causal_conv1d (triton): unroll must be at most 8, got {unroll}")
    groups = (block_d or min(32 * v, max(v, triton.next_power_of_2(dim)))) // v
    num_warps = num_warps or 4
    unroll = unroll or min(4, block_l or 4)
    if block_l is None:
        per_thread = batch * triton.cdiv(dim, v) * seqlen // CL_THREADS
        block_l = min(CL_MAX_SEG, max(unroll, 1 << max(0, per_thread.bit_length() - 1)))
    if block_l < unroll:
        raise ValueError(f"causal_conv1d (triton): block_l ({block_l}) must be at least unroll ({unroll})")
    prefetch = True if prefetch is None else bool(prefetch)
    return groups, max(1, 32 * num_warps // groups), block_l, unroll, num_warps, prefetch


def _cl_rows_blocks(batch: int, dim: int, seqlen: int, v: int, block_d: int | None = None,
                    block_l: int | None = None, chunks: int | None = None,
                    num_warps: int | None = None) -> tuple[int, int, int, int]:
    """Channel-last, rows design (BLOCK_L, GD, chunks, num_warps): 256 channels (512 B of bf16) x 16 steps
    per block, 4 warps (32 outputs per thread), up to 4 blocks of steps per program while that leaves >= 1024
    programs; small shapes shrink the tile. Arguments other than None are kept (tuning)."""
    check_powers_of_two("causal_conv1d (triton)", block_d=block_d, block_l=block_l, num_warps=num_warps)
    _check_block_d(block_d, v)
    if chunks is not None and chunks < 1:
        raise ValueError(f"causal_conv1d (triton): chunks must be >= 1, got {chunks}")
    block_d = block_d or min(256, max(v, triton.next_power_of_2(dim)))
    block_l = block_l or min(max(1, triton.next_power_of_2(seqlen)), 4096 // block_d)
    groups = block_d // v
    num_warps = num_warps or max(1, min(4, block_l * groups // 32))
    if chunks is None:
        blocks = batch * triton.cdiv(dim, block_d) * triton.cdiv(seqlen, block_l)
        chunks = 1
        while chunks < 4 and blocks // (2 * chunks) >= 1024:
            chunks *= 2
    return block_l, groups, chunks, num_warps


def _check_args(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    if x.dim() != 3:
        raise ShapeError(f"causal_conv1d: x must be [B, D, L], got shape {tuple(x.shape)}")
    if weight.dim() != 2 or weight.shape[0] != x.shape[1]:
        raise ShapeError(f"causal_conv1d: weight must be [D={x.shape[1]}, W], got {tuple(weight.shape)}")
    if not 2 <= weight.shape[1] <= MAX_WIDTH:
        raise ShapeError(f"causal_conv1d: width must be in 2..{MAX_WIDTH}, got {weight.shape[1]}")
    if bias is not None and tuple(bias.shape) != (x.shape[1],):
        raise ShapeError(f"causal_conv1d: bias must be [D={x.shape[1]}], got {tuple(bias.shape)}")


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  activation: str | None = None, *, cl_design: str = "window", block_d: int | None = None,
                  block_l: int | None = None, chunks: int | None = None, unroll: int | None = None,
                  prefetch: bool | None = None, num_warps: int | None = None) -> torch.Tensor:
    """Depthwise causal conv1d: x [B, D, L], weight [D, W] (W in 2..4), bias [D] -> out [B, D, L].

    x is channel-first (x.stride(2) == 1) or channel-last (x.stride(1) == 1, a transposed [B, L, D]);
    any other layout is made contiguous first, as the official function does. out has x's dtype and
    layout. activation: None | "silu" | "swish".

    The keyword-only knobs tune the channel-last kernel (benchmarks/gpu/knob_sweep.py); channel-first
    ignores them. cl_design: "window" (default: each thread walks its steps with the last W-1 rows in
    registers) or "rows" (the previous kernel: W shifted row loads per tile). block_d: channels per
    program (both); block_l: steps per thread's walk (window) or per block (rows); num_warps (both);
    unroll: rows loaded per iteration and prefetch: load the next iteration's rows ahead (window only);
    chunks: blocks of steps per program (rows only).
    """
    silu = silu_flag(activation)
    _check_args(x, weight, bias)
    if cl_design not in ("window", "rows"):
        raise ValueError(f"causal_conv1d (triton): cl_design must be 'window' or 'rows', got {cl_design!r}")
    if cl_design == "window" and chunks is not None:
        raise ValueError("causal_conv1d (triton): chunks applies to cl_design='rows' only")
    if cl_design == "rows" and (unroll is not None or prefetch is not None):
        raise ValueError("causal_conv1d (triton): unroll and prefetch apply to cl_design='window' only")
    if x.stride(2) != 1 and x.stride(1) != 1:
        x = x.contiguous()
    batch, dim, seqlen = x.shape
    channel_last = x.stride(1) == 1 and x.stride(2) != 1
    if channel_last:
        out = torch.empty((batch, seqlen, dim), device=x.device, dtype=x.dtype).transpose(1, 2)
    else:
        out = torch.empty((batch, dim, seqlen), device=x.device, dtype=x.dtype)
    if out.numel() == 0:
        return out
    v = _vector(x)
    width = weight.shape[1]
    bias_arg = bias if bias is not None else weight  # never read: HAS_BIAS is constexpr
    flags = dict(WIDTH=width, HAS_BIAS=bias is not None, SILU=silu)
    if channel_last and cl_design == "window":
        groups, segments, seg_len, unroll, num_warps, prefetch = _cl_window_blocks(
            batch, dim, seqlen, v, block_d, block_l, num_warps, unroll, prefetch)
        grid = (triton.cdiv(seqlen, segments * seg_len), triton.cdiv(dim, groups * v), batch)
        _conv1d_fwd_cl_kernel[grid](
            x, weight, bias_arg, out, dim, seqlen, seg_len,
            x.stride(0), x.stride(2), weight.stride(0), weight.stride(1), out.stride(0), out.stride(2),
            **flags, EVEN_D=dim % v == 0, GD=groups, S=segments, V=v, UNROLL=unroll, PREFETCH=prefetch,
            num_warps=num_warps,
        )
    elif channel_last:
        block_l, groups, chunks, num_warps = _cl_rows_blocks(batch, dim, seqlen, v, block_d, block_l, chunks,
                                                             num_warps)
        grid = (triton.cdiv(seqlen, block_l * chunks), triton.cdiv(dim, groups * v), batch)
        _conv1d_fwd_cl_rows_kernel[grid](
            x, weight, bias_arg, out, dim, seqlen, chunks,
            x.stride(0), x.stride(2), weight.stride(0), weight.stride(1), out.stride(0), out.stride(2),
            **flags, EVEN_D=dim % v == 0, BLOCK_L=block_l, GD=groups, V=v, num_warps=num_warps,
        )
    else:
        block_d, groups, num_warps = _cf_blocks(dim, seqlen, v)
        grid = (triton.cdiv(seqlen, groups * v), triton.cdiv(dim, block_d), batch)
        _conv1d_fwd_cf_kernel[grid](
            x, weight, bias_arg, out, dim, seqlen,
            x.stride(0), x.stride(1), weight.stride(0), weight.stride(1), out.stride(0), out.stride(1),
            **flags, EVEN_L=seqlen % v == 0, BLOCK_D=block_d, G=groups, V=v, num_warps=num_warps,
        )
    return out
