"""causal_conv1d_update: reference by hand and against the prefill conv, cost model by hand, our Triton
kernel (interpreter on CPU) against the float64 reference, in-place state, NaN poisoning, shape errors,
and (GPU) ours against the official kernel."""
import dataclasses
import importlib.util
import sys
import types

import pytest
import torch

from ssmscope import kernels
from ssmscope.kernels.causal_conv1d.ref import causal_conv1d as ref_prefill
from ssmscope.kernels.causal_conv1d_update import ConvUpdateShape, official_supports
from ssmscope.kernels.causal_conv1d_update.ref import causal_conv1d_update as ref_update
from ssmscope.kernels.check import check, check_one, disagreements
from ssmscope.kernels.op import Impl, ShapeError, Unavailable

OP = kernels.get("causal_conv1d_update")


def _triton_update():
    from ssmscope.kernels.causal_conv1d_update.triton_kernel import causal_conv1d_update

    return causal_conv1d_update


# ---------------------------------------------------------------------------------------------- reference
def test_ref_width2_by_hand():
    weight = torch.tensor([[0.5, 2.0]], dtype=torch.float64)  # out[t] = 0.5·z[t-1] + 2·z[t] + 0.1
    bias = torch.tensor([0.1], dtype=torch.float64)
    # Minimal state (K = W-1 = 1) and two new tokens: z = [2, 3, -1].
    state = torch.tensor([[[2.0]]], dtype=torch.float64)
    out = ref_update(torch.tensor([[[3.0, -1.0]]], dtype=torch.float64), state, weight, bias)
    torch.testing.assert_close(out, torch.tensor([[[7.1, -0.4]]], dtype=torch.float64), rtol=0, atol=1e-12)
    assert state.tolist() == [[[-1.0]]]
    # Mamba's step: x [B, D], K = 3: z = [1, 2, 3, 4]; the state rolls to [2, 3, 4].
    state = torch.tensor([[[1.0, 2.0, 3.0]]], dtype=torch.float64)
    out = ref_update(torch.tensor([[4.0]], dtype=torch.float64), state, weight, bias, activation="silu")
    y = torch.tensor([[9.6]], dtype=torch.float64)
    torch.testing.assert_close(out, y / (1 + torch.exp(-y)), rtol=0, atol=1e-12)
    assert state.tolist() == [[[2.0, 3.0, 4.0]]]


@pytest.mark.parametrize("width", [2, 3, 4])
@pytest.mark.parametrize("state_extra", [0, 3], ids=["K=W-1", "K=W+2"])
def test_ref_steps_reproduce_prefill(width, state_extra):
    """Decoding a sequence in chunks of 1, 3, 2, 5 tokens from an empty state equals the prefill conv."""
    gen = torch.Generator().manual_seed(width + 10 * state_extra)
    B, D, L = 2, 3, 11
    x = torch.randn(B, D, L, generator=gen, dtype=torch.float64)
    weight = torch.randn(D, width, generator=gen, dtype=torch.float64)
    bias = torch.randn(D, generator=gen, dtype=torch.float64)
    state = torch.zeros(B, D, width - 1 + state_extra, dtype=torch.float64)  # = the causal zero padding
    outs, start = [], 0
    for step in (1, 3, 2, 5):
        outs.append(ref_update(x[..., start:start + step], state, weight, bias, activation="silu"))
        start += step
    torch.testing.assert_close(torch.cat(outs, -1), ref_prefill(x, weight, bias, "silu"), rtol=1e-12, atol=1e-12)
    K = state.shape[-1]
    torch.testing.assert_close(state, x[..., L - K:], rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------- cost
def test_cost_by_hand():
    c = OP.cost_of(batch=2, dim=3, width=4, seqlen=1, state_len=4, dtype="bf16")
    # 6 outputs x (4 mul + 3 add + 1 bias + 4 silu) = 72; state read max(4-1, 3) = 3, written 4 per row.
    assert c.flops == 72 and c.transcendentals == 6
    assert dict(c.bytes) == {"x": 12, "out": 12, "state_read": 36, "state_write": 48, "weight": 24, "bias": 6}
    # S = 5 > K = 4, W = 2: no state entry survives; only the newest (W-1 = 1) feeds the first output.
    c = OP.cost_of(batch=1, dim=2, width=2, seqlen=5, state_len=4, bias=False, silu=False, weight_fp32=True,
                   dtype="fp32")
    assert c.flops == 10 * 3 and c.transcendentals == 0
    assert dict(c.bytes) == {"x": 40, "out": 40, "state_read": 8, "state_write": 32, "weight": 16, "bias": 0}


# ---------------------------------------------------------------------------------------------- triton
def test_small_grid_covers_cases():
    grid = OP.grid("small")
    assert {c["width"] for c in grid} == {2, 3, 4} and {c["dtype"] for c in grid} == {"fp32", "fp16", "bf16"}
    assert any(c["x2d"] for c in grid) and any(c["channel_last"] for c in grid)
    assert any(c["state_len"] == c["width"] - 1 for c in grid)
    assert any(c["seqlen"] > c["state_len"] for c in grid)
    assert any(c["dim"] % 2 for c in grid)


def test_triton_matches_float64_reference_on_small_grid():
    results = list(check(OP, ["triton"], grid="small", device="cpu", seed=4242))
    assert len(results) == len(OP.grid("small"))
    failed = [(r.config, r.dtype, r.status, r.errors, r.message) for r in results if r.status != "pass"]
    assert not failed, failed
    assert all(r.errors["conv_state"] == 0.0 for r in results)  # the roll is an exact copy


@pytest.mark.parametrize("channel_last", [False, True], ids=["channel_first", "channel_last"])
def test_triton_updates_state_in_place(channel_last):
    kw = OP.make_inputs(batch=2, dim=24, width=4, seqlen=1, state_len=6, x2d=True, channel_last=channel_last,
                        dtype="fp32", seed=5)
    state = kw["conv_state"]
    ptr, strides = state.data_ptr(), state.stride()
    expected_state = state.clone()
    expected = ref_update(kw["x"], expected_state, kw["weight"], kw["bias"], kw["activation"])
    out = _triton_update()(**kw)
    assert out.shape == (2, 24) and state.data_ptr() == ptr and state.stride() == strides
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(state, expected_state)


def test_triton_steps_reproduce_prefill():
    gen = torch.Generator().manual_seed(3)
    B, D, L, W = 2, 19, 9, 3
    x = torch.randn(B, D, L, generator=gen)
    weight, bias = torch.randn(D, W, generator=gen), torch.randn(D, generator=gen)
    state = torch.zeros(B, D, W)
    update = _triton_update()
    outs = [update(x[..., s:e], state, weight, bias, "silu") for s, e in ((0, 1), (1, 5), (5, 9))]
    torch.testing.assert_close(torch.cat(outs, -1), ref_prefill(x, weight, bias, "silu"), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------- poison
def _out_partly_unwritten(x, conv_state, weight, bias=None, activation=None):
    full = ref_update(x, conv_state, weight, bias, activation)
    out = torch.empty_like(x)
    out[:, :-1] = full[:, :-1]  # the last channel never written
    return out


def _state_not_rolled(x, conv_state, weight, bias=None, activation=None):
    return ref_update(x, conv_state.clone(), weight, bias, activation)


def test_broken_impls_fail(monkeypatch):
    module = types.ModuleType("ssmscope_test_conv_update_broken")
    module.partial, module.stale = _out_partly_unwritten, _state_not_rolled
    monkeypatch.setitem(sys.modules, module.__name__, module)
    op = dataclasses.replace(OP, impls={**OP.impls,
                                        "partial": Impl("partial", f"{module.__name__}:partial", "library"),
                                        "stale": Impl("stale", f"{module.__name__}:stale", "library"),
                                        "ref_again": OP.impls["ref"]})
    config = dict(batch=3, dim=5, width=3, seqlen=2, state_len=4, dtype="fp32")
    partial = check_one(op, "partial", config, device="cpu", seed=2)
    assert partial.status == "fail" and partial.nan_count == 3 * 2 and "NaN" in partial.message
    stale = check_one(op, "stale", config, device="cpu", seed=2)
    assert stale.status == "fail" and stale.errors["conv_state"] > 0.1 and stale.errors["out"] < 1e-6
    assert check_one(op, "ref_again", config, device="cpu", seed=2).status == "pass"


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("fields, match", [
    (dict(width=5), "width must be in 2..4"),
    (dict(width=4, state_len=2), "state_len must be >= width - 1 = 3"),
    (dict(seqlen=2, x2d=True), "x2d"),
], ids=["width5", "short_state", "x2d_two_tokens"])
def test_bad_shapes_raise(fields, match):
    with pytest.raises(ShapeError, match=match):
        OP.shape(**fields)
    res = check_one(OP, "triton", dict(batch=1, dim=8, dtype="fp32", **fields), device="cpu", seed=0)
    assert res.status == "unsupported"


def test_triton_and_ref_reject_bad_arguments():
    update = _triton_update()
    x, state, weight = torch.randn(2, 8), torch.randn(2, 8, 3), torch.randn(8, 4)
    with pytest.raises(ShapeError, match="width must be in 2..4"):
        update(x, torch.randn(2, 8, 4), torch.randn(8, 5))
    with pytest.raises(ShapeError, match="K >= W-1=3"):
        update(x, torch.randn(2, 8, 2), weight)
    with pytest.raises(ShapeError, match="dtype"):
        update(x, state.half(), weight)
    with pytest.raises(ShapeError, match=r"weight must be \[D=8, W\]"):
        update(x, state, torch.randn(7, 4))
    seqlens = torch.zeros(2, dtype=torch.int32)
    for fn in (update, ref_update):
        with pytest.raises(ShapeError, match="circular-buffer"):
            fn(x, state, weight, cache_seqlens=seqlens)
        with pytest.raises(ShapeError, match="batch-gather"):
            fn(x, state, weight, conv_state_indices=seqlens)


# ---------------------------------------------------------------------------------------------- official
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
def test_official_unavailable_on_cpu_with_reason():
    ok, why = OP.impls["official"].availability("cpu")
    assert not ok and "CUDA" in why
    res = check_one(OP, "official", dict(batch=1, dim=8, dtype="bf16"), device="cpu", seed=0)
    assert res.status == "unavailable" and res.message
    if importlib.util.find_spec("causal_conv1d") is None:
        with pytest.raises(Unavailable, match="cannot import"):
            OP.impls["official"].load()


def test_official_limits():
    assert official_supports(ConvUpdateShape(batch=64, dim=2064, width=4, seqlen=5, state_len=13), "fp16") is None
    assert "2^32" in official_supports(ConvUpdateShape(batch=65536, dim=16384, state_len=4), "bf16")
    assert "gridDim.y" in official_supports(ConvUpdateShape(dim=64 * 65535 + 1), "bf16")
    assert "fp64" in official_supports(ConvUpdateShape(), "fp64")


# ---------------------------------------------------------------------------------------------- GPU

@pytest.mark.gpu
@pytest.mark.parametrize("grid", ["upstream", "paper", "small"])
def test_ours_matches_official(grid):
    results = list(check(OP, ["triton", "official"], grid=grid, device="cuda", seed=0))
    assert not disagreements(results)


@pytest.mark.gpu
def test_state_bit_exact_against_official():
    """Upstream asserts torch.equal on the state; ours must produce the same bits as the official kernel."""
    official = OP.impls["official"].load()
    kw = OP.make_inputs(batch=64, dim=2064, width=4, seqlen=5, state_len=13, channel_last=True,
                        weight_fp32=True, dtype="bf16", device="cuda", seed=0)
    theirs = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in kw.items()}
    out = _triton_update()(**kw)
    ref_out = official(**theirs)
    assert torch.equal(kw["conv_state"], theirs["conv_state"])
    torch.testing.assert_close(out.float(), ref_out.float(), rtol=1e-2, atol=5e-2)
