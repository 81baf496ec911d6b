"""Device files: every number sourced, loading errors name the problem, measured profiles, GPU-name matching."""
from pathlib import Path

import pytest
import yaml

from ssmscope.roofline.devices import (BUILTIN_DIR, REQUIRED_SPECS, SPEC_UNITS, DeviceError, device_ids, get_device,
                                       match_device)

EXPECTED = ["a100", "agx-orin", "h100-pcie", "h100-sxm", "h200", "orin-nano", "orin-nano-super", "rtx4090"]
DEVICE_FILES = sorted(BUILTIN_DIR.glob("*.yaml"))


def test_the_eight_devices_are_there():
    assert sorted(device_ids("datasheet")) == EXPECTED


@pytest.mark.parametrize("path", DEVICE_FILES, ids=lambda p: p.stem)
def test_every_number_has_a_source(path: Path):
    raw = yaml.safe_load(path.read_text())
    dev = get_device(path.stem)
    assert set(raw["specs"]) == set(SPEC_UNITS), "a device file lists every spec (null + note when unknown)"
    for key, entry in raw["specs"].items():
        spec = dev.spec(key)
        if entry.get("value") is None and not entry.get("derived"):
            assert spec.value is None and len(spec.note) > 10, f"{key}: null needs a real note"
            continue
        assert spec.value and spec.value > 0, key
        assert len(entry["source"]) > 3, key
        # a reference key expands to a document with a URL; free text is a URL or says derived/measured
        assert "http" in spec.source or spec.source.startswith("derived"), f"{key}: {spec.source!r}"
    for key in REQUIRED_SPECS:
        assert getattr(dev, key) is not None


@pytest.mark.parametrize("path", DEVICE_FILES, ids=lambda p: p.stem)
def test_sfu_rate_is_16_per_clock_per_sm_at_the_boost_clock(path: Path):
    dev = get_device(path.stem)
    assert dev.sfu_per_clk_per_sm == 16  # CC 8.0-9.0, CUDA throughput table
    assert dev.sfu_op_per_s == pytest.approx(dev.sm_count * 16 * dev.boost_clock_Hz)


def test_geforce_fp32_accumulate_is_half_rate():
    dev = get_device("rtx4090")
    assert dev.tensor_fp16_f16acc_flop_per_s == pytest.approx(2 * dev.tensor_fp16_f32acc_flop_per_s, rel=0.01)
    assert dev.tensor_peak("bf16") == 165.2e12 and dev.tensor_peak("fp32") is None


def test_unknown_device_lists_the_known_ones():
    with pytest.raises(DeviceError, match="rtx4090.*orin-nano|orin-nano.*rtx4090"):
        get_device("rtx5090")


GOOD = {
    "id": "toy-gpu", "name": "Toy GPU", "arch": "Toy", "compute_capability": "9.9",
    "references": {"sheet": "Toy data sheet, Table 1 (https://example.com/toy.pdf)"},
    "specs": {
        "sm_count": {"value": 10, "source": "sheet, SMs"},
        "boost_clock_Hz": {"value": 1.5e9, "source": "sheet"},
        "fp32_flop_per_s": {"derived": "sm_count * 256 * boost_clock_Hz", "source": "derived: 128 FMA/clk/SM"},
        "tensor_bf16_f32acc_flop_per_s": {"value": 3.0e13, "source": "sheet"},
        "tensor_fp16_f32acc_flop_per_s": {"value": 3.0e13, "source": "https://example.com/toy.pdf"},
        "sfu_per_clk_per_sm": {"value": 16, "source": "sheet"},
        "sfu_op_per_s": {"derived": "sm_count * sfu_per_clk_per_sm * boost_clock_Hz", "source": "derived"},
        "dram_bandwidth_B_per_s": {"value": 5.0e11, "source": "sheet, 500 GB/s"},
        "l2_size_B": {"value": None, "note": "not published for the toy"},
    },
}


def _write(folder: Path, data: dict, name: str | None = None) -> Path:
    path = folder / f"{name or data['id']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_adding_a_device_is_adding_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SSMSCOPE_DEVICES", str(tmp_path))
    _write(tmp_path, GOOD)
    dev = get_device("toy-gpu")
    assert dev.fp32_flop_per_s == pytest.approx(10 * 256 * 1.5e9)
    assert dev.sfu_op_per_s == pytest.approx(10 * 16 * 1.5e9)
    assert dev.l2_size_B is None and "toy" in dev.spec("l2_size_B").note
    assert dev.spec("sm_count").source.startswith("Toy data sheet") and dev.spec("sm_count").source.endswith("SMs")
    assert "toy-gpu" in device_ids()


def _broken(change):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    change(data)
    return data


BROKEN = {
    "no-source": (lambda d: d["specs"]["sm_count"].pop("source"), "no source"),
    "null-without-note": (lambda d: d["specs"]["l2_size_B"].pop("note"), "without a note"),
    "unknown-key": (lambda d: d["specs"].update(dram_GBps={"value": 5, "source": "sheet"}), "unknown spec key"),
    "unknown-reference": (lambda d: d["specs"]["sm_count"].update(source="datasheet, SMs"), "not in `references`"),
    "bare-text-source": (lambda d: d["specs"]["sm_count"].update(source="I think 10"), "must cite"),
    "formula-disagrees": (lambda d: d["specs"]["fp32_flop_per_s"].update(value=1e12), "disagrees with its formula"),
    "formula-cycle": (lambda d: d["specs"]["sm_count"].update(value=None, derived="fp32_flop_per_s / 2"), "cycle"),
    "required-missing": (lambda d: d["specs"].pop("dram_bandwidth_B_per_s"), "needs dram_bandwidth_B_per_s"),
    "formula-with-call": (lambda d: d["specs"]["fp32_flop_per_s"].update(derived="__import__('os')"), "may only use"),
    "not-a-number": (lambda d: d["specs"]["sm_count"].update(value="ten"), "not a number"),
}


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_broken_device_files_are_clear_errors(case, tmp_path, monkeypatch):
    change, message = BROKEN[case]
    monkeypatch.setenv("SSMSCOPE_DEVICES", str(tmp_path))
    _write(tmp_path, _broken(change))
    with pytest.raises(DeviceError, match=message) as info:
        get_device("toy-gpu")
    assert "toy-gpu.yaml" in str(info.value)


def test_file_name_must_be_the_id(tmp_path, monkeypatch):
    monkeypatch.setenv("SSMSCOPE_DEVICES", str(tmp_path))
    _write(tmp_path, GOOD, name="other-name")
    with pytest.raises(DeviceError, match="must equal the file name"):
        get_device("other-name")


def test_measured_profile_overrides_only_what_it_measured(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = tmp_path / "ssmscope" / "devices"
    folder.mkdir(parents=True)
    _write(folder, {"id": "h100-sxm@measured", "name": "H100 (measured)", "base": "h100-sxm",
                    "specs": {"dram_bandwidth_B_per_s": {"value": 3.0e12, "source": "measured: copy kernel"}}})
    dev = get_device("h100-sxm@measured")
    base = get_device("h100-sxm")
    assert dev.kind == "measured" and dev.base == "h100-sxm"
    assert dev.dram_bandwidth_B_per_s == 3.0e12 and dev.spec("dram_bandwidth_B_per_s").source.startswith("measured")
    assert dev.fp32_flop_per_s == base.fp32_flop_per_s and dev.sfu_op_per_s == base.sfu_op_per_s
    assert "h100-sxm@measured" in device_ids("measured")


@pytest.mark.parametrize("name, sms, clock, expected", [
    ("NVIDIA H100 80GB HBM3", 132, 1.98e9, "h100-sxm"),
    ("NVIDIA H100 PCIe", 114, None, "h100-pcie"),
    ("NVIDIA GeForce RTX 4090", 128, None, "rtx4090"),
    ("NVIDIA A100-SXM4-80GB", 108, None, "a100"),
    ("Orin", 8, 1.02e9, "orin-nano-super"),
    ("Orin", 8, 6.24e8, "orin-nano"),
    ("Orin", 16, 1.3e9, "agx-orin"),
], ids=lambda v: str(v))
def test_gpu_names_match_device_files(name, sms, clock, expected):
    assert match_device(name, sms, clock).id == expected


def test_ambiguous_or_unknown_gpu_is_an_error():
    with pytest.raises(DeviceError, match="several devices"):
        match_device("Orin", 8)
    with pytest.raises(DeviceError, match="no device file matches"):
        match_device("NVIDIA B200", 148)
