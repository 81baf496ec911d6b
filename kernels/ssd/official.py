"""The official SSD: ``mamba_chunk_scan_combined`` from mamba_ssm 2.3.2.post1 (five Triton kernels).

Imported at module level on purpose: mamba_ssm loads its CUDA extensions on import, so on a machine without
them the import fails and :meth:`Impl.load` reports the official kernel as unavailable.
"""
from __future__ import annotations

import torch
from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined


def ssd(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, chunk_size: int,
        D: torch.Tensor | None = None, z: torch.Tensor | None = None, dt_bias: torch.Tensor | None = None,
        initial_states: torch.Tensor | None = None, dt_softplus: bool = False,
        dt_limit: tuple[float, float] = (0.0, float("inf")),
        return_final_states: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """x/z [B, L, H, P], dt [B, L, H], A [H], B/C [B, L, G, N], D [H] or [H, P], dt_bias [H],
    initial_states [B, H, P, N] -> out [B, L, H, P] (and final states [B, H, P, N] fp32)."""
    return mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size, D=D, z=z, dt_bias=dt_bias,
                                     initial_states=initial_states, dt_softplus=dt_softplus, dt_limit=dt_limit,
                                     return_final_states=return_final_states)
