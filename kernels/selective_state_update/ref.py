"""Reference selective_state_update (one decode step of the selective scan) in plain PyTorch.

Same signature as the official Triton kernel; ``state`` is updated in place. ``head_layout`` (shared with
our Triton kernel) checks the arguments and views the Mamba-1 layout as the head layout with H = G = 1.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..op import ShapeError


class HeadArgs(NamedTuple):
    """The arguments in the head layout (views, no copies): state [B, H, P, N], x/dt/z [B, H, P],
    A [H, P, N], B/C [B, G, N], D/dt_bias [H, P]; ``heads`` says whether the caller used it."""

    state: torch.Tensor
    x: torch.Tensor
    dt: torch.Tensor
    A: torch.Tensor
    B: torch.Tensor
    C: torch.Tensor
    D: torch.Tensor | None
    z: torch.Tensor | None
    dt_bias: torch.Tensor | None
    heads: bool


def _lift(t: torch.Tensor | None, ndim: int, axis: int) -> torch.Tensor | None:
    """A Mamba-1 tensor gains the unit head (or group) axis; a view, strides kept."""
    return t if t is None or t.dim() == ndim else t.unsqueeze(axis)


def head_layout(state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                C: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None,
                dt_bias: torch.Tensor | None) -> HeadArgs:
    """Check the official layouts (as its asserts do, but as :class:`ShapeError`) and return head views."""
    if state.dim() not in (3, 4):
        raise ShapeError(f"selective_state_update: state must be [B, D, N] or [B, H, P, N], got {tuple(state.shape)}")
    heads = state.dim() == 4
    s = _lift(state, 4, 1)
    x_, dt_, z_ = _lift(x, 3, 1), _lift(dt, 3, 1), _lift(z, 3, 1)
    A_, B_, C_ = _lift(A, 3, 0), _lift(B, 3, 1), _lift(C, 3, 1)
    D_, bias_ = _lift(D, 2, 0), _lift(dt_bias, 2, 0)
    batch, nheads, dim, dstate = s.shape
    rows = (batch, nheads, dim)
    layout = "[B, H, P]" if heads else "[B, D]"
    for name, t, given in (("x", x_, x), ("dt", dt_, dt), ("z", z_, z)):
        if t is not None and tuple(t.shape) != rows:
            raise ShapeError(f"selective_state_update: {name} must be {layout} matching the state "
                             f"{tuple(state.shape)}, got {tuple(given.shape)}")
    if tuple(A_.shape) != (nheads, dim, dstate):
        raise ShapeError(f"selective_state_update: A must be {'[H, P, N]' if heads else '[D, N]'} matching "
                         f"the state {tuple(state.shape)}, got {tuple(A.shape)}")
    if A_.is_complex():
        raise ShapeError("selective_state_update: complex A is not supported")
    groups = B_.shape[1] if B_.dim() == 3 else 0
    for name, t, given in (("B", B_, B), ("C", C_, C)):
        if t.dim() != 3 or t.shape[0] != batch or t.shape[2] != dstate or t.shape[1] != groups or groups < 1:
            raise ShapeError(f"selective_state_update: {name} must be {'[B, G, N]' if heads else '[B, N]'} "
                             f"with B={batch}, N={dstate} (B and C alike), got {tuple(given.shape)}")
    if nheads % groups:
        raise ShapeError(f"selective_state_update: nheads {nheads} must be divisible by ngroups {groups}")
    for name, t, given in (("D", D_, D), ("dt_bias", bias_, dt_bias)):
        if t is not None and tuple(t.shape) != (nheads, dim):
            raise ShapeError(f"selective_state_update: {name} must be {'[H, P]' if heads else '[D]'} matching "
                             f"the state {tuple(state.shape)}, got {tuple(given.shape)}")
    return HeadArgs(s, x_, dt_, A_, B_, C_, D_, z_, bias_, heads)


def selective_state_update(state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor,
                           B: torch.Tensor, C: torch.Tensor, D: torch.Tensor | None = None,
                           z: torch.Tensor | None = None, dt_bias: torch.Tensor | None = None,
                           dt_softplus: bool = False) -> torch.Tensor:
    """One step; ``state`` updated in place. Returns out with x's shape and dtype.

    Mamba-1: state [B, D, N], x/dt/z [B, D], A [D, N], B/C [B, N], D/dt_bias [D].
    Mamba-2: state [B, H, P, N], x/dt/z [B, H, P], A [H, P, N], B/C [B, G, N], D/dt_bias [H, P].

        δ = softplus(dt + dt_bias);  state ← exp(δ·A) ⊙ state + (δ·x) ⊗ B_g;  y = state·C_g + D·x;
        out = y·silu(z)          (head h reads group g = h // (H/G))

    Computed in float32 (float64 when x is float64); the output uses the new state before it is rounded
    to the state's dtype, as the kernels do.
    """
    a = head_layout(state, x, dt, A, B, C, D, z, dt_bias)
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    nheads, groups = a.state.shape[1], a.B.shape[1]
    Bh = a.B.to(acc).repeat_interleave(nheads // groups, dim=1)[:, :, None, :]  # [B, H, 1, N]
    Ch = a.C.to(acc).repeat_interleave(nheads // groups, dim=1)[:, :, None, :]
    delta = a.dt.to(acc)
    if a.dt_bias is not None:
        delta = delta + a.dt_bias.to(acc)
    if dt_softplus:
        delta = F.softplus(delta)
    xs = a.x.to(acc)
    new = torch.exp(delta[..., None] * a.A.to(acc)) * a.state.to(acc) + (delta * xs)[..., None] * Bh
    a.state.copy_(new)
    y = (new * Ch).sum(-1)
    if a.D is not None:
        y = y + a.D.to(acc) * xs
    if a.z is not None:
        y = y * F.silu(a.z.to(acc))
    y = y.to(x.dtype)
    return y if a.heads else y.squeeze(1)
