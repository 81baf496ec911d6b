"""The official kernel: mamba_ssm's CUDA selective scan (imported lazily; it needs its CUDA extension)."""
from __future__ import annotations

import torch
from mamba_ssm.ops.selective_scan_interface import selective_scan_fn


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                   delta_bias: torch.Tensor | None = None, delta_softplus: bool = False) -> torch.Tensor:
    """``mamba_ssm.ops.selective_scan_interface.selective_scan_fn`` (forward only)."""
    return selective_scan_fn(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)
