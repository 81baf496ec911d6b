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
