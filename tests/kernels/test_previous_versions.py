"""Earlier versions of our kernels stay runnable (the bench compares versions by impl name): each one of
kind "previous" passes its op's float64 check on the first configs of the small grid."""
import pytest

from ssmscope import kernels
from ssmscope.kernels.check import check_one

PREVIOUS = [(op.name, name) for op in kernels.all_ops() for name, impl in op.impls.items()
            if impl.kind == "previous"]


def test_every_rewritten_family_keeps_its_previous_version():
    assert {op for op, _ in PREVIOUS} >= {"selective_scan", "causal_conv1d", "ssd", "selective_state_update"}


@pytest.mark.parametrize("op_name,impl", PREVIOUS, ids=[f"{o}-{i}" for o, i in PREVIOUS])
def test_previous_version_passes_the_reference_check(op_name, impl):
    op = kernels.get(op_name)
    configs = op.grid("small")[:2]
    for config in configs:
        res = check_one(op, impl, config, device="cpu", seed=11)
        assert res.status == "pass", (config, res.status, res.rel_err, res.message)
