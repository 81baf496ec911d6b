"""Kernel-name classification on real kernel names (with module hints), kernel paths, Amdahl estimates, analytic
memory parts by hand, NVML energy with a stand-in, and the run directory's rows."""
import json
import sys
import types

import pytest

from ssmscope.e2e.breakdown import amdahl_gain, breakdown, classify, kernel_paths
from ssmscope.e2e.memory import memory_parts
from ssmscope.e2e.models import get_model

REAL_NAMES = [  # as profilers print them (the H100 capture in shared/fixtures/ncu, mamba_ssm / causal_conv1d /
    # flash-attn / PyTorch sources, cuBLAS and cuDNN kernel names seen on Ampere and Hopper)
    ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7_64x128x64_4x1x1_cga1x1x1_kernel0_0",
     "attention", "attention"),
    ("nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT", "gemm", None),
    ("void at::vectorized_elementwise_kernel<4, at::<unnamed>::silu_kernel(at::TensorIteratorBase &)::[lambda() "
     "(instance 1)]::operator ()() const::[lambda() (instance 2)]::operator ()() const::[lambda(float) (instance 1)], "
     "std::array<char *, 2>>(int, T2, T3)", "activation", None),
    ("void selective_scan_fwd_kernel<Selective_Scan_fwd_kernel_traits<32, 16, 1, true, true, true, false, "
     "c10::BFloat16, float, c10::BFloat16>>(SSMParamsBase)", "ssm", "selective_scan"),
    ("_selective_scan_update_kernel", "ssm", "selective_state_update"),
    ("void causal_conv1d_fwd_kernel<Causal_conv1d_fwd_kernel_traits<128, 4, true, c10::BFloat16, "
     "c10::BFloat16>>(ConvParamsBase)", "ssm", "causal_conv1d"),
    ("void causal_conv1d_channellast_fwd_kernel<Causal_conv1d_channellast_fwd_kernel_traits<128, 4, 64, true, "
     "c10::BFloat16, c10::BFloat16>>(ConvParamsBase)", "ssm", "causal_conv1d"),
    ("void causal_conv1d_update_kernel<Causal_conv1d_update_kernel_traits<64, 4, c10::BFloat16, "
     "c10::BFloat16>>(ConvParamsBase)", "ssm", "causal_conv1d_update"),
    ("_chunk_cumsum_fwd_kernel", "ssm", "ssd"),
    ("_bmm_chunk_fwd_kernel", "ssm", "ssd"),
    ("_chunk_scan_fwd_kernel", "ssm", "ssd"),
    ("_state_passing_fwd_kernel", "ssm", "ssd"),
    ("_ssd_segment_state_kernel", "ssm", "ssd"),
    ("_selective_state_update_kernel", "ssm", "selective_state_update"),
    ("_layer_norm_fwd_1pass_kernel", "normalization", None),
    ("void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<c10::BFloat16, float>(int, float, "
     "c10::BFloat16 const*, c10::BFloat16 const*, c10::BFloat16 const*, float*, float*, c10::BFloat16*)",
     "normalization", None),
    ("void at::native::unrolled_elementwise_kernel<at::native::direct_copy_kernel_cuda(at::TensorIteratorBase &)"
     "::[lambda() (instance 3)]", "memory", None),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<c10::BFloat16>, "
     "std::array<char *, 1>>(int, at::native::FillFunctor<c10::BFloat16>, std::array<char *, 1>)", "memory", None),
    ("void at::native::(anonymous namespace)::indexSelectLargeIndex<c10::BFloat16, long, unsigned int, 2, 2, -2, "
     "true>(at::cuda::detail::TensorInfo<c10::BFloat16, unsigned int>)", "memory", None),
    ("void at::native::(anonymous namespace)::CatArrayBatchedCopy<at::native::(anonymous namespace)::OpaqueType<2>, "
     "unsigned int, 4, 64, 64>(...)", "memory", None),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<c10::BFloat16>, "
     "std::array<char *, 3>>(int, T2, T3)", "elementwise", None),
    ("void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::MeanOps<float, float, float, "
     "float>, unsigned int, float, 4>>(at::native::ReduceOp<float, at::native::MeanOps<float, float, float, float>, "
     "unsigned int, float, 4>)", "elementwise", None),
    ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128, 128, 4, false, false, "
     "cutlass::bfloat16_t>>(Flash_fwd_params)", "attention", "attention"),
    ("void flash::flash_fwd_splitkv_kernel<Flash_fwd_kernel_traits<128, 64, 128, 4, false, false, "
     "cutlass::bfloat16_t>, false, false, false, false, true, true, false, false>(flash::Flash_fwd_params)",
     "attention", "attention"),
    ("fmha_cutlassF_bf16_aligned_64x64_rf_sm80(PyTorchMemEffAttention::AttentionKernel<cutlass::bfloat16_t, "
     "cutlass::arch::Sm80, true, 64, 64, 64, true, true>::Params)", "attention", "attention"),
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1_execute_segment_k_off_kernel"
     "__5x_cublas", "gemm", None),
    ("ampere_bf16_s16816gemm_bf16_128x64_ldg8_f2f_stages_64x3_tn", "gemm", None),
    ("void gemv2T_kernel_val<int, int, __nv_bfloat16, __nv_bfloat16, float, float, 128, 16, 4, 4, false, false, "
     "cublasGemvParamsEx<int, cublasGemvTensorStridedBatched<__nv_bfloat16 const>, ...>>(...)", "gemm", None),
    ("void cublasLt::splitKreduce_kernel<32, 16, int, float, __nv_bfloat16, float, __nv_bfloat16, true, false, "
     "false>(cublasLt::cublasSplitKParams<float>, ...)", "gemm", None),
    ("void (anonymous namespace)::softmax_warp_forward<c10::BFloat16, c10::BFloat16, float, 11, false, false>"
     "(c10::BFloat16*, c10::BFloat16 const*, int, int, int, bool const*, int, bool)", "activation", None),
    ("Memcpy DtoD (Device -> Device)", "memory", None),
    ("aten::addmm", "gemm", None),
    ("aten::_scaled_dot_product_flash_attention_for_cpu", "attention", "attention"),
    ("aten::cumsum", "elementwise", None),
    ("void at::native::(anonymous namespace)::conv_depthwise2d_forward_kernel<1, c10::BFloat16, int>(...)",
     "ssm", "causal_conv1d"),
    ("aten::_convolution", "ssm", "causal_conv1d"),
    ("mystery_kernel_42", "other", None),
]


@pytest.mark.parametrize("name,cls,family", REAL_NAMES, ids=[n[:48] for n, _, _ in REAL_NAMES])
def test_classify_real_kernel_names(name, cls, family):
    assert classify(name) == (cls, family)


@pytest.mark.parametrize("name,module,expected", [
    ("void at::native::vectorized_elementwise_kernel<4, at::native::(anonymous namespace)::pow_tensor_scalar_kernel"
     "_impl<float, float>>", "Qwen2RMSNorm", ("normalization", None)),
    ("aten::rsqrt", "MambaRMSNormGated", ("normalization", None)),
    ("ampere_bf16_s16816gemm_bf16_128x64_ldg8_f2f_stages_64x3_tn", "Qwen2Attention", ("attention", "attention")),
    ("void (anonymous namespace)::softmax_warp_forward<float>", "GPTNeoSelfAttention", ("attention", "attention")),
    ("ampere_bf16_s16816gemm_bf16_128x64_ldg8_f2f_stages_64x3_tn", "Linear", ("gemm", None)),
    ("aten::mul", "MambaMixer", ("ssm", None)),
    ("aten::exp", "Mamba2Mixer", ("ssm", None)),
    ("aten::bmm", "Mamba2Mixer", ("gemm", None)),  # a GEMM stays a GEMM wherever it runs
    ("aten::convolution", "MambaMixer", ("ssm", "causal_conv1d")),  # F.conv1d called by the fallback
    ("aten::copy_", "Conv1d", ("ssm", "causal_conv1d")),
    ("aten::add", "MambaBlock", ("elementwise", None)),  # the residual add is not the mixer's
    ("aten::add", "Zamba2AttentionDecoderLayer", ("elementwise", None)),
    ("void selective_scan_fwd_kernel<>", "Linear", ("ssm", "selective_scan")),  # a named SSM kernel wins
], ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None)
def test_module_hints_refine_generic_kernels(name, module, expected):
    assert classify(name, module) == expected


def test_breakdown_sums_by_class_and_family():
    b = breakdown([("_chunk_scan_fwd_kernel", 3e-3), ("_chunk_state_fwd_kernel", 1e-3),
                   ("nvjet_sm90_tst_256x128", 4e-3), ("mystery", 2e-3), ("aten::pow", 5e-4, "LlamaRMSNorm")])
    assert b["classes"]["ssm"] == pytest.approx(4e-3) and b["families"] == {"ssd": pytest.approx(4e-3)}
    assert b["shares"]["gemm"] == pytest.approx(4e-3 / 10.5e-3) and b["classes"]["other"] == pytest.approx(2e-3)
    assert b["classes"]["normalization"] == pytest.approx(5e-4)
    assert sum(b["shares"].values()) == pytest.approx(1.0)


def test_kernel_paths_tell_fast_from_fallback():
    names = ["void selective_scan_fwd_kernel<...>(SSMParamsBase)", "aten::conv1d", "nvjet_sm90_tst"]
    paths = kernel_paths(["selective_scan", "causal_conv1d"], names)
    assert paths["selective_scan"].startswith("CUDA: selective_scan_fwd_kernel")
    assert paths["causal_conv1d"].startswith("fallback")
    attn = kernel_paths(["attention_decode"], ["void flash::flash_fwd_splitkv_kernel<>"])
    assert attn["attention_decode"].startswith("FlashAttention")
    eager = kernel_paths(["attention"], ["ampere_bf16_s16816gemm", "softmax_warp_forward"])
    assert "eager" in eager["attention"]


def test_amdahl_gain():
    # 10 ms total, the scan takes 6 ms and could take 1 ms: 10 / (10 - 6 + 1) = 2x
    assert amdahl_gain({"selective_scan": 6e-3}, {"selective_scan": 1e-3}, 10e-3) == {"selective_scan": 2.0}
    # a floor above the measured time (a loose model) never predicts a slow-down
    assert amdahl_gain({"ssd": 2e-3}, {"ssd": 3e-3}, 10e-3) == {"ssd": 1.0}


def test_memory_parts_of_qwen_by_hand():
    m = memory_parts(get_model("qwen2.5-0.5b"), seqlen=32768)
    assert m.kv_cache == 24 * 32768 * 2 * (64 + 64) * 2       # layers · L · kv heads · (d_k + d_v) · bf16
    assert m.logits_all == 32768 * 151936 * 2                  # bf16 logits of every position: 9.96 GB
    assert m.logits_all > m.weights + m.kv_cache               # the logits, not the cache, dominate
    assert m.ssm_state == m.conv_state == 0 and m.logits_last == 151936 * 2


def test_memory_parts_of_mamba2_by_hand():
    spec = get_model("mamba2-130m")
    hf = memory_parts(spec, seqlen=4096, batch=2)
    assert hf.kv_cache == 0
    assert hf.ssm_state == 24 * 2 * 24 * 64 * 128 * 4          # layers · B · H · P · N · fp32 (transformers)
    assert hf.conv_state == 24 * 2 * (1536 + 2 * 128) * 4 * 2  # layers · B · conv channels · d_conv · bf16
    assert hf.weights == spec.params * 2 and hf.logits_all == 2 * 4096 * 50288 * 4  # fp32 logits
    native = memory_parts(spec, seqlen=4096, batch=2, backend="mamba_ssm")
    assert native.ssm_state == hf.ssm_state // 2 and native.logits_all == hf.logits_all // 2


def test_memory_parts_of_hymba_by_hand():
    m = memory_parts(get_model("hymba-1.5b-base"), seqlen=8192)
    # 17 KV producers: layers 0, 15 and 31 are global (L + 128 meta tokens), the other 14 hold the 1024 window
    per_token = 5 * (64 + 128) * 2
    assert m.kv_cache == (3 * (8192 + 128) + 14 * (1024 + 128)) * per_token
    assert m.ssm_state == 32 * 3200 * 16 * 2 and m.conv_state == 32 * 3200 * 4 * 2


def test_memory_command_json_and_unknown_model():
    from click.testing import CliRunner

    from ssmscope.cli import main

    ok = CliRunner().invoke(main, ["e2e", "memory", "mamba-130m", "--seqlen", "1K,2048", "--json"])
    assert ok.exit_code == 0, ok.output
    rows = json.loads(ok.output)["rows"]
    assert [r["seqlen"] for r in rows] == [1024, 2048] and rows[1]["logits_all"] == 2 * rows[0]["logits_all"]
    bad = CliRunner().invoke(main, ["e2e", "memory", "mamba-9b"])
    assert bad.exit_code != 0 and "unknown model" in bad.output and "Traceback" not in bad.output


def _fake_nvml(monkeypatch, **functions):
    class NVMLError(Exception):
        pass

    fake = types.SimpleNamespace(NVMLError=NVMLError, nvmlInit=lambda: None, nvmlShutdown=lambda: None,
                                 nvmlDeviceGetHandleByIndex=lambda i: i, **functions)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


def test_energy_from_the_nvml_counter_with_a_stand_in(monkeypatch):
    from ssmscope.e2e.run import measure_energy

    counter = iter([1_000_000, 1_250_000])  # mJ before / after: 250 J
    _fake_nvml(monkeypatch, nvmlDeviceGetTotalEnergyConsumption=lambda h: next(counter))
    result = measure_energy(lambda: 0.5)
    assert result == {"energy_J": 250.0, "energy_source": "nvml total energy counter", "avg_power_W": 500.0}


def test_energy_from_power_sampling_without_a_counter(monkeypatch):
    import time

    from ssmscope.e2e.run import measure_energy

    def no_counter(handle):
        raise fake.NVMLError("not supported")

    fake = _fake_nvml(monkeypatch, nvmlDeviceGetTotalEnergyConsumption=no_counter,
                      nvmlDeviceGetPowerUsage=lambda h: 300_000)  # mW

    def work():
        time.sleep(0.1)
        return 0.1

    result = measure_energy(work)
    assert result["energy_source"].startswith("nvml power sampling")
    assert result["energy_J"] == pytest.approx(30.0, rel=0.3) and result["avg_power_W"] == pytest.approx(300, rel=0.3)


def test_rows_append_and_flatten_to_csv(tmp_path):
    import csv

    from ssmscope.e2e.rows import load_rows, write_rows

    write_rows(tmp_path, "run", [{"model": "a", "seqlen": 1, "memory": {"cache_B": 5}, "probes": [[1, True]]}])
    write_rows(tmp_path, "run", [{"model": "b", "seqlen": 2, "status": "oom"}])
    assert [r["model"] for r in load_rows(tmp_path, "run")] == ["a", "b"]
    with open(tmp_path / "e2e_run.csv") as f:
        table = list(csv.DictReader(f))
    assert table[0]["memory.cache_B"] == "5" and table[1]["status"] == "oom" and table[1]["memory.cache_B"] == ""
    assert load_rows(tmp_path, "frontier") == []
    with pytest.raises(ValueError, match="row kind"):
        write_rows(tmp_path, "bogus", [])


def test_rows_of_a_gzipped_run_are_read_and_kept_when_appending(tmp_path):
    """Committed runs keep their JSON lines gzipped: loading reads them, an append unpacks them first."""
    import gzip

    from ssmscope.e2e.rows import load_rows, write_rows

    write_rows(tmp_path, "run", [{"model": "a"}, {"model": "b"}])
    plain = tmp_path / "e2e_run.jsonl"
    (tmp_path / "e2e_run.jsonl.gz").write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    assert [r["model"] for r in load_rows(tmp_path, "run")] == ["a", "b"]
    write_rows(tmp_path, "run", [{"model": "c"}])
    assert [r["model"] for r in load_rows(tmp_path, "run")] == ["a", "b", "c"]
    assert not (tmp_path / "e2e_run.jsonl.gz").exists()


def test_energy_window_repeats_short_work_until_it_is_long_enough():
    """A 0.15 s generation is too short for NVML's counter: the work is repeated to fill the window."""
    import time

    from ssmscope.e2e.run import repeated_for

    ran = []
    work, calls = repeated_for(lambda: (ran.append(1), time.sleep(0.02)), 0.1)
    seconds = work()
    assert seconds >= 0.1 and calls[0] == len(ran) >= 2  # repeated, however long each sleep overran
    work_long, calls_long = repeated_for(lambda: time.sleep(0.05), 0.01)
    assert work_long() >= 0.05 and calls_long[0] == 1  # long work runs once
