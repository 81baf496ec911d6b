"""The model registry and its mapping to kernel calls, checked by hand on a few models."""
import pytest

from ssmscope import kernels
from ssmscope.e2e.models import get_model, registry


def test_mamba_130m_prefill_calls():
    calls = {c.op: c for c in get_model("mamba-130m").op_calls(4096)}
    assert calls["selective_scan"].params == dict(batch=1, dim=1536, dstate=16, seqlen=4096)
    assert calls["selective_scan"].count == 24
    assert calls["causal_conv1d"].params == dict(batch=1, dim=1536, seqlen=4096, width=4)


def test_qwen_attention_and_decode():
    (prefill,) = get_model("qwen2.5-0.5b").op_calls(2048, batch=2)
    assert (prefill.op, prefill.count) == ("attention", 24)
    assert prefill.params == dict(batch=2, seqlen=2048, heads=14, kv_heads=2, head_dim=64)
    (decode,) = get_model("qwen2.5-0.5b").op_calls(2048, phase="decode")
    assert decode.op == "attention_decode" and decode.params["seqlen"] == 2048


def test_mamba2_conv_covers_x_b_and_c():
    calls = {c.op: c for c in get_model("mamba2-780m").op_calls(1024)}
    assert calls["ssd"].params["nheads"] == 48 and calls["ssd"].params["dstate"] == 128
    assert calls["causal_conv1d"].params["dim"] == 3072 + 2 * 1 * 128


def test_hybrids_mix_attention_and_ssm():
    zamba = {c.op: c.count for c in get_model("zamba2-1.2b").op_calls(1024)}
    assert zamba == {"ssd": 38, "causal_conv1d": 38, "attention": 6}
    falcon = {c.op: c.count for c in get_model("falcon-h1-0.5b-base").op_calls(1024)}
    assert falcon == {"ssd": 36, "causal_conv1d": 36, "attention": 36}


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_every_model_maps_to_valid_kernel_shapes(phase):
    for model in registry().values():
        for call in model.op_calls(1000, batch=3, phase=phase):
            kernels.get(call.op).shape(**call.params)  # raises ShapeError when a field is wrong


def test_unknown_model_lists_names():
    with pytest.raises(ValueError, match="mamba-130m"):
        get_model("mamba-9b")


def test_every_entry_keeps_its_sources():
    assert all(m.source for m in registry().values())


def test_models_command_lists_every_model_as_json():
    import json

    from click.testing import CliRunner

    from ssmscope.cli import main

    result = CliRunner().invoke(main, ["e2e", "models", "--seqlen", "2048", "--json"])
    assert result.exit_code == 0, result.output
    listing = {m["model"]: m for m in json.loads(result.output)}
    assert set(listing) == set(registry())
    assert listing["mamba-130m"]["calls"][0]["params"]["seqlen"] == 2048
