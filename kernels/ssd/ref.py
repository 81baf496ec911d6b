"""Reference SSD (Mamba-2 scan) in plain PyTorch: the recurrence one step at a time."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def ssd(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, chunk_size: int,
        D: torch.Tensor | None = None, z: torch.Tensor | None = None, dt_bias: torch.Tensor | None = None,
        dt_softplus: bool = False) -> torch.Tensor:
    """x/z [B, L, H, P], dt [B, L, H], A [H], B/C [B, L, G, N], D [H] or [H, P], dt_bias [H] -> [B, L, H, P].

    ``chunk_size`` does not change the function (only how a chunked kernel evaluates it); it is accepted for
    the official signature. Computed in float32 (float64 for float64 inputs).
    """
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    batch, seqlen, nheads, headdim = x.shape
    groups, dstate = B.shape[2], B.shape[3]
    xs, delta = x.to(compute), dt.to(compute)
    if dt_bias is not None:
        delta = delta + dt_bias.to(compute)
    if dt_softplus:
        delta = F.softplus(delta)
    Bh = B.to(compute).repeat_interleave(nheads // groups, dim=2)  # [B, L, H, N]
    Ch = C.to(compute).repeat_interleave(nheads // groups, dim=2)
    decay = torch.exp(delta * A.to(compute))  # [B, L, H]
    h = xs.new_zeros(batch, nheads, headdim, dstate)
    ys = []
    for t in range(seqlen):
        h = decay[:, t, :, None, None] * h + (delta[:, t, :, None] * xs[:, t])[..., None] * Bh[:, t, :, None, :]
        ys.append((h * Ch[:, t, :, None, :]).sum(-1))
    y = torch.stack(ys, dim=1) if ys else xs.new_zeros(xs.shape)
    if D is not None:
        Dc = D.to(compute)
        y = y + xs * (Dc[:, None] if Dc.dim() == 1 else Dc)
    if z is not None:
        y = y * F.silu(z.to(compute))
    return y.to(x.dtype)
