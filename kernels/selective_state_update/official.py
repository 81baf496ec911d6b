"""The official kernel: mamba_ssm 2.3.2's Triton ``selective_state_update``.

It is Triton, but importing it imports ``mamba_ssm``, which loads its CUDA extension: on a machine without
one the import fails and :meth:`Impl.load` reports the official kernel as unavailable.
"""
from __future__ import annotations

import torch
from mamba_ssm.ops.triton.selective_state_update import selective_state_update as _official


def selective_state_update(state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor,
                           B: torch.Tensor, C: torch.Tensor, D: torch.Tensor | None = None,
                           z: torch.Tensor | None = None, dt_bias: torch.Tensor | None = None,
                           dt_softplus: bool = False) -> torch.Tensor:
    """state [B, D, N] or [B, H, P, N] (updated in place), x/dt/z [B, D] or [B, H, P], … -> out like x.
    It needs D and dt_bias (see ``official_supports``)."""
    return _official(state, x, dt, A, B, C, D=D, z=z, dt_bias=dt_bias, dt_softplus=dt_softplus)
