"""Earlier versions of our kernels stay runnable (the bench compares versions by impl name): each one of
kind "previous" passes its op's float64 check on the first configs of the small grid, and on one longer
config that takes the multi-block / multi-segment paths where the op has one."""
import pytest

from ssmscope import kernels
from ssmscope.kernels.check import check_one

# long enough for whole chunks and a sequence split (selective_scan v3: 2 segments of >= 256 steps)
LONGER = {"selective_scan": [dict(batch=1, dim=5, dstate=5, seqlen=600, groups=1, dtype="fp16")],
          "ssd": [dict(batch=1, seqlen=150, nheads=2, headdim=16, dstate=16, dtype="fp32")]}

PREVIOUS = [(op.name, name) for op in kernels.all_ops() for name, impl in op.impls.items()
            if impl.kind == "previous"]


def test_every_rewritten_family_keeps_its_previous_version():
    assert {op for op, _ in PREVIOUS} >= {"selective_scan", "causal_conv1d", "ssd", "selective_state_update"}


@pytest.mark.parametrize("op_name,impl", PREVIOUS, ids=[f"{o}-{i}" for o, i in PREVIOUS])
def test_previous_version_passes_the_reference_check(op_name, impl):
    op = kernels.get(op_name)
    configs = op.grid("small")[:2] + LONGER.get(op_name, [])
    for config in configs:
        res = check_one(op, impl, config, device="cpu", seed=11)
        assert res.status == "pass", (config, res.status, res.rel_err, res.message)
