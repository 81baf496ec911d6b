"""Reference selective_state_update (one decode step of the selective scan) in plain PyTorch."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def selective_state_update(state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor,
                           B: torch.Tensor, C: torch.Tensor, D: torch.Tensor | None = None,
                           z: torch.Tensor | None = None, dt_bias: torch.Tensor | None = None,
                           dt_softplus: bool = False) -> torch.Tensor:
    """state [B, D, N] or [B, H, P, N] (updated in place); x/dt/z [B, D] or [B, H, P]; A [D, N] or [H, P, N];
    B/C [B, N] or [B, G, N]; D/dt_bias [D] or [H, P]. Returns out with x's shape and dtype."""
    heads = state.dim() == 4
    s = state if heads else state.unsqueeze(1)
    x_, dt_, z_ = (t if t is None or heads else t.unsqueeze(1) for t in (x, dt, z))
    A_ = A if heads else A.unsqueeze(0)
    B_, C_ = (t if t.dim() == 3 else t.unsqueeze(1) for t in (B, C))
    D_, bias_ = (t if t is None or heads else t.unsqueeze(0) for t in (D, dt_bias))
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    nheads, groups = s.shape[1], B_.shape[1]
    Bh = B_.to(compute).repeat_interleave(nheads // groups, dim=1)[:, :, None, :]  # [B, H, 1, N]
    Ch = C_.to(compute).repeat_interleave(nheads // groups, dim=1)[:, :, None, :]
    delta = dt_.to(compute) + (bias_.to(compute) if bias_ is not None else 0)
    if dt_softplus:
        delta = F.softplus(delta)
    new = s.to(compute) * torch.exp(delta[..., None] * A_.to(compute)) + (delta * x_.to(compute))[..., None] * Bh
    s.copy_(new.to(s.dtype))
    out = (new * Ch).sum(-1)
    if D_ is not None:
        out = out + x_.to(compute) * D_.to(compute)
    if z_ is not None:
        out = out * F.silu(z_.to(compute))
    out = out.to(x.dtype)
    return out if heads else out.squeeze(1)
