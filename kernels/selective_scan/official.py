"""The official kernel: ``selective_scan_fn`` from mamba_ssm 2.3.2 (``selective_scan_cuda``, CUDA).

Imported at module level on purpose: ``mamba_ssm`` loads its CUDA extension on import, so on a machine
without it the import fails and :meth:`Impl.load` reports the official kernel as unavailable.
"""
from __future__ import annotations

import torch
from mamba_ssm.ops.selective_scan_interface import selective_scan_fn


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                   delta_bias: torch.Tensor | None = None, delta_softplus: bool = False) -> torch.Tensor:
    """u/delta/z [B, D, L], A [D, N], B/C [B, G, N, L], D/delta_bias [D] -> out [B, D, L] (forward only;
    with z this is the kernel's ``out_z``, and it also wrote ``out`` and the chunk states)."""
    return selective_scan_fn(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)
