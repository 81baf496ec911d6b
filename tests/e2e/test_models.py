"""The model registry: kernel calls checked by hand, parameter counts against the yaml and against transformers,
the yaml's documented sizes against what is built, and derived (shortened / tiny) models."""
import json

import pytest
import torch
import yaml

from ssmscope import kernels
from ssmscope.e2e.models import REGISTRY_FILE, get_model, registry, tiny

YAML = yaml.safe_load(REGISTRY_FILE.read_text())["models"]


def test_mamba_130m_prefill_calls():
    calls = {c.op: c for c in get_model("mamba-130m").op_calls(4096)}
    assert calls["selective_scan"].params == dict(batch=1, dim=1536, dstate=16, seqlen=4096)
    assert calls["selective_scan"].count == 24
    assert calls["causal_conv1d"].params == dict(batch=1, dim=1536, seqlen=4096, width=4)
    assert calls["causal_conv1d"].count == 24


def test_qwen_attention_and_decode():
    (prefill,) = get_model("qwen2.5-0.5b").op_calls(2048, batch=2)
    assert (prefill.op, prefill.count) == ("attention", 24)
    assert prefill.params == dict(batch=2, seqlen=2048, heads=14, kv_heads=2, head_dim=64)
    (decode,) = get_model("qwen2.5-0.5b").op_calls(2048, phase="decode")
    assert decode.op == "attention_decode" and decode.params["seqlen"] == 2048 and decode.count == 24


def test_mamba2_conv_covers_x_b_and_c():
    calls = {c.op: c for c in get_model("mamba2-780m").op_calls(1024)}
    assert calls["ssd"].params["nheads"] == 48 and calls["ssd"].params["dstate"] == 128
    assert calls["ssd"].params["chunk_size"] == 256
    assert calls["causal_conv1d"].params["dim"] == 3072 + 2 * 1 * 128
    decode = {c.op: c for c in get_model("mamba2-780m").op_calls(1024, phase="decode")}
    assert decode["selective_state_update"].params == dict(batch=1, nheads=48, dim=64, dstate=128, ngroups=1,
                                                            heads=True)
    assert decode["causal_conv1d_update"].params["dim"] == 3328


def test_hybrids_mix_attention_and_ssm():
    zamba = {c.op: c for c in get_model("zamba2-1.2b").op_calls(1024)}
    assert {op: c.count for op, c in zamba.items()} == {"ssd": 38, "causal_conv1d": 38, "attention": 6}
    assert zamba["attention"].params["head_dim"] == 128  # the shared block attends over 2 x hidden
    falcon = {c.op: c for c in get_model("falcon-h1-0.5b-base").op_calls(1024)}
    assert {op: c.count for op, c in falcon.items()} == {"ssd": 36, "causal_conv1d": 36, "attention": 36}
    assert falcon["causal_conv1d"].params["dim"] == 1792  # d_ssm 1536 + 2·128: the conv state [1, 1792, 4]


def test_hymba_meta_tokens_window_and_kv_sharing():
    spec = get_model("hymba-1.5b-base")
    prefill = {c.op: c for c in spec.op_calls(4096)}
    assert prefill["selective_scan"].params["seqlen"] == 4096 + 128 and prefill["selective_scan"].params["dim"] == 3200
    assert prefill["attention"].count == 32 and "sliding window" in prefill["attention"].where
    decode = [c for c in spec.op_calls(4096, phase="decode") if c.op == "attention_decode"]
    assert [(c.count, c.params["seqlen"]) for c in decode] == [(3, 4096 + 128), (29, 1024 + 128)]
    short = [c for c in spec.op_calls(100, phase="decode") if c.op == "attention_decode"]
    assert [c.params["seqlen"] for c in short] == [228, 228]  # a prompt shorter than the window
    assert len(spec.arch().kv_layers) == 17  # 15 layers reuse another layer's K/V


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_every_model_maps_to_valid_kernel_shapes(phase):
    for model in registry().values():
        for call in model.op_calls(1000, batch=3, phase=phase):
            kernels.get(call.op).shape(**call.params)  # raises ShapeError when a field is wrong


@pytest.mark.parametrize("name", list(YAML))
def test_parameter_count_matches_the_yaml(name):
    assert get_model(name).params == YAML[name]["param_count_check"]["computed"]


def test_parameter_counts_match_transformers_on_the_meta_device():
    from ssmscope.e2e.build import hf_config
    from transformers import AutoModelForCausalLM

    for spec in registry().values():
        if spec.config.get("trust_remote_code"):
            continue
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(hf_config(spec))
        assert sum(p.numel() for p in model.parameters()) == spec.params, spec.name


# documented top-level fields of the yaml -> the Arch field built from hf_config_kwargs
DOCUMENTED = {"hidden_size": "hidden", "d_model": "hidden", "num_hidden_layers": "layers", "n_layer": "layers",
              "vocab_size": "vocab", "num_attention_heads": "heads", "num_key_value_heads": "kv_heads",
              "head_dim": "head_dim", "attention_head_dim": "head_dim", "d_state": "d_state",
              "mamba_d_state": "d_state", "headdim": "headdim", "mamba_headdim": "headdim", "mamba_d_head": "headdim",
              "num_heads": "nheads", "n_mamba_heads": "nheads", "mamba_n_heads": "nheads", "ngroups": "ngroups",
              "mamba_n_groups": "ngroups", "dt_rank": "dt_rank", "mamba_dt_rank": "dt_rank", "chunk_size": "chunk_size",
              "mamba_chunk_size": "chunk_size", "tie_word_embeddings": "tied", "v_head_dim": "v_head_dim"}


@pytest.mark.parametrize("name", list(YAML))
def test_documented_sizes_agree_with_the_built_config(name):
    arch, entry = get_model(name).arch(), YAML[name]
    checked = {k: (entry[k], getattr(arch, f)) for k, f in DOCUMENTED.items() if entry.get(k) is not None}
    if entry.get("family") == "ssm" and entry["model_type"] == "mamba":
        checked["intermediate_size"] = (entry["intermediate_size"], arch.d_inner)
    if "hybrid_layer_ids" in entry:
        checked["hybrid_layer_ids"] = (tuple(entry["hybrid_layer_ids"]), arch.attn_layers)
    assert len(checked) >= 5
    assert {k: a for k, (a, _) in checked.items()} == {k: b for k, (_, b) in checked.items()}


def test_derive_shortens_everything_consistently():
    spec = get_model("zamba2-2.7b").derive(layers=13)
    assert spec.arch().attn_layers == (6, 12) and spec.arch().layers == 13
    assert {c.op: c.count for c in spec.op_calls(512)} == {"ssd": 13, "causal_conv1d": 13, "attention": 2}
    assert spec.params < get_model("zamba2-2.7b").params
    two = get_model("zamba2-1.2b").derive(layers=2)
    assert two.arch().attn_layers == (1,)  # a cut that would drop every attention layer keeps one
    neo = get_model("gpt-neo-125m").derive(layers=3)
    assert neo.config["hf_config_kwargs"]["attention_types"] == [[["global"], 1], [["local"], 1], [["global"], 1]]
    assert get_model("mamba-130m").derive(layers=2).config["mamba_ssm_config"]["n_layer"] == 2
    with pytest.raises(ValueError, match=r"layers must be in \[1, 24\]"):
        get_model("mamba-130m").derive(layers=25)


def test_tiny_keeps_the_architecture():
    spec = tiny(get_model("falcon-h1-0.5b-base"))
    a = spec.arch()
    assert (a.layers, a.hidden, a.vocab, a.ssm) == (2, 64, 256, "mamba2")
    assert a.nheads * a.headdim == a.d_inner and a.heads // a.kv_heads == 2
    assert spec.params < 200_000 and spec.name == "falcon-h1-0.5b-base"


def test_bad_arguments_are_one_clear_error():
    with pytest.raises(ValueError, match="mamba-130m"):
        get_model("mamba-9b")
    with pytest.raises(ValueError, match="phase"):
        get_model("mamba-130m").op_calls(128, phase="train")
    with pytest.raises(ValueError, match="seqlen"):
        get_model("mamba-130m").op_calls(0)


def test_every_entry_keeps_its_sources_and_unconfirmed_fields():
    assert all(m.source for m in registry().values())
    assert any("max_position_embeddings" in u for u in get_model("falcon-h1-1.5b-base").unconfirmed)
    assert registry()["mamba-130m"].unconfirmed == ()


def test_models_command_lists_every_model_as_json():
    from click.testing import CliRunner

    from ssmscope.cli import main

    result = CliRunner().invoke(main, ["e2e", "models", "--seqlen", "2048", "--json"])
    assert result.exit_code == 0, result.output
    listing = {m["model"]: m for m in json.loads(result.output)}
    assert set(listing) == set(registry())
    assert listing["mamba-130m"]["calls"][0]["params"]["seqlen"] == 2048
    assert listing["hymba-1.5b-base"]["params"] == 1522797824
