"""selective_scan: reference vs hand computation, cost vs hand counts, our Triton kernel vs float64."""
import math

import pytest
import torch

from ssmscope import kernels
from ssmscope.kernels.check import check, check_one
from ssmscope.kernels.op import ShapeError
from ssmscope.kernels.selective_scan.ref import selective_scan as ref_scan

OP = kernels.get("selective_scan")


def test_reference_matches_hand_computed_two_steps():
    # B=1, D=1, N=1, L=2: h1 = d1·u1·b1, h2 = exp(d2·a)·h1 + d2·u2·b2, y = h·c + D·u, out = y·silu(z)
    u = torch.tensor([[[1.0, 2.0]]], dtype=torch.float64)
    delta = torch.tensor([[[0.5, 0.25]]], dtype=torch.float64)
    A = torch.tensor([[-2.0]], dtype=torch.float64)
    B = torch.tensor([[[[3.0, -1.0]]]], dtype=torch.float64)
    C = torch.tensor([[[[0.5, 2.0]]]], dtype=torch.float64)
    D = torch.tensor([0.1], dtype=torch.float64)
    z = torch.tensor([[[1.0, -1.0]]], dtype=torch.float64)
    h1 = 0.5 * 1.0 * 3.0
    h2 = math.exp(0.25 * -2.0) * h1 + 0.25 * 2.0 * -1.0
    silu = lambda v: v / (1 + math.exp(-v))  # noqa: E731
    expected = [(h1 * 0.5 + 0.1 * 1.0) * silu(1.0), (h2 * 2.0 + 0.1 * 2.0) * silu(-1.0)]
    out = ref_scan(u, delta, A, B, C, D=D, z=z)
    assert torch.allclose(out[0, 0], torch.tensor(expected, dtype=torch.float64), rtol=1e-12)


def test_reference_softplus_bias_and_groups():
    # Groups: channel d uses B[:, d // (D/G)]; softplus(delta + bias) applied before the recurrence.
    kw = OP.make_inputs(batch=1, dim=4, dstate=3, seqlen=5, groups=2, dtype="fp64", seed=3)
    kw = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in kw.items()}  # A, D, bias come as fp32
    out = ref_scan(**kw)
    for d in range(4):
        g = d // 2
        dt = torch.nn.functional.softplus(kw["delta"][0, d] + kw["delta_bias"][d])
        h = torch.zeros(3, dtype=torch.float64)
        for t in range(5):
            h = torch.exp(dt[t] * kw["A"][d]) * h + dt[t] * kw["u"][0, d, t] * kw["B"][0, g, :, t]
            y = (h * kw["C"][0, g, :, t]).sum() + kw["D"][d] * kw["u"][0, d, t]
            y = y * torch.nn.functional.silu(kw["z"][0, d, t])
            assert torch.isclose(out[0, d, t], y, rtol=1e-12, atol=1e-14)


def test_cost_matches_hand_count():
    c = OP.cost_of(batch=2, dim=4, dstate=8, seqlen=10, groups=2, dtype="bf16")
    steps, states = 2 * 4 * 10, 2 * 4 * 10 * 8
    assert c.flops == 6 * states + (1 + 1 + 1 + 2 + 4) * steps
    assert c.transcendentals == states + 3 * steps
    # u, delta, z, out: 80 elements × 2 B each; B, C: 2·2·8·10 × 2 B; A 4·8·4 B; D, bias 4·4 B
    assert c.min_bytes == 4 * 80 * 2 + 2 * 320 * 2 + 128 + 16 + 16
    assert c.impl_bytes["official"] == c.min_bytes + 80 * 2 + 2 * 4 * 1 * 16 * 4
    bare = OP.cost_of(batch=1, dim=1, dstate=1, seqlen=1, D=False, z=False, delta_bias=False, softplus=False,
                      dtype="fp32")
    assert (bare.flops, bare.transcendentals, bare.min_bytes) == (7.0, 1.0, 3 * 4 + 2 * 4 + 4)


def test_triton_matches_float64_reference_on_small_grid():
    results = list(check(OP, ["triton"], grid="small", device="cpu", seed=11))
    assert results and all(r.status == "pass" for r in results), [(r.config, r.dtype, r.rel_err, r.message)
                                                                   for r in results if r.status != "pass"]


def test_unwritten_output_is_caught():
    import dataclasses

    from ssmscope.kernels.op import Impl

    def half_written(**kw):
        out = torch.empty_like(kw["u"])
        out[..., : out.shape[-1] // 2] = ref_scan(**kw)[..., : out.shape[-1] // 2]
        return out

    import sys
    sys.modules[__name__].half_written = half_written
    broken = dataclasses.replace(OP, impls={**OP.impls, "broken": Impl("broken", f"{__name__}:half_written", "ours")})
    res = check_one(broken, "broken", dict(batch=1, dim=4, dstate=4, seqlen=16, dtype="fp32"), device="cpu", seed=0)
    assert res.status == "fail" and res.nan_count > 0


@pytest.mark.parametrize("bad", [dict(dstate=257), dict(dim=6, groups=4), dict(seqlen=0)],
                         ids=["N257", "D6-G4", "L0"])
def test_bad_shapes_raise(bad):
    with pytest.raises(ShapeError):
        OP.shape(**bad)


def test_official_reports_why_it_cannot_run_on_cpu():
    ok, why = OP.impls["official"].availability("cpu")
    assert not ok and why


@pytest.mark.gpu
def test_triton_matches_official_on_part_of_upstream_grid():
    configs = OP.grid("upstream")[::7]
    results = list(check(OP, ["triton"], configs=configs, device="cuda", seed=2026))
    assert all(r.status == "pass" and r.baseline_ok for r in results), [
        (r.config, r.dtype, r.rel_err, r.baseline_max_abs) for r in results if r.failed]
