"""The official kernel: mamba_ssm's Triton selective_state_update (the package imports only with CUDA)."""
from __future__ import annotations

import torch
from mamba_ssm.ops.triton.selective_state_update import selective_state_update as _official


def selective_state_update(state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor,
                           B: torch.Tensor, C: torch.Tensor, D: torch.Tensor | None = None,
                           z: torch.Tensor | None = None, dt_bias: torch.Tensor | None = None,
                           dt_softplus: bool = False) -> torch.Tensor:
    """``mamba_ssm.ops.triton.selective_state_update.selective_state_update``."""
    return _official(state, x, dt, A, B, C, D=D, z=z, dt_bias=dt_bias, dt_softplus=dt_softplus)
