"""Value and range syntax, named flags -> op fields, --set, sweep files, and how configs are built."""
from __future__ import annotations

import pytest

from ssmscope import kernels
from ssmscope.microbench.grid import (GridError, build_configs, configs_from_entry, load_sweep_file, parse_values,
                                      resolve_flag, sweep_fields)


@pytest.mark.parametrize("text, expected", [
    ("1024,4096", [1024, 4096]),
    ("4k", [4096]),
    ("4K,1", [4096, 1]),
    ("1k:8k:x2", [1024, 2048, 4096, 8192]),
    ("1k:128k:x2", [1024 * 2 ** i for i in range(8)]),
    ("3:100:x3", [3, 9, 27, 81]),  # stop not hit: the last value <= stop
    ("128:1024:+128", [128 * i for i in range(1, 9)]),
    ("5:17:+5", [5, 10, 15]),
    ("7:7:+1", [7]),
    ("1k,512:2k:x2", [1024, 512, 2048]),  # parts combine, duplicates dropped, order kept
    (" 16 , 64 ", [16, 64]),
], ids=["list", "k-suffix", "K-suffix", "geometric", "geometric-1k-128k", "geometric-uneven", "arithmetic",
        "arithmetic-uneven", "single-point-range", "mixed-dedup", "spaces"])
def test_parse_int_values(text, expected):
    assert parse_values(text) == expected


@pytest.mark.parametrize("text, fragment", [
    ("1k:4k", "start:stop"),
    ("4k:1k:x2", "below start"),
    ("1:8:x1", "factor must be >= 2"),
    ("1:8:+0", "step must be >= 1"),
    ("1:8:/2", "xFACTOR"),
    ("abc", "not an integer"),
    ("1.5k", "not an integer"),
    ("16,,32", "empty item"),
    ("1:100000000:+1", "more than"),
], ids=["two-parts", "reversed", "factor-1", "step-0", "bad-step", "word", "fraction", "empty-item", "too-many"])
def test_parse_errors_say_why(text, fragment):
    with pytest.raises(GridError, match=fragment):
        parse_values(text)


def test_parse_bool_and_str_and_yaml_values():
    assert parse_values("true,no,1,OFF", bool) == [True, False]
    assert parse_values("bf16,fp32", str) == ["bf16", "fp32"]
    assert parse_values([1024, "2k"]) == [1024, 2048]  # a YAML list
    assert parse_values(True, bool) == [True]
    with pytest.raises(GridError, match="not a boolean"):
        parse_values("maybe", bool)


@pytest.mark.parametrize("op_name, flag, field", [
    ("ssd", "heads", "nheads"),
    ("ssd", "headdim", "headdim"),
    ("attention", "heads", "heads"),
    ("attention", "headdim", "head_dim"),
    ("selective_state_update", "heads", "nheads"),  # its `heads` is a bool layout switch
    ("selective_scan", "dstate", "dstate"),
    ("causal_conv1d", "seqlen", "seqlen"),
])
def test_named_flags_map_to_op_fields(op_name, flag, field):
    assert resolve_flag(kernels.get(op_name), flag) == field


def test_flag_the_op_lacks_names_its_fields():
    with pytest.raises(GridError) as err:
        resolve_flag(kernels.get("causal_conv1d"), "dstate")
    assert "batch, dim, seqlen, width" in str(err.value) and "--set" in str(err.value)


def test_sweep_fields_types_and_errors():
    op = kernels.get("causal_conv1d")
    fields = sweep_fields(op, {"seqlen": "1k:4k:x2", "dim": None}, ["silu=true,false", "dtype=bfloat16,fp32"])
    assert fields == {"seqlen": [1024, 2048, 4096], "silu": [True, False], "dtype": ["bf16", "fp32"]}
    with pytest.raises(GridError, match="no field 'dstate'"):
        sweep_fields(op, {}, ["dstate=16"])
    with pytest.raises(GridError, match="given twice"):
        sweep_fields(op, {"seqlen": "1k"}, ["seqlen=2k"])
    with pytest.raises(GridError, match="FIELD=VALUES"):
        sweep_fields(op, {}, ["seqlen"])


def test_build_configs_product_uses_shape_defaults():
    op = kernels.get("causal_conv1d")
    configs = build_configs(op, fields={"seqlen": [1024, 4096], "dim": [64, 96]})
    assert configs == [{"dtype": "bf16", "seqlen": s, "dim": d} for s in (1024, 4096) for d in (64, 96)]
    shape, dtype = op.split_config(configs[0])
    assert (shape.width, shape.batch, dtype) == (4, 1, "bf16")  # the rest are the shape's defaults


def test_build_configs_grid_override_where_limit():
    op = kernels.get("causal_conv1d")
    paper = op.grid("paper")
    assert build_configs(op) == [{"dtype": "bf16", **c} for c in paper]  # the default grid
    at_4k = build_configs(op, grid="paper", fields={"seqlen": [4096]})
    assert len(at_4k) == len({(c["dim"], c.get("channel_last", False)) for c in paper})  # duplicates dropped
    assert all(c["seqlen"] == 4096 for c in at_4k)
    quick = build_configs(op, grid="quick", where="dtype=fp16,channel_last=True", limit=4)
    assert len(quick) == 4 and all(c["dtype"] == "fp16" and c["channel_last"] for c in quick)
    with pytest.raises(GridError, match="FIELD=VALUE"):
        build_configs(op, grid="quick", where="dtype")


def test_sweep_file(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("ops:\n  causal_conv1d:\n    impl: [ref]\n    set: {seqlen: 64:256:x2, dim: [19, 40], dtype: fp32}\n"
                    "  attention:\n    grid: quick\n    where: dtype=bf16\n    limit: 2\n"
                    "timing: {cache: warm, budget_s: 0.1}\n")
    data = load_sweep_file(path)
    assert data["timing"] == {"cache": "warm", "budget_s": 0.1}
    conv = configs_from_entry(kernels.get("causal_conv1d"), data["ops"]["causal_conv1d"])
    assert [(c["seqlen"], c["dim"], c["dtype"]) for c in conv] == [(s, d, "fp32") for s in (64, 128, 256) for d in (19, 40)]
    attn = configs_from_entry(kernels.get("attention"), data["ops"]["attention"])
    assert len(attn) == 2 and all(c["dtype"] == "bf16" for c in attn)
    bad = tmp_path / "bad.yaml"
    bad.write_text("ops:\n  causal_conv1d:\n    sweep: {seqlen: 1k}\n")
    with pytest.raises(GridError, match="may only have"):
        load_sweep_file(bad)
    bad.write_text("causal_conv1d: {}\n")
    with pytest.raises(GridError, match="'ops' mapping"):
        load_sweep_file(bad)


def test_parse_scalar_reads_knob_values():
    from ssmscope.microbench.grid import parse_scalar

    assert parse_scalar("16k") == 16384 and parse_scalar(" true") is True and parse_scalar("False") is False
    assert parse_scalar("bf16") == "bf16" and parse_scalar("32") == 32
