"""On the GPU machine (pytest -m gpu): our metric set collected for real by ncu on a bf16 GEMM and an fp32
exp, each inside the ssmscope → op → impl → config ranges that `ssmscope bench --profile` pushes."""
import subprocess
import sys
import textwrap

import pytest

from ssmscope.ncu_parsers import attribute, metric_set, parse_csv
from ssmscope.ncu_parsers.collect import RAW_CSV, check_output, detect_cc, ncu_args
from ssmscope.ncu_parsers.parse import find_ncu

N = 1 << 22
APP = textwrap.dedent(f"""
    import torch
    from torch.cuda import nvtx

    def point(names, fn):
        fn(); torch.cuda.synchronize()  # warm-up outside the ranges: not profiled
        for name in names:
            nvtx.range_push(name)
        fn(); torch.cuda.synchronize()
        for _ in names:
            nvtx.range_pop()

    g = torch.Generator(device="cuda").manual_seed(7)
    a, b = (torch.randn(1024, 1024, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(2))
    x = torch.randn({N}, device="cuda", generator=g)
    point(["ssmscope", "gemm", "torch", "M1024-N1024-K1024-bf16"], lambda: a @ b)
    point(["ssmscope", "exp", "torch", "N{N}-fp32"], lambda: torch.exp(x))
""")


@pytest.mark.gpu
def test_metric_set_on_this_gpu(tmp_path):
    ncu = find_ncu()
    if ncu is None:
        pytest.skip("ncu not found")
    (tmp_path / "app.py").write_text(APP)
    cc = detect_cc()
    cmd = ncu_args(tmp_path, ncu=ncu, metrics=metric_set(cc)) + [sys.executable, str(tmp_path / "app.py")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    log = (tmp_path / RAW_CSV).read_text() if (tmp_path / RAW_CSV).exists() else ""
    if "ERR_NVGPUCTRPERM" in proc.stdout + proc.stderr + log:
        pytest.skip("no permission for GPU performance counters")
    check_output(proc.returncode, proc.stdout + proc.stderr + log, tmp_path)
    kernels = parse_csv(log)
    gemm, exp = attribute(kernels)
    assert (gemm["op"], gemm["config_id"], exp["op"]) == ("gemm", "M1024-N1024-K1024-bf16", "exp")
    for k in gemm["kernels"] + exp["kernels"]:
        assert k["missing_metrics"] == [], k["name"]  # every name of the set exists and was collected
    assert gemm["flops_tensor_by_precision"]["bf16"] == 2 * 1024 ** 3
    assert exp["sfu_ops"] >= N  # at least one MUFU.EX2 per element
    # Reads of x come from DRAM (--cache-control all flushes caches before each kernel), but the 16 MB of
    # writes can sit in the 50 MB L2 when the kernel ends: ncu then counts only part of them at DRAM
    # (seen on the H100: 18.1 MB total for 16.8 MB read + 16.8 MB written). Outputs smaller than L2
    # are under-counted at DRAM; the excess ratio is only meaningful for reads or for large outputs.
    assert 0.9 <= exp["dram_bytes_read"] / (4 * N) <= 1.3
    assert exp["dram_bytes"] >= exp["dram_bytes_read"]
    assert exp["ceilings"]["dram_B_per_s"] > 1e11 and gemm["sm_clock_hz"] > 5e8
    print(f"replay passes: {gemm['replay_passes']}, SM clock {gemm['sm_clock_hz'] / 1e9:.2f} GHz, "
          f"wgmma share {gemm['tensor_wgmma_fraction']}, ceilings {gemm['ceilings']}")
