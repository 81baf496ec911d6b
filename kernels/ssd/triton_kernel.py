"""Our SSD (Mamba-2 scan) in Triton: one fused pass over the sequence, the state carried in registers.

A program owns (batch b, head h, BLOCK_P of the head's P channels, one segment of the sequence) and walks
its segment in blocks of BLOCK_T steps. With a = δ·A and s its running sum inside the block (tl.cumsum),
each block is the SSD dual form on tensor cores, all in registers:
    W = (C Bᵀ) ∘ exp(s_i − s_j)·[i ≥ j] ∘ δ_j          [T, T]
    y = W x + exp(s_i)·(C hᵀ) + D·x,  then · silu(z)     [T, P]
    h ← exp(s_T)·h + (x ∘ δ·exp(s_T − s_j))ᵀ B           [P, N], fp32
DRAM sees x, dt, B, C, z once and out once; nothing else is written. BLOCK_T is ours, independent of
``chunk_size`` (the function is the same, only the evaluation order differs).

Sequence parallelism: when B·H·⌈P/BLOCK_P⌉ programs cannot fill the GPU (batch 1, 24-80 heads), the
sequence is cut into S segments, as many as fill two waves of program slots (two 4-warp programs per SM).
A first kernel computes each segment's own final state from zero and its
total decay Σa (it reads x, dt, B, not C or z, and skips the [T, T] work); the main kernel's program for
segment k starts from h_in(k), with h_in(0) = the initial state and h_in(j+1) = exp(Σa_j)·h_in(j) + h_j
(a short loop over L2-resident states).

v2 (this file; v1 is triton_kernel_v1.py): blocks of 32 steps and 4 warps instead of 64 and 8 (the loop is
issue-bound: 40% fewer instructions per step, no spills, two programs per SM), both state products
accumulate inside the MMA (tl.dot's acc), exp(s_i) folded into C, and one wave of segments.

Dot operands follow the official kernels: fp16/bf16 tiles on tensor cores with fp32 accumulation (W, the
weighted x and the state rounded to the input type before their products), fp32 inputs through tf32x3
(about fp32 accuracy). The CPU interpreter of Triton 3.9 multiplies bf16 tiles wrongly, so there the bf16
operands are rounded and then multiplied in fp32 (same rounding points).
"""
from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

from ..op import ShapeError
from . import MAX_DSTATE

# Shortest segment: ⌊L/8⌋ clamped to [128, 1024] steps. Long sequences keep 1024 (shorter segments re-read
# more of x and B than the parallelism is worth); short prompts, where a few dozen programs each walk the whole
# sequence, need the split most: on the H100 (knob_sweep, H24 N128) L1K took 107 µs whole, 34.4 in 128-step
# segments (official 30.4); L4K 155.7 whole, 92.3 in 512-step segments (official 75.3).
MIN_SEGMENT, MIN_SEGMENT_SHORT = 1024, 128


def _min_segment(seqlen: int) -> int:
    return max(MIN_SEGMENT_SHORT, min(MIN_SEGMENT, seqlen // 8))

# DOT codes (constexpr): how a tile product is formed.
DOT_TF32X3, DOT_FP16, DOT_BF16, DOT_BF16_EMULATED = 0, 1, 2, 3


@triton.jit
def _dot(a, b, acc, DOT: tl.constexpr):
    """acc + a @ b in fp32 (acc accumulates inside the MMA); operands rounded to the input type first."""
    if DOT == 1:
        acc = tl.dot(a.to(tl.float16), b.to(tl.float16), acc)
    elif DOT == 2:
        acc = tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16), acc)
    elif DOT == 3:  # interpreter: the same bf16 rounding, an fp32 product
        acc = tl.dot(a.to(tl.bfloat16).to(tl.float32), b.to(tl.bfloat16).to(tl.float32), acc,
                     input_precision="ieee")
    else:
        acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="tf32x3")
    return acc


@triton.jit
def _block_decay(dt_raw, t_ok, A, dt_bias, dt_min, dt_max,
                 HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, BLOCK_T: tl.constexpr):
    """δ [T] from the loaded dt (0 past the end: no decay, no input), s = cumsum(δ·A) [T] and its last value."""
    dt = dt_raw.to(tl.float32)
    if HAS_BIAS:
        dt += dt_bias
    if SOFTPLUS:
        # log1p(e^dt) as log(w)·u/(w−1) with w = 1 + u: exact to a few ulps for small δ, where log(1 + u)
        # would lose the digits of δ ≈ 1e-3 (Kahan's trick).
        u = tl.exp(dt)
        w = 1.0 + u
        dt = tl.where(dt <= 20.0, tl.where(w == 1.0, u, tl.log(w) * (u / (w - 1.0))), dt)
    dt = tl.minimum(tl.maximum(dt, dt_min), dt_max)
    dt = tl.where(t_ok, dt, 0.0)
    s = tl.cumsum(dt * A, axis=0)
    s_last = tl.sum(tl.where(tl.arange(0, BLOCK_T) == BLOCK_T - 1, s, 0.0), axis=0)
    return dt, s, s_last


@triton.jit(do_not_specialize=["seqlen", "segment_len"])
def _ssd_segment_state_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, dt_bias_ptr, seg_state_ptr, seg_decay_ptr,
    seqlen, nheads, headdim, dstate, heads_per_group, segment_len, num_segments,
    dt_min, dt_max, stride_A, stride_bias,
    stride_xb, stride_xl, stride_xh, stride_xp,
    stride_dtb, stride_dtl, stride_dth,
    stride_Bb, stride_Bl, stride_Bg, stride_Bn,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, DOT: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Segment k's own final state (from h = 0) -> seg_state [B, H, S, P, N] fp32, and Σa -> seg_decay [B, H, S]."""
    pid_bh = tl.program_id(0)
    pid_p = tl.program_id(1)
    seg = tl.program_id(2)
    b = (pid_bh // nheads).to(tl.int64)
    h = pid_bh % nheads
    g = h // heads_per_group
    p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    n = tl.arange(0, BLOCK_N)
    t_in = tl.arange(0, BLOCK_T)
    p_ok = p < headdim
    n_ok = n < dstate

    A = tl.load(A_ptr + h * stride_A).to(tl.float32)
    dt_bias = tl.load(dt_bias_ptr + h * stride_bias).to(tl.float32) if HAS_BIAS else 0.0
    x_base = x_ptr + b * stride_xb + h * stride_xh + p[None, :] * stride_xp
    dt_base = dt_ptr + b * stride_dtb + h * stride_dth
    B_base = B_ptr + b * stride_Bb + g * stride_Bg + n[None, :] * stride_Bn

    state = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
    total = tl.zeros((BLOCK_T,), dtype=tl.float32)  # Σa over the segment, summed at the end
    start = seg * segment_len
    for t0 in range(start, start + segment_len, BLOCK_T):  # segments before the last are full
        t = (t0 + t_in).to(tl.int64)
        t_ok = t < seqlen
        dt_raw = tl.load(dt_base + t * stride_dtl, mask=t_ok, other=0.0)
        x = tl.load(x_base + t[:, None] * stride_xl, mask=t_ok[:, None] & p_ok[None, :], other=0.0)
        Bt = tl.load(B_base + t[:, None] * stride_Bl, mask=t_ok[:, None] & n_ok[None, :], other=0.0)
        dt, s, s_last = _block_decay(dt_raw, t_ok, A, dt_bias, dt_min, dt_max, HAS_BIAS, SOFTPLUS, BLOCK_T)
        xw = x.to(tl.float32) * (dt * tl.exp(s_last - s))[:, None]
        state = _dot(tl.trans(xw), Bt, state * tl.exp(s_last), DOT)
        total += dt * A

    row = pid_bh.to(tl.int64) * num_segments + seg
    out = seg_state_ptr + row * headdim * dstate + p[:, None] * dstate + n[None, :]
    tl.store(out, state, mask=p_ok[:, None] & n_ok[None, :])
    tl.store(seg_decay_ptr + row, tl.sum(total, axis=0), mask=pid_p == 0)


@triton.jit(do_not_specialize=["seqlen", "segment_len"])
def _ssd_fwd_kernel(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, dt_bias_ptr, out_ptr,
    init_ptr, final_ptr, seg_state_ptr, seg_decay_ptr,
    seqlen, nheads, headdim, dstate, heads_per_group, segment_len, num_segments,
    dt_min, dt_max, stride_A, stride_bias,
    stride_xb, stride_xl, stride_xh, stride_xp,
    stride_dtb, stride_dtl, stride_dth,
    stride_Bb, stride_Bl, stride_Bg, stride_Bn,
    stride_Cb, stride_Cl, stride_Cg, stride_Cn,
    stride_Dh, stride_Dp,
    stride_zb, stride_zl, stride_zh, stride_zp,
    stride_ob, stride_ol, stride_oh, stride_op,
    stride_ib, stride_ih, stride_ip, stride_in,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_INIT: tl.constexpr, WRITE_FINAL: tl.constexpr, DOT: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    pid_p = tl.program_id(1)
    seg = tl.program_id(2)
    b = (pid_bh // nheads).to(tl.int64)
    h = pid_bh % nheads
    g = h // heads_per_group
    p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    n = tl.arange(0, BLOCK_N)
    t_in = tl.arange(0, BLOCK_T)
    p_ok = p < headdim
    n_ok = n < dstate
    pn_ok = p_ok[:, None] & n_ok[None, :]

    A = tl.load(A_ptr + h * stride_A).to(tl.float32)
    dt_bias = tl.load(dt_bias_ptr + h * stride_bias).to(tl.float32) if HAS_BIAS else 0.0
    if HAS_D:
        Dv = tl.load(D_ptr + h * stride_Dh + p * stride_Dp, mask=p_ok, other=0.0).to(tl.float32)
    x_base = x_ptr + b * stride_xb + h * stride_xh + p[None, :] * stride_xp
    z_base = z_ptr + b * stride_zb + h * stride_zh + p[None, :] * stride_zp
    out_base = out_ptr + b * stride_ob + h * stride_oh + p[None, :] * stride_op
    dt_base = dt_ptr + b * stride_dtb + h * stride_dth
    B_base = B_ptr + b * stride_Bb + g * stride_Bg + n[None, :] * stride_Bn
    C_base = C_ptr + b * stride_Cb + g * stride_Cg + n[None, :] * stride_Cn

    # The state entering this segment: the initial state carried through the earlier segments.
    if HAS_INIT:
        state = tl.load(init_ptr + b * stride_ib + h * stride_ih + p[:, None] * stride_ip + n[None, :] * stride_in,
                        mask=pn_ok, other=0.0).to(tl.float32)
    else:
        state = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
    row0 = pid_bh.to(tl.int64) * num_segments
    for k in range(0, seg):
        local = tl.load(seg_state_ptr + (row0 + k) * headdim * dstate + p[:, None] * dstate + n[None, :],
                        mask=pn_ok, other=0.0)
        state = state * tl.exp(tl.load(seg_decay_ptr + row0 + k)) + local

    causal = t_in[:, None] >= t_in[None, :]
    start = seg * segment_len
    for t0 in range(start, tl.minimum(start + segment_len, seqlen), BLOCK_T):
        t = (t0 + t_in).to(tl.int64)
        t_ok = t < seqlen
        xp_ok = t_ok[:, None] & p_ok[None, :]
        tn_ok = t_ok[:, None] & n_ok[None, :]
        dt_raw = tl.load(dt_base + t * stride_dtl, mask=t_ok, other=0.0)
        x = tl.load(x_base + t[:, None] * stride_xl, mask=xp_ok, other=0.0)
        Bt = tl.load(B_base + t[:, None] * stride_Bl, mask=tn_ok, other=0.0)
        Ct = tl.load(C_base + t[:, None] * stride_Cl, mask=tn_ok, other=0.0)
        dt, s, s_last = _block_decay(dt_raw, t_ok, A, dt_bias, dt_min, dt_max, HAS_BIAS, SOFTPLUS, BLOCK_T)

        # Inside the block: W = (C Bᵀ) ∘ decay ∘ δ_j (−inf above the diagonal, so exp gives 0, never inf).
        CB = _dot(Ct, tl.trans(Bt), tl.zeros((BLOCK_T, BLOCK_T), dtype=tl.float32), DOT)
        W = CB * tl.exp(tl.where(causal, s[:, None] - s[None, :], float("-inf"))) * dt[None, :]
        # From before the block: the entering state decayed to each step, exp(s_i) <= 1 folded into C; both
        # products accumulate into one fp32 tile inside the MMA.
        y = _dot(Ct.to(tl.float32) * tl.exp(s)[:, None], tl.trans(state),
                 tl.zeros((BLOCK_T, BLOCK_P), dtype=tl.float32), DOT)
        y = _dot(W, x, y, DOT)
        xf = x.to(tl.float32)
        xw = xf * (dt * tl.exp(s_last - s))[:, None]
        state = _dot(tl.trans(xw), Bt, state * tl.exp(s_last), DOT)

        if HAS_D:
            y += xf * Dv[None, :]
        if HAS_Z:
            zt = tl.load(z_base + t[:, None] * stride_zl, mask=xp_ok, other=0.0).to(tl.float32)
            y *= zt / (1.0 + tl.exp(-zt))
        tl.store(out_base + t[:, None] * stride_ol, y.to(out_ptr.dtype.element_ty), mask=xp_ok)

    if WRITE_FINAL:
        if seg == num_segments - 1:
            final = final_ptr + pid_bh.to(tl.int64) * headdim * dstate + p[:, None] * dstate + n[None, :]
            tl.store(final, state, mask=pn_ok)


# --------------------------------------------------------------------------------------------------
# Launcher
# --------------------------------------------------------------------------------------------------
CTAS_PER_SM = 2  # 4 warps at <= 255 registers: two programs share an SM (v1: one program of 8 warps)


def _config(headdim: int, dstate: int, seqlen: int, elem_bytes: int) -> tuple[int, int, int, int]:
    """(BLOCK_T, BLOCK_P, BLOCK_N, num_warps). tl.dot needs every dim >= 16. Blocks of T = 32 steps and 4
    warps: compiled for sm_90 (benchmarks/compile_sm90.py, ptxas), the loop body at N = 128 is 1234
    instructions per warp per 32 steps (154 warp-instructions per step, no spills) against v1's 2044 per 64
    steps at 8 warps (255 per step, with spills); the kernel is issue-bound at one or two programs per SM,
    so instructions per step are its time. The [T, T] work (C Bᵀ, the decay mask) also halves per step."""
    block_n = max(16, triton.next_power_of_2(dstate))
    block_p = max(16, min(64 if block_n <= 128 else 32, triton.next_power_of_2(headdim)))
    block_t = max(16, min(32, 16384 // (block_n * elem_bytes)))
    block_t = min(block_t, max(16, triton.next_power_of_2(seqlen)))
    return block_t, block_p, block_n, 4


def _sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1


def _segment_len(programs: int, seqlen: int, block_t: int, sm_count: int, ctas_per_sm: int = CTAS_PER_SM) -> int:
    """Steps per segment: the whole sequence when ``programs`` fill half the GPU's sm_count·ctas_per_sm
    program slots, else enough segments for TWO waves of slots, or one wave when two would cut segments
    shorter than _min_segment(seqlen); a multiple of BLOCK_T. Measured on the H100 at H48 L16K (knob_sweep,
    2026-11-23): 5 segments (one wave, 240 programs) 481 µs, 8 (384: a wave and a half) 491, 11 (528: two
    whole waves) 385, 16 (768) 380 — a half-empty last wave costs as much as a full one, and two waves
    balance the SMs better than one (v2 aimed at one wave; v1 at two programs per SM whatever the waves)."""
    slots = sm_count * ctas_per_sm
    shortest = _min_segment(seqlen)
    if programs >= slots // 2 or seqlen < 2 * shortest:
        return block_t * math.ceil(seqlen / block_t)
    most = seqlen // shortest
    segments = 2 * slots // programs
    if segments > most:
        segments = min(slots // programs, most)
    return block_t * math.ceil(math.ceil(seqlen / max(1, segments)) / block_t)


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _dot_code(dtype: torch.dtype, device: torch.device) -> int:
    """The bf16 emulation only under the CPU interpreter: benchmarks/compile_sm90.py (CPU tensors, no
    interpreter) must compile the bf16 tensor-core path that the GPU runs."""
    if dtype == torch.float16:
        return DOT_FP16
    if dtype == torch.bfloat16:
        return DOT_BF16_EMULATED if device.type != "cuda" and _interpreted() else DOT_BF16
    return DOT_TF32X3


def _validate(x, dt, A, B, C, D, z, dt_bias, initial_states) -> None:
    if x.dim() != 4:
        raise ShapeError(f"ssd: x must be [B, L, H, P], got shape {tuple(x.shape)}")
    batch, seqlen, nheads, headdim = x.shape
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ShapeError(f"ssd (triton): x must be fp32, fp16 or bf16, got {x.dtype}")
    if B.dim() != 4 or B.shape[:2] != (batch, seqlen):
        raise ShapeError(f"ssd: B must be [B={batch}, L={seqlen}, G, N], got {tuple(B.shape)}")
    groups, dstate = B.shape[2], B.shape[3]
    expect = {
        "dt": (dt, (batch, seqlen, nheads)), "A": (A, (nheads,)), "C": (C, (batch, seqlen, groups, dstate)),
        "z": (z, tuple(x.shape)), "dt_bias": (dt_bias, (nheads,)),
        "initial_states": (initial_states, (batch, nheads, headdim, dstate)),
    }
    for name, (t, shape) in expect.items():
        if t is not None and tuple(t.shape) != shape:
            raise ShapeError(f"ssd: {name} must be {list(shape)}, got {list(t.shape)}")
    if D is not None and tuple(D.shape) not in ((nheads,), (nheads, headdim)):
        raise ShapeError(f"ssd: D must be [H] = [{nheads}] or [H, P] = [{nheads}, {headdim}], got {list(D.shape)}")
    if nheads % groups:
        raise ShapeError(f"ssd: nheads {nheads} must be divisible by ngroups {groups}")
    if dstate > MAX_DSTATE:
        raise ShapeError(f"ssd (triton): dstate must be <= {MAX_DSTATE} (state in registers), got {dstate}")


def ssd(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, chunk_size: int,
        D: torch.Tensor | None = None, z: torch.Tensor | None = None, dt_bias: torch.Tensor | None = None,
        initial_states: torch.Tensor | None = None, dt_softplus: bool = False,
        dt_limit: tuple[float, float] = (0.0, float("inf")), return_final_states: bool = False, *,
        segment_len: int | None = None, config: tuple[int, int, int, int] | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """SSD with the official signature (``mamba_chunk_scan_combined`` without seq_idx / cu_seqlens).

    x, z: [B, L, H, P];  dt: [B, L, H];  A: [H];  B, C: [B, L, G, N];  D: [H] or [H, P];  dt_bias: [H];
    initial_states: [B, H, P, N]. Any strides. Returns out [B, L, H, P] (contiguous, x's dtype), and the
    final states [B, H, P, N] in fp32 when ``return_final_states``.
    segment_len: steps per sequence-parallel segment (rounded up to BLOCK_T); None picks it from the GPU.
    config: (BLOCK_T, BLOCK_P, BLOCK_N, num_warps) instead of ``_config``'s (tests; BLOCK_N >= N).
    """
    _validate(x, dt, A, B, C, D, z, dt_bias, initial_states)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ShapeError(f"ssd: chunk_size must be a positive int, got {chunk_size!r}")
    batch, seqlen, nheads, headdim = x.shape
    groups, dstate = B.shape[2], B.shape[3]
    out = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    final = torch.empty(batch, nheads, headdim, dstate, device=x.device, dtype=torch.float32) \
        if return_final_states else None
    if seqlen == 0:
        if final is not None:
            final.copy_(initial_states if initial_states is not None else torch.zeros_like(final))
        return (out, final) if return_final_states else out

    block_t, block_p, block_n, warps = config or _config(headdim, dstate, seqlen, x.element_size())
    p_blocks = triton.cdiv(headdim, block_p)
    if segment_len is None:
        segment_len = _segment_len(batch * nheads * p_blocks, seqlen, block_t, _sm_count(x.device))
    segment_len = block_t * math.ceil(max(1, segment_len) / block_t)
    segments = triton.cdiv(seqlen, segment_len)
    common = dict(HAS_BIAS=dt_bias is not None, SOFTPLUS=bool(dt_softplus), DOT=_dot_code(x.dtype, x.device),
                  BLOCK_T=block_t, BLOCK_P=block_p, BLOCK_N=block_n, num_warps=warps, num_stages=2)
    unused = A  # stands in for absent optional tensors; the kernels never dereference it
    bias = dt_bias if dt_bias is not None else unused
    sizes = (seqlen, nheads, headdim, dstate, nheads // groups, segment_len, segments,
             float(dt_limit[0]), float(dt_limit[1]), A.stride(0), bias.stride(0))

    seg_state, seg_decay = unused, unused
    if segments > 1:
        seg_state = torch.empty(batch, nheads, segments, headdim, dstate, device=x.device, dtype=torch.float32)
        seg_decay = torch.empty(batch, nheads, segments, device=x.device, dtype=torch.float32)
        _ssd_segment_state_kernel[(batch * nheads, p_blocks, segments - 1)](
            x, dt, A, B, bias, seg_state, seg_decay, *sizes,
            *x.stride(), *dt.stride(), *B.stride(), **common)

    d_strides = (0, 0) if D is None else ((D.stride(0), 0) if D.dim() == 1 else tuple(D.stride()))
    zz = z if z is not None else x
    init_strides = tuple(initial_states.stride()) if initial_states is not None else (0, 0, 0, 0)
    _ssd_fwd_kernel[(batch * nheads, p_blocks, segments)](
        x, dt, A, B, C, D if D is not None else unused, zz, bias, out,
        initial_states if initial_states is not None else unused, final if final is not None else unused,
        seg_state, seg_decay, *sizes,
        *x.stride(), *dt.stride(), *B.stride(), *C.stride(), *d_strides, *zz.stride(), *out.stride(),
        *init_strides,
        HAS_D=D is not None, HAS_Z=z is not None, HAS_INIT=initial_states is not None,
        WRITE_FINAL=return_final_states, **common)
    return (out, final) if return_final_states else out
