"""GPU descriptions for the roofline: one YAML file per device, loaded into a frozen :class:`Device`.

A device file (``roofline/devices/<id>.yaml``) holds ``specs``: each entry is a mapping with

    value:   a number in the SI unit its key names (``_Hz``, ``_flop_per_s``, ``_B_per_s``, ``_B``, ``_W``), or null;
    source:  where the number comes from: a key of the file's ``references`` (optionally followed by a detail,
             ``"ada, 'SMs'"``), a URL, or text starting with ``derived`` / ``measured``;
    derived: optional formula over other specs and numbers (``sm_count * 16 * boost_clock_Hz``): computes the
             value when none is given, and must agree with it (within 2 %) when both are;
    note:    required when the value is null (why it is unknown); optional otherwise.

Measured profiles (written by ``ssmscope roofline calibrate``) name a ``base`` device and override the specs
they measured; they are found by id (``h100-sxm@measured``) in the user device folders (see
:func:`device_dirs`). Adding a device is adding a file: no code.
"""
from __future__ import annotations

import ast
import dataclasses
import operator
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

BUILTIN_DIR = Path(__file__).parent / "devices"

# key -> unit (for display); the key's suffix names the SI unit.
SPEC_UNITS: dict[str, str] = {
    "sm_count": "SMs",
    "base_clock_Hz": "Hz",
    "boost_clock_Hz": "Hz",
    "tensor_clock_Hz": "Hz",
    "fp32_flop_per_s": "FLOP/s",
    "fp16_flop_per_s": "FLOP/s",
    "tensor_bf16_f32acc_flop_per_s": "FLOP/s",
    "tensor_fp16_f32acc_flop_per_s": "FLOP/s",
    "tensor_fp16_f16acc_flop_per_s": "FLOP/s",
    "tensor_tf32_flop_per_s": "FLOP/s",
    "sfu_per_clk_per_sm": "results/clk/SM",
    "sfu_op_per_s": "1/s",
    "dram_bandwidth_B_per_s": "B/s",
    "dram_capacity_B": "B",
    "l2_size_B": "B",
    "l2_bandwidth_B_per_s": "B/s",
    "smem_B_per_clk_per_sm": "B/clk/SM",
    "l1_bandwidth_B_per_s": "B/s",
    "power_W": "W",
}
# The roofline cannot be drawn without these.
REQUIRED_SPECS: frozenset[str] = frozenset({
    "sm_count", "boost_clock_Hz", "fp32_flop_per_s", "tensor_bf16_f32acc_flop_per_s",
    "tensor_fp16_f32acc_flop_per_s", "sfu_op_per_s", "dram_bandwidth_B_per_s",
})
# Operand precision of a matmul -> the tensor peak it runs at. PyTorch, Triton and cuBLAS accumulate
# fp16/bf16 products in FP32; fp32 matmuls run on the CUDA cores unless TF32 is enabled (PyTorch's default
# for matmul is off), so "fp32" has no tensor peak and "tf32" must be asked for explicitly.
TENSOR_PEAK_KEY: dict[str, str | None] = {
    "bf16": "tensor_bf16_f32acc_flop_per_s",
    "fp16": "tensor_fp16_f32acc_flop_per_s",
    "fp16acc16": "tensor_fp16_f16acc_flop_per_s",
    "tf32": "tensor_tf32_flop_per_s",
    "fp32": None,
}
DERIVED_TOLERANCE = 0.02


class DeviceError(ValueError):
    """An unknown device id, or a device file that breaks the rules above (the message names the file)."""


@dataclass(frozen=True)
class Spec:
    """One number of a device with its provenance (``source`` is expanded from the file's references)."""

    value: float | None
    source: str = ""
    note: str = ""
    derived: str | None = None


@dataclass(frozen=True)
class Device:
    """A GPU's peaks in SI units. ``None`` means unknown (``provenance[key].note`` says why)."""

    id: str
    name: str
    arch: str
    compute_capability: str
    sm_count: int
    boost_clock_Hz: float
    fp32_flop_per_s: float
    tensor_bf16_f32acc_flop_per_s: float
    tensor_fp16_f32acc_flop_per_s: float
    sfu_op_per_s: float
    dram_bandwidth_B_per_s: float
    base_clock_Hz: float | None = None
    tensor_clock_Hz: float | None = None
    fp16_flop_per_s: float | None = None
    tensor_fp16_f16acc_flop_per_s: float | None = None
    tensor_tf32_flop_per_s: float | None = None
    sfu_per_clk_per_sm: float | None = None
    dram_capacity_B: float | None = None
    l2_size_B: float | None = None
    l2_bandwidth_B_per_s: float | None = None
    smem_B_per_clk_per_sm: float | None = None
    l1_bandwidth_B_per_s: float | None = None
    power_W: float | None = None
    kind: str = "datasheet"  # datasheet | measured
    base: str | None = None  # the datasheet device a measured profile refines
    provenance: Mapping[str, Spec] = field(default_factory=dict, repr=False, compare=False)
    references: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    match_names: tuple[str, ...] = ()
    match_max_clock_Hz: float | None = None
    path: Path | None = field(default=None, compare=False)

    def tensor_peak(self, precision: str) -> float | None:
        """Dense tensor-core FLOP/s for matmul operands of ``precision`` (None: runs on the CUDA cores)."""
        if precision not in TENSOR_PEAK_KEY:
            raise DeviceError(f"unknown precision {precision!r}; use one of {', '.join(TENSOR_PEAK_KEY)}")
        key = TENSOR_PEAK_KEY[precision]
        return getattr(self, key) if key else None

    def spec(self, key: str) -> Spec:
        if key not in SPEC_UNITS:
            raise DeviceError(f"unknown spec {key!r}; specs are {', '.join(SPEC_UNITS)}")
        return self.provenance.get(key, Spec(getattr(self, key)))

    def as_dict(self) -> dict[str, Any]:
        specs = {}
        for key in SPEC_UNITS:
            s = self.spec(key)
            specs[key] = {"value": s.value, "unit": SPEC_UNITS[key], "source": s.source, "note": s.note,
                          "derived": s.derived}
        return {"id": self.id, "name": self.name, "arch": self.arch, "compute_capability": self.compute_capability,
                "kind": self.kind, "base": self.base, "path": str(self.path) if self.path else None, "specs": specs}


# --------------------------------------------------------------------------------------------------
# Where devices live
# --------------------------------------------------------------------------------------------------
def measured_dir() -> Path:
    """Where ``calibrate`` saves measured profiles: ``$XDG_CACHE_HOME/ssmscope/devices`` (``~/.cache`` default)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "ssmscope" / "devices"


def device_dirs() -> list[Path]:
    """Search order: the package's datasheet files, ``$SSMSCOPE_DEVICES`` (os.pathsep-separated), measured_dir()."""
    dirs = [BUILTIN_DIR]
    extra = os.environ.get("SSMSCOPE_DEVICES", "")
    dirs += [Path(p) for p in extra.split(os.pathsep) if p]
    dirs.append(measured_dir())
    return dirs


def _device_files() -> dict[str, Path]:
    files: dict[str, Path] = {}
    for d in device_dirs():
        if d.is_dir():
            for path in sorted(d.glob("*.yaml")):
                files.setdefault(path.stem, path)  # earlier folders win
    return files


def device_ids(kind: str | None = None) -> list[str]:
    """Known device ids (datasheet files first, then measured profiles); ``kind`` filters."""
    ids = sorted(_device_files(), key=lambda i: ("@" in i, i))
    if kind == "datasheet":
        return [i for i in ids if "@" not in i]
    if kind == "measured":
        return [i for i in ids if "@" in i]
    return ids


def get_device(device_id: str | Device) -> Device:
    """The device called ``device_id`` (``rtx4090``, ``h100-sxm@measured`` …); unknown ids list the known ones."""
    if isinstance(device_id, Device):
        return device_id
    files = _device_files()
    if device_id not in files:
        raise DeviceError(f"unknown device {device_id!r}; known devices: {', '.join(device_ids())}")
    return load_device_file(files[device_id])


def get_devices(ids: str | list[str]) -> list[Device]:
    """``"rtx4090,orin-nano"`` or a list -> devices (each unknown id is an error listing the known ones)."""
    if isinstance(ids, str):
        ids = [i.strip() for i in ids.split(",") if i.strip()]
    return [get_device(i) for i in ids]


_CACHE: dict[tuple[str, float], Device] = {}


def load_device_file(path: str | Path) -> Device:
    """Parse and validate one device file (datasheet or measured profile)."""
    path = Path(path)
    key = (str(path.resolve()), path.stat().st_mtime)
    if key not in _CACHE:
        _CACHE[key] = _build(path, _read_yaml(path))
    return _CACHE[key]


# --------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------
def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DeviceError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise DeviceError(f"{path}: expected a mapping at the top level")
    return data


def _build(path: Path, data: dict[str, Any]) -> Device:
    for key in ("id", "name", "specs"):
        if key not in data:
            raise DeviceError(f"{path}: missing top-level key {key!r}")
    if data["id"] != path.stem:
        raise DeviceError(f"{path}: id {data['id']!r} must equal the file name {path.stem!r}")
    raw_specs = dict(data["specs"] or {})
    references = dict(data.get("references") or {})
    base = data.get("base")
    header = {k: data.get(k) for k in ("arch", "compute_capability")}
    if base is not None:  # a measured profile: the base's specs, overridden by the measured ones
        base_path = _device_files().get(base)
        if base_path is None or "@" in base:
            raise DeviceError(f"{path}: base device {base!r} is not a known datasheet device "
                              f"({', '.join(device_ids('datasheet'))})")
        base_data = _read_yaml(base_path)
        references = {**(base_data.get("references") or {}), **references}
        raw_specs = {**base_data["specs"], **raw_specs}
        header = {k: header[k] or base_data.get(k) for k in header}
    specs = _parse_specs(path, raw_specs, references)
    missing = sorted(k for k in REQUIRED_SPECS if specs.get(k, Spec(None)).value is None)
    if missing:
        raise DeviceError(f"{path}: the roofline needs {', '.join(missing)} (got null or nothing)")
    values = {k: (s.value if k != "sm_count" else int(s.value)) for k, s in specs.items() if s.value is not None}
    match = data.get("match") or {}
    return Device(
        id=data["id"], name=str(data["name"]), arch=str(header["arch"] or ""),
        compute_capability=str(header["compute_capability"] or ""),
        kind="measured" if base is not None else "datasheet", base=base,
        provenance=specs, references=references,
        match_names=tuple(match.get("names") or ()),
        match_max_clock_Hz=float(match["max_clock_Hz"]) if match.get("max_clock_Hz") else None,
        path=path, **values,
    )


def _parse_specs(path: Path, raw: Mapping[str, Any], references: Mapping[str, str]) -> dict[str, Spec]:
    unknown = sorted(set(raw) - set(SPEC_UNITS))
    if unknown:
        raise DeviceError(f"{path}: unknown spec key(s) {', '.join(unknown)}; keys are {', '.join(SPEC_UNITS)}")
    entries: dict[str, dict[str, Any]] = {}
    for key, entry in raw.items():
        if not isinstance(entry, dict) or not set(entry) <= {"value", "source", "note", "derived"}:
            raise DeviceError(f"{path}: spec {key} must be a mapping of value/source/derived/note, got {entry!r}")
        if entry.get("value") is None and not entry.get("derived"):
            if not entry.get("note"):
                raise DeviceError(f"{path}: spec {key} is null without a note saying why it is unknown")
        elif not str(entry.get("source") or "").strip():
            raise DeviceError(f"{path}: spec {key} has a number but no source")
        entries[key] = entry
    values: dict[str, float | None] = {}
    for key in entries:
        _resolve(path, key, entries, values, ())
    return {key: Spec(value=values[key], source=_expand_source(path, key, e.get("source"), references),
                      note=str(e.get("note") or ""), derived=e.get("derived"))
            for key, e in entries.items()}


def _resolve(path: Path, key: str, entries: Mapping[str, dict], values: dict[str, float | None],
             stack: tuple[str, ...]) -> float | None:
    if key in values:
        return values[key]
    if key in stack:
        raise DeviceError(f"{path}: derived specs form a cycle: {' -> '.join(stack + (key,))}")
    if key not in entries:
        raise DeviceError(f"{path}: a derived formula uses {key!r}, which the file does not define")
    entry = entries[key]
    value = entry.get("value")
    if value is not None:
        value = _number(path, key, value)
    formula = entry.get("derived")
    if formula:
        computed = _evaluate(path, key, str(formula),
                             lambda name: _resolve(path, name, entries, values, stack + (key,)))
        if value is None:
            value = computed
        elif abs(computed - value) > DERIVED_TOLERANCE * abs(value):
            raise DeviceError(f"{path}: spec {key} = {value:.4g} disagrees with its formula "
                              f"{formula} = {computed:.4g} (tolerance {DERIVED_TOLERANCE:.0%})")
    values[key] = value
    return value


def _number(path: Path, key: str, value: Any) -> float:
    try:  # YAML reads "82.6e12" (no dot before e) as a string
        number = float(value)
    except (TypeError, ValueError):
        raise DeviceError(f"{path}: spec {key} value {value!r} is not a number") from None
    if not number > 0:
        raise DeviceError(f"{path}: spec {key} must be positive, got {number}")
    return number


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow}


def _evaluate(path: Path, key: str, formula: str, lookup) -> float:
    """Arithmetic over numbers and spec names only (no calls, no attributes)."""
    try:
        tree = ast.parse(formula, mode="eval")
    except SyntaxError:
        raise DeviceError(f"{path}: spec {key}: cannot parse formula {formula!r}") from None

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.Name):
            value = lookup(node.id)
            if value is None:
                raise DeviceError(f"{path}: spec {key}: formula uses {node.id}, which is null")
            return float(value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        raise DeviceError(f"{path}: spec {key}: formula {formula!r} may only use + - * / ** numbers and spec names")

    return ev(tree)


_REF = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(?:,|$)")


def _expand_source(path: Path, key: str, source: Any, references: Mapping[str, str]) -> str:
    """``"ada, 'SMs'"`` -> the reference text + detail; free text must be a URL or say derived/measured."""
    if source is None:
        return ""
    text = str(source).strip()
    m = _REF.match(text)
    if m and m.group(1) in references:
        detail = text[m.end():].strip()
        return references[m.group(1)] + (f" — {detail}" if detail else "")
    if text.lower().startswith(("derived", "measured")) or "http" in text:
        return text
    if m:
        raise DeviceError(f"{path}: spec {key} cites {m.group(1)!r}, which is not in `references` "
                          f"({', '.join(references) or 'none defined'})")
    raise DeviceError(f"{path}: spec {key} source {text!r} must cite a reference key, a URL, "
                      f"or start with 'derived' or 'measured'")


# --------------------------------------------------------------------------------------------------
# Recognising the GPU a run was measured on
# --------------------------------------------------------------------------------------------------
def match_device(gpu_name: str, sm_count: int | None = None, max_clock_Hz: float | None = None) -> Device:
    """The datasheet device a ``torch.cuda.get_device_name()`` string (plus SM count / max clock) describes."""
    candidates = []
    for device_id in device_ids("datasheet"):
        dev = get_device(device_id)
        if any(n.lower() in gpu_name.lower() for n in dev.match_names):
            candidates.append(dev)
    if sm_count is not None:
        candidates = [d for d in candidates if d.sm_count == sm_count]
    if max_clock_Hz is not None and len(candidates) > 1:
        close = [d for d in candidates
                 if d.match_max_clock_Hz and abs(d.match_max_clock_Hz - max_clock_Hz) < 0.05 * d.match_max_clock_Hz]
        candidates = close or candidates
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise DeviceError(f"no device file matches GPU {gpu_name!r}"
                          f"{f' with {sm_count} SMs' if sm_count else ''}; pass the device id explicitly "
                          f"(known: {', '.join(device_ids('datasheet'))}) or add a file under {BUILTIN_DIR}")
    raise DeviceError(f"GPU {gpu_name!r} matches several devices ({', '.join(d.id for d in candidates)}); "
                      f"pass the device id explicitly")


def replace_specs(device: Device, **values: float) -> Device:
    """A copy with some specs replaced (for what-if studies); provenance says 'user override'."""
    prov = dict(device.provenance)
    for key, value in values.items():
        prov[key] = Spec(value, source="user override")
    return dataclasses.replace(device, provenance=prov, **values)
