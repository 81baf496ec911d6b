"""The correctness checker itself: relative error, poisoning, summaries and the GPU gate's verdicts."""
import pytest
import torch

from ssmscope.kernels.check import (CheckResult, clone_keep_broadcast, disagreements, poisoned_allocations,
                                    relative_error, summarize)


def row(impl, status="pass", baseline_ok=None, rel_err=1e-3, dtype="bf16"):
    return CheckResult(op="x", impl=impl, config="c", dtype=dtype, device="cuda", seed=0, status=status,
                       rel_err=rel_err, tolerance=1e-2, baseline="official" if baseline_ok is not None else None,
                       baseline_ok=baseline_ok)


def test_relative_error_is_a_norm_ratio():
    ref = torch.tensor([3.0, 4.0])
    assert relative_error(torch.tensor([3.0, 4.5]), ref) == 0.5 / 5.0


def test_poisoned_allocations_fill_fresh_memory_with_nan_and_restore():
    with poisoned_allocations():
        assert torch.isnan(torch.empty(64)).all()
    assert not torch.are_deterministic_algorithms_enabled()


def test_clone_keeps_stride_zero_dims():
    t = torch.randn(3)[:, None].expand(3, 5)
    c = clone_keep_broadcast(t)
    assert c.stride() == (1, 0) and torch.equal(c, t) and c.data_ptr() != t.data_ptr()


def test_gate_rejects_failures_missing_agreement_and_a_failing_baseline():
    ok = [row("triton", baseline_ok=True), row("official")]
    assert disagreements(ok) == []
    assert len(disagreements([row("triton", baseline_ok=False)])) == 1  # outside upstream tolerance
    assert len(disagreements([row("triton")])) == 1                     # never compared with the baseline
    assert len(disagreements([row("official", status="fail")])) == 1    # the baseline itself is off


def test_summary_counts_by_status():
    (s,) = summarize([row("triton", baseline_ok=True), row("triton", status="fail", baseline_ok=False, rel_err=5e-2)])
    assert (s["pass"], s["fail"], s["max_rel_err"], s["within_upstream_tol"], s["compared_with_baseline"]) == \
        (1, 1, 5e-2, 1, 2)


def test_inputs_are_seeded_and_small_ones_identical_on_every_device(monkeypatch):
    from ssmscope.kernels import op as op_module

    draw = lambda seed, device: op_module.randn((3, 5), torch.Generator().manual_seed(seed), dtype=torch.float32,
                                                device=torch.device(device))
    assert torch.equal(draw(1, "cpu"), draw(1, "cpu")) and not torch.equal(draw(1, "cpu"), draw(2, "cpu"))
    monkeypatch.setattr(op_module, "DEVICE_DRAW_ELEMENTS", 4)  # CPU tensors never take the device path
    assert torch.equal(draw(1, "cpu"), op_module.randn((3, 5), torch.Generator().manual_seed(1),
                                                        dtype=torch.float32, device=torch.device("cpu")))


def test_large_inputs_are_drawn_in_slices_into_the_final_dtype(monkeypatch):
    from ssmscope.kernels import op as op_module

    # the device path, taken here on the CPU: 23 elements in slices of 5, drawn from a seed of the host generator
    monkeypatch.setattr(op_module, "_draw_on_device", lambda device, numel: numel > 8)
    monkeypatch.setattr(op_module, "DEVICE_DRAW_SLICE", 5)
    draw = lambda seed: op_module.uniform((23,), torch.Generator().manual_seed(seed), 0.5, 2.0,
                                          dtype=torch.bfloat16, device=torch.device("cpu"))
    a, b, c = draw(1), draw(1), draw(2)
    assert a.dtype == torch.bfloat16 and torch.equal(a, b) and not torch.equal(a, c)
    assert 0.5 <= float(a.min()) and float(a.max()) <= 2.0
    assert len({tuple(a[i:i + 5].tolist()) for i in range(0, 20, 5)}) == 4  # each slice its own draw
    normal = op_module.randn((4000,), torch.Generator().manual_seed(3), dtype=torch.float32,
                             device=torch.device("cpu"), scale=2.0, shift=1.0)
    assert abs(float(normal.mean()) - 1.0) < 0.15 and abs(float(normal.std()) - 2.0) < 0.15


@pytest.mark.gpu
def test_large_inputs_are_drawn_on_the_gpu_seeded(monkeypatch):
    from ssmscope.kernels import op as op_module

    monkeypatch.setattr(op_module, "DEVICE_DRAW_ELEMENTS", 8)
    monkeypatch.setattr(op_module, "DEVICE_DRAW_SLICE", 6)
    draw = lambda seed: op_module.uniform((4, 5), torch.Generator().manual_seed(seed), 0.5, 2.0,
                                          dtype=torch.float32, device=torch.device("cuda"))
    a, b, c = draw(1), draw(1), draw(2)
    assert a.is_cuda and torch.equal(a, b) and not torch.equal(a, c)
    assert 0.5 <= float(a.min()) and float(a.max()) <= 2.0
