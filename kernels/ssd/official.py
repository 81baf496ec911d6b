"""The official SSD: mamba_ssm's five Triton kernels behind mamba_chunk_scan_combined (needs CUDA to import)."""
from __future__ import annotations

import torch
from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined


def ssd(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, chunk_size: int,
        D: torch.Tensor | None = None, z: torch.Tensor | None = None, dt_bias: torch.Tensor | None = None,
        dt_softplus: bool = False) -> torch.Tensor:
    """``mamba_ssm.ops.triton.ssd_combined.mamba_chunk_scan_combined`` (forward)."""
    return mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size, D=D, z=z, dt_bias=dt_bias, dt_softplus=dt_softplus)
