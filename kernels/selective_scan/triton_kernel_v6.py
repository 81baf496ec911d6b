"""Our selective scan in Triton (v6, the `triton` impl): one pass over the sequence, parallel in time.

The official kernel's design (one thread block per channel, a block-wide scan over time for each state n, the
state carried from chunk to chunk, y accumulated in registers over n), laid out so that Triton keeps it in
registers and shuffles (see README.md, "v6: single pass, parallel in time"):

* A program owns BLOCK_D = num_warps channels (default 1), one per warp, and walks the sequence in tiles of
  32·K steps: lane j of a warp owns the K consecutive steps t0 + j·K + [0, K) of its channel. Tiles are
  [LANES, BLOCK_D, 16-byte vector] (lanes along time, warps along channels, the vector in a thread's
  registers), split into K "phases" [LANES, BLOCK_D] (kernels/phases.py): register renames that let the
  kernel name each of a thread's steps at compile time.
* Per tile, the per-(d, t) work once: u, δ, z loaded once, softplus, δ·u, D·u, silu(z) gate, the store.
* Per state n (a runtime loop): decays a_k = 2^(δ_k·A'[d, n]) and inputs x_k = (δu)_k·B_k[n];
  pass 1 composes the thread's K steps from h = 0 (one FMA per step) and its total decay 2^(A'·Σδ) in one exp2;
  tl.associative_scan over the warp's lanes (shuffles; no shared memory, no barrier) gives every thread the
  state after its predecessor (tl.gather, one shuffle); pass 2 runs the K steps again from that state
  (one FMA per step) and accumulates y_k += h_k·C_k[n] (one FMA).
* The state of (d, n) at the end of a tile is carried to the next through a small fp32 scratch
  [B, D, 2, N] (lane 31 writes it, lane 0 of the next tile reads it, in turns between two slots; one barrier
  per tile): the only memory traffic besides the inputs and the output.
* bf16 B, C (and u, δ, z) are loaded as int32 pairs where every row starts at an even step: the two
  halves become fp32 with one integer op each (Triton's own conversion takes 1.5).
* ``prefetch`` states are in flight per loop iteration, each with its own buffers: state n + S's B, C, A' and
  entering state are loaded while states n .. n + S - 1 run, whose dependency chains (K FMAs, log2(LANES)
  shuffle rounds, K FMAs) interleave. S = 2 is the default: 1.2x faster than S = 1 on the H100 at issue 7's
  shapes (benchmarks/NOTES.md, v6).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..phases import join_phases, split_phases
from .ref import optional_args, ours_output, scan_args
from .triton_kernel import _combine, _silu_gate, _softplus_poly

# Registers per thread. At 168 an SM holds 12 warps (65536 / (168·32)): at B1 D1536 (one warp per channel) all
# 1536 warps are resident at once, one wave on 132 SMs. On the H100 (N16 L16K bf16, one state in flight, 4-warp
# programs; benchmarks/runs/h100-knobs-2026-11-23c/knobs_scan_v6.log): 402 µs at 168, 433 at 128, 800 unbounded
# (184 registers: fewer resident warps, a second wave); a helper's draft also read 420 at 160 and 428 at 144 (raw
# log not kept). The default (two states in flight) spills 48 B outside the loop over states at 168.
# 128 registers (16 warps per SM) spill more but pay off when they save a wave: per resident warp the rate is
# the same (H100, N16 L16K: D2048 585 -> 411 µs, 2 waves -> 1; D4096 914 -> 790, 3 -> 2; D5120 1205 -> 1097,
# 4 -> 3; D2048 N64 1909 -> 1354), but with as many waves the spills cost ~15 % (D3072, 2 waves either way:
# 618 -> 718). 144 registers (14 warps) were slower at all three.
MAXNREG = 168
MAXNREG_FEWER_WAVES = 128
REGISTERS_PER_SM = 65536
H100_SMS = 132  # off the GPU (CPU interpreter, offline compiles): the device the rule was measured on


def resident_warps(maxnreg: int, num_warps: int) -> int:
    """Warps an SM holds at this register cap, in whole programs of num_warps."""
    return REGISTERS_PER_SM // (32 * maxnreg) // num_warps * num_warps


def auto_maxnreg(warps: int, num_warps: int, device: torch.device) -> int:
    """MAXNREG, or MAXNREG_FEWER_WAVES when that launches the warps (num_warps per program) in fewer waves."""
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else H100_SMS
    waves = {r: -(-warps // (resident_warps(r, num_warps) * sms)) for r in (MAXNREG, MAXNREG_FEWER_WAVES)}
    return MAXNREG_FEWER_WAVES if waves[MAXNREG_FEWER_WAVES] < waves[MAXNREG] else MAXNREG


@triton.jit
def _vec_ptrs(rows, tk, stride_l, K: tl.constexpr, P: tl.constexpr, PAIRS: tl.constexpr):
    """Pointers to every thread's K steps tk + [0, K) of the rows, one [LANES, BD, P] tensor per 16-byte
    vector; with PAIRS (bf16, even offsets, unit stride) K/8 vectors of 4 int32 words of two steps each."""
    ptrs = ()
    if PAIRS:
        offs_q = tl.arange(0, 4)[None, None, :]
        rows32 = rows.to(tl.pointer_type(tl.int32), bitcast=True)
        for i in tl.static_range(K // 8):
            ptrs = ptrs + (rows32 + (tk // 2 + i * 4 + offs_q),)
    else:
        offs_p = tl.arange(0, P)[None, None, :]
        for i in tl.static_range(K // P):
            ptrs = ptrs + (rows + (tk + i * P + offs_p) * stride_l,)
    return ptrs


@triton.jit
def _load_vecs(ptrs, off, tk, seqlen, P: tl.constexpr, MASK_T: tl.constexpr):
    """The vectors at ptrs + off as stored (masked along the sequence in a ragged tile only: a mask that
    varies along L would split every vector load into scalar ones)."""
    raw = ()
    for i in tl.static_range(len(ptrs)):
        if MASK_T:
            t = tk + (i * P + tl.arange(0, P)[None, None, :])
            raw = raw + (tl.load(ptrs[i] + off, mask=t < seqlen, other=0.0),)
        else:
            raw = raw + (tl.load(ptrs[i] + off),)
    return raw


@triton.jit
def _to_phases(raw, K: tl.constexpr, P: tl.constexpr, PAIRS: tl.constexpr):
    """_load_vecs' vectors -> K fp32 phases. A bf16 pair in an int32 word: the low half is the earlier step
    (<< 16), the high half the later one (& 0xffff0000): one integer op per step."""
    ph = ()
    if PAIRS:
        for i in tl.static_range(K // 8):
            q = split_phases(raw[i], 4)
            for m in tl.static_range(4):
                ph = ph + ((q[m] << 16).to(tl.float32, bitcast=True),
                           (q[m] & -65536).to(tl.float32, bitcast=True))
    else:
        for i in tl.static_range(K // P):
            ph = ph + split_phases(raw[i].to(tl.float32), P)
    return ph


@triton.jit
def _phases_at(rows, tk, stride_l, seqlen, K: tl.constexpr, P: tl.constexpr, MASK_T: tl.constexpr,
               PAIRS: tl.constexpr):
    """Every thread's K steps tk + [0, K) of the rows as K fp32 phases [LANES, BD]."""
    ptrs = _vec_ptrs(rows, tk, stride_l, K, P, PAIRS)
    return _to_phases(_load_vecs(ptrs, 0, tk, seqlen, P, MASK_T), K, P, PAIRS)


@triton.jit
def _state(n, nx, y, dt, dtu, dsum, b_raw, c_raw, a_raw, h_prev, b_ptrs, c_ptrs, a_rows, carry_rd, carry_wr,
           sbn, scn, stride_an, first, prev_idx, mask_prev, mask_last, tk, seqlen,
           K: tl.constexpr, P_BC: tl.constexpr, MASK_T: tl.constexpr, PAIRS: tl.constexpr):
    """State n over the tile: y_k += h_k·C_k for each of the thread's K steps. b_raw, c_raw, a_raw, h_prev
    are state n's B, C (as loaded), A[d, n] and entering state (lane 0 only, 0 on the other lanes); each is
    replaced by state nx's as soon as state n's copy is dead, so that state nx's loads are in flight during
    the rest of state n (and whatever the caller runs before state nx)."""
    a_n = a_raw * 1.4426950408889634  # [1, BD]: A' = A·log2(e), so that each decay is one exp2 (ex2.approx)
    b = _to_phases(b_raw, K, P_BC, PAIRS)
    # pass 1: the thread's K steps composed from h = 0; their total decay 2^(A'·Σδ) is one exp2
    decay = ()
    inject = ()
    for k in tl.static_range(K):
        decay = decay + (tl.exp2(dt[k] * a_n),)
        inject = inject + (dtu[k] * b[k],)
    b_raw = _load_vecs(b_ptrs, nx * sbn, tk, seqlen, P_BC, MASK_T)
    a_raw = tl.load(a_rows + nx * stride_an)
    x_tot = inject[0]
    for k in tl.static_range(1, K):
        x_tot = decay[k] * x_tot + inject[k]
    a_tot = tl.exp2(dsum * a_n)
    x_tot = a_tot * h_prev + x_tot  # lane 0 starts from the state carried into the tile, the others from 0
    # across the warp: the inclusive scan of the lanes' maps (log2(LANES) shuffle rounds) is the state after
    # each lane; lane j starts from lane j - 1's. Order-aware on the GPU (tl.reduce across lanes is not).
    _, h_after = tl.associative_scan((a_tot, x_tot), 0, _combine)
    h = tl.where(first, h_prev, tl.gather(h_after, prev_idx, 0))
    tl.store(carry_wr + n, h_after, mask=mask_last)  # the tile's last lane: the state carried to the next tile
    h_prev = tl.load(carry_rd + nx, mask=mask_prev, other=0.0)
    # pass 2: the steps again, from the entering state
    c = _to_phases(c_raw, K, P_BC, PAIRS)
    ynew = ()
    for k in tl.static_range(K):
        h = decay[k] * h + inject[k]
        ynew = ynew + (y[k] + h * c[k],)
    c_raw = _load_vecs(c_ptrs, nx * scn, tk, seqlen, P_BC, MASK_T)
    return ynew, b_raw, c_raw, a_raw, h_prev


@triton.jit
def _tile(t0, seqlen, dstate, carry_rd, carry_wr, u_rows, dt_rows, z_rows, out_rows, b_rows, c_rows, a_rows,
          stride_ul, stride_dl, stride_zl, stride_ol, stride_bl, stride_cl, stride_bn, stride_cn, stride_an,
          Dv, bias, mask_r2, offs_j,
          HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
          MASK_T: tl.constexpr, K: tl.constexpr, LANES: tl.constexpr, P_U: tl.constexpr, P_BC: tl.constexpr,
          P_O: tl.constexpr, PAIRS_BC: tl.constexpr, PAIRS_U: tl.constexpr, PREFETCH: tl.constexpr):
    """LANES·K steps from t0 (MASK_T: a ragged last tile, steps past seqlen masked)."""
    tk = t0 + offs_j.to(tl.int64)[:, None, None] * K  # [LANES, 1, 1]: lane j's first step
    # per (d, t), once: δ = softplus(delta + bias), δ·u, y = D·u; Σδ over the thread's steps
    u = _phases_at(u_rows, tk, stride_ul, seqlen, K, P_U, MASK_T, PAIRS_U)
    draw = _phases_at(dt_rows, tk, stride_dl, seqlen, K, P_U, MASK_T, PAIRS_U)
    dt = ()
    dtu = ()
    y = ()
    for k in tl.static_range(K):
        d = draw[k]
        if HAS_BIAS:
            d = d + bias
        if SOFTPLUS:
            d = _softplus_poly(d)
        dt = dt + (d,)
        dtu = dtu + (d * u[k],)
        if HAS_D:
            y = y + (Dv * u[k],)
        else:
            y = y + (tl.zeros_like(d),)
    dsum = dt[0]
    for k in tl.static_range(1, K):
        dsum += dt[k]
    j2 = offs_j[:, None]
    first = j2 == 0
    zero_j = tl.zeros(mask_r2.shape, tl.int32) * j2  # [LANES, BD] zeros
    mask_prev = mask_r2 & first & ((zero_j + t0) > 0)  # the first tile starts from h = 0
    mask_last = mask_r2 & (j2 == LANES - 1)
    prev_idx = tl.maximum(j2 - 1, 0) + zero_j
    carry_rd = carry_rd + zero_j
    carry_wr = carry_wr + zero_j
    b_ptrs = _vec_ptrs(b_rows, tk, stride_bl, K, P_BC, PAIRS_BC)
    c_ptrs = _vec_ptrs(c_rows, tk, stride_cl, K, P_BC, PAIRS_BC)
    sbn = stride_bn // (2 if PAIRS_BC else 1)  # in int32 words with PAIRS_BC
    scn = stride_cn // (2 if PAIRS_BC else 1)
    # S = PREFETCH states in flight, each with its own buffers (B, C as loaded, A[d, n], entering state):
    # buffer s holds state n + s's, and state n + s issues state n + s + S's loads while it runs, so they are in
    # flight during the other S - 1 states (whose chains interleave with its own). Loads past the last state
    # reload the last one (in bounds, unused).
    bufs = ()
    for s in tl.static_range(PREFETCH):
        ns = tl.minimum(s, dstate - 1)
        bufs = bufs + ((_load_vecs(b_ptrs, ns * sbn, tk, seqlen, P_BC, MASK_T),
                        _load_vecs(c_ptrs, ns * scn, tk, seqlen, P_BC, MASK_T),
                        tl.load(a_rows + ns * stride_an), tl.load(carry_rd + ns, mask=mask_prev, other=0.0)),)
    whole = dstate // PREFETCH * PREFETCH
    for n in range(0, whole, PREFETCH):
        nxt = ()
        for s in tl.static_range(PREFETCH):
            b_raw, c_raw, a_raw, h_prev = bufs[s]
            y, b_raw, c_raw, a_raw, h_prev = _state(
                n + s, tl.minimum(n + s + PREFETCH, dstate - 1), y, dt, dtu, dsum, b_raw, c_raw, a_raw, h_prev,
                b_ptrs, c_ptrs, a_rows, carry_rd, carry_wr, sbn, scn, stride_an, first, prev_idx, mask_prev,
                mask_last, tk, seqlen, K, P_BC, MASK_T, PAIRS_BC)
            nxt = nxt + ((b_raw, c_raw, a_raw, h_prev),)
        bufs = nxt
    for s in tl.static_range(PREFETCH - 1):  # dstate % S last states: their loads are in buffers 0, 1, ...
        if whole + s < dstate:
            b_raw, c_raw, a_raw, h_prev = bufs[s]
            y, b_raw, c_raw, a_raw, h_prev = _state(
                whole + s, dstate - 1, y, dt, dtu, dsum, b_raw, c_raw, a_raw, h_prev, b_ptrs, c_ptrs, a_rows,
                carry_rd, carry_wr, sbn, scn, stride_an, first, prev_idx, mask_prev, mask_last, tk, seqlen,
                K, P_BC, MASK_T, PAIRS_BC)
    if HAS_Z:
        z = _phases_at(z_rows, tk, stride_zl, seqlen, K, P_U, MASK_T, PAIRS_U)
        yz = ()
        for k in tl.static_range(K):
            yz = yz + (y[k] * _silu_gate(z[k]),)
        y = yz
    offs_p = tl.arange(0, P_O)[None, None, :]
    mask_r3 = mask_r2[:, :, None]
    for i in tl.static_range(K // P_O):
        t = tk + (i * P_O + offs_p)
        v = join_phases(y, i * P_O, P_O).to(out_rows.dtype.element_ty)
        if MASK_T:
            tl.store(out_rows + t * stride_ol, v, mask=mask_r3 & (t < seqlen))
        else:
            tl.store(out_rows + t * stride_ol, v, mask=mask_r3)


@triton.jit(do_not_specialize=["dim", "seqlen", "dim_per_group", "dstate"])
def _selective_scan_v6_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, carry_ptr,
    dim, seqlen, dim_per_group, dstate,
    stride_ub, stride_ud, stride_ul,
    stride_db, stride_dd, stride_dl,
    stride_ad, stride_an,
    stride_bb, stride_bg, stride_bn, stride_bl,
    stride_cb, stride_cg, stride_cn, stride_cl,
    stride_zb, stride_zd, stride_zl,
    stride_ob, stride_od, stride_ol,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, LANES: tl.constexpr, K: tl.constexpr,
    P_U: tl.constexpr, P_BC: tl.constexpr, P_O: tl.constexpr, PAIRS_BC: tl.constexpr, PAIRS_U: tl.constexpr,
    PREFETCH: tl.constexpr,
):
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_j = tl.arange(0, LANES)
    mask_r2 = (offs_d < dim)[None, :]  # [1, BD]
    # Tiles are [LANES, BD, vector]: lanes along the sequence, channels on warps. Channels past dim read
    # channel dim - 1 (in bounds, so no load masks); only their stores are masked.
    d2 = tl.minimum(offs_d, dim - 1).to(tl.int64)[None, :]
    d3 = d2[:, :, None]
    u_rows = u_ptr + pid_b * stride_ub + d3 * stride_ud
    dt_rows = delta_ptr + pid_b * stride_db + d3 * stride_dd
    z_rows = z_ptr + pid_b * stride_zb + d3 * stride_zd
    out_rows = out_ptr + pid_b * stride_ob + d3 * stride_od
    g3 = d3 // dim_per_group
    b_rows = B_ptr + pid_b * stride_bb + g3 * stride_bg
    c_rows = C_ptr + pid_b * stride_cb + g3 * stride_cg
    a_rows = A_ptr + d2 * stride_ad
    Dv = tl.zeros([1, BLOCK_D], dtype=tl.float32)
    bias = tl.zeros([1, BLOCK_D], dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + d2)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d2)
    # The state carried from tile to tile, per (b, d, n): [B, D, 2, N] fp32, read and written in turns; one
    # barrier per tile orders lane LANES - 1's store before lane 0's load in the next tile.
    carry_rows = carry_ptr + (pid_b * dim + d2) * (2 * dstate)
    BLOCK_L: tl.constexpr = LANES * K
    whole_end = seqlen // BLOCK_L * BLOCK_L
    par = 0
    for t0 in range(0, whole_end, BLOCK_L):
        _tile(t0, seqlen, dstate, carry_rows + par * dstate, carry_rows + (1 - par) * dstate,
              u_rows, dt_rows, z_rows, out_rows, b_rows, c_rows, a_rows,
              stride_ul, stride_dl, stride_zl, stride_ol, stride_bl, stride_cl, stride_bn, stride_cn, stride_an,
              Dv, bias, mask_r2, offs_j, HAS_D, HAS_Z, HAS_BIAS, SOFTPLUS, False, K, LANES, P_U, P_BC, P_O,
              PAIRS_BC, PAIRS_U, PREFETCH)
        tl.debug_barrier()
        par = 1 - par
    if whole_end < seqlen:
        _tile(whole_end, seqlen, dstate, carry_rows + par * dstate, carry_rows + (1 - par) * dstate,
              u_rows, dt_rows, z_rows, out_rows, b_rows, c_rows, a_rows,
              stride_ul, stride_dl, stride_zl, stride_ol, stride_bl, stride_cl, stride_bn, stride_cn, stride_an,
              Dv, bias, mask_r2, offs_j, HAS_D, HAS_Z, HAS_BIAS, SOFTPLUS, True, K, LANES, P_U, P_BC, P_O,
              False, False, PREFETCH)


def _vector(t: torch.Tensor) -> int:
    """Elements of t in one 16-byte load (8 for 16-bit types, 4 for fp32)."""
    return 16 // t.element_size()


def _bf16_pairs(per_thread: int, *ts: torch.Tensor) -> bool:
    """Every row of these [..., L] tensors starts at an even step of bf16 on a 4-byte boundary (with unit
    stride along L): they can be read as int32 pairs."""
    return per_thread % 8 == 0 and all(
        t.dtype == torch.bfloat16 and t.stride(-1) == 1 and all(s % 2 == 0 for s in t.stride()[:-1])
        and t.data_ptr() % 4 == 0 for t in ts)


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                   delta_bias: torch.Tensor | None = None, delta_softplus: bool = False, *,
                   per_thread: int = 16, lanes: int = 32, num_warps: int = 1, prefetch: int = 2,
                   maxnreg: int | str | None = "auto") -> torch.Tensor:
    """Selective scan (Mamba-1 S6 forward) with the official signature, in one pass.

    u, delta, z: [B, D, L] (fp32/fp16/bf16, any strides);  A: [D, N] real, N <= 256;
    B, C: [B, G, N, L] time-varying (or [B, N, L], G = 1), D % G == 0;  D, delta_bias: [D] (fp32).
    Returns out [B, D, L] (contiguous) in u's dtype: (Σ_n h·C + D·u)·silu(z).

    Tuning knobs (keyword only): ``per_thread`` steps per thread (8, 16 or 32; a tile is lanes·per_thread
    steps), ``lanes`` threads along the sequence per channel (8, 16 or 32: 32 / lanes channels per warp),
    ``num_warps`` (channels per program = num_warps·32 / lanes), ``prefetch`` (states in flight per
    iteration, 1, 2 or 4, each loading the state S ahead), ``maxnreg`` (registers per thread for ptxas;
    "auto": 168, or 128 when that takes fewer waves of warps; None or 0: ptxas's own choice).
    """
    B, C = scan_args(u, delta, A, B, C, D, z, delta_bias)
    if per_thread not in (8, 16, 32):
        raise ValueError(f"selective_scan (triton): per_thread must be 8, 16 or 32, got {per_thread}")
    if lanes not in (8, 16, 32):
        raise ValueError(f"selective_scan (triton): lanes must be 8, 16 or 32, got {lanes}")
    if prefetch not in (1, 2, 4):
        raise ValueError(f"selective_scan (triton): prefetch must be 1, 2 or 4, got {prefetch}")
    batch, dim, seqlen = u.shape
    groups, dstate = B.shape[1], A.shape[1]
    out = ours_output(u, A)
    if out.numel() == 0:
        return out
    zz, dd, bb = optional_args(u, A, z, D, delta_bias)
    carry = torch.empty((batch, dim, 2, dstate), device=u.device, dtype=torch.float32)
    block_d = num_warps * 32 // lanes
    if maxnreg == "auto":
        maxnreg = auto_maxnreg(batch * triton.cdiv(dim, block_d) * num_warps, num_warps, u.device)
    options = {"maxnreg": maxnreg} if maxnreg else {}
    _selective_scan_v6_kernel[(triton.cdiv(dim, block_d), batch)](
        u, delta, A, B, C, dd, zz, bb, out, carry, dim, seqlen, dim // groups, dstate,
        *u.stride(), *delta.stride(), *A.stride(), *B.stride(), *C.stride(), *zz.stride(), *out.stride(),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus),
        BLOCK_D=block_d, LANES=lanes, K=per_thread,
        P_U=min(_vector(u), _vector(delta), _vector(zz)), P_BC=min(_vector(B), _vector(C)), P_O=_vector(out),
        PAIRS_BC=_bf16_pairs(per_thread, B, C), PAIRS_U=_bf16_pairs(per_thread, u, delta, zz),
        PREFETCH=int(prefetch), num_warps=num_warps, **options)
    return out
