"""The official kernel: ``causal_conv1d.causal_conv1d_fn`` from the causal-conv1d package (1.7.0).

Imported at module level on purpose: the package loads its CUDA extension on import, so on a machine
without it the import fails and :meth:`Impl.load` reports the official kernel as unavailable.
"""
from __future__ import annotations

import torch
from causal_conv1d import causal_conv1d_fn


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  activation: str | None = None) -> torch.Tensor:
    """x [B, D, L] (channel-first or channel-last), weight [D, W], bias [D] -> out [B, D, L] in x's layout."""
    return causal_conv1d_fn(x, weight, bias, activation=activation)
