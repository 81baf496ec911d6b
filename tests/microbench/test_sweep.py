"""The sweep engine: a real CPU sweep, every status from a misbehaving fake op, durable rows, resume, profile mode."""
from __future__ import annotations

import contextlib
import json
from collections import Counter

import pytest

from ssmscope import kernels
from ssmscope.microbench import ROW_KEYS, SweepError, load_rows, load_samples, run_sweep
from ssmscope.microbench.grid import build_configs
from ssmscope.microbench.sweep import select_impls


def test_cpu_sweep_of_causal_conv1d(tmp_path, fast):
    op = kernels.get("causal_conv1d")
    configs = build_configs(op, fields={"batch": [2], "dim": [19], "seqlen": [37, 130], "dtype": ["fp32", "bf16"]})
    configs.append(dict(batch=1, dim=24, seqlen=33, width=3, silu=False, channel_last=True, dtype="fp32"))
    rows = run_sweep("causal_conv1d", ["ref", "official"], configs, tmp_path / "run", check_seqlen_cap=100,
                     peaks={"dram_bandwidth_B_per_s": 1e11, "fp32_flop_per_s": 1e12}, baseline="ref", **fast)
    assert len(rows) == 2 * len(configs) == len(load_rows(tmp_path / "run"))
    assert [r["impl"] for r in rows[:2]] == ["ref", "official"]  # the baseline first within a config
    for r in rows:
        assert list(r) == list(ROW_KEYS)
        assert r["device"] == "cpu" and r["mode"] == "time" and r["config_id"].endswith("-" + r["dtype"])
    official = [r for r in rows if r["impl"] == "official"]
    assert {r["status"] for r in official} == {"unavailable"} and all(r["device_ms"] is None for r in official)
    for r in (r for r in rows if r["impl"] == "ref"):
        shape, dtype = op.split_config({**r["params"], "dtype": r["dtype"]})
        cost = op.cost(shape, dtype)
        assert r["status"] == "ok" and r["check_status"] == "pass" and r["rel_err"] <= r["tolerance"]
        assert r["timer"] == "host" and r["cache"] == "cold" and r["reps"] >= 3 and r["device_ms"] > 0
        assert r["device_ms_min"] <= r["device_ms"] and r["device_ms_iqr"] >= 0
        assert (r["flops"], r["min_bytes"], r["transcendentals"]) == (cost.flops, cost.min_bytes, cost.transcendentals)
        assert r["achieved_gbps"] == pytest.approx(cost.min_bytes / (r["device_ms"] * 1e-3) / 1e9)
        assert r["frac_peak_dram"] == pytest.approx(r["achieved_gbps"] * 1e9 / 1e11)
        assert r["peak_flops_key"] == "fp32_flop_per_s" and r["speedup_vs_baseline"] == 1.0
        assert r["check_seqlen"] == min(shape.seqlen, 100)
        assert ("checked at seqlen=100" in r["message"]) == (shape.seqlen > 100)
    samples = load_samples(tmp_path / "run")
    assert len(samples) == len(configs) and all(len(s) >= 3 for s in samples.values())
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    assert env["device"] == "cpu" and env["versions"]["mamba_ssm"] == "not installed"
    assert {"gpu", "hostname", "python", "git_revision", "command", "versions", "settings"} <= set(env)
    assert env["settings"]["check_seqlen_cap"] == 100


def test_ours_kind_runs_through_the_sweep(tmp_path, fast):
    """Our Triton kernel, under the interpreter on the CPU: checked, timed, compared with the reference."""
    rows = run_sweep("causal_conv1d", ["ref", "triton"], [dict(batch=1, dim=19, seqlen=37, dtype="fp32")],
                     tmp_path, baseline="ref", **fast)
    ref, triton = rows
    assert triton["impl_kind"] == "ours" and triton["status"] == "ok" and triton["check_status"] == "pass"
    assert triton["speedup_vs_baseline"] == pytest.approx(ref["device_ms"] / triton["device_ms"])
    assert triton["speedup_ci_low"] <= triton["speedup_ci_high"]


def test_op_without_a_seqlen_is_checked_at_full_size(tmp_path, fast):
    (row,) = run_sweep("selective_state_update", ["ref"], [dict(batch=2, dim=19, dstate=16, dtype="fp32")], tmp_path,
                       **fast)
    assert row["status"] == "ok" and row["check_seqlen"] is None and row["check_status"] == "pass"


def test_every_status_from_a_fake_op(tmp_path, fake, fast):
    op = fake.op()
    impls = ["good", "wrong", "boom", "picky", "gpu_only", "limited", "oom"]
    configs = [dict(batch=2, seqlen=80, dtype="fp32"), dict(batch=0, seqlen=5, dtype="fp32")]
    rows = run_sweep(op, impls, configs, tmp_path, check_seqlen_cap=32, **fast)
    by = {(r["impl"], r["params"]["batch"]): r for r in rows}
    assert len(rows) == 14
    assert by["good", 2]["status"] == "ok" and by["good", 2]["speedup_vs_baseline"] == 1.0
    wrong = by["wrong", 2]
    assert wrong["status"] == "wrong" and wrong["check_status"] == "fail" and wrong["rel_err"] > wrong["tolerance"]
    assert wrong["device_ms"] > 0 and wrong["speedup_vs_baseline"] is not None  # timed, but flagged
    assert "WRONG" in wrong["message"]
    boom = by["boom", 2]
    assert boom["status"] == "error" and boom["device_ms"] is None
    assert "RuntimeError: kernel exploded" in boom["message"] and "\n" not in boom["message"]
    assert by["picky", 2]["status"] == "unsupported" and "seqlen must be <= 8" in by["picky", 2]["message"]
    assert by["gpu_only", 2]["status"] == "unavailable" and "CUDA" in by["gpu_only", 2]["message"]
    assert by["limited", 2]["status"] == "unsupported" and "batch must be 1" in by["limited", 2]["message"]
    oom = by["oom", 2]  # passes the check at seqlen 32, runs out of memory at 80
    assert oom["status"] == "oom" and oom["check_status"] == "pass" and oom["check_seqlen"] == 32
    assert "out of memory" in oom["message"]
    for impl in impls:  # an invalid config: every impl says why, none runs
        assert by[impl, 0]["status"] == "unsupported" and "batch must be >= 1" in by[impl, 0]["message"]


def test_interrupted_sweep_resumes_without_repeats_or_losses(tmp_path, fake, fast):
    op = fake.op(baseline="good")
    configs = [dict(batch=1, seqlen=s, dtype="fp32") for s in (3, 5, 7, 9)]
    run = tmp_path / "run"
    fake.interrupt_at = 5  # points: good@3, flaky@3, good@5, flaky@5 <- interrupted at the 4th point
    with pytest.raises(KeyboardInterrupt):
        run_sweep(op, ["good", "flaky"], configs, run, **fast)
    kept = load_rows(run)
    assert [(r["impl"], r["params"]["seqlen"]) for r in kept] == [("good", 3), ("flaky", 3), ("good", 5)]
    with pytest.raises(SweepError, match="--resume"):  # never mixes two runs by accident
        run_sweep(op, ["good", "flaky"], configs, run, **fast)
    fake.interrupt_at = None
    before = Counter(fake.calls)
    resumed = run_sweep(op, ["good", "flaky"], configs, run, resume=True, **fast)
    assert [(r["impl"], r["params"]["seqlen"]) for r in resumed] == \
        [("flaky", 5)] + [(i, s) for s in (7, 9) for i in ("good", "flaky")]
    ran = fake.calls - before
    assert not any(key in ran for key in [("good", 3), ("flaky", 3), ("good", 5)])  # finished points not rerun
    rows = load_rows(run)
    keys = [(r["impl"], r["params"]["seqlen"]) for r in rows]
    assert len(keys) == len(set(keys)) == 8 and all(r["status"] == "ok" for r in rows)
    flaky5 = next(r for r in rows if r["impl"] == "flaky" and r["params"]["seqlen"] == 5)
    assert flaky5["speedup_vs_baseline"] is not None  # the baseline's time came from the first session
    assert run_sweep(op, ["good", "flaky"], configs, run, resume=True, **fast) == []
    env = json.loads((run / "env.json").read_text())
    assert len(env["previous"]) == 2  # each session's environment is on record


def test_a_torn_last_line_is_ignored(tmp_path, fake, fast):
    op = fake.op()
    run_sweep(op, ["good"], [dict(batch=1, seqlen=3, dtype="fp32")], tmp_path, **fast)
    with open(tmp_path / "rows.jsonl", "a") as f:
        f.write('{"op": "fake", "impl": "go')  # a crash mid-write
    assert len(load_rows(tmp_path)) == 1


def test_profile_mode_runs_each_point_once_inside_nvtx_ranges(tmp_path, fake, fast, monkeypatch):
    from ssmscope.microbench import sweep

    stack: list[str] = []
    seen: list[tuple] = []

    @contextlib.contextmanager
    def recording_ranges(op, impl, config_id, *, enabled=None):
        stack[:] = ["ssmscope", op.name, impl, config_id]
        before = sum(fake.calls.values())
        yield
        seen.append((op.name, impl, config_id, sum(fake.calls.values()) - before))
        stack.clear()

    monkeypatch.setattr(sweep, "nvtx_ranges", recording_ranges)
    op = fake.op()
    rows = run_sweep(op, ["good", "boom"], [dict(batch=1, seqlen=3, dtype="fp32")], tmp_path, profile=True, **fast)
    assert seen == [("fake", "good", "B1-L3-fp32", 1)]  # one call of the impl inside the ranges
    good, boom = rows
    assert good["mode"] == "profile" and good["status"] == "ok" and good["device_ms"] is None
    assert good["cache"] is None and good["flops"] == 6.0 and "profiled once" in good["message"]
    assert boom["status"] == "error"
    # A profile run may reuse a timed run's directory (ncu joins on op, impl, config_id).
    timed = run_sweep(op, ["good"], [dict(batch=1, seqlen=3, dtype="fp32")], tmp_path, **fast)
    assert timed[0]["mode"] == "time" and len(load_rows(tmp_path)) == 3


def test_the_same_shape_twice_runs_once(tmp_path, fake, fast):
    configs = [dict(batch=1, seqlen=3, dtype="fp32"), dict(batch=1, seqlen=3), dict(seqlen=3, dtype="fp32"),
               dict(seqlen=3, batch=1)]  # batch 1 is not the default (2); a missing dtype means bf16
    rows = run_sweep(fake.op(), ["good"], configs, tmp_path, **fast)
    assert [r["config_id"] for r in rows] == ["B1-L3-fp32", "B1-L3-bf16", "B2-L3-fp32"]
    assert rows[0]["params"] == {"batch": 1, "seqlen": 3}


def test_unknown_impl_is_an_error_listing_the_impls(tmp_path, fast):
    listed = ", ".join(kernels.get("causal_conv1d").impls)
    with pytest.raises(SweepError, match=f"unknown impl\\(s\\) cuda_magic; impls are {listed}$"):
        run_sweep("causal_conv1d", ["cuda_magic"], [dict(dim=8, seqlen=8, dtype="fp32")], tmp_path, **fast)


def test_default_impls_leave_out_the_reference_and_previous_versions():
    op = kernels.get("causal_conv1d")
    kinds = {name: impl.kind for name, impl in op.impls.items()}
    assert "previous" in kinds.values()  # triton_v1 is kept for version comparisons
    chosen = select_impls(op, None, several_ops=False, baseline=None)
    assert chosen[0] == op.baseline
    assert set(chosen) == {n for n, k in kinds.items() if k not in ("previous", "reference")}
    named = select_impls(op, ["triton_v1", "triton"], several_ops=False, baseline="triton")
    assert named == ["triton", "triton_v1"]  # named explicitly, a previous version runs, after the baseline


@pytest.mark.gpu
def test_gpu_sweep_times_by_graph_replay(tmp_path):
    """ours vs official (or the reference where the official package is missing), on the GPU."""
    impls = ["triton", "official", "ref"]
    rows = run_sweep("causal_conv1d", impls, [dict(batch=1, dim=1536, seqlen=s, dtype="bf16") for s in (4096, 65536)],
                     tmp_path, device="cuda", budget_s=0.3, baseline="ref")
    assert len(rows) == 6
    for r in rows:
        assert r["device"].startswith("cuda:") and r["gpu"] != "cpu"
        if r["impl"] == "official" and r["status"] == "unavailable":
            continue
        assert r["status"] == "ok", r["message"]
        assert r["timer"] == "cuda_graph" and r["cache"] == "cold" and r["flush_ms"] > 0
        assert isinstance(r["launch_bound"], bool) and r["host_issue_ms"] > 0 and r["host_ms"] > r["device_ms"] * 0.5
        assert 0 < r["achieved_gbps"] < 10_000
    profiled = run_sweep("causal_conv1d", ["triton"], [dict(batch=1, dim=1536, seqlen=4096, dtype="bf16")],
                         tmp_path, device="cuda", profile=True)
    assert profiled[0]["status"] == "ok" and profiled[0]["device_ms"] is None
