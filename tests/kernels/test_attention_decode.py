"""attention_decode (one token vs a KV cache): reference, cost model, split plan, our split-KV Triton kernel
(interpreter on CPU), SDPA, flash-attn."""
import importlib.util
import math
import random

import pytest
import torch
import torch.nn.functional as F

from ssmscope import kernels
from ssmscope.kernels import ShapeError, Unavailable
from ssmscope.kernels.attention_decode.splits import H100_SMS, split_plan
from ssmscope.kernels.check import check, relative_error

OP = kernels.get("attention_decode")


def fresh(**shape):
    return OP.make_inputs(seed=random.randrange(2**31), **shape)


def ref64(**kwargs):
    return OP.impls["ref"](**{k: v.double() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()})


# --------------------------------------------------------------------------------------------------
# Reference
# --------------------------------------------------------------------------------------------------
def test_ref_hand_computed_S2_d1():
    """One query, two cached tokens, d = 1 (scale 1): out = softmax(q·k)·v, by hand."""
    qv, k0, k1, v0, v1 = -0.9, 0.5, 1.7, 2.0, -1.1
    q = torch.tensor([qv], dtype=torch.float64).view(1, 1, 1, 1)
    k = torch.tensor([k0, k1], dtype=torch.float64).view(1, 2, 1, 1)
    v = torch.tensor([v0, v1], dtype=torch.float64).view(1, 2, 1, 1)
    w0, w1 = math.exp(qv * k0), math.exp(qv * k1)
    out = OP.impls["ref"](q=q, k_cache=k, v_cache=v)
    assert out.item() == pytest.approx((w0 * v0 + w1 * v1) / (w0 + w1), rel=1e-12)


@pytest.mark.parametrize("shape", [
    dict(batch=3, seqlen=41, heads=8, kv_heads=2, head_dim=16),
    dict(batch=1, seqlen=1, heads=7, kv_heads=1, head_dim=8),
    dict(batch=2, seqlen=200, heads=3, kv_heads=3, head_dim=32),
], ids=["B3-S41-GQA4-d16", "B1-S1-MQA7-d8", "B2-S200-MHA-d32"])
def test_ref_matches_torch_math_sdpa(shape):
    kw = fresh(dtype="fp32", **shape)
    q, k, v = (kw[n].double() for n in ("q", "k_cache", "v_cache"))
    group = q.shape[2] // k.shape[2]
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        expected = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.repeat_interleave(group, 2).transpose(1, 2),
            v.repeat_interleave(group, 2).transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(ref64(**kw), expected, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# Cost model and split plan
# --------------------------------------------------------------------------------------------------
def test_cost_matches_hand_counts():
    # B2 S5 Hq4 Hkv2 d8, fp16
    c = OP.cost_of(dtype="fp16", batch=2, seqlen=5, heads=4, kv_heads=2, head_dim=8)
    assert c.tensor_flops == 4 * 2 * 4 * 8 * 5
    assert c.transcendentals == 2 * 4 * 5
    assert c.flops == 4 * 2 * 4 * 8 * 5 + 4 * 2 * 4 * 5 + 2 * 4 * 8
    assert dict(c.bytes) == {"k_cache": 2 * 5 * 2 * 8 * 2, "v_cache": 2 * 5 * 2 * 8 * 2,
                             "q": 2 * 4 * 8 * 2, "out": 2 * 4 * 8 * 2}
    assert c.impl_bytes["triton"] == c.min_bytes  # 5 tokens: one split, no partials


def test_cost_counts_split_partials_at_long_context():
    c = OP.cost_of(dtype="bf16", batch=1, seqlen=65536, heads=14, kv_heads=2, head_dim=64)
    splits, _ = split_plan(1, 2, 65536, 64, H100_SMS)
    assert splits > 1
    assert c.impl_bytes["triton"] - c.min_bytes == 2 * 14 * splits * 65 * 4


@pytest.mark.parametrize("batch,kv_heads,seqlen,block_n,sms", [
    (1, 2, 131072, 64, 132), (64, 8, 131072, 64, 132), (1, 8, 1000, 64, 132), (5, 2, 339, 32, 132),
    (1, 1, 1, 16, 4), (2, 2, 300, 16, 4),
])
def test_split_plan_covers_the_cache(batch, kv_heads, seqlen, block_n, sms):
    splits, keys = split_plan(batch, kv_heads, seqlen, block_n, sms)
    assert keys % block_n == 0 and 1 <= splits <= 128
    assert (splits - 1) * keys < seqlen <= splits * keys  # every split non-empty, all tokens covered
    if batch * kv_heads * 4 <= sms and seqlen >= 128 * 128:
        assert splits == 128  # batch 1 at long context: as many splits as allowed


# --------------------------------------------------------------------------------------------------
# Our Triton kernel (CPU: interpreter)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_triton_small_grid(dtype):
    configs = [c for c in OP.grid("small") if c["dtype"] == dtype]
    results = list(check(OP, ["triton"], configs=configs, device="cpu"))
    assert len(results) == len(configs)
    for r in results:
        assert r.status == "pass", (r.config, r.dtype, r.seed, r.rel_err, r.message)
        assert r.baseline == "sdpa" and r.baseline_ok, (r.config, r.dtype, r.seed, r.baseline_max_abs)


@pytest.mark.parametrize("num_splits", [1, 2, 5, 19], ids=lambda n: f"splits{n}")
def test_triton_forced_splits_and_strided_cache(num_splits):
    """1 split writes out directly; 2-19 go through the combine kernel (19 > its 16-split chunk). The cache
    is a strided slice of a larger (pre-allocated) cache, q a slice of a fused projection."""
    from ssmscope.kernels.attention_decode.triton_kernel import attention_decode_fwd

    B, S, H, Hkv, d = 2, 300, 6, 2, 32
    k_big, v_big = torch.randn(2, B, S + 37, Hkv, d, dtype=torch.float16).unbind(0)
    k, v = k_big[:, :S], v_big[:, :S]
    q = torch.randn(B, 1, 2 * H, d, dtype=torch.float16)[:, :, ::2]
    out = attention_decode_fwd(q, k, v, softmax_scale=0.2, num_splits=num_splits, block_n=16)
    expected = OP.impls["ref"](q=q.double(), k_cache=k.double(), v_cache=v.double(), softmax_scale=0.2)
    assert relative_error(out, expected) < OP.tolerance["fp16"]


# --------------------------------------------------------------------------------------------------
# SDPA and flash-attn adapters
# --------------------------------------------------------------------------------------------------
def test_sdpa_small_grid_fp32():
    configs = [c for c in OP.grid("small") if c["dtype"] == "fp32"]
    for r in check(OP, ["sdpa"], configs=configs, device="cpu"):
        assert r.status == "pass", (r.config, r.seed, r.rel_err, r.message)


def test_sdpa_describe_names_the_backend():
    from torch.nn.attention import SDPBackend

    kw = fresh(dtype="fp32", batch=2, seqlen=33, heads=4, kv_heads=1, head_dim=16)
    name = OP.impls["sdpa"].load().describe(**kw)
    assert name in SDPBackend.__members__ and name != "ERROR"


def test_flash_attn_unavailable_with_a_reason():
    if importlib.util.find_spec("flash_attn") is None:
        with pytest.raises(Unavailable, match="not installed"):
            OP.impls["flash_attn"].load()
    [r] = check(OP, ["flash_attn"], configs=[dict(seqlen=16, heads=2, kv_heads=1, head_dim=16, dtype="bf16")],
                device="cpu")
    assert r.status == "unavailable" and r.message


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------
def test_bad_shapes_raise_shape_error():
    with pytest.raises(ShapeError, match="multiple of kv_heads"):
        OP.shape(heads=14, kv_heads=4)
    with pytest.raises(ShapeError, match="head_dim must be <= 256"):
        OP.shape(head_dim=512)


def test_triton_unsupported_head_dim_is_reported():
    [r] = check(OP, ["triton"], configs=[dict(seqlen=5, heads=2, kv_heads=1, head_dim=20, dtype="fp16")],
                device="cpu")
    assert r.status == "unsupported" and "multiple of 8" in r.message


@pytest.mark.parametrize("impl", ["ref", "triton"])
def test_mismatched_tensors_raise_shape_error(impl):
    k = torch.randn(2, 9, 2, 16)
    with pytest.raises(ShapeError, match="one token"):
        OP.impls[impl](q=torch.randn(2, 3, 4, 16), k_cache=k, v_cache=k)
    with pytest.raises(ShapeError, match="multiple of kv heads"):
        OP.impls[impl](q=torch.randn(2, 1, 5, 16), k_cache=k, v_cache=k)
    with pytest.raises(ShapeError, match="empty"):
        OP.impls[impl](q=torch.randn(2, 1, 4, 16), k_cache=k[:, :0], v_cache=k[:, :0])
    with pytest.raises(ShapeError, match="k_cache and v_cache"):
        OP.impls[impl](q=torch.randn(2, 1, 4, 16), k_cache=k, v_cache=k[:, :5])


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
    configs = [c for c in OP.grid("upstream") if c["seqlen"] in (1, 1000, 20000)]
    for r in check(OP, ["sdpa", "flash_attn"], configs=configs, device="cuda"):
        assert r.status in ("pass", "unavailable"), (r.impl, r.config, r.dtype, r.seed, r.rel_err, r.message)


@pytest.mark.gpu
@pytest.mark.parametrize("num_splits", [1, 7, 128], ids=lambda n: f"splits{n}")
def test_gpu_triton_forced_splits(num_splits):
    from ssmscope.kernels.attention_decode.triton_kernel import attention_decode_fwd

    kw = OP.make_inputs(device="cuda", dtype="bf16", batch=3, seqlen=20000, heads=14, kv_heads=2, head_dim=64)
    out = attention_decode_fwd(**kw, num_splits=num_splits)
    assert relative_error(out, ref64(**kw)) < OP.tolerance["bf16"]
