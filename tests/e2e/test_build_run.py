"""Build the paper's models from config (random weights, a few layers) and time generation on the CPU."""
import json

import pytest
from click.testing import CliRunner

from ssmscope.cli import main
from ssmscope.e2e.build import Unbuildable, attention_backend, build_model, hf_config
from ssmscope.e2e.models import get_model
from ssmscope.e2e.run import measure_generation

TINY = dict(vocab_size=128)


@pytest.mark.parametrize("name", ["mamba-130m", "mamba2-130m", "qwen2.5-0.5b", "falcon-h1-0.5b-base",
                                  "gpt-neo-125m"])
def test_build_and_time_a_one_layer_model(name):
    model = build_model(get_model(name), layers=1, dtype="fp32", **TINY)
    row = measure_generation(model, seqlen=16, gen_len=3, reps=1)
    assert row["ttft_s"] > 0 and row["tpot_s"] >= 0 and row["seqlen"] == 16
    assert attention_backend(model) in ("sdpa", "eager")  # GPT-Neo has no SDPA path: eager, recorded


def test_layer_cut_keeps_an_attention_layer_in_zamba2():
    config = hf_config(get_model("zamba2-1.2b"), layers=2)
    assert config.num_hidden_layers == 2 and "hybrid" in config.layers_block_type


def test_hymba_is_reported_not_built():
    with pytest.raises(Unbuildable, match="remote code"):
        hf_config(get_model("hymba-1.5b-base"))


def test_run_command_writes_rows(tmp_path):
    result = CliRunner().invoke(main, ["e2e", "run", "mamba-130m", "--layers", "1", "--device", "cpu", "--dtype",
                                       "fp32", "--seqlen", "8,16", "--gen", "2", "--reps", "1", "--out",
                                       str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "e2e_rows.jsonl").read_text().splitlines()]
    assert [r["seqlen"] for r in rows] == [8, 16] and all(r["status"] == "ok" for r in rows)
    bad = CliRunner().invoke(main, ["e2e", "run", "hymba-1.5b-base", "--device", "cpu"])
    assert bad.exit_code != 0 and "remote code" in bad.output


def test_breakdown_command_on_cpu(tmp_path):
    trace = tmp_path / "trace.json"
    result = CliRunner().invoke(main, ["e2e", "breakdown", "mamba2-130m", "--layers", "1", "--device", "cpu",
                                       "--dtype", "fp32", "--seqlen", "32", "--trace", str(trace), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output[result.output.index("{"):])
    assert payload["time_source"].startswith("aten") and payload["device_s"] > 0
    assert abs(sum(payload["shares"].values()) - 1) < 1e-9 and payload["classes"]["gemm"] > 0
    assert trace.stat().st_size > 0


def test_tie_back_floors_and_amdahl():
    from ssmscope.e2e.profile import tie_back
    from ssmscope.roofline import place

    spec = get_model("mamba-130m")
    result = {"seqlen": 4096, "batch": 1, "device_s": 10e-3, "families": {"selective_scan": 6e-3}}
    out = tie_back(spec, result, "rtx4090")["selective_scan"]
    floor = 24 * place("selective_scan", dict(batch=1, dim=1536, dstate=16, seqlen=4096), "rtx4090").roofline.floor_s
    assert out["floor_s"] == pytest.approx(floor) and out["share"] == pytest.approx(0.6)
    assert out["amdahl_speedup"] == pytest.approx(10e-3 / (10e-3 - 6e-3 + min(floor, 6e-3)))


def test_energy_from_the_nvml_counter_with_a_stand_in(monkeypatch):
    import sys
    import types

    from ssmscope.e2e.run import measure_energy

    counter = iter([1_000_000, 1_250_000])  # mJ before / after: 250 J
    fake = types.SimpleNamespace(NVMLError=RuntimeError, nvmlInit=lambda: None, nvmlShutdown=lambda: None,
                                 nvmlDeviceGetHandleByIndex=lambda i: i,
                                 nvmlDeviceGetTotalEnergyConsumption=lambda h: next(counter))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    result = measure_energy(lambda: 0.5)
    assert result == {"energy_J": 250.0, "energy_source": "nvml total energy counter", "avg_power_W": 500.0}


def test_plots_render(tmp_path):
    rows = [{"model": m, "status": "ok", "seqlen": n, "ttft_s": n * k, "tpot_s": 1e-3 + n * k / 100}
            for m, k in (("qwen2.5-0.5b", 2e-6), ("mamba2-780m", 1e-6)) for n in (1024, 4096, 16384)]
    (tmp_path / "e2e_rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    result = CliRunner().invoke(main, ["e2e", "plot", str(tmp_path), "--memory-seqlen", "4096"])
    assert result.exit_code == 0, result.output
    for name in ("latency.png", "latency.svg", "memory_L4096.png", "memory_L4096.svg"):
        data = (tmp_path / name).read_bytes()
        assert len(data) > 5000 and (data[:4] == b"\x89PNG" or b"<svg" in data[:400])
