"""Reference SSD (Mamba-2 scan) in plain PyTorch, with the official signature.

``ssd`` is the judge: the recurrence one step at a time. ``ssd_chunked`` is the same function written as the
chunked matrix (dual) form, independently, so that the two can check each other and so that large GPU
checks have a fast second opinion.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DEFAULT_DT_LIMIT = (0.0, math.inf)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 for float64 inputs (the checker's reference run), else float32 (what kernels accumulate in)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def step_sizes(dt: torch.Tensor, dt_bias: torch.Tensor | None, dt_softplus: bool,
               dt_limit: tuple[float, float], dtype: torch.dtype) -> torch.Tensor:
    """δ = clamp(softplus(dt + dt_bias), *dt_limit), [B, L, H]; the clamp to [0, ∞) is the official default."""
    delta = dt.to(dtype)
    if dt_bias is not None:
        delta = delta + dt_bias.to(dtype)
    if dt_softplus:
        delta = F.softplus(delta)  # = delta above 20, like the official kernels
    return delta.clamp(dt_limit[0], dt_limit[1])


def _skip_and_gate(y: torch.Tensor, x: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None) -> torch.Tensor:
    """y + D·x, then · silu(z); D is [H] or [H, P]."""
    if D is not None:
        Dc = D.to(y.dtype)
        y = y + x * (Dc[:, None] if Dc.dim() == 1 else Dc)
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y


def ssd(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, chunk_size: int,
        D: torch.Tensor | None = None, z: torch.Tensor | None = None, dt_bias: torch.Tensor | None = None,
        initial_states: torch.Tensor | None = None, dt_softplus: bool = False,
        dt_limit: tuple[float, float] = DEFAULT_DT_LIMIT,
        return_final_states: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """x/z [B, L, H, P], dt [B, L, H], A [H], B/C [B, L, G, N], D [H] or [H, P], dt_bias [H],
    initial_states [B, H, P, N] -> out [B, L, H, P] in x's dtype (and final states [B, H, P, N] in fp32,
    or float64 for float64 inputs, when ``return_final_states``).

    Head h reads group g = h // (H/G). One step at a time, in float32 (float64 for float64 inputs):
        h_t = exp(δ_t·A_h)·h_{t-1} + δ_t·x_t ⊗ B_t,   y_t = h_t·C_t + D·x_t,   out = y·silu(z).
    ``chunk_size`` does not change the function, only how a chunked kernel evaluates it.
    """
    acc = _compute_dtype(x)
    batch, seqlen, nheads, headdim = x.shape
    groups, dstate = B.shape[2], B.shape[3]
    per_group = nheads // groups
    xs = x.to(acc)
    delta = step_sizes(dt, dt_bias, dt_softplus, dt_limit, acc)
    decay = torch.exp(delta * A.to(acc))  # [B, L, H]
    # Heads as [G, H/G] so that B_t and C_t [B, G, N] broadcast over the heads of their group (no per-head
    # copies of B and C: at L = 64K, 80 heads they would take GBs in float64).
    Bg, Cg = B.to(acc)[:, :, :, None, None, :], C.to(acc)[:, :, :, None, None, :]  # [B, L, G, 1, 1, N]
    xg = xs.reshape(batch, seqlen, groups, per_group, headdim)
    dg = delta.reshape(batch, seqlen, groups, per_group)
    ag = decay.reshape(batch, seqlen, groups, per_group)
    if initial_states is not None:
        h = initial_states.to(acc).reshape(batch, groups, per_group, headdim, dstate).clone()
    else:
        h = xs.new_zeros(batch, groups, per_group, headdim, dstate)
    y = xs.new_empty(batch, seqlen, groups, per_group, headdim)
    for t in range(seqlen):
        h = ag[:, t, :, :, None, None] * h + (dg[:, t, :, :, None] * xg[:, t])[..., None] * Bg[:, t]
        y[:, t] = (h * Cg[:, t]).sum(-1)
    y = y.view(batch, seqlen, nheads, headdim)
    h = h.reshape(batch, nheads, headdim, dstate)
    out = _skip_and_gate(y, xs, D, z).to(x.dtype)
    return (out, h if acc == torch.float64 else h.float()) if return_final_states else out


def ssd_chunked(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                chunk_size: int, D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                dt_bias: torch.Tensor | None = None, initial_states: torch.Tensor | None = None,
                dt_softplus: bool = False, dt_limit: tuple[float, float] = DEFAULT_DT_LIMIT,
                return_final_states: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The same function as :func:`ssd`, as the chunked dual form (Dao & Gu 2024, §6), chunks of Q steps.

    Per chunk, with s = cumsum(δ·A) inside the chunk and h the state entering it:
        Y = ((C Bᵀ) ∘ L ∘ δ_j) X + exp(s_i)·C hᵀ,   L[i, j] = exp(s_i − s_j) for i ≥ j else 0
        h ← exp(s_last)·h + Σ_j exp(s_last − s_j)·δ_j·x_j ⊗ B_j
    """
    acc = _compute_dtype(x)
    batch, seqlen, nheads, headdim = x.shape
    groups = B.shape[2]
    xs = x.to(acc)
    delta = step_sizes(dt, dt_bias, dt_softplus, dt_limit, acc)
    Bh = B.to(acc).repeat_interleave(nheads // groups, dim=2)
    Ch = C.to(acc).repeat_interleave(nheads // groups, dim=2)
    Af = A.to(acc)
    if initial_states is not None:
        state = initial_states.to(acc).clone()
    else:
        state = xs.new_zeros(batch, nheads, headdim, B.shape[3])
    y = torch.empty_like(xs)
    for start in range(0, seqlen, chunk_size):
        sl = slice(start, min(start + chunk_size, seqlen))
        q = sl.stop - sl.start
        dtc = delta[:, sl]  # [B, Q, H]
        s = torch.cumsum(dtc * Af, dim=1)
        causal = torch.tril(torch.ones(q, q, dtype=torch.bool, device=x.device))[None, :, :, None]
        seg = torch.where(causal, s[:, :, None, :] - s[:, None, :, :], -math.inf)  # [B, i, j, H]
        scores = torch.einsum("bihn,bjhn->bijh", Ch[:, sl], Bh[:, sl]) * seg.exp() * dtc[:, None]
        y[:, sl] = torch.einsum("bijh,bjhp->bihp", scores, xs[:, sl])
        y[:, sl] += torch.einsum("bihn,bhpn->bihp", Ch[:, sl], state) * s.exp()[..., None]
        weight = torch.exp(s[:, -1:] - s) * dtc  # [B, Q, H]
        state = (state * s[:, -1].exp()[..., None, None]
                 + torch.einsum("bjh,bjhp,bjhn->bhpn", weight, xs[:, sl], Bh[:, sl]))
    out = _skip_and_gate(y, xs, D, z).to(x.dtype)
    return (out, state if acc == torch.float64 else state.float()) if return_final_states else out
