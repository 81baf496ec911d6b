"""ssd: reference vs hand computation and vs an independent chunked (matrix) formulation; Triton vs float64."""
import math

import pytest
import torch

from ssmscope import kernels
from ssmscope.kernels.check import check
from ssmscope.kernels.op import ShapeError
from ssmscope.kernels.ssd.ref import ssd as ref_ssd

OP = kernels.get("ssd")


def test_reference_two_steps_by_hand():
    # B=1, L=2, H=1, P=1, N=1, no bias/softplus: h1 = dt1·x1·b1; h2 = exp(dt2·a)·h1 + dt2·x2·b2
    f = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    x = f(1.0, -2.0).reshape(1, 2, 1, 1)
    dt = f(0.5, 0.25).reshape(1, 2, 1)
    A = f(-2.0)
    B = f(3.0, 1.0).reshape(1, 2, 1, 1)
    C = f(0.5, 2.0).reshape(1, 2, 1, 1)
    D = f(0.1)
    out = ref_ssd(x, dt, A.reshape(1), B, C, 16, D=D)
    h1 = 0.5 * 1.0 * 3.0
    h2 = math.exp(0.25 * -2.0) * h1 + 0.25 * -2.0 * 1.0
    expected = [h1 * 0.5 + 0.1 * 1.0, h2 * 2.0 + 0.1 * -2.0]
    assert torch.allclose(out.flatten(), f(*expected), rtol=1e-12)


def chunked_ssd(x, dt, A, B, C, chunk):
    """The SSD matrix form, chunk by chunk, written independently of the recurrence (no D, z, bias)."""
    b, l, h, p = x.shape
    out = torch.zeros_like(x)
    state = x.new_zeros(b, h, p, B.shape[-1])
    Bh = B.repeat_interleave(h // B.shape[2], dim=2)
    Ch = C.repeat_interleave(h // C.shape[2], dim=2)
    for s in range(0, l, chunk):
        e = min(s + chunk, l)
        a = dt[:, s:e] * A  # [b, q, h]
        cum = a.cumsum(1)
        seg = cum[:, :, None, :] - cum[:, None, :, :]  # [b, i, j, h]
        mask = torch.tril(torch.ones(e - s, e - s, dtype=torch.bool))[None, :, :, None]
        L = torch.where(mask, seg.exp(), 0.0)
        scores = torch.einsum("bihn,bjhn->bijh", Ch[:, s:e], Bh[:, s:e]) * L * dt[:, s:e][:, None]
        out[:, s:e] = torch.einsum("bijh,bjhp->bihp", scores, x[:, s:e])
        out[:, s:e] += torch.einsum("bihn,bhpn->bihp", Ch[:, s:e], state) * cum.exp()[..., None]
        w = (cum[:, -1:, :] - cum).exp() * dt[:, s:e]
        state = state * cum[:, -1].exp()[..., None, None] + torch.einsum("bjh,bjhp,bjhn->bhpn", w, x[:, s:e], Bh[:, s:e])
    return out


def test_reference_agrees_with_chunked_matrix_form():
    kw = OP.make_inputs(batch=2, seqlen=37, nheads=4, headdim=3, dstate=5, ngroups=2, chunk_size=16,
                        D=False, z=False, dt_bias=False, softplus=False, dtype="fp64", seed=2)
    kw = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in kw.items()}
    kw["dt"] = kw["dt"].abs()  # a non-negative step size, as after softplus
    expected = chunked_ssd(kw["x"], kw["dt"], kw["A"], kw["B"], kw["C"], 16)
    assert torch.allclose(ref_ssd(**kw), expected, rtol=1e-10, atol=1e-12)


def test_cost_matches_hand_count():
    c = OP.cost_of(batch=1, seqlen=64, nheads=2, headdim=4, dstate=8, ngroups=1, chunk_size=32, dtype="bf16")
    tensor = 1 * 2 * 64 * 32 * 8 + 2 * (2 * 64 * 32 * 4 + 4 * 64 * 4 * 8)
    assert c.tensor_flops == tensor
    assert c.flops == tensor + 2 * (2 * 2 * 4 * 8 + 4 * 64 * 32) + 64 * 2 * 4 * 6
    assert c.transcendentals == 2 * (64 + 64 * 32 + 2 * 64) + 64 * 2 * 4
    xe = 64 * 2 * 4 * 2
    assert c.min_bytes == 3 * xe + 64 * 2 * 2 + 2 * 64 * 8 * 2 + 3 * 2 * 4
    assert c.impl_bytes["official"] > 2 * c.min_bytes  # chunk states and CB round trips


def test_triton_matches_float64_reference_on_small_grid():
    results = list(check(OP, ["triton"], grid="small", device="cpu", seed=3))
    assert results and all(r.status == "pass" for r in results), [(r.config, r.dtype, r.rel_err, r.message)
                                                                   for r in results if r.status != "pass"]


@pytest.mark.parametrize("bad", [dict(nheads=3, ngroups=2), dict(dstate=512), dict(chunk_size=100)],
                         ids=["H3-G2", "N512", "Q100"])
def test_bad_shapes_raise(bad):
    with pytest.raises(ShapeError):
        OP.shape(**bad)


def test_official_unavailable_on_cpu():
    ok, why = OP.impls["official"].availability("cpu")
    assert not ok and why


@pytest.mark.gpu
def test_triton_matches_official_on_upstream_grid():
    results = list(check(OP, ["triton"], grid="upstream", device="cuda", seed=2026))
    assert all(r.status == "pass" and r.baseline_ok is not False for r in results), [
        (r.config, r.dtype, r.rel_err, r.baseline_max_abs) for r in results if r.failed]
