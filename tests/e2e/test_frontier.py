"""The paper's length schedule and the frontier search (on a synthetic memory model)."""
import pytest

from ssmscope.e2e.frontier import K, largest_fitting, paper_schedule


def test_paper_schedule():
    s = paper_schedule()
    assert s[:4] == [1 * K, 2 * K, 4 * K, 8 * K]
    assert s[4:11] == [16 * K, 24 * K, 32 * K, 40 * K, 48 * K, 56 * K, 64 * K]
    assert s[11:13] == [80 * K, 96 * K] and s[-1] == 208 * K and all(b > a for a, b in zip(s, s[1:]))
    assert paper_schedule(4 * K) == [1 * K, 2 * K, 4 * K]


@pytest.mark.parametrize("capacity", [1000, 5000, 70_000, 123_456], ids=lambda c: f"cap{c}")
def test_largest_fitting_finds_the_frontier_within_a_step(capacity):
    calls = []

    def fits(n):
        calls.append(n)
        return n <= capacity

    found = largest_fitting(fits, start=1024, step=256)
    if capacity < 1024:
        assert found == 0
    else:
        assert found <= capacity < found + 256 + 1 or found == capacity
        assert len(calls) < 40  # doubling then bisection, not a linear scan


def test_largest_fitting_stops_at_the_limit():
    assert largest_fitting(lambda n: True, start=1024, limit=8192) == 8192


def test_frontier_command_without_gpu_says_so():
    import torch
    from click.testing import CliRunner

    from ssmscope.cli import main

    if torch.cuda.is_available():
        pytest.skip("checks the CPU-only message")
    result = CliRunner().invoke(main, ["e2e", "frontier", "mamba-130m", "--memory-budget", "8GiB"])
    assert result.exit_code != 0 and "needs a CUDA GPU" in result.output and "Traceback" not in result.output


def test_a_cuda_fault_ends_the_search_and_keeps_what_fitted():
    """What the H100 showed for mamba2-780m under 24 GiB (2026-11-23): past some length a kernel hit an
    illegal address instead of running out of memory; the search must stop there, not crash or bisect on."""
    from ssmscope.e2e.frontier import KernelFault, find_frontier

    ran = []

    def probe(built, n, batch, logits):
        ran.append(n)
        if n > 300_000:
            raise KernelFault(f"prefill at {n} tokens: CUDA error: an illegal memory access was encountered")
        return True

    row = find_frontier(object(), start=1024, limit=1 << 20, probe=probe)
    assert row["frontier_tokens"] == 262_144  # the last length that ran, found by doubling
    assert "illegal memory access" in row["stopped_by"] and "524288 tokens" in row["stopped_by"]
    assert ran[-1] == 524_288 and "memory_at_frontier" not in row  # nothing ran after the fault
    assert row["probes"][-1] == (524_288, False)


def test_out_of_memory_is_an_answer_not_a_fault(monkeypatch):
    from ssmscope.e2e import memory
    from ssmscope.e2e.frontier import find_frontier, is_kernel_fault, is_oom

    measured = []
    monkeypatch.setattr(memory, "measure_memory", lambda built, n, *a: measured.append(n) or {"dominant": "cache_B"})

    oom = RuntimeError("CUDA error: out of memory")
    assert is_oom(oom) and not is_kernel_fault(oom)
    assert is_kernel_fault(RuntimeError("CUDA error: an illegal memory access was encountered"))
    row = find_frontier(object(), start=1024, limit=1 << 20, step=256, probe=lambda b, n, *_: n <= 5000)
    assert row["frontier_tokens"] == 4864 and row["stopped_by"] is None
    assert measured == [4864] and row["dominant"] == "cache_B"  # the breakdown is taken at the frontier


@pytest.mark.parametrize("message", ["CUDA error: an illegal memory access was encountered",
                                     "Triton Error [CUDA]: an illegal memory access was encountered",
                                     "CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling cublasGemmEx"])
def test_prefill_fits_turns_a_cuda_fault_into_kernel_fault(message):
    """The fault may surface in torch, in Triton's launcher (mamba_ssm's SSD kernels) or in cuBLAS."""
    from ssmscope.e2e.frontier import KernelFault, prefill_fits

    class Faulting:
        def prompt(self, n, batch):
            return None

        def prefill(self, ids, logits):
            raise RuntimeError(message)

    with pytest.raises(KernelFault, match="prefill at 4096 tokens"):
        prefill_fits(Faulting(), 4096)


def test_a_failed_breakdown_at_the_frontier_keeps_the_frontier(monkeypatch):
    from ssmscope.e2e import memory
    from ssmscope.e2e.frontier import find_frontier

    def oom(*args):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(memory, "measure_memory", oom)
    row = find_frontier(object(), start=1024, limit=8192, probe=lambda *a: True)
    assert row["frontier_tokens"] == 8192 and "out of memory" in row["memory_note"] and "dominant" not in row
