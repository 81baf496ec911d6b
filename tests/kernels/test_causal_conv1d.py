"""causal_conv1d: reference by hand, cost model by hand, our Triton kernel (interpreter on CPU) against the
float64 reference, NaN poisoning, shape errors, and (GPU) ours against the official kernel."""
import dataclasses
import importlib.util
import math
import sys
import types

import pytest
import torch

from ssmscope import kernels
from ssmscope.kernels.causal_conv1d import ConvShape, official_supports
from ssmscope.kernels.causal_conv1d.ref import causal_conv1d as ref_conv
from ssmscope.kernels.check import check, check_one, disagreements
from ssmscope.kernels.op import Impl, ShapeError, Unavailable

OP = kernels.get("causal_conv1d")


def naive_conv(x, weight, bias, silu):
    """The definition, one output element at a time (float64)."""
    B, D, L = x.shape
    W = weight.shape[1]
    out = torch.zeros(B, D, L, dtype=torch.float64)
    for b in range(B):
        for d in range(D):
            for t in range(L):
                y = float(bias[d]) if bias is not None else 0.0
                for k in range(W):
                    src = t - (W - 1) + k
                    if src >= 0:
                        y += float(weight[d, k]) * float(x[b, d, src])
                out[b, d, t] = y / (1 + math.exp(-y)) if silu else y
    return out


# ---------------------------------------------------------------------------------------------- reference
def test_ref_width2_by_hand():
    # Two channels, each with its own taps: out[t] = w0·x[t-1] + w1·x[t] + bias.
    x = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]], dtype=torch.float64)
    weight = torch.tensor([[0.5, -1.0], [2.0, 1.0]], dtype=torch.float64)
    bias = torch.tensor([0.25, -1.0], dtype=torch.float64)
    expected = torch.tensor([[[-0.75, -1.25, -1.75], [3.0, 12.0, 15.0]]], dtype=torch.float64)
    torch.testing.assert_close(ref_conv(x, weight, bias), expected, rtol=0, atol=1e-12)
    silu = expected / (1 + torch.exp(-expected))
    torch.testing.assert_close(ref_conv(x, weight, bias, activation="silu"), silu, rtol=0, atol=1e-12)
    # Without bias, the first step sees only x[0] through the last tap.
    assert ref_conv(x, weight)[0, 1, 0].item() == 4.0


@pytest.mark.parametrize("width", [2, 3, 4])
@pytest.mark.parametrize("silu", [False, True], ids=["nosilu", "silu"])
def test_ref_matches_definition(width, silu):
    gen = torch.Generator().manual_seed(width)
    x = torch.randn(2, 3, 7, generator=gen, dtype=torch.float64)
    weight = torch.randn(3, width, generator=gen, dtype=torch.float64)
    bias = torch.randn(3, generator=gen, dtype=torch.float64)
    out = ref_conv(x, weight, bias, activation="silu" if silu else None)
    torch.testing.assert_close(out, naive_conv(x, weight, bias, silu), rtol=1e-12, atol=1e-12)


def test_ref_half_input_keeps_dtype():
    kw = OP.make_inputs(batch=1, dim=8, seqlen=5, width=4, dtype="bf16", seed=3)
    out = ref_conv(**kw)
    assert out.dtype == torch.bfloat16 and out.shape == (1, 8, 5)


# ---------------------------------------------------------------------------------------------- cost
def test_cost_by_hand():
    c = OP.cost_of(batch=2, dim=3, seqlen=5, width=4, dtype="bf16")  # bias and silu on by default
    # 30 outputs x (4 mul + 3 add + 1 bias + 4 silu) = 360; one exp per output.
    assert c.flops == 360 and c.transcendentals == 30
    assert dict(c.bytes) == {"x": 60, "out": 60, "weight": 24, "bias": 6}
    assert c.min_bytes == 150 and c.intensity == pytest.approx(2.4)
    plain = OP.cost_of(batch=2, dim=3, seqlen=5, width=2, bias=False, silu=False, weight_fp32=True, dtype="fp16")
    assert plain.flops == 30 * 3 and plain.transcendentals == 0  # 2 mul + 1 add
    assert dict(plain.bytes) == {"x": 60, "out": 60, "weight": 24, "bias": 0}  # fp32 weight: 3·2·4


# ---------------------------------------------------------------------------------------------- triton
def test_small_grid_covers_layouts_lengths_widths():
    grid = OP.grid("small")
    assert {c["channel_last"] for c in grid} == {False, True}
    assert {1, 37} <= {c["seqlen"] for c in grid}
    assert {c["width"] for c in grid} == {2, 3, 4}
    assert {c["dtype"] for c in grid} == {"fp32", "fp16", "bf16"}
    assert any(c["dim"] % 2 for c in grid) and any(c["weight_fp32"] for c in grid)


def test_triton_matches_float64_reference_on_small_grid():
    results = list(check(OP, ["triton"], grid="small", device="cpu", seed=20240))
    assert len(results) == len(OP.grid("small"))
    failed = [(r.config, r.dtype, r.status, r.rel_err, r.message) for r in results if r.status != "pass"]
    assert not failed, failed


@pytest.mark.parametrize("channel_last", [False, True], ids=["channel_first", "channel_last"])
def test_triton_strided_slice_keeps_layout(channel_last):
    """Upstream slices x out of a wider tensor; ours must follow the strides and keep x's layout."""
    from ssmscope.kernels.causal_conv1d.triton_kernel import causal_conv1d as triton_conv

    gen = torch.Generator().manual_seed(7)
    B, D, L, W = 2, 24, 37, 4
    if channel_last:
        x = torch.randn(B, L, D + 16, generator=gen)[:, :, 8:8 + D].transpose(1, 2)
    else:
        x = torch.randn(B, D + 16, L, generator=gen)[:, 8:8 + D, :]
    assert not x.is_contiguous()
    weight, bias = torch.randn(D, W, generator=gen), torch.randn(D, generator=gen)
    out = triton_conv(x, weight, bias, activation="silu")
    torch.testing.assert_close(out, ref_conv(x.double(), weight.double(), bias.double(), "silu").float(),
                               rtol=1e-5, atol=1e-5)
    assert (out.stride(1) == 1) if channel_last else out.is_contiguous()


def test_triton_neither_layout_is_made_contiguous():
    from ssmscope.kernels.causal_conv1d.triton_kernel import causal_conv1d as triton_conv

    gen = torch.Generator().manual_seed(8)
    x = torch.randn(2, 9, 2 * 16, generator=gen)[..., ::2].transpose(1, 2)  # strides (.., 2, 32)
    assert x.stride(1) != 1 and x.stride(2) != 1
    weight = torch.randn(16, 3, generator=gen)
    torch.testing.assert_close(triton_conv(x, weight), ref_conv(x, weight), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("seqlen", [2048 + 64, 2048 + 5], ids=["even", "odd"])
@pytest.mark.parametrize("width", [2, 3, 4])
def test_triton_channel_first_halo_across_programs(dtype, seqlen, width):
    """Channel-first tiles of 2048 steps (16-byte groups of 4 or 8 steps): the taps before each group and
    each program come from the previous group's vector; L % V == 0 (group masks) and not."""
    from ssmscope.kernels.causal_conv1d.triton_kernel import causal_conv1d as triton_conv

    gen = torch.Generator().manual_seed(width)
    x = torch.randn(2, 3, seqlen, generator=gen).to(dtype)
    weight, bias = torch.randn(3, width, generator=gen).to(dtype), torch.randn(3, generator=gen).to(dtype)
    out = triton_conv(x, weight, bias, activation="silu")
    expected = ref_conv(x.double(), weight.double(), bias.double(), "silu")
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(out.double(), expected, **tol)


@pytest.mark.parametrize("dim", [24, 21], ids=["even_d", "odd_d"])
def test_triton_channel_last_rows_several_chunks_per_program(dim):
    """The rows design: a channel-last program loops over blocks of steps (3 here, the last one past the end)."""
    from ssmscope.kernels.causal_conv1d import triton_kernel

    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 37, dim, generator=gen).transpose(1, 2)
    weight, bias = torch.randn(dim, 4, generator=gen), torch.randn(dim, generator=gen)
    # the tuning knobs: 2 groups of 4 fp32 channels, blocks of 4 steps, 3 blocks per program, 1 warp
    out = triton_kernel.causal_conv1d(x, weight, bias, activation="silu", cl_design="rows", block_d=8, block_l=4,
                                      chunks=3, num_warps=1)
    torch.testing.assert_close(out, ref_conv(x.double(), weight.double(), bias.double(), "silu").float(),
                               rtol=1e-5, atol=1e-5)
    assert out.stride(1) == 1


def test_block_sizes():
    from ssmscope.kernels.causal_conv1d.triton_kernel import _cf_blocks, _cl_rows_blocks, _cl_window_blocks

    assert _cf_blocks(1536, 65536, 8) == (1, 256, 4)  # 2048 steps = 256 vectors of 8 bf16 per program
    assert _cf_blocks(1536, 37, 8) == (32, 8, 4)
    assert _cl_rows_blocks(1, 3328, 65536, 8) == (16, 32, 4, 4)
    assert _cl_rows_blocks(1, 3328, 4096, 8) == (16, 32, 2, 4)
    # window: 32 vectors of 8 bf16 channels (one per lane) x 4 segments (one per warp), 4 rows per iteration;
    # segments of 16 steps at long L, shorter ones (down to the 4 rows of one iteration) for more threads
    assert _cl_window_blocks(1, 3328, 65536, 8) == (32, 4, 16, 4, 4, True)
    assert _cl_window_blocks(1, 3328, 4096, 8) == (32, 4, 8, 4, 4, True)
    assert _cl_window_blocks(1, 3328, 1024, 8) == (32, 4, 4, 4, 4, True)
    assert _cl_window_blocks(2, 40, 37, 8) == (8, 16, 4, 4, 4, True)  # 64 channels, 16 segments
    assert _cl_window_blocks(1, 3328, 65536, 8, block_l=64, num_warps=2, unroll=8, prefetch=False) == \
        (32, 2, 64, 8, 2, False)
    assert _cl_window_blocks(1, 3328, 65536, 8, block_l=2) == (32, 4, 2, 2, 4, True)  # unroll follows block_l


# Channel-last cases at small odd shapes, each (batch, dim, seqlen, width, dtype, bias, silu, fp32 weight, knobs):
# ragged D (not a multiple of the 16-byte vector), L not a multiple of a segment or of the rows per iteration,
# L = 1, several channel blocks, widths 2-4, bias and silu on and off, each window knob off its default.
CL_CASES = [
    (2, 40, 37, 4, torch.float32, True, True, False, {}),
    (1, 19, 1, 3, torch.bfloat16, False, True, False, {}),
    (3, 136, 130, 2, torch.float32, True, False, False, dict(block_l=8, unroll=2)),
    (2, 300, 45, 4, torch.float16, True, True, False, dict(block_l=16, unroll=8, prefetch=False)),
    (1, 21, 11, 4, torch.bfloat16, True, False, True, dict(block_l=4, unroll=1, num_warps=1)),
    (2, 264, 29, 3, torch.bfloat16, False, False, False, dict(block_d=64, block_l=8)),
    (2, 13, 6, 2, torch.float16, True, True, True, dict(prefetch=False)),
]
HALF_TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float16: dict(rtol=2e-3, atol=2e-3),
            torch.bfloat16: dict(rtol=1e-2, atol=1e-2)}


@pytest.mark.parametrize("design", ["window", "rows"])
@pytest.mark.parametrize("case", range(len(CL_CASES)))
def test_triton_channel_last_designs_match_float64(design, case):
    """Both channel-last designs against the float64 reference on random inputs (the window knobs only
    with the window design)."""
    from ssmscope.kernels.causal_conv1d.triton_kernel import causal_conv1d as triton_conv

    batch, dim, seqlen, width, dtype, has_bias, silu, weight_fp32, knobs = CL_CASES[case]
    gen = torch.Generator().manual_seed(100 + case)
    x = torch.randn(batch, seqlen, dim, generator=gen).to(dtype).transpose(1, 2)
    wdtype = torch.float32 if weight_fp32 else dtype
    weight = (torch.randn(dim, width, generator=gen) * width ** -0.5).to(wdtype)
    bias = torch.randn(dim, generator=gen).to(wdtype) if has_bias else None
    activation = "silu" if silu else None
    kw = knobs if design == "window" else {}
    out = triton_conv(x, weight, bias, activation, cl_design=design, **kw)
    expected = ref_conv(x.double(), weight.double(), bias.double() if has_bias else None, activation)
    assert out.dtype == dtype and out.stride(1) == 1
    torch.testing.assert_close(out.double(), expected, **HALF_TOL[dtype])


@pytest.mark.parametrize("design", ["window", "rows"])
def test_triton_channel_last_64bit_row_offsets(design):
    """Rows 2^30 elements apart: the last row starts past 2^31, so a 32-bit row offset wraps (and the load
    faults). The 4 GiB of storage is virtual: only the rows read are touched."""
    from ssmscope.kernels.causal_conv1d.triton_kernel import causal_conv1d as triton_conv

    dim, seqlen, row = 24, 3, 2 ** 30 + 8
    try:
        storage = torch.empty(row * (seqlen - 1) + dim, dtype=torch.bfloat16)
    except RuntimeError as exc:  # no room for the address range
        pytest.skip(f"cannot reserve 4 GiB: {exc}")
    x = storage.as_strided((1, dim, seqlen), (0, 1, row))
    gen = torch.Generator().manual_seed(64)
    x.copy_(torch.randn(1, dim, seqlen, generator=gen))
    weight, bias = torch.randn(dim, 4, generator=gen), torch.randn(dim, generator=gen)
    out = triton_conv(x, weight, bias, "silu", cl_design=design)
    expected = ref_conv(x.double(), weight.double(), bias.double(), "silu")
    torch.testing.assert_close(out.double(), expected, **HALF_TOL[torch.bfloat16])


# ---------------------------------------------------------------------------------------------- poison
def _leaves_last_step_unwritten(x, weight, bias=None, activation=None):
    full = ref_conv(x, weight, bias, activation)
    out = torch.empty_like(x)
    out[..., :-1] = full[..., :-1]
    return out


def _writes_everything(x, weight, bias=None, activation=None):
    out = torch.empty_like(x)
    out.copy_(ref_conv(x, weight, bias, activation))
    return out


def test_unwritten_output_fails_through_nan_poison(monkeypatch):
    module = types.ModuleType("ssmscope_test_conv_broken")
    module.partial, module.complete = _leaves_last_step_unwritten, _writes_everything
    monkeypatch.setitem(sys.modules, module.__name__, module)
    op = dataclasses.replace(OP, impls={**OP.impls,
                                        "partial": Impl("partial", f"{module.__name__}:partial", "library"),
                                        "complete": Impl("complete", f"{module.__name__}:complete", "library")})
    config = dict(batch=2, dim=5, seqlen=6, width=3, dtype="fp32")
    bad = check_one(op, "partial", config, device="cpu", seed=1)
    assert bad.status == "fail" and bad.failed
    assert bad.nan_count == 2 * 5 and "NaN" in bad.message
    good = check_one(op, "complete", config, device="cpu", seed=1)
    assert good.status == "pass" and good.nan_count == 0


# ---------------------------------------------------------------------------------------------- errors
def test_width5_is_a_shape_error():
    with pytest.raises(ShapeError, match="width must be in 2..4"):
        OP.shape(width=5)
    with pytest.raises(ShapeError, match="width"):
        OP.make_inputs(batch=1, dim=8, seqlen=4, width=5, dtype="fp32")
    res = check_one(OP, "triton", dict(batch=1, dim=8, seqlen=4, width=5, dtype="fp32"), device="cpu", seed=0)
    assert res.status == "unsupported" and "width" in res.message


def test_triton_rejects_bad_arguments():
    from ssmscope.kernels.causal_conv1d.triton_kernel import causal_conv1d as triton_conv

    x = torch.randn(1, 8, 4)
    with pytest.raises(ShapeError, match="width must be in 2..4"):
        triton_conv(x, torch.randn(8, 5))
    with pytest.raises(ShapeError, match=r"weight must be \[D=8, W\]"):
        triton_conv(x, torch.randn(6, 4))
    with pytest.raises(ShapeError, match=r"bias must be \[D=8\]"):
        triton_conv(x, torch.randn(8, 4), torch.randn(7))
    with pytest.raises(ShapeError, match="activation"):
        triton_conv(x, torch.randn(8, 4), activation="relu")
    with pytest.raises(ShapeError, match=r"\[B, D, L\]"):
        triton_conv(torch.randn(8, 4), torch.randn(8, 4))


# ---------------------------------------------------------------------------------------------- official
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
def test_official_unavailable_on_cpu_with_reason():
    ok, why = OP.impls["official"].availability("cpu")
    assert not ok and "CUDA" in why
    res = check_one(OP, "official", dict(batch=1, dim=8, seqlen=4, dtype="bf16"), device="cpu", seed=0)
    assert res.status == "unavailable" and res.message
    if importlib.util.find_spec("causal_conv1d") is None:
        with pytest.raises(Unavailable, match="cannot import"):
            OP.impls["official"].load()


def test_official_limits():
    assert official_supports(ConvShape(dim=64, channel_last=True), "bf16") is None
    assert "multiple of 8" in official_supports(ConvShape(dim=20, channel_last=True), "bf16")
    assert official_supports(ConvShape(dim=20, channel_last=False), "bf16") is None
    assert "2^32" in official_supports(ConvShape(batch=64, dim=4096, seqlen=16384), "bf16")
    assert "gridDim.y" in official_supports(ConvShape(dim=70000, seqlen=8), "bf16")
    assert "fp64" in official_supports(ConvShape(), "fp64")


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


@pytest.mark.gpu
@pytest.mark.parametrize("channel_last", [False, True], ids=["channel_first", "channel_last"])
def test_ours_matches_official_on_upstream_strided_slice(channel_last):
    """Upstream's exact construction: x sliced out of a [.., 4096 + dim + 64] tensor, fp32 weight."""
    official = OP.impls["official"].load()
    from ssmscope.kernels.causal_conv1d.triton_kernel import causal_conv1d as triton_conv

    torch.manual_seed(0)
    B, D, L, W = 2, 4096 + 32, 1134, 4
    if channel_last:
        x = torch.randn(B, L, 4096 + D + 64, device="cuda", dtype=torch.bfloat16)[:, :, 4096:4096 + D].transpose(1, 2)
    else:
        x = torch.randn(B, 4096 + D + 64, L, device="cuda", dtype=torch.bfloat16)[:, 4096:4096 + D, :]
    weight = torch.randn(D, W, device="cuda")
    bias = torch.randn(D, device="cuda")
    ours, theirs = triton_conv(x, weight, bias, "silu"), official(x, weight, bias, "silu")
    assert ours.stride() == theirs.stride()
    torch.testing.assert_close(ours.float(), theirs.float(), rtol=1e-2, atol=5e-2)


@pytest.mark.parametrize("knobs", [dict(block_d=2), dict(block_d=24), dict(block_l=0), dict(chunks=0),
                                   dict(num_warps=3), dict(block_d=8192), dict(cl_design="rows", chunks=0),
                                   dict(unroll=3), dict(unroll=16), dict(block_l=2, unroll=4),
                                   dict(chunks=2), dict(cl_design="rows", unroll=2),
                                   dict(cl_design="rows", prefetch=False), dict(cl_design="tiles")])
def test_triton_channel_last_knobs_are_checked(knobs):
    from ssmscope.kernels.causal_conv1d import triton_kernel

    x = torch.randn(1, 16, 8).transpose(1, 2)  # channel-last [B, D=8, L=16]
    with pytest.raises(ValueError, match="causal_conv1d"):
        triton_kernel.causal_conv1d(x, torch.randn(8, 4), **knobs)
