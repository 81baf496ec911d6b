"""Kernel-name classification on real kernel names, Amdahl estimates, and analytic memory parts by hand."""
import pytest

from ssmscope.e2e.breakdown import amdahl_gain, breakdown, classify
from ssmscope.e2e.memory import memory_parts
from ssmscope.e2e.models import get_model

REAL_NAMES = [  # as profilers print them (H100 captures in tests/data/ncu, mamba_ssm / causal_conv1d sources)
    ("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7_64x128x64_4x1x1_cga1x1x1_kernel0_0",
     "attention", None),
    ("nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT", "gemm", None),
    ("void at::vectorized_elementwise_kernel<4, at::<unnamed>::silu_kernel(at::TensorIteratorBase &)::[lambda() "
     "(instance 1)]::operator ()() const::[lambda() (instance 2)]::operator ()() const::[lambda(float) (instance 1)], "
     "std::array<char *, 2>>(int, T2, T3)", "activation", None),
    ("void selective_scan_fwd_kernel<Selective_Scan_fwd_kernel_traits<32, 16, 1, true, true, true, false, "
     "c10::BFloat16, float, c10::BFloat16>>(SSMParamsBase)", "ssm", "selective_scan"),
    ("_selective_scan_update_kernel", "ssm", "selective_state_update"),
    ("void causal_conv1d_fwd_kernel<Causal_conv1d_fwd_kernel_traits<128, 4, true, c10::BFloat16, "
     "c10::BFloat16>>(ConvParamsBase)", "ssm", "causal_conv1d"),
    ("void causal_conv1d_update_kernel<Causal_conv1d_update_kernel_traits<64, 4, c10::BFloat16, "
     "c10::BFloat16>>(ConvParamsBase)", "ssm", "causal_conv1d_update"),
    ("_chunk_scan_fwd_kernel", "ssm", "ssd"),
    ("_state_passing_fwd_kernel", "ssm", "ssd"),
    ("_layer_norm_fwd_1pass_kernel", "normalization", None),
    ("void at::native::unrolled_elementwise_kernel<at::native::direct_copy_kernel_cuda(at::TensorIteratorBase &)"
     "::[lambda() (instance 3)]", "memory", None),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<c10::BFloat16>, "
     "std::array<char *, 3>>(int, T2, T3)", "elementwise", None),
    ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128, 128, 4, false, false, "
     "cutlass::bfloat16_t>>(Flash_fwd_params)", "attention", None),
]


@pytest.mark.parametrize("name,cls,family", REAL_NAMES, ids=[n[:40] for n, _, _ in REAL_NAMES])
def test_classify_real_kernel_names(name, cls, family):
    assert classify(name) == (cls, family)


def test_breakdown_sums_by_class_and_family():
    b = breakdown([("_chunk_scan_fwd_kernel", 3e-3), ("_chunk_state_fwd_kernel", 1e-3),
                   ("nvjet_sm90_tst_256x128", 4e-3), ("mystery", 2e-3)])
    assert b["classes"]["ssm"] == pytest.approx(4e-3) and b["families"] == {"ssd": pytest.approx(4e-3)}
    assert b["shares"]["gemm"] == pytest.approx(0.4) and b["classes"]["other"] == pytest.approx(2e-3)


def test_amdahl_gain():
    # 10 ms total, the scan takes 6 ms and could take 1 ms: 10 / (10 - 6 + 1) = 2x
    assert amdahl_gain({"selective_scan": 6e-3}, {"selective_scan": 1e-3}, 10e-3) == {"selective_scan": 2.0}


def test_memory_parts_of_qwen_by_hand():
    m = memory_parts(get_model("qwen2.5-0.5b"), seqlen=32768)
    assert m.kv_cache == 24 * 2 * 32768 * 2 * 64 * 2           # layers · (K, V) · L · kv heads · d · bf16
    assert m.logits_all == 32768 * 151936 * 4                   # fp32 logits of every position: 19.9 GB
    assert m.logits_all > m.weights + m.kv_cache                # the logits, not the cache, dominate
    assert m.ssm_state == m.conv_state == 0


def test_memory_parts_of_mamba2_by_hand():
    m = memory_parts(get_model("mamba2-130m"), seqlen=4096, batch=2)
    assert m.kv_cache == 0
    assert m.ssm_state == 24 * 2 * 24 * 64 * 128 * 2            # layers · B · H · P · N · bf16
    assert m.conv_state == 24 * 2 * (1536 + 2 * 128) * 4 * 2    # layers · B · conv channels · d_conv · bf16
    assert m.weights == get_model("mamba2-130m").params * 2


def test_memory_command_json_and_unknown_model():
    import json

    from click.testing import CliRunner

    from ssmscope.cli import main

    ok = CliRunner().invoke(main, ["e2e", "memory", "mamba-130m", "--seqlen", "1024,2048", "--json"])
    assert ok.exit_code == 0, ok.output
    rows = json.loads(ok.output)["rows"]
    assert [r["seqlen"] for r in rows] == [1024, 2048] and rows[1]["logits_all"] == 2 * rows[0]["logits_all"]
    bad = CliRunner().invoke(main, ["e2e", "memory", "mamba-9b"])
    assert bad.exit_code != 0 and "unknown model" in bad.output and "Traceback" not in bad.output
