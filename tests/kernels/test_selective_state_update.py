"""selective_state_update: both layouts vs hand computation and the float64 reference; state updated in place."""
import math

import pytest
import torch

from ssmscope import kernels
from ssmscope.kernels.check import check, clone_inputs
from ssmscope.kernels.op import ShapeError
from ssmscope.kernels.selective_state_update.ref import selective_state_update as ref_step
from ssmscope.kernels.selective_state_update.triton_kernel import selective_state_update as triton_step

OP = kernels.get("selective_state_update")


def test_reference_one_channel_by_hand():
    # Mamba-1 layout, B=1, D=1, N=2, softplus(dt + bias), D·x skip, silu(z) gate.
    state = torch.tensor([[[1.0, -2.0]]], dtype=torch.float64)
    x, dt, z = (torch.tensor([[v]], dtype=torch.float64) for v in (0.5, 0.3, 2.0))
    A = torch.tensor([[-1.0, -0.5]], dtype=torch.float64)
    B = torch.tensor([[2.0, 1.0]], dtype=torch.float64)
    C = torch.tensor([[1.0, 3.0]], dtype=torch.float64)
    D, bias = torch.tensor([0.25], dtype=torch.float64), torch.tensor([0.1], dtype=torch.float64)
    out = ref_step(state, x, dt, A, B, C, D=D, z=z, dt_bias=bias, dt_softplus=True)
    delta = math.log1p(math.exp(0.4))
    s = [1.0 * math.exp(-delta) + delta * 0.5 * 2.0, -2.0 * math.exp(-0.5 * delta) + delta * 0.5 * 1.0]
    y = (s[0] * 1.0 + s[1] * 3.0 + 0.25 * 0.5) * (2.0 / (1 + math.exp(-2.0)))
    assert torch.allclose(state[0, 0], torch.tensor(s, dtype=torch.float64), rtol=1e-12)
    assert math.isclose(out.item(), y, rel_tol=1e-12)


def test_tied_heads_keep_their_stride_zero_layout():
    kw = OP.make_inputs(batch=2, nheads=4, dim=8, dstate=16, ngroups=2, heads=True, dtype="fp32", seed=1)
    assert kw["dt"].stride(-1) == 0 and kw["A"].stride(-1) == 0 and kw["A"].stride(-2) == 0
    copy = clone_inputs(kw)
    assert copy["dt"].stride(-1) == 0 and torch.equal(copy["dt"], kw["dt"])


@pytest.mark.parametrize("heads", [False, True], ids=["mamba1", "mamba2"])
def test_triton_updates_state_in_place_like_reference(heads):
    shape = dict(batch=3, nheads=4, dim=6, dstate=5, ngroups=2, heads=True) if heads else dict(batch=3, dim=10, dstate=5)
    kw = OP.make_inputs(dtype="fp32", seed=4, **shape)
    ours, ref = clone_inputs(kw), clone_inputs(kw)
    out = triton_step(**ours)
    expected = ref_step(**ref)
    assert not torch.equal(ours["state"], kw["state"])  # it did change
    assert torch.allclose(ours["state"], ref["state"], rtol=1e-5, atol=1e-5)
    assert torch.allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_cost_matches_hand_count():
    c = OP.cost_of(batch=2, nheads=4, dim=8, dstate=16, ngroups=2, heads=True, dtype="bf16")
    rows, elems = 2 * 4 * 8, 2 * 4 * 8 * 16
    assert c.flops == 6 * elems + (1 + 1 + 1 + 2 + 4) * rows
    assert c.transcendentals == elems + 3 * rows
    # state read+write, x/z/out per row, dt per (b, h) (tied), A/D/bias per head in fp32, B/C per group
    assert c.min_bytes == 2 * elems * 2 + 3 * rows * 2 + 2 * 4 * 2 + 3 * 4 * 4 + 2 * (2 * 2 * 16 * 2)


def test_triton_matches_float64_reference_on_small_grid():
    results = list(check(OP, ["triton"], grid="small", device="cpu", seed=7))
    assert results and all(r.status == "pass" for r in results), [(r.config, r.rel_err, r.message)
                                                                   for r in results if r.status != "pass"]


@pytest.mark.parametrize("bad", [dict(nheads=2), dict(nheads=3, ngroups=2, heads=True), dict(dstate=300)],
                         ids=["mamba1-heads", "H3-G2", "N300"])
def test_bad_shapes_raise(bad):
    with pytest.raises(ShapeError):
        OP.shape(**bad)


def test_official_unavailable_on_cpu_and_rejects_tied_without_bias():
    assert not OP.impls["official"].availability("cpu")[0]
    shape = OP.shape(nheads=2, dim=4, heads=True, dt_bias=False, softplus=False)
    assert "dt_bias" in OP.impls["official"].unsupported_reason(shape, "bf16")


@pytest.mark.gpu
def test_triton_matches_official_on_upstream_grid():
    results = list(check(OP, ["triton"], grid="upstream", device="cuda", seed=2026))
    assert all(r.status in ("pass", "unsupported") and r.baseline_ok is not False for r in results)
