"""NVTX ranges that let Nsight Compute attribute kernels to bench points.

Profile mode runs each point once inside nested push/pop ranges ``"ssmscope"`` -> op -> impl -> config_id
(config_id = ``f"{shape.label()}-{dtype}"``), so ``ncu --nvtx --nvtx-include "ssmscope/"`` captures exactly the
profiled calls and ``ncu_parsers.attribute`` reads the point from each kernel's range stack.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

ROOT_RANGE = "ssmscope"


def config_id(shape: Any, dtype: str) -> str:
    """The id that names a config in rows, NVTX ranges and ncu points: ``B1-D1536-L4096-W4-bf16``."""
    return f"{shape.label()}-{dtype}"


@contextlib.contextmanager
def nvtx_ranges(op: Any, impl: str, config_id: str, *, enabled: bool | None = None) -> Iterator[None]:
    """Nested ranges ``ssmscope / op / impl / config_id`` around the block (``op`` an Op or its name).

    enabled: default when CUDA is available; a no-op on the CPU. The ranges are popped even when the
    block raises, so one failing point never shifts the stack of the next.
    """
    if enabled is None:
        enabled = torch.cuda.is_available()
    if not enabled:
        yield
        return
    names = (ROOT_RANGE, getattr(op, "name", op), impl, config_id)
    pushed = 0
    try:
        for name in names:
            torch.cuda.nvtx.range_push(str(name))
            pushed += 1
        yield
    finally:
        for _ in range(pushed):
            torch.cuda.nvtx.range_pop()
