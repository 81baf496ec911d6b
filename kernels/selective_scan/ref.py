"""Reference selective scan (Mamba-1 S6) in plain PyTorch: the recurrence, one step at a time."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                   delta_bias: torch.Tensor | None = None, delta_softplus: bool = False) -> torch.Tensor:
    """u/delta/z [B, D, L], A [D, N], B/C [B, G, N, L], D/delta_bias [D] -> out [B, D, L] in u's dtype.

    Computed in float32 (float64 when u is float64). The decay is formed per step rather than for the whole
    sequence, so memory stays at O(B·D·N) and long sequences fit.
    """
    out_dtype = u.dtype
    compute = torch.float64 if u.dtype == torch.float64 else torch.float32
    u, delta, A = u.to(compute), delta.to(compute), A.to(compute)
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, seqlen = u.shape
    groups = B.shape[1]
    Bx = B.to(compute).repeat_interleave(dim // groups, dim=1)  # [B, D, N, L]
    Cx = C.to(compute).repeat_interleave(dim // groups, dim=1)
    du = delta * u
    h = u.new_zeros(batch, dim, A.shape[1])
    ys = []
    for t in range(seqlen):
        h = torch.exp(delta[:, :, t, None] * A) * h + du[:, :, t, None] * Bx[..., t]
        ys.append((h * Cx[..., t]).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(batch, dim, 0)
    if D is not None:
        y = y + u * D.to(compute)[:, None]
    if z is not None:
        y = y * F.silu(z.to(compute))
    return y.to(out_dtype)
