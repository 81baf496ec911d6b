"""Shared pieces of the microbench tests: a fake op whose impls misbehave on purpose, and fast timing settings."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from ssmscope.kernels.op import DTYPE_BYTES, Cost, Op, Shape, ShapeError, randn
from ssmscope.microbench import CallableImpl

# Tiny timing budgets: the tests check the machinery, not the numbers.
FAST = dict(device="cpu", budget_s=0.02, min_reps=3, max_reps=20, warmup_s=0.0, flush_bytes=1 << 20)


@pytest.fixture(autouse=True)
def one_thread():
    """PyTorch's CPU thread pool stalls for tens of ms on a loaded 2-core runner: one thread keeps tests fast."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fast() -> dict[str, Any]:
    return dict(FAST)


@dataclass(frozen=True)
class FakeShape(Shape):
    batch: int = 2
    seqlen: int = 16
    ABBREV = {"batch": "B", "seqlen": "L"}


def _generate(shape: FakeShape, dtype: torch.dtype, device: torch.device, gen: torch.Generator) -> dict[str, Any]:
    return {"x": randn((shape.batch, shape.seqlen), gen, dtype=dtype, device=device, shift=0.5)}


def _cost(shape: FakeShape, dtype: str) -> Cost:
    """2 FLOPs (a multiply and an add) per element; x read once, out written once."""
    n = shape.batch * shape.seqlen
    return Cost(flops=2.0 * n, transcendentals=0.0, bytes={"x": n * DTYPE_BYTES[dtype], "out": n * DTYPE_BYTES[dtype]})


class FakeKernels:
    """Impls of ``out = 2x + 1``: right, wrong, crashing, picky about shapes, OOM at full size, interruptible."""

    def __init__(self) -> None:
        self.calls: Counter = Counter()  # (impl, seqlen) -> calls
        self.interrupt_at: int | None = None  # seqlen at which `flaky` raises KeyboardInterrupt
        self.oom_above = 64  # `oom` raises CUDA OOM for seqlen above this

    def _count(self, name: str, x: torch.Tensor) -> None:
        self.calls[(name, x.shape[1])] += 1

    def ref(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 + 1

    def good(self, x: torch.Tensor) -> torch.Tensor:
        self._count("good", x)
        return torch.addcmul(torch.ones_like(x), x, torch.full_like(x, 2.0))

    def wrong(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2.5 + 1

    def boom(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("kernel exploded\nsecond line of a long traceback message")

    def picky(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > 8:
            raise ShapeError(f"picky: seqlen must be <= 8, got {x.shape[1]}")
        return x * 2 + 1

    def oom(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.oom_above:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
        return x * 2 + 1

    def flaky(self, x: torch.Tensor) -> torch.Tensor:
        self._count("flaky", x)
        if self.interrupt_at is not None and x.shape[1] == self.interrupt_at:
            raise KeyboardInterrupt
        return x * 2 + 1

    def op(self, baseline: str = "good") -> Op:
        def impl(name: str, kind: str = "ours", **kw: Any) -> CallableImpl:
            return CallableImpl(name, f"fake:{name}", kind, fn=getattr(self, name), **kw)

        impls = {
            "ref": impl("ref", "reference"),
            "good": impl("good"),
            "wrong": impl("wrong"),
            "boom": impl("boom"),
            "picky": impl("picky"),
            "oom": impl("oom"),
            "flaky": impl("flaky"),
            "gpu_only": CallableImpl("gpu_only", "fake:gpu_only", "official", fn=self.good, needs_cuda=True),
            "limited": CallableImpl("limited", "fake:limited", "official", fn=self.good,
                                    supports=lambda s, d: "limited: batch must be 1" if s.batch != 1 else None),
        }
        return Op(name="fake", summary="out = 2x + 1", shape_type=FakeShape, generate=_generate, cost=_cost,
                  impls=impls, tolerance={"fp32": 1e-6, "fp16": 1e-3, "bf16": 1e-2},
                  upstream_tolerance={"fp32": (1e-5, 1e-5), "fp16": (1e-3, 1e-3), "bf16": (1e-2, 1e-2)},
                  grids={"small": lambda: [dict(batch=2, seqlen=5, dtype="fp32"), dict(batch=1, seqlen=7, dtype="fp32")]},
                  baseline=baseline)


@pytest.fixture
def fake() -> FakeKernels:
    return FakeKernels()
