"""`ssmscope ncu`: parse through the CLI, the collect command line (built, never run on CPU), the one-line
errors, and a whole collect run against a stand-in `ncu` that replays a synthetic capture."""
import json
import shlex
import sys

import pytest
from click.testing import CliRunner

from ssmscope.cli import main
from ssmscope.ncu_parsers import build_command, metric_set
from ssmscope.ncu_parsers.collect import check_output
from ssmscope.ncu_parsers.parse import NcuError


def run(*args):
    return CliRunner().invoke(main, ["ncu", *map(str, args)])


@pytest.fixture
def no_ncu(tmp_path, monkeypatch):
    """A machine without Nsight Compute anywhere we look."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr("ssmscope.ncu_parsers.parse._default_ncu_dirs", lambda: [])


# --------------------------------------------------------------------------------------------------- parse
def test_parse_json(data_dir):
    result = run("parse", data_dir / "h100_torch_ops_raw.csv", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert [p["op"] for p in out["points"]] == ["sdpa", "gemm", "silu"] and out["unattributed"] == []
    gemm = out["points"][1]
    assert gemm["flops_tensor"] == 2 * 4096 ** 3 and gemm["n_kernels"] == 1
    assert gemm["gpu"] == "NVIDIA H100 80GB HBM3"
    assert gemm["kernels"][0]["block"] == [384, 1, 1]
    assert out["points"][2]["dram_bytes"] == 268_494_080 + 247_781_888


def test_parse_details_json_and_table(data_dir):
    out = json.loads(run("parse", data_dir / "h100_torch_ops_details.csv", "--json").output)
    assert [p["dram_bytes"] for p in out["points"]] == [53_644_544, 126_803_968, 513_949_696]
    table = run("parse", data_dir / "h100_torch_ops_raw.csv")
    assert table.exit_code == 0 and "gemm" in table.output and "665.68" in table.output  # tensor TFLOP/s


def test_parse_with_rows_and_errors(tmp_path, ssd_capture):
    capture = tmp_path / "ncu_raw.csv"
    capture.write_text(ssd_capture[0])
    out = json.loads(run("parse", capture, "--json").output)
    assert [p["n_kernels"] for p in out["points"]] == [5, 1] and len(out["unattributed"]) == 1
    assert "1 kernels ran outside" in run("parse", capture).output
    bad = run("parse", tmp_path / "absent.csv")
    assert bad.exit_code != 0 and "absent.csv" in bad.output
    (tmp_path / "empty.csv").write_text("==PROF== Connected to process 1\n")
    empty = run("parse", tmp_path / "empty.csv")
    assert empty.exit_code == 1 and empty.output.count("\n") == 1 and 'starting with "ID"' in empty.output


# ------------------------------------------------------------------------------------------ command line
def test_build_command():
    cmd = build_command("ssd", ["--seqlen", "4k", "--impl", "official,triton"], "runs/x", ncu="/opt/ncu",
                        python="/usr/bin/python3", metrics=["a.sum", "b.sum"])
    assert cmd == ["/opt/ncu", "--nvtx", "--nvtx-include", "ssmscope/", "--metrics", "a.sum,b.sum",
                   "--clock-control", "none", "--cache-control", "all", "--csv", "--page", "raw",
                   "--log-file", "runs/x/ncu_raw.csv", "/usr/bin/python3", "-m", "ssmscope", "bench", "ssd",
                   "--seqlen", "4k", "--impl", "official,triton", "--profile", "--out", "runs/x"]
    full = build_command("ssd", [], "r", ncu="ncu", python="py", metrics=["a.sum"], full=True, report=True)
    assert full[10:16] == ["--set", "full", "--export", "r/profile.ncu-rep", "--force-overwrite", "py"]
    assert "--csv" not in full
    assert build_command("ssd", [], "r")[5] == ",".join(metric_set())
    swept = build_command("config", ["--config", "s.yaml"], "r", ncu="ncu", python="py", metrics=["a.sum"])
    assert swept[-8:] == ["-m", "ssmscope", "bench", "--config", "s.yaml", "--profile", "--out", "r"]


def test_collect_dry_run_falls_through_to_collect(tmp_path):
    fake = tmp_path / "ncu"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    run_dir = tmp_path / "run"
    result = run("selective_scan", "--seqlen", "4k", "--impl", "official", "--out", run_dir, "--ncu", fake,
                 "--ncu-arch", "sm_87", "--full-set", "--dry-run")
    assert result.exit_code == 0, result.output
    cmd = shlex.split(result.output)
    assert cmd[0] == str(fake)
    assert cmd[cmd.index("--metrics") + 1] == ",".join(metric_set((8, 7)))
    assert cmd[cmd.index("--set") + 1] == "full"
    assert cmd[cmd.index(sys.executable):] == [sys.executable, "-m", "ssmscope", "bench", "selective_scan",
                                               "--seqlen", "4k", "--impl", "official", "--profile", "--out",
                                               str(run_dir)]
    assert not run_dir.exists()  # a dry run writes nothing
    explicit = run("collect", "selective_scan", "--dry-run", "--ncu", fake, "--ncu-metrics", "x.sum,y.sum")
    assert "--metrics x.sum,y.sum" in explicit.output


def test_collect_errors(no_ncu, tmp_path):
    missing = run("selective_scan", "--seqlen", "4k", "--out", tmp_path / "run")
    assert missing.exit_code == 1
    assert missing.output.startswith("Error: ncu (Nsight Compute) not found on PATH")
    assert missing.output.count("\n") == 1
    unknown = run("no_such_op", "--dry-run")
    assert unknown.exit_code == 2 and "unknown op 'no_such_op'" in unknown.output
    assert "sm_90" in run("selective_scan", "--ncu-arch", "hopper", "--dry-run").output  # the usage hint


def test_permission_message_keeps_rows(tmp_path):
    (tmp_path / "rows.jsonl").write_text("{}\n")
    out = ("==PROF== Connected\n==ERROR== ERR_NVGPUCTRPERM - The user does not have permission to access "
           "NVIDIA GPU Performance Counters on the target device 0.\n")
    with pytest.raises(NcuError, match=r"ERR_NVGPUCTRPERM.*bench rows kept in .*rows\.jsonl\)$"):
        check_output(0, out, tmp_path)
    with pytest.raises(NcuError, match="^ncu: Failed to find metric x.sum$"):
        check_output(1, "==ERROR== Failed to find metric x.sum\n", tmp_path / "elsewhere")
    with pytest.raises(NcuError, match="profiled no kernels"):
        check_output(0, "==WARNING== No kernels were profiled.\n", tmp_path)
    check_output(0, "==PROF== Disconnected\n", tmp_path)


# ---------------------------------------------------------------------------- a run with a stand-in ncu
FAKE_NCU = '''#!{python}
"""Stand-in for ncu: records its argv, writes the bench's rows and replays a capture into --log-file."""
import json, os, sys
from pathlib import Path
argv = sys.argv[1:]
if argv == ["--version"]:
    sys.exit(print("NVIDIA (R) Nsight Compute Command Line Profiler\\nVersion 2025.3.1.0 (build 36398880)"))
run = Path(argv[argv.index("--out") + 1])
run.mkdir(parents=True, exist_ok=True)
(run / "argv.json").write_text(json.dumps(argv))
(run / "rows.jsonl").write_text(json.dumps({{"op": "ssd", "impl": "official", "dtype": "bf16"}}) + "\\n")
print("==PROF== Connected to process 1 (python3)")
print("bench: ssd, 2 points")
if os.environ.get("FAKE_NCU_MODE") == "perm":
    print("==ERROR== ERR_NVGPUCTRPERM - The user does not have permission to access NVIDIA GPU Performance Counters")
    sys.exit(0)
Path(argv[argv.index("--log-file") + 1]).write_text(Path(os.environ["FAKE_NCU_CAPTURE"]).read_text())
'''


@pytest.fixture
def fake_ncu(tmp_path, monkeypatch, ssd_capture):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ncu = bin_dir / "ncu"
    ncu.write_text(FAKE_NCU.format(python=sys.executable))
    ncu.chmod(0o755)
    capture = tmp_path / "capture.csv"
    capture.write_text(ssd_capture[0])
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_NCU_CAPTURE", str(capture))
    return ncu


def test_collect_with_stand_in_ncu(fake_ncu, tmp_path):
    run_dir = tmp_path / "run"
    result = run("ssd", "--seqlen", "4097", "--out", run_dir, "--ncu-arch", "9.0")
    assert result.exit_code == 0, result.output
    assert "bench: ssd, 2 points" in result.output  # the bench's output streams through
    argv = json.loads((run_dir / "argv.json").read_text())
    assert argv[argv.index("--metrics") + 1] == ",".join(metric_set((9, 0)))
    assert argv[-6:] == ["ssd", "--seqlen", "4097", "--profile", "--out", str(run_dir)]
    points = [json.loads(line) for line in (run_dir / "ncu_points.jsonl").read_text().splitlines()]
    assert [(p["impl"], p["n_kernels"]) for p in points] == [("official", 5), ("triton", 1)]
    meta = json.loads((run_dir / "ncu_meta.json").read_text())
    assert meta["n_kernels"] == 7 and meta["n_unattributed"] == 1
    assert meta["ncu_version"] == "Version 2025.3.1.0 (build 36398880)"
    assert 1.6e9 <= meta["sm_clock_hz"]["min"] <= meta["sm_clock_hz"]["max"] <= 1.98e9
    assert "7 kernels (1 outside ssmscope ranges)" in result.output


def test_collect_without_counter_permission(fake_ncu, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_NCU_MODE", "perm")
    run_dir = tmp_path / "run"
    result = run("ssd", "--out", run_dir)
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: ncu may not read the GPU performance counters (ERR_NVGPUCTRPERM)")
    assert last.endswith(f"(bench rows kept in {run_dir / 'rows.jsonl'})")
    assert (run_dir / "rows.jsonl").exists() and not (run_dir / "ncu_points.jsonl").exists()
