"""Reference selective scan (Mamba-1's S6) in plain PyTorch: the recurrence, one step at a time.

Same signature as the official ``selective_scan_fn``. Argument checks shared with our Triton kernel live
here too (``scan_args``), so both reject bad input with the same :class:`ShapeError`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..op import ShapeError


def scan_args(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
              D: torch.Tensor | None, z: torch.Tensor | None,
              delta_bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Check the official layouts; returns B and C as [B, G, N, L] (a 3-D [B, N, L] gains G = 1, as the
    official wrapper does). Raises :class:`ShapeError` naming the first mismatch."""
    if u.dim() != 3:
        raise ShapeError(f"selective_scan: u must be [B, D, L], got shape {tuple(u.shape)}")
    batch, dim, seqlen = u.shape
    if tuple(delta.shape) != (batch, dim, seqlen):
        raise ShapeError(f"selective_scan: delta must be [B, D, L] = {(batch, dim, seqlen)}, got {tuple(delta.shape)}")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ShapeError(f"selective_scan: A must be [D={dim}, N], got {tuple(A.shape)}")
    if A.is_complex():
        raise ShapeError("selective_scan: complex A is not supported (real S6 only)")
    dstate = A.shape[1]
    B, C = (t.unsqueeze(1) if t.dim() == 3 else t for t in (B, C))
    for name, t in (("B", B), ("C", C)):
        if t.dim() != 4 or t.shape[0] != batch or t.shape[2:] != (dstate, seqlen):
            raise ShapeError(f"selective_scan: {name} must be time-varying [B, G, N, L] with B={batch}, "
                             f"N={dstate}, L={seqlen}; got {tuple(t.shape)}")
    groups = B.shape[1]
    if C.shape[1] != groups:
        raise ShapeError(f"selective_scan: B has {groups} groups but C has {C.shape[1]}")
    if dim % groups:
        raise ShapeError(f"selective_scan: dim {dim} must be divisible by the {groups} B/C groups")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and tuple(t.shape) != (dim,):
            raise ShapeError(f"selective_scan: {name} must be [D={dim}], got {tuple(t.shape)}")
    if z is not None and tuple(z.shape) != (batch, dim, seqlen):
        raise ShapeError(f"selective_scan: z must be [B, D, L] = {(batch, dim, seqlen)}, got {tuple(z.shape)}")
    return B, C


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                   delta_bias: torch.Tensor | None = None, delta_softplus: bool = False) -> torch.Tensor:
    """u/delta/z [B, D, L], A [D, N], B/C [B, G, N, L] (or [B, N, L]), D/delta_bias [D] -> out [B, D, L].

        δ = softplus(delta + delta_bias);  h_t = exp(δ_t·A) ⊙ h_{t-1} + δ_t·u_t·B_t;  y_t = Σ_n h_t·C_t
        out = (y + D·u) · silu(z)

    Computed in float32 (float64 when u is float64), returned in u's dtype. Channels are viewed as
    [G, D/G] so that a group's B_t/C_t broadcast over its channels: memory stays O(B·D·N), never O(B·D·N·L).
    """
    B, C = scan_args(u, delta, A, B, C, D, z, delta_bias)
    batch, dim, seqlen = u.shape
    groups, dstate = B.shape[1], A.shape[1]
    acc = torch.float64 if u.dtype == torch.float64 else torch.float32
    dt = delta.to(acc)
    if delta_bias is not None:
        dt = dt + delta_bias.to(acc)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    u_ = u.to(acc)
    dt_g = dt.reshape(batch, groups, dim // groups, seqlen)
    du_g = (dt * u_).reshape(batch, groups, dim // groups, seqlen)
    A_g = A.to(acc).reshape(groups, dim // groups, dstate)
    B_, C_ = B.to(acc), C.to(acc)
    h = u_.new_zeros(batch, groups, dim // groups, dstate)
    ys = []
    for t in range(seqlen):
        h = torch.exp(dt_g[..., t, None] * A_g) * h + du_g[..., t, None] * B_[:, :, None, :, t]
        ys.append((h * C_[:, :, None, :, t]).sum(-1).reshape(batch, dim))
    y = torch.stack(ys, dim=-1) if ys else u_.new_zeros(batch, dim, 0)
    if D is not None:
        y = y + D.to(acc)[:, None] * u_
    if z is not None:
        y = y * F.silu(z.to(acc))
    return y.to(u.dtype)


OURS_MAX_DSTATE = 256  # our kernels keep a channel's whole state row [N] in one tile


def optional_args(u: torch.Tensor, A: torch.Tensor, z: torch.Tensor | None, D: torch.Tensor | None,
                  delta_bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """z, D and delta_bias as kernel arguments: a tensor always (a kernel's HAS_* flag says whether it is read),
    D and delta_bias contiguous."""
    zz = z if z is not None else u
    dd = D.contiguous() if D is not None else A
    bb = delta_bias.contiguous() if delta_bias is not None else A
    return zz, dd, bb


def ours_output(u: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """The checks every version of our Triton scan shares (dtype, N <= 256) and its output [B, D, L] in u's
    dtype, not yet written."""
    if u.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ShapeError(f"selective_scan (triton): u must be fp32, fp16 or bf16, got {u.dtype}")
    if A.shape[1] > OURS_MAX_DSTATE:
        raise ShapeError(f"selective_scan (triton): dstate {A.shape[1]} exceeds the limit of {OURS_MAX_DSTATE}")
    return torch.empty(u.shape, device=u.device, dtype=u.dtype)
