"""ssd: the reference by hand and against an independent chunked (matrix) form, the cost model by hand, our
Triton kernel (interpreter on CPU) against the float64 reference incl. the sequence-split path, shape errors,
and (GPU) ours against the official mamba_chunk_scan_combined."""
import importlib.util
import math

import pytest
import torch

from ssmscope import kernels
from ssmscope.kernels.check import check, check_one, disagreements
from ssmscope.kernels.op import ShapeError, Unavailable
from ssmscope.kernels.ssd import SSDShape, causal_pairs
from ssmscope.kernels.ssd.ref import ssd as ref_ssd
from ssmscope.kernels.ssd.ref import ssd_chunked

OP = kernels.get("ssd")
# Our kernel's own bar: the op's fp32 tolerance admits the official's TF32 dots (~1e-3); ours is fp32-accurate.
OURS_TOL = {**OP.tolerance, "fp32": 2e-5}


def _f64(kw):
    return {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in kw.items()}


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def _triton():
    from ssmscope.kernels.ssd import triton_kernel
    return triton_kernel


# ---------------------------------------------------------------------------------------------- reference
def test_reference_two_steps_by_hand():
    """L=2, H=P=N=G=1 with every option: bias, softplus, D, z, an initial state, the final state."""
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    x, dt, b, c, z = (1.0, -2.0), (0.3, -0.4), (3.0, 1.0), (0.5, 2.0), (0.7, -1.5)
    a, bias, d, h = -2.0, 0.2, 0.1, 0.25
    out, final = ref_ssd(t(*x).reshape(1, 2, 1, 1), t(*dt).reshape(1, 2, 1), t(a), t(*b).reshape(1, 2, 1, 1),
                         t(*c).reshape(1, 2, 1, 1), 16, D=t(d), z=t(*z).reshape(1, 2, 1, 1), dt_bias=t(bias),
                         initial_states=t(h).reshape(1, 1, 1, 1), dt_softplus=True, return_final_states=True)
    expected = []
    for i in range(2):
        delta = math.log1p(math.exp(dt[i] + bias))
        h = math.exp(delta * a) * h + delta * x[i] * b[i]
        y = h * c[i] + d * x[i]
        expected.append(y * z[i] / (1 + math.exp(-z[i])))
    torch.testing.assert_close(out.flatten(), t(*expected), rtol=1e-13, atol=0)
    assert final.item() == pytest.approx(h, rel=1e-13)


def test_reference_dt_limit_clamps_negative_steps_to_zero():
    """Without softplus a negative dt is clamped to 0 (the official default dt_limit = (0, inf)): no decay and
    no input, so y = h_0·C + D·x at every step."""
    kw = _f64(OP.make_inputs(batch=1, seqlen=5, nheads=2, headdim=3, dstate=4, softplus=False, dt_bias=False,
                             init_states=True, dtype="fp32", seed=4))
    kw["dt"] = -kw["dt"].abs()
    out = ref_ssd(**kw)
    expected = torch.einsum("bhpn,blhn->blhp", kw["initial_states"], kw["C"].expand(-1, -1, 2, -1))
    expected = expected + kw["x"] * kw["D"][:, None]
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("flags", [dict(D=False, dt_bias=False, softplus=False),
                                   dict(D_headdim=True, z=True, init_states=True, final_states=True)],
                         ids=["plain", "all-options"])
def test_reference_agrees_with_chunked_form(flags):
    """Two independent formulations (step by step; chunked matrices), L not a multiple of the chunk, 2 groups."""
    kw = _f64(OP.make_inputs(batch=2, seqlen=37, nheads=4, headdim=3, dstate=5, ngroups=2, chunk_size=16,
                             dtype="fp32", seed=2, **flags))
    seq = ref_ssd(**kw)
    for chunk in (16, 5, 64):  # the chunk changes the evaluation order only
        chunked = ssd_chunked(**dict(kw, chunk_size=chunk))
        if flags.get("final_states"):
            torch.testing.assert_close(chunked[1], seq[1], rtol=1e-10, atol=1e-12)
            chunked = chunked[0]
        torch.testing.assert_close(chunked, seq[0] if flags.get("final_states") else seq, rtol=1e-10, atol=1e-12)


def test_reference_heads_read_their_group():
    """H=4, G=2: heads 0-1 read group 0, heads 2-3 group 1."""
    kw = _f64(OP.make_inputs(batch=1, seqlen=6, nheads=4, headdim=2, dstate=3, ngroups=2, dtype="fp32", seed=5))
    base = ref_ssd(**kw)
    kw["B"] = kw["B"].clone()
    kw["B"][:, :, 1] += 1.0
    moved = (ref_ssd(**kw) - base).abs().amax(dim=(0, 1, 3))
    assert moved[:2].max() == 0 and moved[2:].min() > 0


def test_reference_half_input_keeps_dtype():
    kw = OP.make_inputs(batch=1, seqlen=5, nheads=2, headdim=4, dstate=8, dtype="bf16", seed=3)
    out = ref_ssd(**kw)
    assert out.dtype == torch.bfloat16 and out.shape == (1, 5, 2, 4)


# ---------------------------------------------------------------------------------------------- cost
def test_causal_pairs():
    assert causal_pairs(5, 4) == 10 + 1  # a chunk of 4 (4·5/2) and one of 1
    assert causal_pairs(64, 16) == 4 * 136 and causal_pairs(3, 16) == 6


def test_cost_by_hand():
    # B1 L5 H2 P3 N4 G1 Q4, defaults (D per head, dt_bias, softplus), bf16: c = 2 chunks, Π = 11 pairs.
    c = OP.cost_of(batch=1, seqlen=5, nheads=2, headdim=3, dstate=4, ngroups=1, chunk_size=4, dtype="bf16")
    # CBᵀ 2·4·11·1 + masked product 2·3·11·2 + states and C·state 4·3·4·5·2
    assert c.tensor_flops == 88 + 132 + 480
    # per (l, h) 6·10, per pair and head 3·22, per (l, h, p) 5·30, state passing 2·(2 chunks·2·3·4)
    assert c.flops == 700 + 60 + 66 + 150 + 96
    # (2 + 2 softplus)·10 + 22 mask exps + 2·2 chunk decays
    assert c.transcendentals == 40 + 22 + 4
    assert dict(c.bytes) == {"x": 60, "z": 0, "out": 60, "dt": 20, "B": 40, "C": 40, "A": 8, "D": 8, "dt_bias": 8,
                             "initial_states": 0, "final_states": 0}
    # official: + δ, dA_cumsum (64 B each) written and read twice, dA's last column 16, chunk states 48 elements
    # × (4 + 4 + 2 + 2), final states 96, CB 2·(2·16·4), x, B, C re-read 60 + 80
    assert c.impl_bytes["official"] == 244 + 128 + 256 + 16 + 576 + 96 + 256 + 140


def test_cost_options_by_hand():
    c = OP.cost_of(batch=1, seqlen=5, nheads=2, headdim=3, dstate=4, ngroups=1, chunk_size=4, z=True,
                   D_headdim=True, dt_bias=False, softplus=False, final_states=True, dtype="fp32")
    assert c.flops == 700 + 4 * 10 + 66 + 10 * 30 + 96  # per (l, h) 4; per (l, h, p) 3 + D 2 + z 5
    assert c.transcendentals == 2 * 10 + 22 + 4 + 30  # + silu's exp per (l, h, p)
    assert c.bytes["D"] == 2 * 3 * 4 and c.bytes["z"] == 120 and c.bytes["final_states"] == 96
    assert c.min_bytes == 120 * 3 + 40 + 80 * 2 + 8 + 24 + 96
    # final states already in the minimum; out_x (120) written because of z; fp32 chunk states 48 × 16
    assert c.impl_bytes["official"] == 688 + 128 + 256 + 16 + 768 + 256 + 280 + 120


def test_official_excess_grows_with_chunk_intermediates():
    c = OP.cost_of(batch=1, seqlen=4096, nheads=24, dtype="bf16")  # Mamba-2 130M
    assert 3 < c.impl_bytes["official"] / c.min_bytes < 4
    assert c.tensor_flops / c.flops > 0.95  # the chunked form is matmul-bound work


# ---------------------------------------------------------------------------------------------- triton
def test_small_grid_covers_the_space():
    grid = OP.grid("small")
    assert {c["dtype"] for c in grid} == {"fp32", "fp16", "bf16"}
    assert {1, 17, 100} <= {c["seqlen"] for c in grid} and any(c["seqlen"] % c["chunk_size"] for c in grid)
    assert {c["ngroups"] for c in grid} >= {1, 2} and any(c["headdim"] > 64 for c in grid)
    for flag in ("z", "D_headdim", "init_states", "final_states"):
        assert {c["dtype"] for c in grid if c.get(flag)} == {"fp32", "fp16", "bf16"}, flag
    assert {c["dtype"] for c in grid if c.get("softplus") is False} == {"fp32", "fp16", "bf16"}


def test_triton_matches_float64_reference_on_small_grid():
    results = list(check(OP, ["triton"], grid="small", device="cpu", seed=20240))
    assert len(results) == len(OP.grid("small"))
    failed = [(r.config, r.dtype, r.status, r.rel_err, r.message) for r in results
              if r.status != "pass" or r.rel_err > OURS_TOL[r.dtype]]
    assert not failed, failed


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("segment_len", [16, 64], ids=["seg16", "seg64"])
def test_triton_sequence_segments(dtype, segment_len):
    """The sequence-parallel path (segment states combined), with an initial state and the final state."""
    tk = _triton()
    kw = OP.make_inputs(batch=2, seqlen=150, nheads=2, headdim=16, dstate=16, chunk_size=32, z=True,
                        init_states=True, final_states=True, dtype=dtype, seed=11)
    block_t = tk._config(16, 16, 150, torch.empty(0, dtype=kw["x"].dtype).element_size())[0]
    assert math.ceil(150 / (block_t * math.ceil(segment_len / block_t))) >= 2  # really several segments
    out, final = tk.ssd(**kw, segment_len=segment_len)
    ref_out, ref_final = ref_ssd(**_f64(kw))
    tol = OURS_TOL[dtype]
    assert _rel(out, ref_out) < tol and _rel(final, ref_final) < tol
    whole, whole_final = tk.ssd(**kw)  # one segment on the CPU
    torch.testing.assert_close(final, whole_final, rtol=1e-4, atol=1e-5)


def test_triton_strided_inputs_like_mamba2():
    """Mamba-2 hands x, B, C as views into one [B, L, H·P + 2·G·N] conv output and dt as a slice of in_proj's
    output: nothing is contiguous, and the kernel must follow the strides."""
    tk = _triton()
    gen = torch.Generator().manual_seed(0)
    b, l, h, p, g, n = 1, 70, 4, 16, 2, 16
    packed = torch.randn(b, l, h * p + 2 * g * n + h + 3, generator=gen)
    x = packed[..., :h * p].unflatten(-1, (h, p))
    B = packed[..., h * p:h * p + g * n].unflatten(-1, (g, n))
    C = packed[..., h * p + g * n:h * p + 2 * g * n].unflatten(-1, (g, n))
    dt = packed[..., h * p + 2 * g * n:h * p + 2 * g * n + h]
    dt.mul_(0.5).sub_(3.0)  # in place: δ = softplus(dt) around 0.05, dt stays a view
    A = -torch.rand(h, generator=gen) * 8 - 1
    D = torch.randn(h * p, generator=gen).view(h, p)
    assert not (x.is_contiguous() or B.is_contiguous() or dt.is_contiguous())
    out = tk.ssd(x, dt, A, B, C, 16, D=D, dt_softplus=True)
    expected = ref_ssd(*(t.double() for t in (x, dt, A, B, C)), 16, D=D.double(), dt_softplus=True)
    assert out.is_contiguous() and _rel(out, expected) < OURS_TOL["fp32"]


def test_triton_dt_limit():
    tk = _triton()
    kw = OP.make_inputs(batch=1, seqlen=40, nheads=2, headdim=16, dstate=16, dtype="fp32", seed=6)
    for limit in ((0.0, float("inf")), (0.01, 0.05)):
        assert _rel(tk.ssd(**kw, dt_limit=limit), ref_ssd(**_f64(kw), dt_limit=limit)) < OURS_TOL["fp32"]


def test_segment_choice():
    tk = _triton()
    assert tk._segment_len(programs=200, seqlen=65536, block_t=32, sm_count=132) == 65536  # GPU already full
    # two waves of 264 slots: 22 segments of 24 programs, ⌈65536 / 22⌉ = 2979 steps, rounded up to 94 blocks
    assert tk._segment_len(programs=24, seqlen=65536, block_t=32, sm_count=132) == 94 * 32
    # H48: 11 segments, 528 programs = two whole waves (v2: 5 segments, one wave; v1: 6, a wave and a bit)
    assert tk._segment_len(programs=48, seqlen=65536, block_t=32, sm_count=132) == 187 * 32
    assert tk._segment_len(programs=48, seqlen=16384, block_t=32, sm_count=132) == 47 * 32
    # H24 at 16K: two waves would need 22 segments of 745 < MIN_SEGMENT steps, so one wave: 11
    assert tk._segment_len(programs=24, seqlen=16384, block_t=32, sm_count=132) == 47 * 32
    # short prompts: segments of L/8 (at least 128 steps), one wave: L4K in 8 segments of 512, L1K of 128
    assert tk._segment_len(programs=24, seqlen=4096, block_t=32, sm_count=132) == 512
    assert tk._segment_len(programs=24, seqlen=1024, block_t=32, sm_count=132) == 128
    assert tk._segment_len(programs=80, seqlen=4096, block_t=32, sm_count=132) == 22 * 32  # two waves: 6 segments
    assert tk._segment_len(programs=24, seqlen=1500, block_t=32, sm_count=132) == 6 * 32  # 8 of ⌈1500/8⌉ = 188
    assert tk._segment_len(programs=24, seqlen=200, block_t=32, sm_count=132) == 224  # too short to split
    assert tk._segment_len(programs=24, seqlen=65536, block_t=32, sm_count=132, ctas_per_sm=1) == 187 * 32


def test_block_sizes_keep_dot_dims_and_shared_memory():
    tk = _triton()
    assert tk._config(64, 128, 65536, 2) == (32, 64, 128, 4)  # Mamba-2: blocks of 32 steps, 4 warps
    assert tk._config(64, 128, 65536, 4)[0] == 32 and tk._config(64, 256, 65536, 2)[:2] == (32, 32)
    for args in ((12, 8, 1, 4), (80, 24, 17, 2), (3, 256, 5, 4)):
        assert min(tk._config(*args)[:3]) >= 16, args


@pytest.mark.parametrize("config", [(64, 64, 16, 8), (16, 16, 32, 4)], ids=["v1-like-T64", "T16-P16"])
def test_triton_block_config_override(config):
    """Other block shapes (the launcher's config override): T 64 / 8 warps as v1, and T 16 with P in 3 blocks
    of 16 and N padded 24 -> 32, through the segment path, with every option."""
    tk = _triton()
    kw = OP.make_inputs(batch=1, seqlen=90, nheads=2, headdim=40, dstate=24 if config[2] == 32 else 16,
                        ngroups=2, chunk_size=32, z=True, D_headdim=True, init_states=True, final_states=True,
                        dtype="fp32", seed=13)
    out, final = tk.ssd(**kw, segment_len=32, config=config)
    ref_out, ref_final = ref_ssd(**_f64(kw))
    assert _rel(out, ref_out) < OURS_TOL["fp32"] and _rel(final, ref_final) < OURS_TOL["fp32"]


def test_previous_version_still_runs():
    from ssmscope.kernels.ssd import triton_kernel_v1
    kw = OP.make_inputs(batch=1, seqlen=70, nheads=2, headdim=16, dstate=16, final_states=True, dtype="bf16", seed=3)
    out, final = triton_kernel_v1.ssd(**kw, segment_len=32)
    ref_out, ref_final = ref_ssd(**_f64(kw))
    assert _rel(out, ref_out) < OURS_TOL["bf16"] and _rel(final, ref_final) < OURS_TOL["bf16"]
    assert OP.impls["triton_v1"].kind == "previous"


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("bad, match", [(dict(nheads=3, ngroups=2), "divisible by ngroups"),
                                        (dict(D=False, D_headdim=True), "D_headdim"),
                                        (dict(headdim=0), "headdim must be >= 1")],
                         ids=["H3-G2", "D_headdim-without-D", "P0"])
def test_bad_shapes_raise(bad, match):
    with pytest.raises(ShapeError, match=match):
        OP.shape(**bad)


def test_triton_unsupported_dstate_is_reported():
    res = check_one(OP, "triton", dict(batch=1, seqlen=4, nheads=2, headdim=16, dstate=512, dtype="fp32"),
                    device="cpu", seed=0)
    assert res.status == "unsupported" and "dstate <= 256" in res.message
    assert OP.impls["triton"].unsupported_reason(SSDShape(), "bf16") is None


def test_triton_rejects_bad_arguments():
    tk = _triton()
    kw = OP.make_inputs(batch=1, seqlen=8, nheads=2, headdim=16, dstate=16, dtype="fp32", seed=0)
    cases = [
        (dict(x=kw["x"][0]), r"x must be \[B, L, H, P\]"),
        (dict(dt=kw["dt"][..., :1]), r"dt must be \[1, 8, 2\]"),
        (dict(C=kw["C"][..., :8]), r"C must be \[1, 8, 1, 16\]"),
        (dict(D=torch.ones(3)), r"D must be \[H\] = \[2\] or \[H, P\] = \[2, 16\]"),
        (dict(A=torch.ones(2, 1)), r"A must be \[2\]"),
        (dict(initial_states=torch.zeros(1, 2, 16, 8)), r"initial_states must be \[1, 2, 16, 16\]"),
        (dict(B=torch.randn(1, 8, 1, 512), C=torch.randn(1, 8, 1, 512)), "dstate must be <= 256"),
        (dict(x=kw["x"].double()), "fp32, fp16 or bf16"),
        (dict(chunk_size=0), "chunk_size must be a positive int"),
    ]
    for change, match in cases:
        with pytest.raises(ShapeError, match=match):
            tk.ssd(**{**kw, **change})


# ---------------------------------------------------------------------------------------------- official
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
def test_official_unavailable_on_cpu_with_reason():
    ok, why = OP.impls["official"].availability("cpu")
    assert not ok and "CUDA" in why
    res = check_one(OP, "official", dict(batch=1, seqlen=4, nheads=2, headdim=16, dstate=16), device="cpu", seed=0)
    assert res.status == "unavailable" and res.message
    if importlib.util.find_spec("mamba_ssm") is None:
        with pytest.raises(Unavailable, match="cannot import"):
            OP.impls["official"].load()


def test_grids_are_valid_shapes():
    for name in ("upstream", "paper"):
        for config in OP.grid(name):
            OP.split_config(config)
    paper = OP.grid("paper")
    assert {c["nheads"] for c in paper} == {24, 32, 48, 64, 80} and max(c["seqlen"] for c in paper) == 65536
    assert all(c["final_states"] and not c.get("z") and c["dtype"] == "bf16" for c in paper)


# ---------------------------------------------------------------------------------------------- GPU
@pytest.mark.gpu
def test_triton_small_grid_on_gpu():
    results = list(check(OP, ["triton"], grid="small", device="cuda", seed=0))
    assert not [(r.config, r.dtype, r.status, r.rel_err, r.message) for r in results
                if r.status != "pass" or r.rel_err > OURS_TOL[r.dtype]]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_ours_matches_official_on_upstream_grid(dtype):
    configs = [c for c in OP.grid("upstream") if c["dtype"] == dtype]
    results = list(check(OP, ["triton", "official"], configs=configs, device="cuda", seed=0))
    assert not disagreements(results)
    assert all(r.rel_err <= OURS_TOL[dtype] for r in results if r.impl == "triton")


@pytest.mark.gpu
def test_ours_matches_official_on_paper_grid():
    results = list(check(OP, ["triton", "official"], grid="paper", device="cuda", seed=0))
    assert not disagreements(results)


@pytest.mark.gpu
def test_segments_on_gpu_match_one_pass():
    """At batch 1 the launcher splits a long sequence; the result must match a single segment."""
    tk = _triton()
    kw = OP.make_inputs(batch=1, seqlen=16384, nheads=8, final_states=True, dtype="bf16", device="cuda", seed=1)
    split, split_final = tk.ssd(**kw)
    whole, whole_final = tk.ssd(**kw, segment_len=16384)
    torch.testing.assert_close(split.float(), whole.float(), rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(split_final, whole_final, rtol=1e-3, atol=1e-3)
