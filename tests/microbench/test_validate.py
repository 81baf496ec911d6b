"""`ssmscope validate`: loading a user's kernel, verdicts, speedup intervals and exit codes."""
from __future__ import annotations

import textwrap

import pytest
from click.testing import CliRunner

from ssmscope import kernels
from ssmscope.microbench import load_candidate, validate
from ssmscope.microbench.commands import validate as validate_cmd
from ssmscope.microbench.validate import ValidateError

# An independent causal conv1d (shifted multiply-adds instead of F.conv1d), in the official signature.
CANDIDATES = textwrap.dedent('''
    import time
    import torch
    import torch.nn.functional as F

    def good(x, weight, bias=None, activation=None):
        width, length = weight.shape[1], x.shape[-1]
        xp = F.pad(x.float(), (width - 1, 0))
        out = sum(weight[:, k, None].float() * xp[..., k:k + length] for k in range(width))
        if bias is not None:
            out = out + bias.float()[:, None]
        if activation in ("silu", "swish"):
            out = out * torch.sigmoid(out)
        return out.to(x.dtype)

    def off_by_one(x, weight, bias=None, activation=None):
        out = good(x, weight, bias, activation)
        return torch.roll(out, 1, dims=-1)  # a classic indexing bug

    def slow(x, weight, bias=None, activation=None):
        end = time.perf_counter() + 3e-3
        while time.perf_counter() < end:
            pass
        return good(x, weight, bias, activation)

    def crashes(x, weight, bias=None, activation=None):
        raise IndexError("index 4096 is out of bounds")
''')

ARGS = ["--op", "causal_conv1d", "--baseline", "ref", "--device", "cpu", "--limit", "3", "--budget", "0.02",
        "--min-reps", "3"]


@pytest.fixture
def candidates(tmp_path):
    path = tmp_path / "my_kernels.py"
    path.write_text(CANDIDATES)
    return path


def _invoke(*args: str):
    return CliRunner().invoke(validate_cmd, list(args), catch_exceptions=False)


def test_correct_candidate_passes(candidates):
    result = _invoke("--candidate", f"{candidates}:good", *ARGS)
    assert result.exit_code == 0, result.output
    assert result.output.count(" ok ") == 3 and "PASSED" in result.output and "speedup" in result.output


def test_wrong_candidate_fails(candidates):
    result = _invoke("--candidate", f"{candidates}:off_by_one", *ARGS)
    assert result.exit_code == 1
    assert "WRONG" in result.output and "FAILED" in result.output


def test_crashing_candidate_fails_with_one_line(candidates):
    result = _invoke("--candidate", f"{candidates}:crashes", *ARGS)
    assert result.exit_code == 1 and "IndexError: index 4096 is out of bounds" in result.output
    assert "Traceback" not in result.output


def test_fail_below_uses_the_interval_upper_bound(candidates):
    slow = _invoke("--candidate", f"{candidates}:slow", *ARGS, "--fail-below", "1.0")
    assert slow.exit_code == 1 and "is below 1.0" in slow.output  # 3 ms of spinning vs the reference
    lenient = _invoke("--candidate", f"{candidates}:slow", *ARGS, "--fail-below", "0.0001")
    assert lenient.exit_code == 0, lenient.output


def test_fail_below_without_a_baseline_time_fails(candidates):
    result = _invoke("--candidate", f"{candidates}:good", *ARGS[:2], "--device", "cpu", "--limit", "1",
                     "--budget", "0.02", "--min-reps", "3", "--fail-below", "1.0")  # baseline official: no GPU here
    assert result.exit_code == 1 and "official unavailable" in result.output


def test_python_api_with_an_import_path(candidates, monkeypatch):
    monkeypatch.syspath_prepend(str(candidates.parent))
    result = validate(kernels.get("causal_conv1d"), "my_kernels:good", baseline="ref", device="cpu",
                      where="dtype=bf16", limit=2, budget_s=0.02, min_reps=3)
    assert result.passed and len(result.points) == 2
    for p in result.points:
        assert p.status == "ok" and p.dtype == "bf16" and p.rel_err <= p.tolerance
        assert p.ci_low <= p.speedup <= p.ci_high
        assert len(p.candidate_samples_ms) >= 3 and len(p.baseline_samples_ms) >= 3


def test_candidate_loading_errors(candidates, tmp_path):
    with pytest.raises(ValidateError, match="module.path:function"):
        load_candidate("no_colon_here")
    with pytest.raises(ValidateError, match="does not exist"):
        load_candidate(f"{tmp_path}/missing.py:fn")
    with pytest.raises(ValidateError, match="no function 'nope'"):
        load_candidate(f"{candidates}:nope")
    broken = tmp_path / "broken.py"
    broken.write_text("import not_a_real_package_xyz\n")
    with pytest.raises(ValidateError, match="ModuleNotFoundError"):
        load_candidate(f"{broken}:fn")
    result = _invoke("--candidate", "no_colon_here", *ARGS)
    assert result.exit_code == 2 and "module.path:function" in result.output
