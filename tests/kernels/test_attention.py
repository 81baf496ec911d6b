"""attention (causal prefill, GQA): reference, cost model, our Triton kernel (interpreter on CPU), SDPA, flash-attn."""
import importlib.util
import math
import random

import pytest
import torch
import torch.nn.functional as F

from ssmscope import kernels
from ssmscope.kernels import ShapeError, Unavailable
from ssmscope.kernels.check import check, relative_error

OP = kernels.get("attention")


def ref64(**kwargs):
    return OP.impls["ref"](**{k: v.double() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()})


def sdpa_math(q, k, v, causal):
    """torch's math SDPA on [B, H, L, d] with k/v repeated per q head: an independent float64 reference."""
    group = q.shape[2] // k.shape[2]
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k.repeat_interleave(group, 2), v.repeat_interleave(group, 2)))
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        return F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal).transpose(1, 2)


def fresh(**shape):
    return OP.make_inputs(seed=random.randrange(2**31), **shape)


# --------------------------------------------------------------------------------------------------
# Reference
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
def test_ref_hand_computed_L2_d1(causal):
    """Two tokens, one head, d = 1 (scale 1): out0 = v0 (causal) and out1 = softmax(q1·k)·v, by hand."""
    q0, q1, k0, k1, v0, v1 = 0.7, -1.3, 0.4, 2.1, 1.5, -0.8
    q = torch.tensor([q0, q1], dtype=torch.float64).view(1, 2, 1, 1)
    k = torch.tensor([k0, k1], dtype=torch.float64).view(1, 2, 1, 1)
    v = torch.tensor([v0, v1], dtype=torch.float64).view(1, 2, 1, 1)

    def mix(qi):
        w0, w1 = math.exp(qi * k0), math.exp(qi * k1)
        return (w0 * v0 + w1 * v1) / (w0 + w1)

    expected = [v0 if causal else mix(q0), mix(q1)]
    out = OP.impls["ref"](q=q, k=k, v=v, causal=causal)
    assert out.flatten().tolist() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("shape", [
    dict(batch=2, seqlen=19, heads=4, kv_heads=2, head_dim=8),
    dict(batch=1, seqlen=33, heads=6, kv_heads=1, head_dim=16, causal=False),
    dict(batch=1, seqlen=5, heads=3, kv_heads=3, head_dim=4),
], ids=["B2-L19-GQA2-d8", "B1-L33-MQA6-d16-full", "B1-L5-MHA-d4"])
def test_ref_matches_torch_math_sdpa(shape):
    kw = fresh(dtype="fp32", **shape)
    out = ref64(**kw)
    expected = sdpa_math(*(kw[n].double() for n in ("q", "k", "v")), kw["causal"])
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_ref_query_blocks_do_not_change_the_result(monkeypatch):
    """The bounded-memory loop over query blocks (forced to 3-row blocks) matches one full block."""
    from ssmscope.kernels.attention import ref

    kw = fresh(dtype="fp32", batch=1, seqlen=29, heads=2, kv_heads=1, head_dim=8)
    full = ref64(**kw)
    monkeypatch.setattr(ref, "MAX_SCORE_ELEMENTS", 2 * 29 * 3)
    torch.testing.assert_close(ref64(**kw), full, rtol=1e-13, atol=1e-13)


# --------------------------------------------------------------------------------------------------
# Cost model
# --------------------------------------------------------------------------------------------------
def test_cost_matches_hand_counts():
    # B1 L3 Hq2 Hkv1 d4 causal: 1+2+3 = 6 kept pairs per head, 12 in all.
    c = OP.cost_of(dtype="bf16", batch=1, seqlen=3, heads=2, kv_heads=1, head_dim=4)
    assert c.tensor_flops == 4 * 4 * 12  # QKᵀ and PV: 2·d each per kept pair
    assert c.transcendentals == 12
    assert c.flops == 4 * 4 * 12 + 4 * 12 + 2 * 3 * 4  # + 4 softmax FLOPs per pair + d per query row
    assert dict(c.bytes) == {"q": 3 * 2 * 4 * 2, "k": 3 * 1 * 4 * 2, "v": 3 * 1 * 4 * 2, "out": 3 * 2 * 4 * 2}
    full = OP.cost_of(dtype="fp32", batch=2, seqlen=3, heads=2, kv_heads=1, head_dim=4, causal=False)
    assert full.transcendentals == 2 * 2 * 9 and full.min_bytes == 2 * (24 + 12 + 12 + 24) * 4


@pytest.mark.parametrize("seqlen", [1, 7, 64])
def test_cost_pairs_equal_the_causal_mask(seqlen):
    mask = torch.ones(seqlen, seqlen).tril()
    c = OP.cost_of(dtype="fp16", batch=1, seqlen=seqlen, heads=1, kv_heads=1, head_dim=16)
    assert c.transcendentals == mask.sum().item()


# --------------------------------------------------------------------------------------------------
# Our Triton kernel (CPU: interpreter) against the float64 reference, and SDPA as the baseline
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_triton_small_grid(dtype):
    configs = [c for c in OP.grid("small") if c["dtype"] == dtype]
    results = list(check(OP, ["triton"], configs=configs, device="cpu"))
    assert len(results) == len(configs)
    for r in results:
        assert r.status == "pass", (r.config, r.dtype, r.seed, r.rel_err, r.message)
        assert r.baseline == "sdpa" and r.baseline_ok, (r.config, r.dtype, r.seed, r.baseline_max_abs)


@pytest.mark.parametrize("tiles", [(16, 16), (64, 16), (64, 32)], ids=["16x16", "64x16", "64x32"])
def test_triton_tile_shapes_and_strided_inputs(tiles):
    """Several tiles per row (full, diagonal, skipped), q/k/v as strided views of a packed qkv tensor,
    a non-default softmax_scale."""
    from ssmscope.kernels.attention.triton_kernel import TileConfig, attention_fwd

    B, L, H, d = 2, 83, 4, 32
    qkv = torch.randn(B, L, 3, H, d, dtype=torch.float16)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1, :2], qkv[:, :, 2, 2:]  # GQA 4/2 from slices
    out = attention_fwd(q, k, v, softmax_scale=0.3, causal=True, config=TileConfig(*tiles, 4, 1))
    expected = OP.impls["ref"](q=q.double(), k=k.double(), v=v.double(), softmax_scale=0.3, causal=True)
    assert relative_error(out, expected) < OP.tolerance["fp16"]


@pytest.mark.parametrize("tiles", [(24, 16), (16, 32), (8, 8)], ids=["24x16", "16x32", "8x8"])
def test_triton_rejects_bad_tiles(tiles):
    from ssmscope.kernels.attention.triton_kernel import TileConfig, attention_fwd

    kw = fresh(dtype="fp16", batch=1, seqlen=8, heads=2, kv_heads=1, head_dim=16)
    with pytest.raises(ShapeError, match="powers of two"):
        attention_fwd(kw["q"], kw["k"], kw["v"], causal=True, config=TileConfig(*tiles, 4, 1))


# --------------------------------------------------------------------------------------------------
# SDPA and flash-attn adapters
# --------------------------------------------------------------------------------------------------
def test_sdpa_small_grid_fp32():
    configs = [c for c in OP.grid("small") if c["dtype"] == "fp32"]
    for r in check(OP, ["sdpa"], configs=configs, device="cpu"):
        assert r.status == "pass", (r.config, r.seed, r.rel_err, r.message)


def test_sdpa_describe_names_the_backend():
    from torch.nn.attention import SDPBackend

    fn = OP.impls["sdpa"].load()
    kw = fresh(dtype="fp32", batch=1, seqlen=9, heads=4, kv_heads=2, head_dim=16)
    name = fn.describe(**kw)
    assert name in SDPBackend.__members__ and name != "ERROR"


def test_flash_attn_unavailable_with_a_reason():
    if importlib.util.find_spec("flash_attn") is None:
        with pytest.raises(Unavailable, match="not installed"):
            OP.impls["flash_attn"].load()
    [r] = check(OP, ["flash_attn"], configs=[dict(seqlen=16, heads=2, kv_heads=1, head_dim=16, dtype="fp16")],
                device="cpu")
    assert r.status == "unavailable" and r.message


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------
def test_bad_shapes_raise_shape_error():
    with pytest.raises(ShapeError, match="multiple of kv_heads"):
        OP.shape(heads=6, kv_heads=4)
    with pytest.raises(ShapeError, match="head_dim must be <= 256"):
        OP.shape(head_dim=320)
    with pytest.raises(ShapeError, match="must be >= 1"):
        OP.shape(seqlen=0)


def test_triton_unsupported_head_dim_is_reported():
    [r] = check(OP, ["triton"], configs=[dict(seqlen=5, heads=2, kv_heads=1, head_dim=12, dtype="fp16")],
                device="cpu")
    assert r.status == "unsupported" and "multiple of 8" in r.message
    q = torch.randn(1, 5, 2, 12, dtype=torch.float16)
    with pytest.raises(ShapeError, match="multiple of 8"):
        OP.impls["triton"](q=q, k=q[:, :, :1], v=q[:, :, :1], causal=True)


@pytest.mark.parametrize("impl", ["ref", "triton"])
def test_mismatched_tensors_raise_shape_error(impl):
    q = torch.randn(1, 6, 4, 16)
    with pytest.raises(ShapeError, match="multiple of kv heads"):
        OP.impls[impl](q=q, k=torch.randn(1, 6, 3, 16), v=torch.randn(1, 6, 3, 16), causal=True)
    with pytest.raises(ShapeError, match="seqlen_k"):
        OP.impls[impl](q=q, k=torch.randn(1, 7, 2, 16), v=torch.randn(1, 7, 2, 16), causal=True)
    with pytest.raises(ShapeError, match="4-D"):
        OP.impls[impl](q=q[0], k=q[0], v=q[0], causal=True)


# --------------------------------------------------------------------------------------------------
# GPU (run on the GPU machine: pytest -m gpu)
# --------------------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_gpu_triton_upstream_grid_against_ref_and_sdpa():
    failed = [r for r in check(OP, ["triton"], grid="upstream", device="cuda")
              if r.status != "pass" or not r.baseline_ok]
    assert not failed, [(r.config, r.dtype, r.seed, r.status, r.rel_err, r.baseline_max_abs, r.message)
                        for r in failed[:10]]


@pytest.mark.gpu
def test_gpu_libraries_upstream_grid():
    configs = [c for c in OP.grid("upstream") if c["seqlen"] in (113, 1024, 2048)]
    for r in check(OP, ["sdpa", "flash_attn"], configs=configs, device="cuda"):
        assert r.status in ("pass", "unavailable"), (r.impl, r.config, r.dtype, r.seed, r.rel_err, r.message)


@pytest.mark.gpu
def test_gpu_sdpa_describe_is_a_fused_backend():
    kw = OP.make_inputs(device="cuda", dtype="bf16", seqlen=256, heads=14, kv_heads=2, head_dim=64)
    assert OP.impls["sdpa"].load().describe(**kw) in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION")
