"""selective_state_update: the reference by hand and against the definition (both layouts), the cost model by
hand, our Triton kernel (interpreter on CPU) against the float64 reference with the state compared too, the
in-place update, NaN poisoning, shape errors, and (GPU) ours against the official kernel."""
import dataclasses
import importlib.util
import math
import sys
import types

import pytest
import torch

from ssmscope import kernels
from ssmscope.kernels.check import check, check_one, clone_inputs, disagreements
from ssmscope.kernels.op import Impl, ShapeError, Unavailable
from ssmscope.kernels.selective_state_update import StateUpdateShape, official_supports
from ssmscope.kernels.selective_state_update.ref import selective_state_update as ref_step

OP = kernels.get("selective_state_update")


def triton_step(**kw):
    from ssmscope.kernels.selective_state_update.triton_kernel import selective_state_update

    return selective_state_update(**kw)


def naive_step(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """The definition in the head layout, one scalar at a time (float64); returns (out, new state)."""
    batch, nheads, dim, dstate = state.shape
    groups = B.shape[1]
    out = torch.zeros(batch, nheads, dim, dtype=torch.float64)
    new = torch.zeros(batch, nheads, dim, dstate, dtype=torch.float64)
    for b in range(batch):
        for h in range(nheads):
            g = h // (nheads // groups)
            for p in range(dim):
                d = float(dt[b, h, p]) + (float(dt_bias[h, p]) if dt_bias is not None else 0.0)
                d = math.log1p(math.exp(d)) if dt_softplus else d
                y = 0.0
                for n in range(dstate):
                    new[b, h, p, n] = (math.exp(d * float(A[h, p, n])) * float(state[b, h, p, n])
                                       + d * float(x[b, h, p]) * float(B[b, g, n]))
                    y += float(new[b, h, p, n]) * float(C[b, g, n])
                y += float(D[h, p]) * float(x[b, h, p]) if D is not None else 0.0
                out[b, h, p] = y * float(z[b, h, p]) / (1 + math.exp(-float(z[b, h, p]))) if z is not None else y
    return out, new


def as_f64(kw):
    return {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in kw.items()}


# ---------------------------------------------------------------------------------------------- reference
def test_ref_one_channel_by_hand():
    # Mamba-1 layout, B=1, D=1, N=2: δ = softplus(0.3 + 0.1), state ← exp(δA)·state + δ·x·B,
    # out = (state·C + D·x)·silu(z).
    f64 = torch.float64
    state = torch.tensor([[[1.0, -2.0]]], dtype=f64)
    x, dt, z = (torch.tensor([[v]], dtype=f64) for v in (0.5, 0.3, 2.0))
    A = torch.tensor([[-1.0, -0.5]], dtype=f64)
    B, C = torch.tensor([[2.0, 1.0]], dtype=f64), torch.tensor([[1.0, 3.0]], dtype=f64)
    D, bias = torch.tensor([0.25], dtype=f64), torch.tensor([0.1], dtype=f64)
    out = ref_step(state, x, dt, A, B, C, D=D, z=z, dt_bias=bias, dt_softplus=True)
    d = math.log1p(math.exp(0.4))
    s = [math.exp(-d) * 1.0 + d * 0.5 * 2.0, math.exp(-0.5 * d) * -2.0 + d * 0.5 * 1.0]
    y = (s[0] * 1.0 + s[1] * 3.0 + 0.25 * 0.5) * (2.0 / (1 + math.exp(-2.0)))
    torch.testing.assert_close(state[0, 0], torch.tensor(s, dtype=f64), rtol=1e-13, atol=0)
    assert out.shape == (1, 1) and math.isclose(out.item(), y, rel_tol=1e-13)


def test_ref_two_heads_share_a_group_by_hand():
    # Mamba-2 layout, B=1, H=2, P=1, N=1, G=1, no options: each head decays by its own exp(dt·A).
    f64 = torch.float64
    state = torch.tensor([[[[2.0]], [[-1.0]]]], dtype=f64)
    x = torch.tensor([[[1.0], [3.0]]], dtype=f64)
    dt = torch.tensor([[[0.5], [0.25]]], dtype=f64)
    A = torch.tensor([[[-1.0]], [[-4.0]]], dtype=f64)
    B, C = torch.tensor([[[2.0]]], dtype=f64), torch.tensor([[[-0.5]]], dtype=f64)
    out = ref_step(state, x, dt, A, B, C)
    s0 = math.exp(-0.5) * 2.0 + 0.5 * 1.0 * 2.0
    s1 = math.exp(-1.0) * -1.0 + 0.25 * 3.0 * 2.0
    torch.testing.assert_close(state.flatten(), torch.tensor([s0, s1], dtype=f64), rtol=1e-13, atol=0)
    torch.testing.assert_close(out.flatten(), torch.tensor([-0.5 * s0, -0.5 * s1], dtype=f64), rtol=1e-13, atol=0)


LAYOUTS = {
    "mamba1": dict(batch=2, dim=5, dstate=3),
    "heads": dict(batch=2, nheads=4, dim=3, dstate=2, ngroups=2, heads=True, tied=False),
    "tied": dict(batch=2, nheads=4, dim=3, dstate=2, ngroups=4, heads=True),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("options", [True, False], ids=["all", "none"])
def test_ref_matches_definition(layout, options):
    flags = {} if options else dict(D=False, z=False, dt_bias=False, softplus=False)
    kw = as_f64(OP.make_inputs(dtype="fp64", seed=2, **LAYOUTS[layout], **flags))
    heads = OP.shape(**LAYOUTS[layout]).heads
    lift = (lambda t, axis: t.unsqueeze(axis) if t is not None and not heads else t)  # noqa: E731
    expected, new_state = naive_step(lift(kw["state"], 1), lift(kw["x"], 1), lift(kw["dt"], 1), lift(kw["A"], 0),
                                     lift(kw["B"], 1), lift(kw["C"], 1), lift(kw["D"], 0), lift(kw["z"], 1),
                                     lift(kw["dt_bias"], 0), kw["dt_softplus"])
    out = ref_step(**kw)
    torch.testing.assert_close(out, expected if heads else expected.squeeze(1), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(kw["state"], new_state if heads else new_state.squeeze(1), rtol=1e-12, atol=1e-14)


def test_generate_layouts_as_mamba_builds_them():
    m1 = OP.make_inputs(batch=2, dim=6, dstate=4, dtype="bf16", seed=0)
    assert m1["state"].shape == (2, 6, 4) and m1["x"].shape == (2, 6) and m1["A"].shape == (6, 4)
    assert m1["B"].shape == (2, 4) and m1["D"].shape == (6,) and m1["state"].dtype == torch.bfloat16
    tied = OP.make_inputs(batch=2, nheads=4, dim=8, dstate=16, ngroups=2, heads=True, dtype="fp32", seed=1)
    assert tied["dt"].stride(-1) == 0 and tied["A"].stride()[1:] == (0, 0)
    assert tied["D"].stride(-1) == 0 and tied["dt_bias"].stride(-1) == 0 and tied["B"].shape == (2, 2, 16)
    copy = clone_inputs(tied)  # the checker keeps the expansions, so kernels see Mamba2's strides
    assert copy["A"].stride()[1:] == (0, 0) and torch.equal(copy["dt"], tied["dt"])
    untied = OP.make_inputs(batch=2, nheads=4, dim=8, dstate=16, heads=True, tied=False, dtype="fp32", seed=1)
    assert untied["A"].is_contiguous() and untied["dt"].is_contiguous()


# ---------------------------------------------------------------------------------------------- cost
def test_cost_by_hand():
    m1 = OP.cost_of(batch=2, dim=3, dstate=4, dtype="bf16")  # every option on
    # 24 elements x (6 FLOPs, 1 exp); 6 rows x (δx 1, bias 1, softplus 1, D 2, silu 4) and 3 transcendentals
    assert m1.flops == 24 * 6 + 6 * 9 and m1.transcendentals == 24 + 6 * 3 and m1.tensor_flops == 0
    assert dict(m1.bytes) == {"state_read": 48, "state_write": 48, "x": 12, "z": 12, "out": 12, "dt": 12,
                              "B": 16, "C": 16, "A": 48, "D": 12, "dt_bias": 12}
    tied = OP.cost_of(batch=2, nheads=4, dim=8, dstate=16, ngroups=2, heads=True, dtype="fp16")
    elems, rows, bh = 2 * 4 * 8 * 16, 2 * 4 * 8, 2 * 4
    # tied: δ, softplus, δ·A and the decay exp once per (b, h); 5 FLOPs per element
    assert tied.flops == 5 * elems + rows * (1 + 2 + 4) + bh * (1 + 1) + bh
    assert tied.transcendentals == bh + rows + 2 * bh
    assert tied.bytes["dt"] == bh * 2 and tied.bytes["A"] == tied.bytes["D"] == tied.bytes["dt_bias"] == 4 * 4
    # state read + write, x/z/out per row, dt per (b, h), B and C per (b, g), A/D/dt_bias per head (fp32)
    assert tied.bytes["B"] == 2 * 2 * 16 * 2 and tied.min_bytes == 2 * elems * 2 + 3 * rows * 2 + 16 + 2 * 128 + 48
    untied = OP.cost_of(batch=2, nheads=4, dim=8, dstate=16, ngroups=2, heads=True, tied=False, D=False, z=False,
                        dtype="fp32")
    assert untied.flops == 6 * elems + rows * 3 and untied.transcendentals == elems + 2 * rows
    assert untied.bytes["A"] == 4 * 8 * 16 * 4 and untied.bytes["D"] == 0


# ---------------------------------------------------------------------------------------------- triton
def test_small_grid_covers_layouts_dtypes_flags():
    grid = [OP.shape(**{k: v for k, v in c.items() if k != "dtype"}) for c in OP.grid("small")]
    assert {(s.heads, s.per_head) for s in grid} == {(False, False), (True, False), (True, True)}
    assert {c["dtype"] for c in OP.grid("small")} == {"fp32", "fp16", "bf16"}
    for flag in ("D", "z", "dt_bias", "softplus"):
        assert {getattr(s, flag) for s in grid} == {False, True}, flag


def test_triton_matches_float64_reference_on_small_grid():
    results = list(check(OP, ["triton"], grid="small", device="cpu", seed=20232))
    assert len(results) == len(OP.grid("small"))
    failed = [(r.config, r.dtype, r.status, r.errors, r.message) for r in results if r.status != "pass"]
    assert not failed, failed


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_triton_updates_a_strided_state_in_place(layout):
    """The state is a slice of a wider cache: exactly the slice changes, as the reference says."""
    shape = OP.shape(**LAYOUTS[layout])
    kw = OP.make_inputs(dtype="fp32", seed=6, **LAYOUTS[layout])
    cache = torch.randn(*kw["state"].shape[:-1], shape.dstate + 5)
    ours = dict(clone_inputs(kw), state=cache[..., 2:2 + shape.dstate])
    ours["state"].copy_(kw["state"])
    before = cache.clone()
    expected = ref_step(**(ref := clone_inputs(kw)))
    out = triton_step(**ours)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cache[..., 2:2 + shape.dstate], ref["state"], rtol=1e-5, atol=1e-6)
    assert torch.equal(cache[..., :2], before[..., :2]) and torch.equal(cache[..., 2 + shape.dstate:],
                                                                        before[..., 2 + shape.dstate:])
    assert not torch.equal(ref["state"], kw["state"])  # it did change


def test_triton_tied_path_matches_dense_copies():
    """Per-head stride-0 inputs (one δ and decay per head) give what the same values, densified, give."""
    kw = OP.make_inputs(batch=3, nheads=4, dim=6, dstate=8, ngroups=2, heads=True, dtype="fp32", seed=8)
    dense = {k: v.contiguous() if isinstance(v, torch.Tensor) else v for k, v in clone_inputs(kw).items()}
    tied = clone_inputs(kw)
    assert tied["A"].stride(-1) == 0 and dense["A"].stride(-1) == 1
    torch.testing.assert_close(triton_step(**tied), triton_step(**dense), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(tied["state"], dense["state"], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dstate", [16, 12], ids=["even_n", "masked_n"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_triton_non_unit_n_strides(dstate, dtype):
    """State, A, B and C with a non-unit stride along N (the unit-stride constexprs off), with N a power of
    two (no N mask) and not: the same as the reference."""
    gen = torch.Generator().manual_seed(11)
    batch, dim = 3, 21
    state = torch.randn(batch, dim, 2 * dstate, generator=gen).to(dtype)[..., ::2]
    A = -(torch.rand(dstate, dim, generator=gen) + 1).t()  # [D, N] with stride (1, D)
    B = torch.randn(dstate, batch, generator=gen).to(dtype).t()
    C = torch.randn(batch, 3 * dstate, generator=gen).to(dtype)[:, ::3]
    x, dt, z = (torch.randn(batch, dim, generator=gen).to(dtype) for _ in range(3))
    D, bias = torch.randn(dim, generator=gen), torch.rand(dim, generator=gen) - 4
    assert state.stride(2) != 1 and A.stride(1) != 1 and B.stride(1) != 1 and C.stride(1) != 1
    kw = dict(x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=bias, dt_softplus=True)
    ref_state = state.clone()
    expected = ref_step(state=ref_state, **kw)
    out = triton_step(state=state, **kw)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(out, expected, **tol)
    torch.testing.assert_close(state, ref_state, **tol)


def test_block_sizes_spread_batch_one_over_more_programs():
    # 16 elements per thread; 8 warps only once a single row passes 512 elements
    from ssmscope.kernels.selective_state_update.triton_kernel import _block_sizes

    assert _block_sizes(1, 1, 1536, 16) == (16, 16, 1)  # 96 programs instead of 48
    assert _block_sizes(64, 1, 1536, 16) == (32, 16, 1)  # 3072 programs: the 512-element tile, one warp
    assert _block_sizes(1, 24, 64, 128) == (4, 128, 1)  # Mamba-2 130M: 384 programs
    assert _block_sizes(1, 1, 7, 4) == (8, 4, 1)
    assert _block_sizes(1, 1, 64, 1024) == (1, 1024, 8)


# ---------------------------------------------------------------------------------------------- poison
def _forgets_the_state(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    return ref_step(state.clone(), x, dt, A, B, C, D, z, dt_bias, dt_softplus)


def _skips_last_row(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    full = ref_step(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)
    out = torch.empty_like(full)
    out[:, :-1] = full[:, :-1]
    return out


def test_broken_steps_fail(monkeypatch):
    module = types.ModuleType("ssmscope_test_ssu_broken")
    module.forgets, module.skips = _forgets_the_state, _skips_last_row
    monkeypatch.setitem(sys.modules, module.__name__, module)
    op = dataclasses.replace(OP, impls={**OP.impls, "forgets": Impl("forgets", f"{module.__name__}:forgets", "library"),
                                        "skips": Impl("skips", f"{module.__name__}:skips", "library")})
    config = dict(batch=2, dim=6, dstate=4, dtype="fp32")
    stale = check_one(op, "forgets", config, device="cpu", seed=1)  # right output, state never written back
    assert stale.status == "fail" and stale.errors["out"] < 1e-6 and stale.errors["state"] > 1e-2
    nan = check_one(op, "skips", config, device="cpu", seed=1)
    assert nan.status == "fail" and nan.nan_count == 2 and "NaN" in nan.message


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("bad,match", [
    (dict(nheads=2), "Mamba-1 layout"), (dict(ngroups=2), "Mamba-1 layout"),
    (dict(nheads=3, ngroups=2, heads=True), "divisible by ngroups"), (dict(dstate=0), "dstate must be >= 1"),
], ids=["mamba1-H2", "mamba1-G2", "H3-G2", "N0"])
def test_bad_shapes_raise(bad, match):
    with pytest.raises(ShapeError, match=match):
        OP.shape(**bad)


def test_bad_tensors_raise_shape_error_in_ref_and_triton():
    kw = OP.make_inputs(batch=2, nheads=4, dim=3, dstate=5, ngroups=2, heads=True, dtype="fp32", seed=0)
    bad = {
        r"x must be \[B, H, P\]": dict(x=kw["x"][:, :3]),
        r"A must be \[H, P, N\]": dict(A=kw["A"][..., :4]),
        r"C must be \[B, G, N\]": dict(C=kw["C"][:, :1]),
        "nheads 4 must be divisible by ngroups 3": dict(B=kw["B"][:, :1].expand(2, 3, 5),
                                                        C=kw["C"][:, :1].expand(2, 3, 5)),
        r"dt_bias must be \[H, P\]": dict(dt_bias=kw["dt_bias"][:2]),
        r"state must be \[B, D, N\] or \[B, H, P, N\]": dict(state=kw["state"][0, 0, 0]),
    }
    for match, change in bad.items():
        for fn in (ref_step, triton_step):
            with pytest.raises(ShapeError, match=match):
                fn(**dict(clone_inputs(kw), **change))
    m1 = OP.make_inputs(batch=2, dim=6, dstate=4, dtype="fp32", seed=0)
    with pytest.raises(ShapeError, match=r"B must be \[B, N\]"):
        triton_step(**dict(m1, B=m1["B"][:, :3]))


# ---------------------------------------------------------------------------------------------- official
def test_official_limits():
    assert official_supports(StateUpdateShape(batch=64, nheads=80, dim=64, dstate=128, heads=True),
                             "bf16") is None
    assert "dt_bias" in official_supports(StateUpdateShape(dt_bias=False), "bf16")
    assert "TypeError when D is None" in official_supports(StateUpdateShape(D=False), "fp16")
    assert "2^31" in official_supports(StateUpdateShape(batch=4096, dim=5120, dstate=128), "bf16")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
def test_official_unavailable_on_cpu_with_reason():
    ok, why = OP.impls["official"].availability("cpu")
    assert not ok and "CUDA" in why
    res = check_one(OP, "official", dict(batch=1, dim=8, dstate=4, dtype="bf16"), device="cpu", seed=0)
    assert res.status == "unavailable" and res.message
    if importlib.util.find_spec("mamba_ssm") is None:
        with pytest.raises(Unavailable, match="cannot import"):
            OP.impls["official"].load()


# ---------------------------------------------------------------------------------------------- GPU

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_ours_matches_official_on_upstream_grid(dtype):
    configs = [c for c in OP.grid("upstream") if c["dtype"] == dtype]
    results = list(check(OP, ["triton", "official"], configs=configs, device="cuda", seed=0))
    assert not disagreements(results)


@pytest.mark.gpu
def test_ours_matches_official_on_paper_grid():
    results = list(check(OP, ["triton", "official"], grid="paper", device="cuda", seed=0))
    assert not disagreements(results)


@pytest.mark.gpu
def test_triton_small_grid_on_gpu():
    results = list(check(OP, ["triton"], grid="small", device="cuda", seed=0))
    assert not [(r.config, r.dtype, r.status, r.message) for r in results if r.status != "pass"]


def test_tiling_knobs_must_be_powers_of_two():
    from ssmscope.kernels.selective_state_update.triton_kernel import selective_state_update

    kw = OP.make_inputs(batch=1, dim=8, dstate=4, dtype="fp32", seed=3)
    with pytest.raises(ValueError, match="block_m"):
        selective_state_update(**kw, block_m=3)
