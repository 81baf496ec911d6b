"""Shared pieces of the e2e tests: one CPU thread, quiet transformers, and tiny models of each family built once."""
from __future__ import annotations

import os

import pytest
import torch

# transformers logs a line per fallback kernel; the tests check those paths themselves
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(autouse=True)
def one_thread():
    """PyTorch's CPU thread pool stalls for tens of ms on a loaded 2-core runner: one thread keeps tests fast."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


_BUILT: dict[str, object] = {}


@pytest.fixture
def tiny_built():
    """build(tiny(model)) in fp32 on the CPU, cached across tests (building is the slow part)."""
    from ssmscope.e2e.build import build
    from ssmscope.e2e.models import get_model, tiny

    def get(name: str):
        if name not in _BUILT:
            _BUILT[name] = build(tiny(get_model(name)), dtype="fp32", device="cpu")
        return _BUILT[name]

    return get
