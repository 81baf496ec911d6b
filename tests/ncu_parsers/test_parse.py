"""Reading ncu output: the captured H100 raw and details pages, units and separators, quoted names, the NVTX
stack, and the .ncu-rep path through a stand-in with ncu_report's interface."""
import math
import types

import pytest

from ssmscope.ncu_parsers import NcuError, parse_csv, parse_file
from ssmscope.ncu_parsers.parse import find_ncu, parse_nvtx_stack, parse_report
from ssmscope.ncu_parsers.units import normalize, parse_number, unit_scale

SILU = ("void at::vectorized_elementwise_kernel<4, at::<unnamed>::silu_kernel(at::TensorIteratorBase &)::[lambda() "
        "(instance 1)]::operator ()() const::[lambda() (instance 2)]::operator ()() const::[lambda(float) "
        "(instance 1)], std::array<char *, 2>>(int, T2, T3)")


# -------------------------------------------------------------------------------------------- the captures
def test_raw_fixture(data_dir):
    ks = parse_file(data_dir / "h100_torch_ops_raw.csv")
    assert [k.id for k in ks] == [0, 1, 2]
    assert [k.nvtx for k in ks] == [["ssmscope", "sdpa"], ["ssmscope", "gemm"], ["ssmscope", "silu"]]
    sdpa, gemm, silu = ks
    assert sdpa.name.startswith("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma")
    assert silu.name == SILU  # quoted, with commas inside
    assert (gemm.block, gemm.grid, gemm.device, gemm.cc) == ((384, 1, 1), (2, 66, 1), "0", "9.0")
    # Thousands separators, decimals, units from the units row.
    assert gemm.metrics["dram__bytes_read.sum"] == (102_684_160.0, "byte")
    assert gemm.metrics["sm__cycles_elapsed.avg.per_second"] == (1_362_245_190.0, "Hz")
    assert sdpa.metrics["dram__bytes_read.avg"] == (1_101_619.2, "byte")
    assert silu.metrics["launch__grid_dim_x"][0] == 65_536.0
    assert silu.metrics["launch__cluster_scheduling_policy"] == ("PolicySpread", "")
    assert silu.value("launch__cluster_scheduling_policy") is None  # not a number
    assert gemm.value("profiler__replayer_passes") == 5.0
    assert "Kernel Name" not in gemm.metrics and not any(m.startswith("thread Domain") for m in gemm.metrics)


def test_details_fixture(data_dir):
    ks = parse_file(data_dir / "h100_torch_ops_details.csv")
    assert [k.nvtx[-1] for k in ks] == ["sdpa", "gemm", "silu"]
    assert [len(k.metrics) for k in ks] == [2, 2, 2]
    assert ks[0].metrics["dram__bytes.sum"] == (53_644_544.0, "byte")
    assert ks[1].metrics["gpu__time_duration.sum"] == (208_096.0, "ns")
    assert ks[2].name == SILU and ks[2].grid == (65536, 1, 1)


def test_prof_and_application_lines_are_skipped(data_dir):
    text = (data_dir / "h100_torch_ops_raw.csv").read_text()
    noisy = '==PROF== Connected\n"bench", "quoted app output"\n' + text.replace("\n", "\n==WARNING== noise\n", 3)
    assert [k.name for k in parse_csv(noisy)] == [k.name for k in parse_csv(text)]
    with pytest.raises(NcuError, match='header line starting with "ID"'):
        parse_csv("==PROF== Connected to process 1\n==WARNING== No kernels were profiled.\n")


# ------------------------------------------------------------------------------------------------ units
NORMALIZE_CASES = [
    ("53,644,544", "byte", (53_644_544.0, "byte")),
    ("1,101,619.20", "byte", (1_101_619.2, "byte")),
    ("53.64", "Mbyte", (53_640_000.0, "byte")),
    ("1.27", "Gbyte", (1.27e9, "byte")),
    ("12.5", "Kbyte", (12_500.0, "byte")),
    ("374,976", "ns", (374_976.0, "ns")),
    ("374.98", "usecond", (374_980.0, "ns")),
    ("1.21", "msecond", (1_210_000.0, "ns")),
    ("1.44", "Ghz", (1.44e9, "Hz")),
    ("1,593", "Mhz", (1.593e9, "Hz")),
    ("1.98", "cycle/nsecond", (1.98e9, "Hz")),
    ("3.35", "Tbyte/second", (3.35e12, "byte/s")),
    ("7", "inst", (7.0, "inst")),
    ("18.75", "%", (18.75, "%")),
    ("(!) n/a", "byte", (None, "byte")),
    ("n/a", "", (None, "")),
    ("PolicySpread", "", ("PolicySpread", "")),
]


@pytest.mark.parametrize("text, unit, expected", NORMALIZE_CASES,
                         ids=[f"{t.replace(' ', '')}-{u or 'none'}" for t, u, _ in NORMALIZE_CASES])
def test_normalize(text, unit, expected):
    value, base = normalize(text, unit)
    assert base == expected[1]
    assert value == pytest.approx(expected[0]) if isinstance(expected[0], float) else value == expected[0]


def test_numbers_from_report_interface_and_odd_text():
    assert normalize(1_980_000_000, "hz") == (1.98e9, "Hz")
    assert normalize(2.5, "usecond") == (2500.0, "ns")
    assert parse_number("-1,234.5") == -1234.5
    assert parse_number("(384, 1, 1)") == "(384, 1, 1)"
    assert parse_number("1,5") == "1,5"  # not a thousands pattern: left alone rather than misread
    assert unit_scale("register/thread") == (1.0, "register/thread")
    assert math.isclose(unit_scale("Mbyte/usecond")[0], 1e12) and unit_scale("Mbyte/usecond")[1] == "byte/s"


# ------------------------------------------------------------------------------------ names and the stack
def test_quoted_kernel_names_with_commas_and_quotes(make_raw):
    name = 'void tile<"row,major", 3>(float *, int, const char[2] = ",")'
    ks = parse_csv(make_raw([{"name": name, "nvtx": ["ssmscope", "x"], "grid": "(65,537, 3, 1)",
                              "metrics": {"gpu__time_duration.sum": (1_234_567, "ns")}}]))
    assert ks[0].name == name
    assert ks[0].grid == (65537, 3, 1)
    assert ks[0].metrics["gpu__time_duration.sum"] == (1_234_567.0, "ns")


def entry(name: str, domain: str = "<default domain>") -> str:
    return f'"{domain}:{name}:none:none:none:none:none:none"'


@pytest.mark.parametrize("cell, expected", [
    (f"466  {entry('ssmscope')}  {entry('sdpa')} ", ["ssmscope", "sdpa"]),
    (f"7  {entry('ssmscope')}  {entry('ssd')}  {entry('triton')}  {entry('B1-L4097-dt=0.1:x-bf16')} ",
     ["ssmscope", "ssd", "triton", "B1-L4097-dt=0.1:x-bf16"]),
    (f"9  {entry('outer', 'NVTX')}  {entry('ssmscope')} ", ["outer", "ssmscope"]),
    ("", []),
], ids=["two-levels", "four-levels-colon-in-name", "two-domains", "empty"])
def test_nvtx_stack(cell, expected):
    assert parse_nvtx_stack(cell) == expected


# -------------------------------------------------------------------------------------------- .ncu-rep
class _Metric:
    def __init__(self, value, unit):
        self._value, self._unit = value, unit

    def value(self):
        return self._value

    def unit(self):
        return self._unit


class _Action:
    def __init__(self, name, metrics, stacks):
        self._name, self._metrics, self._stacks = name, metrics, stacks

    def name(self, base=None):
        assert base == "demangled"
        return self._name

    def metric_names(self):
        return tuple(self._metrics)

    def metric_by_name(self, name):
        return _Metric(*self._metrics[name])

    def nvtx_state(self):
        domains = {i: types.SimpleNamespace(push_pop_ranges=lambda s=s: tuple(s))
                   for i, s in enumerate(self._stacks)}
        return types.SimpleNamespace(domains=lambda: list(domains), domain_by_id=domains.__getitem__)


def _fake_ncu_report(actions):
    rng = types.SimpleNamespace(num_actions=lambda: len(actions), action_by_idx=actions.__getitem__)
    ctx = types.SimpleNamespace(num_ranges=lambda: 1, range_by_idx=lambda i: rng)
    return types.SimpleNamespace(load_report=lambda path: ctx,
                                 IAction=types.SimpleNamespace(NameBase_DEMANGLED="demangled"))


def test_ncu_rep_through_report_interface(tmp_path):
    metrics = {"gpu__time_duration.sum": (208_096, "nsecond"),
               "sm__cycles_elapsed.avg.per_second": (1.362, "cycle/nsecond"),
               "dram__bytes_read.sum": (102.68416, "Mbyte"),
               **{f"launch__block_dim_{a}": (n, "") for a, n in zip("xyz", (384, 1, 1))},
               **{f"launch__grid_dim_{a}": (n, "") for a, n in zip("xyz", (2, 66, 1))},
               "launch__device_id": (0, ""),
               "device__attribute_compute_capability_major": (9, ""),
               "device__attribute_compute_capability_minor": (0, "")}
    module = _fake_ncu_report([_Action("nvjet_sm90_tst", metrics, [["ssmscope", "gemm"], ["inner"]])])
    (k,) = parse_report(tmp_path / "x.ncu-rep", module=module)
    assert (k.id, k.name, k.block, k.grid, k.device, k.cc) == (0, "nvjet_sm90_tst", (384, 1, 1), (2, 66, 1), "0", "9.0")
    assert k.nvtx == ["ssmscope", "gemm", "inner"]
    assert k.metrics["gpu__time_duration.sum"] == (208_096.0, "ns")
    assert k.value("sm__cycles_elapsed.avg.per_second") == pytest.approx(1.362e9)
    assert k.value("dram__bytes_read.sum") == pytest.approx(102_684_160)


def test_missing_report_module_and_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("ssmscope.ncu_parsers.parse._default_ncu_dirs", lambda: [])
    monkeypatch.setattr("ssmscope.ncu_parsers.parse.glob.glob", lambda pattern: [])
    rep = tmp_path / "profile.ncu-rep"
    rep.write_bytes(b"\x00")
    with pytest.raises(NcuError, match="ncu_report was not found.*--csv --page raw"):
        parse_file(rep)
    with pytest.raises(NcuError, match="no such file"):
        parse_file(tmp_path / "absent.csv")
    assert find_ncu(fallback_dirs=[]) is None
