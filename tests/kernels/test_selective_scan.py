"""selective_scan: the reference by hand and against the definition, the cost model by hand, our Triton kernel
(interpreter on CPU) against the float64 reference, NaN poisoning, shape errors, and (GPU) ours against the
official kernel."""
import dataclasses
import importlib.util
import math
import sys
import types

import pytest
import torch
import triton
import triton.language as tl

from ssmscope import kernels
from ssmscope.kernels.check import check, check_one, disagreements
from ssmscope.kernels.op import Impl, ShapeError, Unavailable
from ssmscope.kernels.selective_scan import ScanShape, official_supports
from ssmscope.kernels.selective_scan.ref import selective_scan as ref_scan
from ssmscope.kernels.selective_scan.triton_kernel import _softplus_poly

OP = kernels.get("selective_scan")


def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def silu(v: float) -> float:
    return v / (1 + math.exp(-v))


def naive_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The definition, one scalar at a time (float64)."""
    batch, dim, seqlen = u.shape
    dstate, groups = A.shape[1], B.shape[1]
    out = torch.zeros(batch, dim, seqlen, dtype=torch.float64)
    for b in range(batch):
        for d in range(dim):
            g = d // (dim // groups)
            h = [0.0] * dstate
            for t in range(seqlen):
                dt = float(delta[b, d, t]) + (float(delta_bias[d]) if delta_bias is not None else 0.0)
                dt = softplus(dt) if delta_softplus else dt
                y = 0.0
                for n in range(dstate):
                    h[n] = math.exp(dt * float(A[d, n])) * h[n] + dt * float(u[b, d, t]) * float(B[b, g, n, t])
                    y += h[n] * float(C[b, g, n, t])
                if D is not None:
                    y += float(D[d]) * float(u[b, d, t])
                out[b, d, t] = y * silu(float(z[b, d, t])) if z is not None else y
    return out


# ---------------------------------------------------------------------------------------------- reference
def test_ref_two_steps_by_hand():
    # B=1, D=1, N=1, L=2 with every option: δ_t = softplus(delta_t + 0.1), h_1 = δ_1·u_1·b_1,
    # h_2 = exp(δ_2·a)·h_1 + δ_2·u_2·b_2, out_t = (h_t·c_t + D·u_t)·silu(z_t).
    f64 = torch.float64
    u = torch.tensor([[[1.0, 2.0]]], dtype=f64)
    delta = torch.tensor([[[0.4, -0.3]]], dtype=f64)
    A = torch.tensor([[-2.0]], dtype=f64)
    B = torch.tensor([[[[3.0, -1.0]]]], dtype=f64)
    C = torch.tensor([[[[0.5, 2.0]]]], dtype=f64)
    D = torch.tensor([0.25], dtype=f64)
    z = torch.tensor([[[1.0, -1.5]]], dtype=f64)
    bias = torch.tensor([0.1], dtype=f64)
    d1, d2 = softplus(0.5), softplus(-0.2)
    h1 = d1 * 1.0 * 3.0
    h2 = math.exp(d2 * -2.0) * h1 + d2 * 2.0 * -1.0
    expected = [(h1 * 0.5 + 0.25 * 1.0) * silu(1.0), (h2 * 2.0 + 0.25 * 2.0) * silu(-1.5)]
    out = ref_scan(u, delta, A, B, C, D=D, z=z, delta_bias=bias, delta_softplus=True)
    torch.testing.assert_close(out[0, 0], torch.tensor(expected, dtype=f64), rtol=1e-13, atol=0)
    # No options: out_t = h_t·c_t with δ = delta as given.
    plain = ref_scan(u, delta.abs(), A, B, C)
    h1 = 0.4 * 3.0
    h2 = math.exp(0.3 * -2.0) * h1 + 0.3 * 2.0 * -1.0
    torch.testing.assert_close(plain[0, 0], torch.tensor([h1 * 0.5, h2 * 2.0], dtype=f64), rtol=1e-13, atol=0)


FLAGS = [dict(D=True, z=True, delta_bias=True, softplus=True), dict(D=False, z=False, delta_bias=False, softplus=False),
         dict(D=True, z=False, delta_bias=True, softplus=False), dict(D=False, z=True, delta_bias=False, softplus=True)]


@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: ScanShape(**f).label().split("-G1")[-1].strip("-") or "all")
@pytest.mark.parametrize("groups", [1, 3])
def test_ref_matches_definition(flags, groups):
    kw = OP.make_inputs(batch=2, dim=6, dstate=3, seqlen=5, groups=groups, dtype="fp64", seed=groups, **flags)
    kw = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in kw.items()}  # A, D, bias come as fp32
    torch.testing.assert_close(ref_scan(**kw), naive_scan(**kw), rtol=1e-12, atol=1e-14)


def test_ref_accepts_3d_B_C_and_keeps_dtype():
    kw = OP.make_inputs(batch=2, dim=4, dstate=3, seqlen=9, dtype="bf16", seed=5)
    out = ref_scan(**kw)
    assert out.dtype == torch.bfloat16 and out.shape == (2, 4, 9)
    squeezed = dict(kw, B=kw["B"][:, 0], C=kw["C"][:, 0])  # [B, N, L]: one group, as the official accepts
    assert torch.equal(ref_scan(**squeezed), out)


def test_generate_effective_step_sizes_are_mamba_like():
    """Every flag combination gives δ around Mamba's dt init range [1e-3, 0.1], never negative."""
    for softplus_on in (False, True):
        for bias_on in (False, True):
            kw = OP.make_inputs(batch=1, dim=64, dstate=4, seqlen=50, softplus=softplus_on, delta_bias=bias_on,
                                dtype="fp32", seed=3)
            dt = kw["delta"] + (kw["delta_bias"][:, None] if bias_on else 0)
            dt = torch.nn.functional.softplus(dt) if softplus_on else dt
            assert dt.min() > 0 and 1e-4 < dt.median() < 0.2, (softplus_on, bias_on)
    assert (kw["A"] < 0).all() and kw["A"].dtype == torch.float32 and kw["D"].dtype == torch.float32


# ---------------------------------------------------------------------------------------------- cost
def test_cost_by_hand():
    c = OP.cost_of(batch=2, dim=4, dstate=8, seqlen=10, groups=2, dtype="bf16")  # every option on
    # 80 steps x 8 states: 6 FLOPs + 1 exp each; per step δu 1, bias 1, softplus 1, D 2, silu gate 4
    # (3 transcendentals: exp and log1p of softplus, exp of silu).
    assert c.flops == 6 * 640 + 9 * 80 and c.transcendentals == 640 + 3 * 80 and c.tensor_flops == 0
    assert dict(c.bytes) == {"u": 160, "delta": 160, "z": 160, "out": 160, "B": 640, "C": 640,
                             "A": 128, "D": 16, "delta_bias": 16}
    # Official: out and out_z both written (+160) and one float2 prefix per (b, d, 2048-chunk, n): 8·2·4·1·8.
    assert c.impl_bytes["official"] == 2080 + 160 + 512
    long = OP.cost_of(batch=1, dim=2, dstate=4, seqlen=4097, z=False, dtype="fp16")  # 3 chunks, no out_z
    assert long.impl_bytes["official"] - long.min_bytes == 8 * 1 * 2 * 3 * 4
    bare = OP.cost_of(batch=1, dim=1, dstate=1, seqlen=1, D=False, z=False, delta_bias=False, softplus=False,
                      dtype="fp32")
    assert (bare.flops, bare.transcendentals, bare.min_bytes) == (7, 1, 24)  # u, delta, out, B, C, A: 4 B each
    assert bare.impl_bytes["official"] == 24 + 8


# ------------------------------------------------------- triton v5 (triton_kernel.py, impl triton_v5)
def test_small_grid_covers_lengths_states_groups_dtypes_flags():
    grid = OP.grid("small")
    assert {1, 7, 33, 130} <= {c["seqlen"] for c in grid} and {1, 4, 16} <= {c["dstate"] for c in grid}
    assert {c["groups"] for c in grid} == {1, 2} and {c["dtype"] for c in grid} == {"fp32", "fp16", "bf16"}
    for flag in ("D", "z", "delta_bias", "softplus"):
        assert {c.get(flag, True) for c in grid} == {False, True}, flag


def test_triton_v5_matches_float64_reference_on_small_grid():
    results = list(check(OP, ["triton_v5"], grid="small", device="cpu", seed=20231))
    assert len(results) == len(OP.grid("small"))
    failed = [(r.config, r.dtype, r.status, r.rel_err, r.message) for r in results if r.status != "pass"]
    assert not failed, failed


@pytest.mark.parametrize("impl", ["triton", "triton_v5"])
@pytest.mark.parametrize("dstate,seqlen", [(64, 20), (256, 9)], ids=["N64-L20", "N256-L9"])
def test_triton_large_states(dstate, seqlen, impl):
    config = dict(batch=1, dim=3, dstate=dstate, seqlen=seqlen, dtype="fp32")
    res = check_one(OP, impl, config, device="cpu", seed=4)
    assert res.status == "pass", (res.rel_err, res.message)


def test_triton_follows_strides_like_mamba_block():
    """Mamba's block hands u and z as channel slices of one xz [B, 2D, L] tensor; B and C here are
    transposed views (unit stride along N), and B comes 3-D (one group)."""
    from ssmscope.kernels.selective_scan.triton_kernel import selective_scan as triton_scan

    kw = OP.make_inputs(batch=2, dim=6, dstate=5, seqlen=37, dtype="fp32", seed=9)
    xz = torch.cat([kw["u"], kw["z"]], dim=1)
    Bt = kw["B"][:, 0].transpose(1, 2).contiguous().transpose(1, 2)  # [B, N, L], stride(1) == 1
    Ct = kw["C"].transpose(2, 3).contiguous().transpose(2, 3)
    strided = dict(kw, u=xz[:, :6], z=xz[:, 6:], B=Bt, C=Ct)
    assert not strided["u"].is_contiguous() and Bt.stride(1) == 1
    torch.testing.assert_close(triton_scan(**strided), ref_scan(**kw), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("nseg,chunk,version", [(3, 16, 4), (4, 8, 5), (1, 8, 5), (3, 2, 5), (3, 4, 4)],
                         ids=["seg3-c16-v4", "seg4-c8", "seg1-c8", "seg3-c2", "seg3-c4-v4"])
@pytest.mark.parametrize("dim,dstate", [(6, 5), (8, 4)], ids=["ragged", "even"])
def test_triton_sequence_segments(dtype, nseg, chunk, version, dim, dstate):
    """The multi-segment path (state pass, carry pass, output pass) forced at small shapes: ragged last
    segment, two groups, every flag and none; padded dstate and a ragged channel block, or whole blocks
    (v5 then drops every load mask)."""
    from ssmscope.kernels.selective_scan.triton_kernel import selective_scan as triton_scan

    for flags in (FLAGS[0], FLAGS[1], FLAGS[3]):
        kw = OP.make_inputs(batch=2, dim=dim, dstate=dstate, seqlen=75, groups=2, dtype=dtype, seed=nseg, **flags)
        ref = ref_scan(**{k: v.double() if isinstance(v, torch.Tensor) else v for k, v in kw.items()})
        out = triton_scan(**kw, num_segments=nseg, chunk=chunk, version=version)
        err = ((out.double() - ref).norm() / ref.norm()).item()
        assert err < OP.tolerance[dtype], (flags, err)


@triton.jit
def _softplus_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(y_ptr + offs, _softplus_poly(tl.load(x_ptr + offs, mask=offs < n)), mask=offs < n)


def test_softplus_polynomial_is_accurate_over_the_whole_range():
    """v5's softplus (an exp2 and a degree-8 polynomial for log1p) against float64, in fp32, from deep in the
    exponential tail to far past the official kernels' x > 20 cut-off."""
    x = torch.cat([torch.linspace(-40, 40, 4001), torch.tensor([-80.0, -20.0, 0.0, 1e-6, 17.0, 20.0, 25.0, 90.0])])
    y = torch.empty_like(x)
    _softplus_kernel[(triton.cdiv(x.numel(), 1024),)](x, y, x.numel(), BLOCK=1024)
    ref = torch.nn.functional.softplus(x.double())
    assert ((y.double() - ref).abs() / ref).max().item() < 4e-6


@pytest.mark.parametrize("prefetch", [1, 2])
@pytest.mark.parametrize("seqlen,nseg", [(75, 1), (75, 3), (64, 4), (9, 2), (5, 1)])
def test_triton_prefetch_matches_the_reference(seqlen, nseg, prefetch):
    """Loading u, δ, z (1), and B, C (2) one chunk ahead: ragged tails, segments shorter than a chunk, one whole
    chunk only."""
    from ssmscope.kernels.selective_scan.triton_kernel import selective_scan as triton_scan

    for flags in (FLAGS[0], FLAGS[3]):
        kw = OP.make_inputs(batch=2, dim=6, dstate=5, seqlen=seqlen, groups=2, dtype="fp32", seed=seqlen, **flags)
        ref = ref_scan(**{k: v.double() if isinstance(v, torch.Tensor) else v for k, v in kw.items()})
        out = triton_scan(**kw, num_segments=nseg, chunk=4, prefetch=prefetch)
        err = ((out.double() - ref).norm() / ref.norm()).item()
        assert err < OP.tolerance["fp32"], (flags, err)
        assert torch.allclose(out, triton_scan(**kw, num_segments=nseg, chunk=4), rtol=1e-6, atol=1e-6)


def test_triton_segment_count_follows_target_programs():
    from ssmscope.kernels.selective_scan import triton_kernel as tk

    assert tk._num_segments(65536, 24, 16, 528, 256) == 22  # B1 D1536 N16: 24 channel blocks
    assert tk._num_segments(4096, 96, 16, 528, 256) == 6  # N64: 96 blocks
    assert tk._num_segments(300, 24, 16, 528, 256) == 1  # too short to split
    assert tk._num_segments(65536, 600, 16, 528, 256) == 1  # the grid is full already
    kw = OP.make_inputs(batch=1, dim=4, dstate=16, seqlen=64, dtype="fp32", seed=2)
    out = tk.selective_scan(**kw, target_programs=64, min_segment=16)  # 1 block -> 4 segments of 16
    torch.testing.assert_close(out, ref_scan(**kw), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------- poison
def _leaves_tail_unwritten(**kw):
    out = torch.empty_like(kw["u"])
    out[..., :-3] = ref_scan(**kw)[..., :-3]
    return out


def test_unwritten_output_fails_through_nan_poison(monkeypatch):
    module = types.ModuleType("ssmscope_test_scan_broken")
    module.partial = _leaves_tail_unwritten
    monkeypatch.setitem(sys.modules, module.__name__, module)
    partial = Impl("partial", f"{module.__name__}:partial", "library")
    op = dataclasses.replace(OP, impls={**OP.impls, "partial": partial})
    res = check_one(op, "partial", dict(batch=2, dim=5, dstate=4, seqlen=11, dtype="fp32"), device="cpu", seed=1)
    assert res.status == "fail" and res.nan_count == 2 * 5 * 3 and "NaN" in res.message


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("bad,match", [(dict(dim=6, groups=4), "divisible by groups"),
                                       (dict(seqlen=0), "seqlen must be >= 1"),
                                       (dict(batch=0), "batch must be >= 1")], ids=["D6-G4", "L0", "B0"])
def test_bad_shapes_raise(bad, match):
    with pytest.raises(ShapeError, match=match):
        OP.shape(**bad)


def test_bad_tensors_raise_shape_error_in_ref_and_triton():
    from ssmscope.kernels.selective_scan.triton_kernel import selective_scan as triton_scan

    kw = OP.make_inputs(batch=1, dim=4, dstate=3, seqlen=6, groups=2, dtype="fp32", seed=0)
    bad = {
        r"delta must be \[B, D, L\]": dict(delta=kw["delta"][..., :5]),
        r"A must be \[D=4, N\]": dict(A=kw["A"][:3]),
        r"B must be time-varying \[B, G, N, L\]": dict(B=kw["B"][..., :5]),
        "B has 2 groups but C has 1": dict(C=kw["C"][:, :1]),
        r"D must be \[D=4\]": dict(D=kw["D"][:2]),
        "complex A": dict(A=kw["A"].to(torch.complex64)),
        r"u must be \[B, D, L\]": dict(u=kw["u"][0]),
    }
    for match, change in bad.items():
        for fn in (ref_scan, triton_scan):
            with pytest.raises(ShapeError, match=match):
                fn(**dict(kw, **change))
    with pytest.raises(ShapeError, match="divisible by the 3"):
        ref_scan(**dict(kw, B=kw["B"][:, :1].expand(1, 3, 3, 6), C=kw["C"][:, :1].expand(1, 3, 3, 6)))
    big = OP.make_inputs(batch=1, dim=2, dstate=257, seqlen=2, dtype="fp32", seed=0)
    with pytest.raises(ShapeError, match="dstate 257 exceeds the limit of 256"):
        triton_scan(**big)


def test_dstate_over_256_is_unsupported_with_reason():
    for impl in ("triton", "official"):
        reason = OP.impls[impl].unsupported_reason(ScanShape(dstate=300), "bf16")
        assert reason and "256" in reason
    res = check_one(OP, "triton", dict(batch=1, dim=2, dstate=300, seqlen=3, dtype="fp32"), device="cpu", seed=0)
    assert res.status == "unsupported" and "dstate <= 256" in res.message


def test_official_limits():
    assert official_supports(ScanShape(dim=5120, seqlen=65536, dstate=256), "bf16") is None
    assert "gridDim.y" in official_supports(ScanShape(dim=70000), "bf16")
    assert "fp64" in official_supports(ScanShape(), "fp64")
    assert "2^31" in official_supports(ScanShape(batch=64, dim=8192, dstate=256, seqlen=2 ** 17), "bf16")


# ---------------------------------------------------------------------------------------------- official
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
def test_official_unavailable_on_cpu_with_reason():
    ok, why = OP.impls["official"].availability("cpu")
    assert not ok and "CUDA" in why
    res = check_one(OP, "official", dict(batch=1, dim=4, dstate=4, seqlen=8, dtype="bf16"), device="cpu", seed=0)
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
def test_ours_matches_official_on_paper_shapes():
    configs = [c for c in OP.grid("paper") if c["seqlen"] <= 4096]
    results = list(check(OP, ["triton", "official"], configs=configs, device="cuda", seed=0))
    assert not disagreements(results)


@pytest.mark.gpu
def test_triton_small_grid_on_gpu():
    results = list(check(OP, ["triton"], grid="small", device="cuda", seed=0))
    assert not [(r.config, r.dtype, r.status, r.message) for r in results if r.status != "pass"]


@pytest.mark.parametrize("knobs, match", [(dict(chunk=3), "chunk must be"), (dict(chunk=0), "chunk must be"),
                                          (dict(chunk=16), "chunk must be"), (dict(version=3), "version must be"),
                                          (dict(prefetch=3), "prefetch must be"),
                                          (dict(per_thread=48), "power of two")])
def test_triton_rejects_bad_tiling_knobs(knobs, match):
    from ssmscope.kernels.selective_scan.triton_kernel import selective_scan as triton_scan

    kw = OP.make_inputs(batch=1, dim=4, dstate=4, seqlen=8, dtype="fp32", seed=0)
    with pytest.raises(ValueError, match=match):
        triton_scan(**kw, **knobs)


# ------------------------------------------------- triton v6 (triton_kernel_v6.py, the default `triton`)
def _v6(**kw):
    from ssmscope.kernels.selective_scan.triton_kernel_v6 import selective_scan as v6_scan

    return v6_scan(**kw)


def _rel_err_vs_float64(out, kw):
    ref = ref_scan(**{k: v.double() if isinstance(v, torch.Tensor) else v for k, v in kw.items()})
    return ((out.double() - ref).norm() / ref.norm()).item()


def test_triton_matches_float64_reference_on_small_grid():
    results = list(check(OP, ["triton"], grid="small", device="cpu", seed=20231))
    assert len(results) == len(OP.grid("small"))
    failed = [(r.config, r.dtype, r.status, r.rel_err, r.message) for r in results if r.status != "pass"]
    assert not failed, failed


V6_FLAGS = [FLAGS[0], FLAGS[1], FLAGS[2], FLAGS[3]]


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("flags", V6_FLAGS, ids=["all", "none", "D-bias", "z-softplus"])
@pytest.mark.parametrize("dstate", [1, 5, 16, 64])
def test_triton_v6_small_tiles(dtype, flags, dstate):
    """Tiles of 8 lanes x 8 steps (64 steps, 4 channels a warp) so that a short sequence crosses several whole
    tiles (the carry between tiles; unmasked vector loads, bf16 as int32 pairs) and ends in a ragged one:
    L = 150 = 2 x 64 + 22; batch 2, two groups, odd dim (masked channels)."""
    kw = OP.make_inputs(batch=2, dim=6, dstate=dstate, seqlen=150, groups=2, dtype=dtype, seed=dstate, **flags)
    err = _rel_err_vs_float64(_v6(**kw, lanes=8, per_thread=8), kw)
    assert err < OP.tolerance[dtype], err


@pytest.mark.parametrize("seqlen", [1, 7, 512, 1100], ids=lambda v: f"L{v}")
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_triton_v6_default_tiles(seqlen, dtype):
    """The default tiling (32 lanes x 16 steps = 512 steps): a lone step, one ragged tile, exactly one whole
    tile, two whole tiles and a ragged one (L = 1100), at N = 16 with every flag on."""
    kw = OP.make_inputs(batch=2, dim=5, dstate=16, seqlen=seqlen, groups=1, dtype=dtype, seed=seqlen)
    err = _rel_err_vs_float64(_v6(**kw), kw)
    assert err < OP.tolerance[dtype], err


@pytest.mark.parametrize("knobs", [dict(prefetch=1), dict(prefetch=4, lanes=8, per_thread=8),
                                   dict(lanes=16, num_warps=2, per_thread=32), dict(num_warps=4, maxnreg=None)],
                         ids=["prefetch1", "prefetch4-small", "lanes16-k32", "4warps-ptxas-registers"])
@pytest.mark.parametrize("dstate", [5, 7, 16])
def test_triton_v6_knobs(knobs, dstate):
    """One and four states per iteration (after the groups of 4, N = 5 leaves 1 state and N = 7 leaves 3; the
    default 2 leaves 1 at odd N), 2 channels a warp with 32 steps a thread, 4 channels a program."""
    for dtype in ("fp32", "bf16"):
        kw = OP.make_inputs(batch=1, dim=6, dstate=dstate, seqlen=600, groups=2, dtype=dtype, seed=3)
        err = _rel_err_vs_float64(_v6(**kw, **knobs), kw)
        assert err < OP.tolerance[dtype], (dtype, err)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_triton_v6_follows_strides_like_mamba_block(dtype):
    """u and z sliced out of one xz [B, 2D, L] tensor, B 3-D, C a transposed view (unit stride along N, so
    no int32 pairs along L): the same result as the contiguous inputs."""
    kw = OP.make_inputs(batch=2, dim=6, dstate=5, seqlen=700, dtype=dtype, seed=9)
    xz = torch.cat([kw["u"], kw["z"]], dim=1)
    Ct = kw["C"].transpose(2, 3).contiguous().transpose(2, 3)
    strided = dict(kw, u=xz[:, :6], z=xz[:, 6:], B=kw["B"][:, 0], C=Ct)
    assert not strided["u"].is_contiguous() and Ct.stride(2) == 1
    torch.testing.assert_close(_v6(**strided), _v6(**kw), rtol=0, atol=0)
    assert _rel_err_vs_float64(_v6(**strided), kw) < OP.tolerance[dtype]


@pytest.mark.parametrize("knobs, match", [(dict(per_thread=4), "per_thread must be"),
                                          (dict(lanes=64), "lanes must be"), (dict(prefetch=0), "prefetch must be")])
def test_triton_v6_rejects_bad_knobs(knobs, match):
    kw = OP.make_inputs(batch=1, dim=4, dstate=4, seqlen=8, dtype="fp32", seed=0)
    with pytest.raises(ValueError, match=match):
        _v6(**kw, **knobs)


def test_triton_v6_shape_errors():
    kw = OP.make_inputs(batch=1, dim=4, dstate=3, seqlen=6, groups=2, dtype="fp32", seed=0)
    with pytest.raises(ShapeError, match="B has 2 groups but C has 1"):
        _v6(**dict(kw, C=kw["C"][:, :1]))
    big = OP.make_inputs(batch=1, dim=2, dstate=257, seqlen=2, dtype="fp32", seed=0)
    with pytest.raises(ShapeError, match="dstate 257 exceeds the limit of 256"):
        _v6(**big)


@pytest.mark.gpu
def test_triton_v5_small_grid_on_gpu():
    results = list(check(OP, ["triton_v5"], grid="small", device="cuda", seed=0))
    assert not [(r.config, r.dtype, r.status, r.message) for r in results if r.status != "pass"]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_triton_v5_matches_official_on_upstream_grid(dtype):
    configs = [c for c in OP.grid("upstream") if c["dtype"] == dtype]
    results = list(check(OP, ["triton_v5", "official"], configs=configs, device="cuda", seed=0))
    assert not disagreements(results)


def test_triton_v6_register_cap_follows_waves():
    """168 registers (12 warps per SM), or 128 (16 per SM) when that saves a wave of warps (one per channel),
    counting whole programs: 8-warp programs fit one per SM at 168 (12 // 8), two at 128."""
    from ssmscope.kernels.selective_scan.triton_kernel_v6 import auto_maxnreg, resident_warps

    cpu = torch.device("cpu")  # off the GPU: an H100's 132 SMs
    assert auto_maxnreg(1536, 1, cpu) == 168 and auto_maxnreg(12 * 132, 1, cpu) == 168  # one wave either way
    assert auto_maxnreg(2048, 1, cpu) == 128 and auto_maxnreg(16 * 132, 1, cpu) == 128  # 2 waves -> 1
    assert auto_maxnreg(3072, 1, cpu) == 168  # 2 waves either way: the spills would cost without saving a wave
    assert auto_maxnreg(4096, 1, cpu) == 128 and auto_maxnreg(5120, 1, cpu) == 128  # 3 -> 2, 4 -> 3
    assert resident_warps(168, 8) == 8 and resident_warps(128, 8) == 16 and resident_warps(168, 4) == 12
    assert auto_maxnreg(1536, 8, cpu) == 128  # 8-warp programs: 2 waves at 168 (8 per SM), 1 at 128


@pytest.mark.parametrize("knobs, warps", [({}, 2 * 6), (dict(lanes=16), 2 * 3), (dict(num_warps=4), 2 * 8)])
def test_triton_v6_counts_the_warps_it_launches(monkeypatch, knobs, warps):
    """The rule sees the warps the grid launches: one per channel (lanes = 32), one per two channels (16), and
    whole programs (4 warps: 6 channels take two programs of 4)."""
    from ssmscope.kernels.selective_scan import triton_kernel_v6

    seen = []
    monkeypatch.setattr(triton_kernel_v6, "auto_maxnreg", lambda w, nw, dev: seen.append((w, nw)) or 168)
    kw = OP.make_inputs(batch=2, dim=6, dstate=2, seqlen=40, dtype="fp32", seed=1)
    triton_kernel_v6.selective_scan(**kw, **knobs)
    assert seen == [(warps, knobs.get("num_warps", 1))]
