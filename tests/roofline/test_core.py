"""The roofline function and analytic placement, against numbers computed by hand from the YAML files."""
import pytest
import yaml

from ssmscope import kernels
from ssmscope.roofline import parse_shape, place, roofline
from ssmscope.roofline.devices import BUILTIN_DIR, get_device

DEVICES = sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def raw(device_id: str, key: str) -> float:
    """A spec straight from the YAML file (the value, or the formula worked out here by hand)."""
    spec = yaml.safe_load((BUILTIN_DIR / f"{device_id}.yaml").read_text())["specs"][key]
    if spec.get("value") is not None:
        return float(spec["value"])
    def sm():
        return raw(device_id, "sm_count")

    def clock():
        return raw(device_id, "boost_clock_Hz")

    by_hand = {
        "sm_count": lambda: 1024 / 128,  # the Orin Nano files: 1024 CUDA cores / 128 per SM
        "sfu_op_per_s": lambda: sm() * raw(device_id, "sfu_per_clk_per_sm") * clock(),
        "fp32_flop_per_s": lambda: sm() * 256 * clock(),
        "tensor_bf16_f32acc_flop_per_s": lambda: sm() * 2048 * clock(),
        "tensor_fp16_f32acc_flop_per_s": lambda: sm() * 2048 * clock(),
        "boost_clock_Hz": lambda: raw(device_id, "fp32_flop_per_s") / (sm() * 256),
    }
    return by_hand[key]()


@pytest.mark.parametrize("device_id", DEVICES)
def test_causal_conv1d_floor_is_its_bytes_over_dram_bandwidth(device_id):
    B, D, L, W = 1, 1536, 4096, 4
    p = place("causal_conv1d", {"batch": B, "dim": D, "seqlen": L, "width": W}, device_id, "bf16")
    n = B * D * L
    nbytes = 2 * n * 2 + D * W * 2 + D * 2          # x in, out, weight, bias (bf16)
    flops = kernels.get("causal_conv1d").cost_of("bf16", batch=B, dim=D, seqlen=L, width=W).flops
    assert p.bytes == nbytes and p.flops == flops and p.transcendentals == n  # one exp per silu
    assert p.roofline.intensity == pytest.approx(flops / nbytes)
    assert p.roofline.bound == "dram"
    assert p.roofline.floor_s == pytest.approx(nbytes / raw(device_id, "dram_bandwidth_B_per_s"))
    assert p.roofline.attainable == pytest.approx(flops / p.roofline.floor_s)


@pytest.mark.parametrize("device_id", ["h100-sxm", "rtx4090", "orin-nano"])
def test_attention_floor_by_hand(device_id):
    params = {"batch": 1, "seqlen": 4096, "heads": 14, "kv_heads": 2, "head_dim": 64}
    p = place("attention", params, device_id, "bf16")
    t_dram = p.bytes / raw(device_id, "dram_bandwidth_B_per_s")
    t_compute = ((p.flops - p.tensor_flops) / raw(device_id, "fp32_flop_per_s")
                 + p.tensor_flops / raw(device_id, "tensor_bf16_f32acc_flop_per_s"))
    t_sfu = p.transcendentals / raw(device_id, "sfu_op_per_s")
    assert p.tensor_flops > 0.9 * p.flops
    assert p.roofline.floor_s == pytest.approx(max(t_dram, t_compute, t_sfu))
    assert p.roofline.bound == "compute"


def test_bound_selection():
    h100 = get_device("h100-sxm")
    dram = roofline(flops=1e9, bytes=1e9, transcendentals=0, device=h100)
    assert (dram.bound, dram.floor_s) == ("dram", pytest.approx(1e9 / 3.35e12))
    compute = roofline(flops=1e12, bytes=1e6, transcendentals=1e6, device=h100, tensor_flops=1e12)
    assert (compute.bound, compute.floor_s) == ("compute", pytest.approx(1e12 / 989.4e12))
    sfu = roofline(flops=2e9, bytes=1e6, transcendentals=1e9, device=h100)
    assert sfu.bound == "sfu"
    assert sfu.floor_s == pytest.approx(1e9 / (132 * 16 * 1.98e9))
    # the same exps with 40 FLOPs each: now FP32 is the slower pipe
    assert roofline(flops=4e10, bytes=1e6, transcendentals=1e9, device=h100).bound == "compute"


def test_tuple_unpacking_and_times():
    intensity, attainable, bound, floor = roofline(3e9, 1e9, 0, "rtx4090")
    assert intensity == 3.0 and bound == "dram" and attainable == pytest.approx(3e9 / floor)


def test_precision_picks_the_tensor_peak():
    work = dict(flops=1e12, bytes=1.0, transcendentals=0, device="rtx4090", tensor_flops=1e12)
    assert roofline(**work, precision="bf16").floor_s == pytest.approx(1e12 / 165.2e12)
    assert roofline(**work, precision="fp16acc16").floor_s == pytest.approx(1e12 / 330.3e12)
    assert roofline(**work, precision="fp32").floor_s == pytest.approx(1e12 / 82.6e12)  # CUDA cores
    assert roofline(**work, precision="tf32").floor_s == pytest.approx(1e12 / 82.6e12)


@pytest.mark.parametrize("kwargs, message", [
    (dict(flops=-1, bytes=1, transcendentals=0), "non-negative"),
    (dict(flops=1, bytes=1, transcendentals=0, tensor_flops=2), "cannot exceed"),
    (dict(flops=0, bytes=0, transcendentals=0), "no work"),
    (dict(flops=1, bytes=1, transcendentals=0, precision="fp8"), "unknown precision"),
], ids=["negative", "tensor>flops", "no-work", "bad-precision"])
def test_bad_work_is_an_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        roofline(device="a100", **kwargs)


def test_parse_shape():
    assert parse_shape("batch=1, dim=1536,silu=false,seqlen=4k,scale=0.5") == {
        "batch": 1, "dim": 1536, "silu": False, "seqlen": 4096, "scale": 0.5}
    with pytest.raises(ValueError, match="key=value"):
        parse_shape("batch")
