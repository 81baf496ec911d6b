"""The official kernel: ``causal_conv1d.causal_conv1d_update`` from the causal-conv1d package (1.7.0).

Imported at module level on purpose: the package loads its CUDA extension on import, so on a machine
without it the import fails and :meth:`Impl.load` reports the official kernel as unavailable.
"""
from __future__ import annotations

import torch
from causal_conv1d import causal_conv1d_update as _official_update


def causal_conv1d_update(x: torch.Tensor, conv_state: torch.Tensor, weight: torch.Tensor,
                         bias: torch.Tensor | None = None, activation: str | None = None,
                         cache_seqlens: torch.Tensor | None = None,
                         conv_state_indices: torch.Tensor | None = None) -> torch.Tensor:
    """x [B, D] or [B, D, S], conv_state [B, D, K] (updated in place), weight [D, W] -> out like x."""
    return _official_update(x, conv_state, weight, bias, activation=activation, cache_seqlens=cache_seqlens,
                            conv_state_indices=conv_state_indices)
