"""`ssmscope bench` and `ssmscope plot scaling` through click's CliRunner, and the scaling chart itself."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ssmscope.cli import main
from ssmscope.microbench import load_rows, plot_scaling

FAST = ["--device", "cpu", "--budget", "0.02", "--min-reps", "3"]


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_bench_sweep_export_and_resume(tmp_path):
    run = tmp_path / "run"
    args = ["bench", "causal_conv1d", "--impl", "ref", "--seqlen", "32:128:x2", "--dim", "19", "--set",
            "width=3", "--dtype", "fp32", *FAST, "--out", str(run)]
    first = _run(*args, "--csv")
    assert first.exit_code == 0, first.output
    rows = load_rows(run)
    assert [r["params"]["seqlen"] for r in rows] == [32, 64, 128]
    assert all(r["params"]["width"] == 3 and r["status"] == "ok" for r in rows)
    assert "3 ok" in first.output and (run / "rows.csv").read_text().startswith("op,impl,impl_kind")
    again = _run(*args)
    assert again.exit_code == 2 and "--resume" in again.output
    resumed = _run(*args, "--resume")
    assert resumed.exit_code == 0 and "0 row(s) written" in resumed.output and len(load_rows(run)) == 3
    exported = _run("bench", "export", str(run), "--parquet")
    assert exported.exit_code == 0 and (run / "rows.parquet").stat().st_size > 0
    import pandas as pd

    df = pd.read_parquet(run / "rows.parquet")
    assert list(df["param_seqlen"]) == [32, 64, 128] and set(df["status"]) == {"ok"}


def test_bench_flag_errors_name_the_fields(tmp_path):
    wrong_flag = _run("bench", "causal_conv1d", "--dstate", "16", *FAST, "--out", str(tmp_path / "a"))
    assert wrong_flag.exit_code == 2 and "shape fields are batch, dim, seqlen" in wrong_flag.output
    bad_range = _run("bench", "causal_conv1d", "--seqlen", "4k:1k:x2", *FAST, "--out", str(tmp_path / "b"))
    assert bad_range.exit_code == 2 and "below start" in bad_range.output
    bad_op = _run("bench", "conv", *FAST)
    assert bad_op.exit_code == 2 and "unknown op 'conv'" in bad_op.output
    assert _run("bench", *FAST).exit_code == 2  # neither OP nor --config
    assert not (tmp_path / "a").exists()


def test_bench_config_file_and_profile_mode(tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("ops:\n  causal_conv1d:\n    impl: ref\n    set: {dim: 19, seqlen: [40, 80], dtype: fp32}\n"
                     "timing: {cache: warm}\n")
    run = tmp_path / "run"
    result = _run("bench", "--config", str(sweep), *FAST, "--out", str(run))
    assert result.exit_code == 0, result.output
    rows = load_rows(run)
    assert [(r["impl"], r["params"]["seqlen"], r["cache"]) for r in rows] == [("ref", 40, "warm"), ("ref", 80, "warm")]
    profiled = _run("bench", "causal_conv1d", "--impl", "ref", "--dim", "19", "--seqlen", "40", "--dtype", "fp32",
                    "--profile", *FAST, "--out", str(run))
    assert profiled.exit_code == 0, profiled.output
    last = load_rows(run)[-1]
    assert last["mode"] == "profile" and last["status"] == "ok" and last["device_ms"] is None
    assert last["config_id"] == rows[0]["config_id"]  # what ncu's attribution joins on


def _synthetic_rows(path):
    rows = []
    for op, impls, base in (("causal_conv1d", ("triton", "official"), 0.01), ("selective_scan", ("triton",), 0.1)):
        for impl_i, impl in enumerate(impls):
            for dim in (1536, 4096):
                for i, seqlen in enumerate((1024, 4096, 16384, 65536)):
                    rows.append({"op": op, "impl": impl, "params": {"batch": 1, "dim": dim, "seqlen": seqlen},
                                 "dtype": "bf16", "status": "wrong" if (impl_i, i) == (1, 2) else "ok",
                                 "device_ms": base * (1 + impl_i) * (dim / 1536) * seqlen / 1024,
                                 "gpu": "NVIDIA H100 80GB HBM3", "cache": "cold"})
    rows.append({"op": "causal_conv1d", "impl": "triton", "params": {"batch": 1, "dim": 1536, "seqlen": 2048},
                 "dtype": "bf16", "status": "error", "device_ms": None})
    path.mkdir(parents=True, exist_ok=True)
    (path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_scaling_plot_renders(tmp_path):
    from ssmscope.microbench.plots import scaling_series

    _synthetic_rows(tmp_path)
    series = scaling_series(load_rows(tmp_path), "seqlen")
    assert set(series) == {"causal_conv1d", "selective_scan"} and len(series["causal_conv1d"]) == 4
    assert all(len(points) == 4 for points in series["causal_conv1d"].values())  # the error row is left out
    png, svg = plot_scaling(tmp_path, "seqlen")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert "<svg" in svg.read_text()[:500] and "wrong result" in svg.read_text()
    with pytest.raises(ValueError, match="dstate"):
        plot_scaling(tmp_path, "dstate")


def test_plot_scaling_cli(tmp_path):
    _synthetic_rows(tmp_path / "run")
    result = _run("plot", "scaling", str(tmp_path / "run"), "--x", "seqlen", "--x", "dim", "--op", "causal_conv1d",
                  "--out", str(tmp_path / "charts"))
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "charts").iterdir())
    assert names == ["scaling_dim.png", "scaling_dim.svg", "scaling_seqlen.png", "scaling_seqlen.svg"]
    missing = _run("plot", "scaling", str(tmp_path / "run"), "--x", "headdim")
    assert missing.exit_code == 1 and "headdim" in missing.output
