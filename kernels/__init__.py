"""Operator families: our PyTorch references, our Triton kernels and the official kernels behind one interface.

    >>> from ssmscope import kernels
    >>> op = kernels.get("selective_scan")
    >>> kw = op.make_inputs(batch=1, dim=64, dstate=16, seqlen=256, dtype="fp32", seed=0)
    >>> out = op.impls["ref"](**kw)

Adding a family: a folder ``kernels/<name>/`` whose ``__init__.py`` defines ``OP``, and one line in
``FAMILIES`` below.
"""
from __future__ import annotations

import importlib

from .op import Cost, Impl, Op, Shape, ShapeError, Unavailable, default_device, dtype_name

# Prefill families first, then the decode steps behind TPOT.
FAMILIES: tuple[str, ...] = (
    "selective_scan",
    "causal_conv1d",
    "ssd",
    "attention",
    "selective_state_update",
    "causal_conv1d_update",
    "attention_decode",
)


def names() -> list[str]:
    return list(FAMILIES)


def get(name: str) -> Op:
    """The op called ``name``; an unknown name is a :class:`ShapeError` listing the known ones."""
    if name not in FAMILIES:
        raise ShapeError(f"unknown op {name!r}; ops are {', '.join(FAMILIES)}")
    return importlib.import_module(f"{__name__}.{name}").OP


def all_ops() -> list[Op]:
    return [get(n) for n in FAMILIES]


__all__ = ["Cost", "Impl", "Op", "Shape", "ShapeError", "Unavailable", "all_ops", "default_device",
           "dtype_name", "get", "names"]
