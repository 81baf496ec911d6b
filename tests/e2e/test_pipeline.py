"""The whole pipeline on tiny models of every family (2 layers, hidden 64, CPU): build, the analytic memory
against the built model's own tensors, generation timing, the profiles, the CLI's rows, and the plots."""
import json

import pytest
import torch
from click.testing import CliRunner

from ssmscope.cli import main
from ssmscope.e2e.build import Unbuildable, build, hf_config, weight_bytes
from ssmscope.e2e.memory import measure_memory, memory_parts
from ssmscope.e2e.models import get_model, tiny

TINY_MODELS = ["qwen2.5-0.5b", "llama-3.2-1b", "phi-3-mini-4k", "gpt-neo-125m", "mamba-130m", "mamba2-130m",
               "zamba2-1.2b", "zamba2-2.7b", "falcon-h1-0.5b-base"]


@pytest.mark.parametrize("name", TINY_MODELS)
def test_analytic_memory_matches_the_built_model(name, tiny_built):
    """Weights, cache (KV + SSM + conv state, in the dtypes transformers allocates) and logits, counted from the
    config, equal the bytes of the tensors the built model really holds after a prefill of 37 tokens, batch 2
    (past GPT-Neo's 256-token local window too: its cache keeps every position)."""
    built = tiny_built(name)
    assert sum(p.numel() for p in built.model.parameters()) == built.spec.params
    seqlen = 300 if name == "gpt-neo-125m" else 37
    for logits in ("last", "all"):
        row = measure_memory(built, seqlen, batch=2, logits=logits)
        parts = memory_parts(built.spec, seqlen, batch=2, dtype="fp32")
        assert row["cache_B"] == parts.cache
        assert row["logits_B"] == (parts.logits_all if logits == "all" else parts.logits_last)
    assert weight_bytes(built.model, buffers=False) == parts.weights


def test_state_dtypes_are_the_ones_transformers_allocates():
    spec = tiny(get_model("mamba2-130m"))
    built = build(spec, dtype="bf16")
    logits, cache = built.prefill(built.prompt(20, 2))
    from ssmscope.e2e.build import cache_tensors

    dtypes = sorted({str(t.dtype) for t in cache_tensors(cache) if t.is_floating_point()})
    assert dtypes == ["torch.bfloat16", "torch.float32"]  # conv state in the model dtype, SSM state in fp32
    assert logits.dtype == torch.float32  # transformers' Mamba-2 head upcasts
    assert measure_memory(built, 20, batch=2)["cache_B"] == memory_parts(spec, 20, batch=2).cache


@pytest.mark.parametrize("name", ["qwen2.5-0.5b", "mamba2-130m", "zamba2-1.2b"])
def test_generation_timing_on_cpu(name, tiny_built):
    from ssmscope.e2e.run import measure_generation

    built = tiny_built(name)
    row = measure_generation(built, seqlen=19, gen_len=3, reps=1)
    assert row["ttft_s"] > 0 and row["total_s"] >= row["ttft_s"] * 0.5
    assert (row["tpot_s"] or 0) > 0 or "below the timing noise" in row["tpot_note"]  # CPU timing is noisy
    assert row["prefill_tokens_per_s"] == pytest.approx(19 / row["ttft_s"])
    assert 0 < row["prefill_s"] < row["total_s"]  # the bare forward: no decode steps in it
    assert built.generate(built.prompt(19), 5).shape == (1, 24)  # never stops early: exactly 5 new tokens


def test_decode_profile_on_cpu_has_wall_time_only(tiny_built):
    from ssmscope.e2e.profile import profile_decode

    row = profile_decode(tiny_built("mamba-130m"), seqlen=12, gen_len=4)
    assert row["decode_device_per_step_s"] is None and row["device_busy"] is None
    assert isinstance(row["decode_wall_per_step_s"], float)


def test_prefill_profile_attributes_fallback_ops_to_the_ssm(tiny_built, tmp_path):
    from ssmscope.e2e.profile import profile_prefill

    result = profile_prefill(tiny_built("mamba-130m"), seqlen=24, trace=tmp_path / "t.json", reps=1)
    assert result["time_source"].startswith("aten") and result["device_s"] > 0
    assert result["classes"]["ssm"] > 0 and result["classes"]["gemm"] > 0  # the PyTorch scan is the mixer's
    assert result["families"].get("causal_conv1d", 0) > 0  # nn.Conv1d inside the mixer
    assert all(p.startswith("fallback") for p in result["kernel_paths"].values())  # no CUDA kernels on a CPU
    assert json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    attn = profile_prefill(tiny_built("qwen2.5-0.5b"), seqlen=24, reps=1)
    assert attn["classes"]["attention"] > 0 and attn["kernel_paths"]["attention"].startswith("PyTorch SDPA")
    assert attn["classes"]["normalization"] > 0  # RMSNorm's pow/mean/rsqrt, known by their module


def test_unbuildable_models_and_backends_say_why():
    with pytest.raises(Unbuildable, match="remote code"):
        hf_config(get_model("hymba-1.5b-base"))
    with pytest.raises(Unbuildable, match="Mamba and Mamba-2 models only"):
        build(get_model("qwen2.5-0.5b"), backend="mamba_ssm", device="cuda")
    with pytest.raises(Unbuildable, match="CUDA"):
        build(tiny(get_model("mamba-130m")), backend="mamba_ssm", device="cpu")
    with pytest.raises(ValueError, match="attention implementation"):
        build(get_model("qwen2.5-0.5b"), attn_implementation="flash")


def test_sweep_records_every_model_and_goes_on(tmp_path):
    result = CliRunner().invoke(main, ["e2e", "sweep", "mamba2-130m,hymba-1.5b-base,falcon-h1-0.5b-base", "--tiny",
                                       "--device", "cpu", "--dtype", "fp32", "--seqlen", "8,17", "--gen", "3",
                                       "--reps", "1", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "e2e_run.jsonl").read_text().splitlines()]
    assert [(r["model"], r["status"], r.get("seqlen")) for r in rows] == [
        ("mamba2-130m", "ok", 8), ("mamba2-130m", "ok", 17), ("hymba-1.5b-base", "unbuildable", None),
        ("falcon-h1-0.5b-base", "ok", 8), ("falcon-h1-0.5b-base", "ok", 17)]
    ok = rows[-1]
    assert ok["memory"]["cache_B"] == memory_parts(tiny(get_model("falcon-h1-0.5b-base")), 17,
                                                   dtype="fp32").cache
    assert set(ok["kernel_paths"]) == {"ssd", "causal_conv1d", "attention"}
    assert (tmp_path / "e2e_run.csv").read_text().count("\n") == len(rows) + 1


def test_an_interrupted_run_keeps_the_lengths_it_measured(tmp_path, monkeypatch):
    import ssmscope.e2e.run as run

    real, calls = run.measure_generation, []

    def interrupted_at_the_second_length(built, **kw):
        calls.append(kw["seqlen"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(built, **kw)

    monkeypatch.setattr(run, "measure_generation", interrupted_at_the_second_length)
    result = CliRunner().invoke(main, ["e2e", "run", "mamba2-130m", "--tiny", "--device", "cpu", "--dtype", "fp32",
                                       "--seqlen", "8,16,32", "--gen", "3", "--reps", "1", "--out", str(tmp_path)])
    assert result.exit_code != 0 and calls == [8, 16]  # click turns the interrupt into "Aborted!"
    rows = [json.loads(line) for line in (tmp_path / "e2e_run.jsonl").read_text().splitlines()]
    assert [(r["seqlen"], r["status"]) for r in rows] == [(8, "ok")] and rows[0]["measure_s"] > 0
    assert "mamba2-130m L=8" in result.output


@pytest.mark.parametrize("error, status", [
    (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "oom"),
    # a kernel fault, as Triton's launcher reports it: the CUDA context is lost, so record it and stop
    (RuntimeError("Triton Error [CUDA]: an illegal memory access was encountered"), "fault")], ids=["oom", "fault"])
def test_an_oom_or_a_cuda_fault_ends_that_models_sweep(monkeypatch, error, status):
    from ssmscope.e2e import commands, run

    real = run.measure_generation

    def measure(built, *, seqlen, **kw):
        if seqlen > 10:
            raise error
        return real(built, seqlen=seqlen, **kw)

    monkeypatch.setattr(run, "measure_generation", measure)
    rows = commands._run_model("mamba-130m", [8, 16, 32], gen_len=2, batch=1, reps=1, layers=None, tiny=True,
                               device="cpu", dtype="fp32", backend="hf", attn_implementation="sdpa",
                               checkpoint=None, memory=False, decode_profile=False, energy=False)
    assert [(r["seqlen"], r["status"]) for r in rows] == [(8, "ok"), (16, status)]
    if status == "fault":
        assert "illegal memory access" in rows[-1]["reason"]


def test_breakdown_and_plot_commands(tmp_path):
    runner = CliRunner()
    for model in ("zamba2-1.2b", "mamba-130m"):
        result = runner.invoke(main, ["e2e", "breakdown", model, "--tiny", "--device", "cpu", "--dtype", "fp32",
                                      "--seqlen", "16,33", "--out", str(tmp_path)])
        assert result.exit_code == 0, result.output
        assert "ran as fallback" in result.output
    rows = [json.loads(line) for line in (tmp_path / "e2e_breakdown.jsonl").read_text().splitlines()]
    assert [r["seqlen"] for r in rows] == [16, 33, 16, 33]
    assert all(abs(sum(r["shares"].values()) - 1) < 1e-9 for r in rows)
    run_rows = [{"model": m, "backend": "hf", "status": "ok", "seqlen": n, "ttft_s": n * k, "tpot_s": 1e-3 + n * k / 99,
                 "energy_J": n * k * 50, "energy_per_token_J": n * k, "avg_power_W": 300.0,
                 "memory": {"weights_B": 1e9, "cache_B": n * k * 1e11, "logits_B": 3e8, "activations_B": 2e8,
                            "allocator_overhead_B": 1e8}}
                for m, k in (("qwen2.5-0.5b", 2e-6), ("mamba2-780m", 1e-6)) for n in (1024, 4096, 16384)]
    run_rows.append({"model": "qwen2.5-0.5b", "backend": "hf", "status": "oom", "seqlen": 32768})
    (tmp_path / "e2e_run.jsonl").write_text("\n".join(json.dumps(r) for r in run_rows))
    result = runner.invoke(main, ["e2e", "plot", str(tmp_path), "--memory-seqlen", "4096"])
    assert result.exit_code == 0, result.output
    for name in ("latency", "memory_measured", "energy", "breakdown", "memory_L4096"):
        png, svg = (tmp_path / f"{name}.png").read_bytes(), (tmp_path / f"{name}.svg").read_bytes()
        assert png[:4] == b"\x89PNG" and len(png) > 5000 and b"<svg" in svg[:400]


@pytest.mark.gpu
def test_gpu_memory_breakdown_and_device_profiles():
    spec = tiny(get_model("falcon-h1-0.5b-base"))
    built = build(spec, dtype="bf16", device="cuda")
    row = measure_memory(built, 512, batch=2, logits="all")
    assert row["cache_B"] == pytest.approx(memory_parts(spec, 512, batch=2).cache, rel=0.05, abs=1 << 16)
    assert row["activations_B"] > 0 and row["allocator_overhead_B"] >= 0
    assert row["weights_B"] >= weight_bytes(built.model, buffers=False)
    assert 0 <= row["workspace_B"] <= 1 << 30  # cuBLAS's workspace lands here, not in the cache
    from ssmscope.e2e.profile import profile_decode, profile_prefill

    prefill = profile_prefill(built, seqlen=512)
    assert prefill["time_source"] == "device kernels" and 0 < prefill["device_s"] <= prefill["wall_s"] * 1.5
    decode = profile_decode(built, seqlen=512, gen_len=8)
    assert decode["decode_kernels_per_step"] > 10 and 0 < decode["device_busy"] <= 1.5


def test_tpot_is_none_when_the_decode_steps_vanish_in_the_noise():
    from ssmscope.e2e.run import tpot_from

    assert tpot_from(0.100, 0.130, gen_len=4) == pytest.approx(0.010)
    assert tpot_from(0.100, 0.099, gen_len=2) is None and tpot_from(0.1, 0.1, gen_len=3) is None


@pytest.mark.gpu
def test_gpu_mamba_ssm_backend_uses_the_official_kernels():
    pytest.importorskip("mamba_ssm")
    from ssmscope.e2e.profile import profile_prefill
    from ssmscope.e2e.run import measure_generation

    spec = get_model("mamba-130m").derive(layers=2)
    built = build(spec, backend="mamba_ssm", dtype="bf16", device="cuda")
    row = measure_generation(built, seqlen=256, gen_len=8, reps=2, energy=False)
    assert row["ttft_s"] > 0 and row["tpot_s"] > 0
    paths = profile_prefill(built, seqlen=256)["kernel_paths"]
    assert paths["selective_scan"].startswith("CUDA") and paths["causal_conv1d"].startswith("CUDA")
    hf = build(spec, dtype="bf16", device="cuda")
    assert profile_prefill(hf, seqlen=256)["kernel_paths"]["selective_scan"].startswith("CUDA")


def test_latency_plot_skips_an_unmeasurable_tpot_next_to_an_oom(tmp_path):
    from ssmscope.e2e.plots import plot_latency

    rows = [{"model": "m", "backend": "hf", "status": "ok", "seqlen": n, "ttft_s": 0.01 * n, "tpot_s": tpot,
             "prefill_s": 0.01 * n} for n, tpot in ((1, 0.002), (2, 0.003), (4, None))]
    rows.append({"model": "m", "backend": "hf", "status": "oom", "seqlen": 8})
    png = next(p for p in plot_latency(rows, tmp_path) if p.suffix == ".png")
    assert png.stat().st_size > 10_000
