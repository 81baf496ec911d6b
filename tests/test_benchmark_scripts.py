"""The helper scripts under benchmarks/ (not part of the package): loaded from their files and run on small data."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(relpath: str):
    spec = importlib.util.spec_from_file_location(Path(relpath).stem, ROOT / relpath)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_summary_counts_statuses_and_takes_the_geometric_mean(tmp_path):
    rows = [{"op": "ssd", "impl": "triton", "config_id": f"L{n}", "status": "ok", "check_status": "pass",
             "device_ms": 1.0, "speedup_vs_baseline": s, "baseline": "official", "launch_bound": n == 1,
             "frac_peak_dram": 0.1 * n, "cache": "cold"} for n, s in ((1, 0.5), (2, 2.0), (4, 1.0))]
    rows.append({"op": "ssd", "impl": "triton", "config_id": "L8", "status": "oom", "device_ms": None})
    rows.append({"op": "ssd", "impl": "flash", "config_id": "L1", "status": "unavailable", "device_ms": None})
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = _script("benchmarks/summarize_run.py").summarize(tmp_path)
    ours = next(line for line in text.splitlines() if line.startswith("| ssd | triton"))
    cells = [c.strip() for c in ours.strip("|").split("|")]
    assert cells[2] == "3 ok, 1 oom" and cells[3] == "3 pass"
    assert cells[4] == "1.00×" and cells[5] == "0.50–2.00×"  # (0.5 · 2 · 1)^(1/3) = 1
    assert cells[6] == "L1" and cells[7] == "L2" and cells[8] == "1/3" and cells[9] == "20%"
    assert "| ssd | flash | 1 unavailable | – |" in text and "ssd: official" in text
    rows.append({"op": "ssd", "impl": "official", "config_id": "L1", "status": "ok", "device_ms": 2.0,
                 "speedup_vs_baseline": 1.0, "baseline": "official"})
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert "| ssd | official | 1 ok | – | baseline | – | – | – |" in _script("benchmarks/summarize_run.py").summarize(tmp_path)


def test_knob_sweep_parses_shapes_and_crosses_knobs():
    knobs = _script("benchmarks/gpu/knob_sweep.py")
    assert knobs.parse_assignments("seqlen=16k,heads=true,dtype=bf16") == {"seqlen": 16384, "heads": True,
                                                                        "dtype": "bf16"}
    grid = knobs.knob_grid(["block_m=32,64", "num_warps=1:4:x2"])
    assert grid == [{"block_m": m, "num_warps": w} for m in (32, 64) for w in (1, 2, 4)]
    assert knobs.knob_grid([]) == [] and knobs.first_output((7, 8)) == 7
    # words and booleans: a design to pick (causal_conv1d's cl_design), a switch
    grid = knobs.knob_grid(["cl_design=window,rows", "prefetch=true,false", "block_l=16"])
    assert grid == [{"cl_design": d, "prefetch": p, "block_l": 16} for d in ("window", "rows") for p in (True, False)]


@pytest.mark.parametrize("bad", ["block_m=", "block_m=32,,64", "block_m=64:32:x2", "block_m=1:4k"])
def test_knob_sweep_rejects_a_knob_without_values(bad):
    from ssmscope.microbench.grid import GridError

    with pytest.raises(GridError):
        _script("benchmarks/gpu/knob_sweep.py").knob_grid([bad])
