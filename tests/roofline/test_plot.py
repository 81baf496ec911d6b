"""Charts render to valid PNG and SVG, with labels that do not overlap."""
import json
import xml.etree.ElementTree as ET

import pytest

from ssmscope import kernels
from ssmscope.roofline import get_device
from ssmscope.roofline.charts import grid_placements, placement_points, plot_grid, plot_run
from ssmscope.roofline.plot import ChartPoint, roofline_chart, save_figure

H100 = "NVIDIA H100 80GB HBM3"


def assert_png_and_svg(paths, stem):
    png = next(p for p in paths if p.name == f"{stem}.png")
    svg = next(p for p in paths if p.name == f"{stem}.svg")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg") and len(list(root.iter())) > 100


def make_run(tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    rows, ncu = [], []
    conv = kernels.get("causal_conv1d")
    for impl, scale in (("official", 1.0), ("triton", 1.4)):
        for seqlen, ms in ((4096, 0.0115), (16384, 0.04), (65536, 0.149)):
            params = {"batch": 1, "dim": 1536, "seqlen": seqlen, "width": 4}
            cost = conv.cost_of("bf16", **params)
            rows.append({"op": "causal_conv1d", "impl": impl, "config_id": str(seqlen), "params": params,
                         "dtype": "bf16", "status": "ok", "device_ms": ms * scale, "gpu": H100,
                         "flops": cost.flops, "min_bytes": cost.min_bytes})
        ncu.append({"op": "causal_conv1d", "impl": impl, "config_id": "65536", "params": params, "dtype": "bf16",
                    "gpu": H100, "gpu_time_ns": 160_000 * scale, "flops_total": cost.flops, "flops_tensor": 0,
                    "sfu_ops": cost.transcendentals, "dram_bytes": 4.1e8, "l2_bytes": 5.5e8 * scale,
                    "l1_bytes": 1.2e9 * scale, "ceilings": {}})
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "ncu_points.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ncu))
    return tmp_path


def test_run_charts_measured_projected_and_hierarchical(tmp_path):
    from ssmscope.roofline import load_run

    run = load_run(make_run(tmp_path / "run"))
    paths = plot_run(run, ["h100-sxm", "orin-nano"], tmp_path / "out")
    assert_png_and_svg(paths, "h100-sxm_roofline")
    assert_png_and_svg(paths, "orin-nano_roofline")
    assert_png_and_svg(paths, "h100-sxm_hierarchical")
    assert not any("orin-nano_hierarchical" in p.name for p in paths)  # ncu points exist for the H100 only


def test_analytic_grid_chart(tmp_path):
    paths = plot_grid(["rtx4090"], tmp_path, ops=["causal_conv1d", "attention"])
    assert_png_and_svg(paths, "rtx4090_paper_grid")


def test_labels_do_not_overlap_each_other_or_leave_the_axes():
    dev = get_device("h100-sxm")
    placements = grid_placements(dev, ["causal_conv1d", "attention", "attention_decode"])
    pts = placement_points(placements, dev)
    fig = roofline_chart(dev, pts)
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    axes_box = ax.get_window_extent(renderer)
    texts = [t for t in ax.texts if t.get_text() and t.get_rotation() == 0]
    assert len(texts) >= 5  # ceiling labels and some point labels were placed
    boxes = [t.get_window_extent(renderer) for t in texts]
    for i, a in enumerate(boxes):
        assert a.x0 >= axes_box.x0 - 1 and a.x1 <= axes_box.x1 + 1, texts[i].get_text()
        for j in range(i + 1, len(boxes)):
            assert not a.overlaps(boxes[j]), (texts[i].get_text(), texts[j].get_text())


def test_sfu_roof_is_drawn_in_flop_equivalent_units(tmp_path):
    dev = get_device("orin-nano")
    # 2 FLOPs per exp: the SFU roof sits at 2 x 80 G exp/s = 160 GFLOP/s, far under the FP32 roof
    pts = [ChartPoint(x=1.0, y=1e11, op="toy_exp", group="toy", sfu_ceiling=dev.sfu_op_per_s * 2)]
    fig = roofline_chart(dev, pts)
    sfu_lines = [line for line in fig.axes[0].lines if line.get_gid() == "sfu-roof"]
    assert len(sfu_lines) == 1 and list(sfu_lines[0].get_ydata()) == [pytest.approx(1.6e11)] * 2
    assert any("exp/SFU roof" in t.get_text() for t in fig.axes[0].texts)
    assert_png_and_svg(save_figure(fig, tmp_path, "sfu"), "sfu")
