"""Our selective scan in Triton (v3): a sequential recurrence per thread, the sequence split into segments.

Design (see README.md, "Our Triton kernel"):

* Each program owns (BLOCK_D channels, one segment of the sequence, one batch element). A channel's state
  row h[N] lives in the registers of VEC-wide groups of lanes (8 states per lane for 16-bit inputs, 4 for
  fp32), and the program walks its segment one step at a time: per (d, n) and step one exp2, two multiplies
  and two FMAs (a = 2^(δ·A'), h = a·h + (δu)·B_t, y += h·C_t), the fewest a scan can do; no associative
  scan, so no combine products and no shuffles except the short reduction of y over a channel's lanes.
* u, delta and z come in chunks of CHUNK steps as [BLOCK_D, CHUNK] tiles (each thread reads contiguous
  steps of one channel), softplus, the bias and δ·u are computed on the tile, and the per-step columns
  are taken apart with a reshape/split tree (no data movement when a thread holds the whole row); the
  outputs are joined back into a [BLOCK_D, CHUNK] tile for D·u, silu(z) and a coalesced store.
* B and C are first transposed (one small copy each, [B, G, L, N_pad], zero padded along N and L) so that
  B_t, C_t is one contiguous vector per step, read once per step by every thread (the same address across
  the channels of a group: a broadcast from L1).
* batch·dim/BLOCK_D programs cannot fill 132 SMs (24 at B1 D1536 N16), so the sequence is split into
  ``nseg`` segments: pass 1 runs every segment but the last from h = 0 and stores its final state and Σδ;
  a small pass folds those into the state entering each segment (h ← 2^(A'·Σδ)·h + h_seg); pass 2 reruns
  each segment from its true entering state and writes the output. The split costs a second exp per
  element on the split part; it is used only when one segment per channel block would leave SMs idle.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .ref import optional_args, ours_output, scan_args

LOG2E = 1.4426950408889634
NUM_SMS_DEFAULT = 132  # the H100 SXM; used when no GPU is visible (CPU interpreter, compile checks)


@triton.jit
def _softplus(x):
    """log1p(exp(x)) for x <= 20, x above (the official kernels' threshold), with Goldberg's log1p."""
    e = tl.exp(tl.minimum(x, 20.0))
    w = 1.0 + e
    log1p = tl.where(w == 1.0, e, tl.log(w) * tl.fdiv(e, w - 1.0))  # approximate division: ~1 ulp
    return tl.where(x <= 20.0, log1p, x)


# ---------------------------------------------------------------------------------- column split / join
# x: [R, 2^k] -> its 2^k columns [R] in natural order. reshape [R, n] -> [R, n/2, 2] and split gives the
# even and the odd columns, each again in natural order, so the halves recurse.
@triton.jit
def _cols2(x):
    return tl.split(x)


@triton.jit
def _cols4(x, R: tl.constexpr):
    e, o = tl.split(tl.reshape(x, [R, 2, 2]))
    c0, c2 = tl.split(e)
    c1, c3 = tl.split(o)
    return c0, c1, c2, c3


@triton.jit
def _cols8(x, R: tl.constexpr):
    e, o = tl.split(tl.reshape(x, [R, 4, 2]))
    c0, c2, c4, c6 = _cols4(e, R)
    c1, c3, c5, c7 = _cols4(o, R)
    return c0, c1, c2, c3, c4, c5, c6, c7


@triton.jit
def _join4(c0, c1, c2, c3, R: tl.constexpr):
    e = tl.reshape(tl.join(c0, c2), [R, 2])
    o = tl.reshape(tl.join(c1, c3), [R, 2])
    return tl.reshape(tl.join(e, o), [R, 4])


@triton.jit
def _join8(c0, c1, c2, c3, c4, c5, c6, c7, R: tl.constexpr):
    e = _join4(c0, c2, c4, c6, R)
    o = _join4(c1, c3, c5, c7, R)
    return tl.reshape(tl.join(e, o), [R, 8])


# ---------------------------------------------------------------------------------- one step
@triton.jit
def _step(h, A2, dt, dtu, b_ptrs, c_ptrs, WITH_Y: tl.constexpr):
    """h [BD, BN] <- 2^(δ·A')·h + (δu)·B_t; returns (h, y_t = Σ_n h·C_t) (y_t = dt when not WITH_Y)."""
    b = tl.load(b_ptrs).to(tl.float32)
    h = tl.exp2(dt[:, None] * A2) * h + dtu[:, None] * b
    if WITH_Y:
        c = tl.load(c_ptrs).to(tl.float32)
        y = tl.sum(h * c, axis=1)
    else:
        y = dt
    return h, y


@triton.jit
def _steps8(h, A2, dt8, dtu8, b_ptrs, c_ptrs, BD: tl.constexpr, BN: tl.constexpr, WITH_Y: tl.constexpr):
    """Eight steps; dt8, dtu8 [BD, 8]; b_ptrs/c_ptrs point at the first step's rows (step stride BN)."""
    d0, d1, d2, d3, d4, d5, d6, d7 = _cols8(dt8, BD)
    v0, v1, v2, v3, v4, v5, v6, v7 = _cols8(dtu8, BD)
    h, y0 = _step(h, A2, d0, v0, b_ptrs, c_ptrs, WITH_Y)
    h, y1 = _step(h, A2, d1, v1, b_ptrs + BN, c_ptrs + BN, WITH_Y)
    h, y2 = _step(h, A2, d2, v2, b_ptrs + 2 * BN, c_ptrs + 2 * BN, WITH_Y)
    h, y3 = _step(h, A2, d3, v3, b_ptrs + 3 * BN, c_ptrs + 3 * BN, WITH_Y)
    h, y4 = _step(h, A2, d4, v4, b_ptrs + 4 * BN, c_ptrs + 4 * BN, WITH_Y)
    h, y5 = _step(h, A2, d5, v5, b_ptrs + 5 * BN, c_ptrs + 5 * BN, WITH_Y)
    h, y6 = _step(h, A2, d6, v6, b_ptrs + 6 * BN, c_ptrs + 6 * BN, WITH_Y)
    h, y7 = _step(h, A2, d7, v7, b_ptrs + 7 * BN, c_ptrs + 7 * BN, WITH_Y)
    if WITH_Y:
        y8 = _join8(y0, y1, y2, y3, y4, y5, y6, y7, BD)
    else:
        y8 = dt8
    return h, y8


# ---------------------------------------------------------------------------------- shared by v3 and v4
@triton.jit
def _scan_params(A_ptr, D_ptr, bias_ptr, offs_d, offs_n, mask_d, dn_mask, stride_ad, stride_an,
                 HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr):
    """A [BLOCK_D, BLOCK_N] pre-scaled by log2(e), so that each decay is one exp2 (padded states: A = 0 and
    B = C = 0, so h stays 0); D and delta_bias [BLOCK_D] (zeros when absent)."""
    d64 = offs_d.to(tl.int64)
    A2 = tl.load(A_ptr + d64[:, None] * stride_ad + offs_n[None, :] * stride_an, mask=dn_mask,
                 other=0.0).to(tl.float32) * 1.4426950408889634
    Dv = tl.zeros(offs_d.shape, dtype=tl.float32)
    bias = tl.zeros(offs_d.shape, dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    return A2, Dv, bias


@triton.jit
def _entering_state(state_ptr, dim, offs_d, offs_n, mask_d, pid_s, pid_b, BLOCK_D: tl.constexpr,
                    BLOCK_N: tl.constexpr, LOAD_STATE: tl.constexpr):
    """The state entering this segment (h = 0, or slot pid_s − 1 of the scratch the carry pass filled), and
    where this program's rows of the scratch are: [nseg, B, dim, BLOCK_N] fp32 states."""
    st_rows = state_ptr + (pid_b * dim + offs_d.to(tl.int64)) * BLOCK_N
    st_stride = tl.num_programs(2).to(tl.int64) * dim * BLOCK_N
    if LOAD_STATE:
        prev = tl.maximum(pid_s - 1, 0)
        mask_s = mask_d & ((offs_d * 0 + pid_s) > 0)  # segment 0 starts from h = 0
        h = tl.load(st_rows[:, None] + prev * st_stride + offs_n[None, :],
                    mask=mask_s[:, None] & (offs_n < BLOCK_N)[None, :], other=0.0)
    else:
        h = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    return h, st_rows, st_stride


@triton.jit
def _store_segment_state(st_rows, st_stride, dsum_ptr, h, dsum, dim, offs_d, offs_n, mask_d, pid_s, pid_b):
    """State pass: this segment's final state (from h = 0) and its Σδ, for the carry pass."""
    tl.store(st_rows[:, None] + pid_s * st_stride + offs_n[None, :], h, mask=mask_d[:, None])
    ds_rows = dsum_ptr + (pid_s * tl.num_programs(2).to(tl.int64) + pid_b) * dim + offs_d.to(tl.int64)
    tl.store(ds_rows, dsum, mask=mask_d)


# ---------------------------------------------------------------------------------- the scan kernel
# Sizes are not specialized (== 1, divisible by 16): that would only multiply compiled variants across a
# grid of lengths; strides still are (a unit stride along L lets loads vectorize).
@triton.jit(do_not_specialize=["dim", "seqlen", "dim_per_group", "seg_len", "nseg"])
def _selective_scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, Bt_ptr, Ct_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, state_ptr, dsum_ptr,
    dim, seqlen, dim_per_group, seg_len, nseg,
    stride_ub, stride_ud, stride_ul,
    stride_db, stride_dd, stride_dl,
    stride_ad, stride_an,
    stride_btb, stride_btg,  # Bt/Ct: [B, G, L_pad, BLOCK_N] contiguous, same strides
    stride_zb, stride_zd, stride_zl,
    stride_ob, stride_od, stride_ol,
    dstate,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    STATE_PASS: tl.constexpr,  # True: run from h = 0, store the final state and Σδ, write no output
    LOAD_STATE: tl.constexpr,  # output pass with segments: start from the state stored for segment - 1
    WITH_Y: tl.constexpr,  # = not STATE_PASS
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr,
):
    pid_d = tl.program_id(0)
    pid_s = tl.program_id(1)
    pid_b = tl.program_id(2).to(tl.int64)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    offs_t = tl.arange(0, CHUNK)
    mask_d = offs_d < dim
    mask_n = offs_n < dstate
    d64 = offs_d.to(tl.int64)
    dn_mask = mask_d[:, None] & mask_n[None, :]

    A2, Dv, bias = _scan_params(A_ptr, D_ptr, bias_ptr, offs_d, offs_n, mask_d, dn_mask, stride_ad, stride_an,
                                HAS_D, HAS_BIAS)
    h, st_rows, st_stride = _entering_state(state_ptr, dim, offs_d, offs_n, mask_d, pid_s, pid_b, BLOCK_D, BLOCK_N,
                                            LOAD_STATE)

    u_rows = u_ptr + pid_b * stride_ub + d64 * stride_ud
    dt_rows = delta_ptr + pid_b * stride_db + d64 * stride_dd
    z_rows = z_ptr + pid_b * stride_zb + d64 * stride_zd
    out_rows = out_ptr + pid_b * stride_ob + d64 * stride_od
    g = (offs_d // dim_per_group).to(tl.int64)
    bt_rows = Bt_ptr + pid_b * stride_btb + g[:, None] * stride_btg + offs_n[None, :]
    ct_rows = Ct_ptr + pid_b * stride_btb + g[:, None] * stride_btg + offs_n[None, :]

    start = pid_s * seg_len
    end = tl.minimum(start + seg_len, seqlen)
    dsum = tl.zeros([BLOCK_D], dtype=tl.float32)
    for t0 in range(start, end, CHUNK):
        t = t0 + offs_t
        mask_dt = mask_d[:, None] & (t < seqlen)[None, :]
        u = tl.load(u_rows[:, None] + t[None, :].to(tl.int64) * stride_ul, mask=mask_dt, other=0.0).to(tl.float32)
        dt = tl.load(dt_rows[:, None] + t[None, :].to(tl.int64) * stride_dl, mask=mask_dt, other=0.0).to(tl.float32)
        if HAS_BIAS:
            dt += bias[:, None]
        if SOFTPLUS:
            dt = _softplus(dt)
        # Steps past seqlen (only in the last segment, whose final state no pass reads) get u = 0 and
        # B_t = C_t = 0; their δ is finite, and their outputs are masked off.
        dtu = dt * u
        if STATE_PASS:
            dsum += tl.sum(dt, axis=1)
        b_ptrs = bt_rows + t0 * BLOCK_N
        c_ptrs = ct_rows + t0 * BLOCK_N
        if CHUNK == 8:
            h, y = _steps8(h, A2, dt, dtu, b_ptrs, c_ptrs, BLOCK_D, BLOCK_N, WITH_Y)
        else:  # CHUNK == 16: two halves of eight steps
            dt_e, dt_o = tl.split(tl.reshape(dt, [BLOCK_D, 2, 8]).permute(0, 2, 1))
            du_e, du_o = tl.split(tl.reshape(dtu, [BLOCK_D, 2, 8]).permute(0, 2, 1))
            h, y_e = _steps8(h, A2, dt_e, du_e, b_ptrs, c_ptrs, BLOCK_D, BLOCK_N, WITH_Y)
            h, y_o = _steps8(h, A2, dt_o, du_o, b_ptrs + 8 * BLOCK_N, c_ptrs + 8 * BLOCK_N, BLOCK_D, BLOCK_N,
                             WITH_Y)
            y = tl.reshape(tl.join(y_e, y_o).permute(0, 2, 1), [BLOCK_D, 16])
        if not STATE_PASS:
            if HAS_D:
                y += Dv[:, None] * u
            if HAS_Z:
                zt = tl.load(z_rows[:, None] + t[None, :].to(tl.int64) * stride_zl, mask=mask_dt, other=0.0).to(tl.float32)
                y *= tl.fdiv(zt, 1.0 + tl.exp(-zt))
            tl.store(out_rows[:, None] + t[None, :].to(tl.int64) * stride_ol, y.to(out_ptr.dtype.element_ty), mask=mask_dt)

    if STATE_PASS:
        _store_segment_state(st_rows, st_stride, dsum_ptr, h, dsum, dim, offs_d, offs_n, mask_d, pid_s, pid_b)


@triton.jit(do_not_specialize=["dim", "nseg"])
def _selective_scan_carry_kernel(A_ptr, state_ptr, dsum_ptr, dim, nseg, stride_ad, stride_an, dstate,
                                 BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """Segments' final states (from h = 0) -> the state after each segment: h ← 2^(A'·Σδ_s)·h + h_s,
    in place, for s = 0 … nseg − 2 (the output pass of segment s + 1 starts from slot s)."""
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    mask_d = offs_d < dim
    d64 = offs_d.to(tl.int64)
    A2 = tl.load(A_ptr + d64[:, None] * stride_ad + offs_n[None, :] * stride_an,
                 mask=mask_d[:, None] & (offs_n < dstate)[None, :], other=0.0).to(tl.float32) * 1.4426950408889634
    batch = tl.num_programs(1).to(tl.int64)
    st = state_ptr + (pid_b * dim + d64[:, None]) * BLOCK_N + offs_n[None, :]
    ds = dsum_ptr + pid_b * dim + d64
    h = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    for s in range(0, nseg - 1):
        off = s * batch * dim
        hs = tl.load(st + off * BLOCK_N, mask=mask_d[:, None], other=0.0)
        dsum = tl.load(ds + off, mask=mask_d, other=0.0)
        h = tl.exp2(dsum[:, None] * A2) * h + hs
        tl.store(st + off * BLOCK_N, h, mask=mask_d[:, None])


def _block_sizes(dim: int, dstate: int, elt_bytes: int, num_warps: int = 4) -> tuple[int, int]:
    """(BLOCK_D, BLOCK_N): a thread holds one 16-byte vector of B_t (8 states at 16 bits, 4 at fp32), a
    channel's row spans BLOCK_N / VEC lanes, and the program's 32·num_warps threads cover BLOCK_D channels."""
    block_n = max(2, triton.next_power_of_2(dstate))
    vec = min(block_n, 16 // elt_bytes)
    block_d = max(1, 32 * num_warps * vec // block_n)
    block_d = min(block_d, max(2, triton.next_power_of_2(dim)))
    return block_d, block_n


def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return NUM_SMS_DEFAULT


def _num_segments(seqlen: int, programs: int, chunk: int, target_programs: int, min_segment: int) -> int:
    """Split the sequence only when the channel blocks alone leave SMs idle: as many segments as bring the
    grid to target_programs, each at least min_segment steps (a whole number of chunks)."""
    if programs >= target_programs:
        return 1
    want = triton.cdiv(target_programs, programs)
    most = max(1, seqlen // max(min_segment, chunk))
    return max(1, min(want, most))


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                   delta_bias: torch.Tensor | None = None, delta_softplus: bool = False, *,
                   num_segments: int | None = None, target_programs: int | None = None,
                   min_segment: int = 256, chunk: int = 16, num_warps: int = 4) -> torch.Tensor:
    """Selective scan (Mamba-1 S6 forward) with the official signature.

    u, delta, z: [B, D, L] (fp32/fp16/bf16, any strides);  A: [D, N] real, N <= 256;
    B, C: [B, G, N, L] time-varying (or [B, N, L], G = 1), D % G == 0;  D, delta_bias: [D] (fp32).
    Returns out [B, D, L] (contiguous) in u's dtype: (Σ_n h·C + D·u)·silu(z).

    Tuning / test knobs (keyword only): ``num_segments`` forces the sequence split (1 = none);
    otherwise it is chosen so that the grid reaches ``target_programs`` (default 4 per SM) with segments of
    at least ``min_segment`` steps. ``chunk`` (8 or 16) is the number of steps per loaded tile.
    """
    B, C = scan_args(u, delta, A, B, C, D, z, delta_bias)
    if chunk not in (8, 16):
        raise ValueError(f"selective_scan (triton_v3): chunk must be 8 or 16, got {chunk}")
    batch, dim, seqlen = u.shape
    groups, dstate = B.shape[1], A.shape[1]
    out = ours_output(u, A)
    if out.numel() == 0:
        return out
    block_d, block_n = _block_sizes(dim, dstate, u.element_size(), num_warps)
    d_blocks = triton.cdiv(dim, block_d)
    if num_segments is None:
        target = target_programs if target_programs is not None else 4 * _num_sms(u.device)
        nseg = _num_segments(seqlen, d_blocks * batch, chunk, target, min_segment)
    else:
        nseg = max(1, min(int(num_segments), triton.cdiv(seqlen, chunk)))
    seg_len = triton.cdiv(triton.cdiv(seqlen, nseg), chunk) * chunk
    nseg = triton.cdiv(seqlen, seg_len)
    l_pad = nseg * seg_len

    # B, C -> [B, G, L_pad, BLOCK_N] fp32, zero padded: one contiguous vector per step, no per-use conversion.
    def transposed(t: torch.Tensor) -> torch.Tensor:
        if block_n == dstate and l_pad == seqlen:
            return torch.empty((batch, groups, l_pad, block_n), device=t.device,
                               dtype=torch.float32).copy_(t.transpose(2, 3))
        buf = torch.zeros((batch, groups, l_pad, block_n), device=t.device, dtype=torch.float32)
        buf[:, :, :seqlen, :dstate] = t.transpose(2, 3)
        return buf

    Bt, Ct = transposed(B), transposed(C)
    dim_per_group = dim // groups
    zz, dd, bb = optional_args(u, A, z, D, delta_bias)
    if nseg > 1:
        state = torch.empty((nseg - 1, batch, dim, block_n), device=u.device, dtype=torch.float32)
        dsum = torch.empty((nseg - 1, batch, dim), device=u.device, dtype=torch.float32)
    else:
        state = dsum = out  # never touched
    common = dict(HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
                  SOFTPLUS=bool(delta_softplus), BLOCK_D=block_d, BLOCK_N=block_n, CHUNK=chunk,
                  num_warps=num_warps)
    args = (u, delta, A, Bt, Ct, dd, zz, bb, out, state, dsum, dim, seqlen, dim_per_group, seg_len, nseg,
            *u.stride(), *delta.stride(), *A.stride(), Bt.stride(0), Bt.stride(1), *zz.stride(), *out.stride(),
            dstate)
    if nseg > 1:
        _selective_scan_fwd_kernel[(d_blocks, nseg - 1, batch)](*args, STATE_PASS=True, LOAD_STATE=False, WITH_Y=False, **common)
        carry_d = max(1, min(triton.next_power_of_2(dim), 4096 // block_n))
        _selective_scan_carry_kernel[(triton.cdiv(dim, carry_d), batch)](
            A, state, dsum, dim, nseg, *A.stride(), dstate, BLOCK_D=carry_d, BLOCK_N=block_n, num_warps=4)
    _selective_scan_fwd_kernel[(d_blocks, nseg, batch)](*args, STATE_PASS=False, LOAD_STATE=nseg > 1, WITH_Y=True, **common)
    return out
