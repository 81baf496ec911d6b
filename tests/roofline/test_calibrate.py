"""calibrate's analysis on synthetic timings (the benchmarks themselves are marked gpu)."""
import math

import pytest

from ssmscope.roofline.calibrate import (OMEGA, CalibrationError, check_exact, check_fixed_point, check_relative,
                                         exp_fixed_point, profile_from, summarize, time_stats, write_profile)
from ssmscope.roofline.devices import get_device


def test_time_stats_median_min_spread():
    med, best, spread = time_stats([3e-3, 1e-3, 2e-3, 2e-3, 2.5e-3, 2e-3, 2e-3, 2e-3, 2e-3, 2e-3, 9e-3])
    assert med == 2e-3 and best == 1e-3
    assert spread == pytest.approx((3e-3 - 2e-3) / 2e-3)  # p90 - p10 over the median: the outliers do not count
    with pytest.raises(CalibrationError, match="positive"):
        time_stats([1e-3, 0.0])


def test_summarize_is_work_over_median_and_a_fraction_of_the_datasheet():
    h100 = get_device("h100-sxm")
    times = [2 * 1073741824 / 3.0e12 * f for f in (1.0, 1.01, 0.99, 1.02, 1.0)]
    m = summarize("dram_copy", "dram_bandwidth_B_per_s", 2 * 1073741824, "B/s", times,
                  h100.dram_bandwidth_B_per_s, "copy exact")
    assert m.value == pytest.approx(3.0e12)
    assert m.fraction == pytest.approx(3.0e12 / 3.35e12)
    assert m.reps == 5 and m.min_s == min(times)


def test_checks_fail_loudly():
    assert "exact" in check_exact(16.0 * 1024, 16384.0, "smem sum")
    with pytest.raises(CalibrationError, match="expected exactly"):
        check_exact(16383.0, 16384.0, "smem sum")
    assert exp_fixed_point(0.25, 200) == pytest.approx(OMEGA, abs=1e-12)
    assert math.exp(-OMEGA) == pytest.approx(OMEGA)
    check_fixed_point([OMEGA + 3e-7, OMEGA - 1e-6], OMEGA, 1e-4, "exp")
    with pytest.raises(CalibrationError, match="deviate"):
        check_fixed_point([OMEGA, 0.6], OMEGA, 1e-4, "exp")
    with pytest.raises(CalibrationError, match="deviate"):
        check_fixed_point([float("nan")], OMEGA, 1e-4, "exp")
    assert "rel. err" in check_relative([1.0, 2.0, 3.001], [1.0, 2.0, 3.0], 1e-3, "gemm")
    with pytest.raises(CalibrationError, match="relative error"):
        check_relative([1.0, 2.5], [1.0, 2.0], 1e-2, "gemm")


def _measurements():
    h100 = get_device("h100-sxm")
    t = [1e-3] * 5
    return [
        summarize("dram_copy", "dram_bandwidth_B_per_s", 2.9e9, "B/s", t, h100.dram_bandwidth_B_per_s, "ok"),
        summarize("dram_triad", "dram_bandwidth_B_per_s", 3.0e9, "B/s", t, h100.dram_bandwidth_B_per_s, "ok"),
        summarize("dram_torch", None, 3.02e9, "B/s", t, h100.dram_bandwidth_B_per_s, "ok"),
        summarize("sfu_exp", "sfu_op_per_s", 4.0e9, "exp/s", t, h100.sfu_op_per_s, "ok"),
        summarize("bf16_gemm", "tensor_bf16_f32acc_flop_per_s", 7.9e14 * 1e-3, "FLOP/s", t,
                  h100.tensor_bf16_f32acc_flop_per_s, "ok"),
    ]


def test_profile_takes_the_best_of_copy_and_triad_and_loads_by_id(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    profile = profile_from(_measurements(), get_device("h100-sxm"), {"gpu": "NVIDIA H100 80GB HBM3"})
    assert profile["specs"]["dram_bandwidth_B_per_s"]["value"] == pytest.approx(3.0e12)  # triad beat copy
    assert "dram_torch" not in str(profile["specs"])  # informational only
    path = write_profile(profile)
    assert path == tmp_path / "ssmscope" / "devices" / "h100-sxm@measured.yaml"
    dev = get_device("h100-sxm@measured")
    assert dev.dram_bandwidth_B_per_s == pytest.approx(3.0e12)
    assert dev.tensor_bf16_f32acc_flop_per_s == pytest.approx(7.9e14)
    assert dev.sfu_op_per_s == pytest.approx(4.0e12)
    assert dev.fp32_flop_per_s == 66.9e12  # not measured: the datasheet's
    assert dev.spec("sfu_op_per_s").source.startswith("measured: sfu_exp, median of 5")


def test_out_file_must_be_named_for_its_base(tmp_path):
    profile = profile_from(_measurements(), get_device("h100-sxm"), {})
    assert write_profile(profile, tmp_path / "h100-sxm@lab.yaml").read_text().count("id: h100-sxm@lab") == 1
    with pytest.raises(CalibrationError, match="h100-sxm@<tag>.yaml"):
        write_profile(profile, tmp_path / "mine.yaml")


def test_calibrate_without_cupy_is_a_clear_error():
    pytest.importorskip("torch")
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    from ssmscope.roofline.calibrate import run_calibration

    with pytest.raises(CalibrationError, match="needs CuPy"):
        run_calibration()


@pytest.mark.gpu
def test_calibrate_on_the_gpu_measures_plausible_fractions():
    from ssmscope.roofline.calibrate import run_calibration

    cal = run_calibration(only=["dram", "fp32", "sfu", "smem", "l2"], reps=5)
    assert not cal.errors, cal.errors
    by_name = {m.name: m for m in cal.measurements}
    for name in ("dram_copy", "dram_triad", "fp32_fma", "sfu_exp"):
        assert 0.3 < by_name[name].fraction < 1.15, (name, by_name[name])
    assert by_name["l2_read"].value > by_name["dram_copy"].value
