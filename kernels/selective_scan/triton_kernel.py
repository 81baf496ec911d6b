"""Our selective scan in Triton (v5; v4 with ``version=4``): chunks of steps scanned inside each thread's registers.

Design (see README.md, "Our Triton kernel", for v3 and why it missed):

* v3 walked the recurrence one step at a time on a [BLOCK_D, N] state tile and took per-step columns out
  of [BLOCK_D, CHUNK] tiles. Triton cannot be told where a tile lives, and Triton 3.6 (the one on the GPU
  machine) put the state and the per-step columns in different layouts: every step paid layout
  conversions through shared memory (46 bar.sync per 16 steps in the PTX) and a 16-lane shuffle
  reduction of y. The kernel ran at 12x its exp floor (2.1x the official kernel's time).
* v4 works on [BLOCK_D, BLOCK_N, CHUNK] tiles whose CHUNK axis is the contiguous one of every load
  (u, delta, z, B and C are all unit-stride along L), so the compiler keeps a thread's CHUNK steps in its
  own registers. The decays 2^(δ·A') and inputs (δu)·B are computed for the whole tile, then
  ``tl.associative_scan`` along that in-register axis is a sequential scan inside the thread (a1·a2,
  a2·x1 + x2: one FMUL and one FMA per step, no shuffles); the state entering the chunk is folded in with
  one more FMA and y_t = Σ_n h_t·C_t is a reduction over the tile's N axis. Every tile has the same
  layout: no conversions inside the loop. B and C are read straight from the caller's [B, G, N, L]
  tensors (no transposed copies).
* v5 (README.md, "v5") keeps v4's tiles and passes and trims the body: the chunk's steps one FMA each on the
  tiles' in-register phases instead of the associative scan, softplus by exp2 and a polynomial, silu by exp2,
  no masks on whole blocks (22.8 -> 14.3 SASS instructions per element over both passes; 12-14 % faster).
* Too few programs to fill the GPU (B·D/BLOCK_D = 12 at B1 D1536 N16) are made up for by splitting the
  sequence into segments as v3 does (``triton_kernel_v3``: state pass, carry pass, output pass); the
  state pass needs no output, so it reduces each chunk with the same combine instead of scanning it.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..phases import join4, join8, split4, split8
from .ref import optional_args, ours_output, scan_args
from .triton_kernel_v3 import (_entering_state, _num_segments, _num_sms, _scan_params,
                               _selective_scan_carry_kernel, _softplus, _store_segment_state)


@triton.jit
def _softplus_poly(x):
    """softplus(x) = max(x, 0) + log1p(e), e = exp(-|x|) in (0, 1], with log1p(e) = e·p(e), p a degree-8
    Chebyshev fit of log1p(e)/e on [0, 1] (relative error <= 2e-7 in fp32 arithmetic): one exp2 and nine FMAs
    where tl.log lowers to a ~20-instruction software logarithm and tl.exp carries a denormal fix-up.
    Above x ~ 17, e·p(e) vanishes against x: the official kernels' x > 20 cut-off, without a branch."""
    e = tl.exp2(-tl.abs(x) * 1.4426950408889634)
    p = 0.005253458 * e - 0.029588507
    p = p * e + 0.07836167
    p = p * e - 0.1367477
    p = p * e + 0.1911143
    p = p * e - 0.2484437
    p = p * e + 0.3331927
    p = p * e - 0.49999502
    p = p * e + 1.0
    return tl.maximum(x, 0.0) + e * p


@triton.jit
def _silu_gate(z):
    """silu(z) = z·sigmoid(z) with exp2 (no denormal fix-up; exp2 of a large argument is inf: z/inf = -0)."""
    return tl.fdiv(z, 1.0 + tl.exp2(-z * 1.4426950408889634))


# Shortest sequence segment. Each program's walk is latency-bound (~1 µs per chunk of steps), so short
# prompts need more, shorter segments: on the H100 (knob_sweep, D1536 N16) 256 → 64 took L1K from 152.5 to
# 70.8 µs and L4K from 200.6 to 172.5 µs; 32 was no better (77.2 / 172.3); L ≥ 16K already hits the program
# target first and does not change.
MIN_SEGMENT = 64

# Tile shapes (chunk of steps, tile elements per thread), from benchmarks/gpu/knob_sweep.py on the H100 (see
# README.md). At N <= 16 the 128 channels of a program sit on lanes and warps, 4 steps x 16 states per thread
# (no cross-warp reduction, no barrier in the loop). At larger N the warps split N (one shared-memory
# reduction per chunk), and v5 runs 2-step chunks faster than 4 (N64 L16K 1839 vs 2123 µs, L4K 496 vs 550,
# benchmarks/NOTES.md): a thread holds 32 states x 2 steps, so a channel's y is summed over 2 threads, not 4.
def default_tiling(dstate: int) -> tuple[int, int]:
    """(chunk, elements per thread of a [BLOCK_D, BLOCK_N, chunk] tile) for this dstate."""
    return (4, 64) if dstate <= 16 else (2, 64)


@triton.jit
def _combine(a1, x1, a2, x2):
    """Two affine steps h -> a·h + x, the first one first."""
    return a1 * a2, a2 * x1 + x2


@triton.jit
def _steps(decay, inject, h, KEEP: tl.constexpr):
    """The chunk's steps one after another on the tiles' in-register phases, h <- a_t·h + x_t: one FMA per
    element (the associative scan spends a multiply and an FMA per element, plus one FMA to fold in the
    entering state). Returns the states after every step, [BLOCK_D, BLOCK_N, CHUNK] (when KEEP), and the last."""
    if decay.shape[2] == 2:
        a0, a1 = tl.split(decay)
        x0, x1 = tl.split(inject)
        h0 = a0 * h + x0
        h = a1 * h0 + x1
        hs = tl.join(h0, h) if KEEP else decay
    elif decay.shape[2] == 4:
        a0, a1, a2, a3 = split4(decay)
        x0, x1, x2, x3 = split4(inject)
        h0 = a0 * h + x0
        h1 = a1 * h0 + x1
        h2 = a2 * h1 + x2
        h = a3 * h2 + x3
        hs = join4(h0, h1, h2, h) if KEEP else decay
    else:
        a0, a1, a2, a3, a4, a5, a6, a7 = split8(decay)
        x0, x1, x2, x3, x4, x5, x6, x7 = split8(inject)
        h0 = a0 * h + x0
        h1 = a1 * h0 + x1
        h2 = a2 * h1 + x2
        h3 = a3 * h2 + x3
        h4 = a4 * h3 + x4
        h5 = a5 * h4 + x5
        h6 = a6 * h5 + x6
        h = a7 * h6 + x7
        hs = join8(h0, h1, h2, h3, h4, h5, h6, h) if KEEP else decay
    return hs, h


@triton.jit
def _chunk(t0, h, dsum, seqlen, u_rows, dt_rows, z_rows, out_rows, b_rows, c_rows,
           stride_ul, stride_dl, stride_zl, stride_ol, stride_bl, stride_cl,
           mask_d3, dn_mask3, A3, Dv3, bias3, offs_t, u_pre, dt_pre, z_pre, b_pre, c_pre,
           HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
           STATE_PASS: tl.constexpr, MASK_T: tl.constexpr, PRELOADED: tl.constexpr, V5: tl.constexpr):
    """CHUNK steps from t0: returns the state after them and Σδ so far; writes the output unless STATE_PASS.
    [BLOCK_D, CHUNK] quantities are kept as [BLOCK_D, 1, CHUNK], in the layout of the 3-D tiles they meet.
    PRELOADED: 1 = u, δ (raw) and z of this chunk were loaded ahead (``_rows_ahead``) and come in as u_pre,
    dt_pre, z_pre (whole chunks only); 2 = B and C too (b_pre, c_pre). V5: the steps one by one on
    in-register phases, softplus by polynomial, silu by exp2; otherwise v4's associative scan along the chunk
    and tl.exp / tl.log."""
    t = (t0 + offs_t)[None, None, :]
    tp = t.to(tl.int64)  # offsets along L: a strided view (e.g. u sliced out of in_proj's output) passes 2^31
    if MASK_T:
        mask_dt = mask_d3 & (t < seqlen)
        mask_b = dn_mask3 & (t < seqlen)
    else:
        mask_dt = mask_d3
        mask_b = dn_mask3
    if PRELOADED >= 1:
        u = u_pre
        dt = dt_pre
    else:
        u = tl.load(u_rows + tp * stride_ul, mask=mask_dt, other=0.0).to(tl.float32)
        dt = tl.load(dt_rows + tp * stride_dl, mask=mask_dt, other=0.0).to(tl.float32)
    if HAS_BIAS:
        dt += bias3
    if SOFTPLUS:
        if V5:
            dt = _softplus_poly(dt)
        else:
            dt = _softplus(dt)
    # Steps past seqlen (last segment only, whose final state no pass reads) get u = 0 and B = C = 0:
    # their δ is finite and their outputs are masked off.
    if PRELOADED >= 2:
        b = b_pre
    else:
        b = tl.load(b_rows + tp * stride_bl, mask=mask_b, other=0.0).to(tl.float32)
    decay = tl.exp2(dt * A3)
    inject = (dt * u) * b
    if V5:
        hs, h = _steps(decay, inject, h, not STATE_PASS)
    else:
        # The scan is order-aware wherever the compiler puts the chunk's steps; tl.reduce is not (across lanes
        # it combines in butterfly order, fine only for commutative ops), so the last state is taken with a sum.
        a_cum, x_cum = tl.associative_scan((decay, inject), 2, _combine)
        hs = a_cum * h[:, :, None] + x_cum
        h = tl.sum(tl.where(offs_t[None, None, :] == offs_t.shape[0] - 1, hs, 0.0), axis=2)
    if STATE_PASS:
        dsum += tl.sum(dt, axis=2)
    else:
        if PRELOADED >= 2:
            c = c_pre
        else:
            c = tl.load(c_rows + tp * stride_cl, mask=mask_b, other=0.0).to(tl.float32)
        y = tl.sum(hs * c, axis=1, keep_dims=True)
        if HAS_D:
            y += Dv3 * u
        if HAS_Z:
            if PRELOADED >= 1:
                zt = z_pre
            else:
                zt = tl.load(z_rows + tp * stride_zl, mask=mask_dt, other=0.0).to(tl.float32)
            if V5:
                y *= _silu_gate(zt)
            else:
                y *= tl.fdiv(zt, 1.0 + tl.exp(-zt))
        tl.store(out_rows + tp * stride_ol, y.to(out_rows.dtype.element_ty), mask=mask_dt)
    return h, dsum


@triton.jit
def _rows_ahead(t0, u_rows, dt_rows, z_rows, b_rows, c_rows, stride_ul, stride_dl, stride_zl, stride_bl, stride_cl,
                mask_d3, dn_mask3, offs_t, HAS_Z: tl.constexpr, STATE_PASS: tl.constexpr, PREFETCH: tl.constexpr):
    """The whole chunk at t0, issued one chunk ahead of its use so that the loads are in flight while the
    previous chunk is scanned (Triton's pipeliner stages only loads that feed tl.dot, so this is done by hand,
    in registers): u, raw δ and z (fp32, [BLOCK_D, 1, CHUNK]); with PREFETCH 2 also B and C
    ([BLOCK_D, BLOCK_N, CHUNK]: every thread's copy of its group's B_t, C_t, the costly part in registers)."""
    tp = (t0 + offs_t)[None, None, :].to(tl.int64)
    u = tl.load(u_rows + tp * stride_ul, mask=mask_d3, other=0.0).to(tl.float32)
    dt = tl.load(dt_rows + tp * stride_dl, mask=mask_d3, other=0.0).to(tl.float32)
    zt = u
    if HAS_Z and not STATE_PASS:
        zt = tl.load(z_rows + tp * stride_zl, mask=mask_d3, other=0.0).to(tl.float32)
    b = u
    c = u
    if PREFETCH >= 2:
        b = tl.load(b_rows + tp * stride_bl, mask=dn_mask3, other=0.0)
        if not STATE_PASS:
            c = tl.load(c_rows + tp * stride_cl, mask=dn_mask3, other=0.0)
    return u, dt, zt, b, c


@triton.jit(do_not_specialize=["dim", "seqlen", "dim_per_group", "seg_chunks"])
def _selective_scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, state_ptr, dsum_ptr,
    dim, seqlen, dim_per_group, seg_chunks,
    stride_ub, stride_ud, stride_ul,
    stride_db, stride_dd, stride_dl,
    stride_ad, stride_an,
    stride_bb, stride_bg, stride_bn, stride_bl,
    stride_cb, stride_cg, stride_cn, stride_cl,
    stride_zb, stride_zd, stride_zl,
    stride_ob, stride_od, stride_ol,
    dstate,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    STATE_PASS: tl.constexpr,  # True: run from h = 0, store the final state and Σδ, write no output
    LOAD_STATE: tl.constexpr,  # output pass with segments: start from the state stored for segment - 1
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr,
    V5: tl.constexpr,  # v5: step-by-step recurrence on in-register phases, cheaper softplus/silu (else v4)
    EVEN: tl.constexpr,  # dim % BLOCK_D == 0 and dstate == BLOCK_N: no masks on any load or store
    PREFETCH: tl.constexpr,  # 1: load u, δ, z one whole chunk ahead, 2: B and C too (needs seqlen >= CHUNK)
):
    pid_d = tl.program_id(0)
    pid_s = tl.program_id(1)
    pid_b = tl.program_id(2).to(tl.int64)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    offs_t = tl.arange(0, CHUNK)
    if EVEN:  # constant masks: the compiler drops them (no zero-fill or predicate per vector load)
        mask_d = tl.full([BLOCK_D], 1, tl.int1)
        mask_n = tl.full([BLOCK_N], 1, tl.int1)
    else:
        mask_d = offs_d < dim
        mask_n = offs_n < dstate
    d64 = offs_d.to(tl.int64)
    dn_mask = mask_d[:, None] & mask_n[None, :]

    A2, Dv, bias = _scan_params(A_ptr, D_ptr, bias_ptr, offs_d, offs_n, mask_d, dn_mask, stride_ad, stride_an,
                                HAS_D, HAS_BIAS)
    A3 = A2[:, :, None]
    h, st_rows, st_stride = _entering_state(state_ptr, dim, offs_d, offs_n, mask_d, pid_s, pid_b, BLOCK_D, BLOCK_N,
                                            LOAD_STATE)

    # Every [BLOCK_D, CHUNK] quantity is kept as [BLOCK_D, 1, CHUNK]: then it has the layout of the 3-D tiles
    # it meets (a 2-D tile would get its own, and a conversion through shared memory per use).
    d3 = d64[:, None, None]
    u_rows = u_ptr + pid_b * stride_ub + d3 * stride_ud
    dt_rows = delta_ptr + pid_b * stride_db + d3 * stride_dd
    z_rows = z_ptr + pid_b * stride_zb + d3 * stride_zd
    out_rows = out_ptr + pid_b * stride_ob + d3 * stride_od
    g = d3 // dim_per_group
    b_rows = B_ptr + pid_b * stride_bb + g * stride_bg + offs_n.to(tl.int64)[None, :, None] * stride_bn
    c_rows = C_ptr + pid_b * stride_cb + g * stride_cg + offs_n.to(tl.int64)[None, :, None] * stride_cn
    mask_d3 = mask_d[:, None, None]
    dn_mask3 = dn_mask[:, :, None]
    Dv3 = Dv[:, None, None]
    bias3 = bias[:, None, None]

    # Whole chunks run unmasked along L (a mask that varies along L would split every vector load into
    # scalar ones); a ragged last chunk gets the masked copy.
    start = pid_s * seg_chunks * CHUNK  # a multiple of CHUNK the compiler can see: aligned vector loads
    end = tl.minimum(start + seg_chunks * CHUNK, seqlen)
    whole_end = start + (end - start) // CHUNK * CHUNK
    dsum = tl.zeros([BLOCK_D, 1], dtype=tl.float32)
    if PREFETCH > 0:
        # The chunk after the last whole one is clamped back onto it (a wasted, in-bounds load): every load
        # stays unmasked along L. A segment without a whole chunk reads its predecessor's last one, unused.
        last = whole_end - CHUNK
        u_n, dt_n, z_n, b_n, c_n = _rows_ahead(tl.maximum(tl.minimum(start, last), 0), u_rows, dt_rows, z_rows,
                                               b_rows, c_rows, stride_ul, stride_dl, stride_zl, stride_bl, stride_cl,
                                               mask_d3, dn_mask3, offs_t, HAS_Z, STATE_PASS, PREFETCH)
        for t0 in range(start, whole_end, CHUNK):
            u_c, dt_c, z_c, b_c, c_c = u_n, dt_n, z_n, b_n, c_n
            u_n, dt_n, z_n, b_n, c_n = _rows_ahead(tl.minimum(t0 + CHUNK, last), u_rows, dt_rows, z_rows,
                                                   b_rows, c_rows, stride_ul, stride_dl, stride_zl, stride_bl,
                                                   stride_cl, mask_d3, dn_mask3, offs_t, HAS_Z, STATE_PASS, PREFETCH)
            h, dsum = _chunk(t0, h, dsum, seqlen, u_rows, dt_rows, z_rows, out_rows, b_rows, c_rows,
                             stride_ul, stride_dl, stride_zl, stride_ol, stride_bl, stride_cl,
                             mask_d3, dn_mask3, A3, Dv3, bias3, offs_t, u_c, dt_c, z_c, b_c, c_c, HAS_D, HAS_Z,
                             HAS_BIAS, SOFTPLUS, STATE_PASS, False, PREFETCH, V5)
    else:
        for t0 in range(start, whole_end, CHUNK):
            h, dsum = _chunk(t0, h, dsum, seqlen, u_rows, dt_rows, z_rows, out_rows, b_rows, c_rows,
                             stride_ul, stride_dl, stride_zl, stride_ol, stride_bl, stride_cl,
                             mask_d3, dn_mask3, A3, Dv3, bias3, offs_t, dsum, dsum, dsum, dsum, dsum, HAS_D, HAS_Z,
                             HAS_BIAS, SOFTPLUS, STATE_PASS, False, 0, V5)
    if whole_end < end:
        h, dsum = _chunk(whole_end, h, dsum, seqlen, u_rows, dt_rows, z_rows, out_rows, b_rows, c_rows,
                         stride_ul, stride_dl, stride_zl, stride_ol, stride_bl, stride_cl,
                         mask_d3, dn_mask3, A3, Dv3, bias3, offs_t, dsum, dsum, dsum, dsum, dsum, HAS_D, HAS_Z,
                         HAS_BIAS, SOFTPLUS, STATE_PASS, True, 0, V5)

    if STATE_PASS:
        _store_segment_state(st_rows, st_stride, dsum_ptr, h, tl.reshape(dsum, [BLOCK_D]), dim, offs_d, offs_n,
                             mask_d, pid_s, pid_b)


def _block_sizes(dim: int, dstate: int, chunk: int, per_thread: int, num_warps: int) -> tuple[int, int]:
    """(BLOCK_D, BLOCK_N): a [BLOCK_D, BLOCK_N, chunk] tile holds ``per_thread`` elements per thread."""
    block_n = max(2, triton.next_power_of_2(dstate))
    block_d = max(1, 32 * num_warps * per_thread // (block_n * chunk))
    return min(block_d, max(2, triton.next_power_of_2(dim))), block_n


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                   delta_bias: torch.Tensor | None = None, delta_softplus: bool = False, *,
                   num_segments: int | None = None, target_programs: int | None = None,
                   min_segment: int = MIN_SEGMENT, chunk: int | None = None, per_thread: int | None = None,
                   num_warps: int = 4, prefetch: int | None = None, version: int = 5,
                   maxnreg: int | None = None) -> torch.Tensor:
    """Selective scan (Mamba-1 S6 forward) with the official signature.

    u, delta, z: [B, D, L] (fp32/fp16/bf16, any strides);  A: [D, N] real, N <= 256;
    B, C: [B, G, N, L] time-varying (or [B, N, L], G = 1), D % G == 0;  D, delta_bias: [D] (fp32).
    Returns out [B, D, L] (contiguous) in u's dtype: (Σ_n h·C + D·u)·silu(z).

    Tuning / test knobs (keyword only): ``num_segments`` forces the sequence split (1 = none);
    otherwise it is chosen so that the grid reaches ``target_programs`` (default 4 per SM) with segments of
    at least ``min_segment`` steps. ``chunk`` (a power of two, 2 to 32) is the number of steps per tile and
    ``per_thread`` the tile elements per thread (defaults: ``default_tiling``). ``prefetch`` loads u, δ and z
    one chunk ahead (1), or B and C too (2); default 1 at N > 16, where it measured 3-7 % faster on the H100,
    0 at N <= 16, where it was 5 % slower (benchmarks/NOTES.md). ``maxnreg``
    caps the registers per thread (ptxas's maxnreg: more programs per SM, spills if too low). ``version=4``
    runs v4's kernel body (an associative scan along the chunk, tl.exp / tl.log; chunk up to 32) instead of v5.
    """
    B, C = scan_args(u, delta, A, B, C, D, z, delta_bias)
    tiling = default_tiling(A.shape[1])
    chunk = tiling[0] if chunk is None else chunk
    per_thread = tiling[1] if per_thread is None else per_thread
    if per_thread < 1 or per_thread & (per_thread - 1):
        raise ValueError(f"selective_scan (triton_v5): per_thread must be a power of two, got {per_thread}")
    if prefetch is None:
        prefetch = 1 if A.shape[1] > 16 else 0
    if prefetch not in (0, 1, 2):
        raise ValueError(f"selective_scan (triton_v5): prefetch must be 0, 1 or 2, got {prefetch}")
    if version not in (4, 5):
        raise ValueError(f"selective_scan (triton_v5): version must be 4 or 5, got {version}")
    chunks = (2, 4, 8) if version == 5 else (2, 4, 8, 16, 32)
    if chunk not in chunks:
        raise ValueError(f"selective_scan (triton_v5): chunk must be one of {chunks}, got {chunk}")
    batch, dim, seqlen = u.shape
    groups, dstate = B.shape[1], A.shape[1]
    out = ours_output(u, A)
    if out.numel() == 0:
        return out
    block_d, block_n = _block_sizes(dim, dstate, chunk, per_thread, num_warps)
    # B and C once in fp32 (B·G·N·L, small next to the D-times rereads): saves a conversion and an unpack
    # per element, as every channel of a group reads the same B_t, C_t.
    B = B.to(torch.float32, memory_format=torch.contiguous_format)  # unit stride along L, as the design needs
    C = C.to(torch.float32, memory_format=torch.contiguous_format)
    d_blocks = triton.cdiv(dim, block_d)
    if num_segments is None:
        target = target_programs if target_programs is not None else 4 * _num_sms(u.device)
        nseg = _num_segments(seqlen, d_blocks * batch, chunk, target, min_segment)
    else:
        nseg = max(1, min(int(num_segments), triton.cdiv(seqlen, chunk)))
    seg_chunks = triton.cdiv(triton.cdiv(seqlen, nseg), chunk)
    nseg = triton.cdiv(seqlen, seg_chunks * chunk)

    zz, dd, bb = optional_args(u, A, z, D, delta_bias)
    if nseg > 1:
        state = torch.empty((nseg - 1, batch, dim, block_n), device=u.device, dtype=torch.float32)
        dsum = torch.empty((nseg - 1, batch, dim), device=u.device, dtype=torch.float32)
    else:
        state = dsum = out  # never touched
    common = dict(HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
                  SOFTPLUS=bool(delta_softplus), BLOCK_D=block_d, BLOCK_N=block_n, CHUNK=chunk,
                  PREFETCH=int(prefetch) if seqlen >= chunk else 0, V5=version == 5,
                  EVEN=version == 5 and dim % block_d == 0 and dstate == block_n, num_warps=num_warps)
    if maxnreg:  # None or 0: ptxas's choice
        common["maxnreg"] = int(maxnreg)
    args = (u, delta, A, B, C, dd, zz, bb, out, state, dsum, dim, seqlen, dim // groups, seg_chunks,
            *u.stride(), *delta.stride(), *A.stride(), *B.stride(), *C.stride(), *zz.stride(), *out.stride(),
            dstate)
    if nseg > 1:
        _selective_scan_fwd_kernel[(d_blocks, nseg - 1, batch)](*args, STATE_PASS=True, LOAD_STATE=False, **common)
        carry_d = max(1, min(triton.next_power_of_2(dim), 4096 // block_n))
        _selective_scan_carry_kernel[(triton.cdiv(dim, carry_d), batch)](
            A, state, dsum, dim, nseg, *A.stride(), dstate, BLOCK_D=carry_d, BLOCK_N=block_n, num_warps=4)
    _selective_scan_fwd_kernel[(d_blocks, nseg, batch)](*args, STATE_PASS=False, LOAD_STATE=nseg > 1, **common)
    return out


def selective_scan_v4(*args, **kwargs) -> torch.Tensor:
    """v4 as it was timed (``version=4``, 4-step chunks, no prefetch unless asked), kept for comparison."""
    kwargs.setdefault("chunk", 4)
    kwargs.setdefault("prefetch", 0)
    return selective_scan(*args, version=4, **kwargs)
