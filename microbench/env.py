"""The machine a run measured on: ``RUN/env.json`` and NVML clock / thermal snapshots around each timing.

NVML (``pynvml`` from nvidia-ml-py) is optional: without it the clock fields are None and the env says why.
"""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

# NVML clock-event reasons that mean the GPU ran below the clock it asked for (idle and the
# application-clock setting are not throttling). Values from nvml.h (nvmlClocksEventReason*).
THROTTLE_REASONS = {
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x20: "sw_thermal",
    0x40: "hw_thermal",
    0x80: "hw_power_brake",
}
PACKAGES = ("torch", "triton", "mamba_ssm", "causal_conv1d", "numpy", "nvidia-ml-py", "nvtx")


# --------------------------------------------------------------------------------------------------
# NVML
# --------------------------------------------------------------------------------------------------
_nvml: Any = None
_nvml_error: str | None = None


def nvml() -> Any:
    """The initialised pynvml module, or None (``nvml_error()`` says why)."""
    global _nvml, _nvml_error
    if _nvml is not None or _nvml_error is not None:
        return _nvml
    try:
        import pynvml

        pynvml.nvmlInit()
        _nvml = pynvml
    except Exception as exc:  # not installed, no driver, no GPU
        _nvml_error = f"{type(exc).__name__}: {exc}"
    return _nvml


def nvml_error() -> str | None:
    nvml()
    return _nvml_error


def nvml_handle(device: str | torch.device) -> Any:
    """NVML handle of a torch CUDA device, found by UUID (CUDA_VISIBLE_DEVICES renumbers indices)."""
    lib = nvml()
    dev = torch.device(device)
    if lib is None or dev.type != "cuda":
        return None
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    try:
        uuid = str(torch.cuda.get_device_properties(index).uuid)
        return lib.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
    except Exception:
        try:
            return lib.nvmlDeviceGetHandleByIndex(index)
        except Exception:
            return None


def gpu_state(device: str | torch.device) -> dict[str, Any]:
    """SM / memory clock (MHz), temperature (C), power (W) and active throttle reasons; {} without NVML."""
    handle = nvml_handle(device)
    if handle is None:
        return {}
    lib = _nvml
    state: dict[str, Any] = {}
    probes = {
        "sm_clock_mhz": lambda: lib.nvmlDeviceGetClockInfo(handle, lib.NVML_CLOCK_SM),
        "mem_clock_mhz": lambda: lib.nvmlDeviceGetClockInfo(handle, lib.NVML_CLOCK_MEM),
        "temp_c": lambda: lib.nvmlDeviceGetTemperature(handle, lib.NVML_TEMPERATURE_GPU),
        "power_w": lambda: lib.nvmlDeviceGetPowerUsage(handle) / 1000.0,
        "reasons": lambda: _reasons(lib, handle),
    }
    for key, probe in probes.items():
        try:
            state[key] = probe()
        except Exception:
            state[key] = None
    return state


def _reasons(lib: Any, handle: Any) -> list[str]:
    getter = getattr(lib, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
        getattr(lib, "nvmlDeviceGetCurrentClocksThrottleReasons")
    mask = int(getter(handle))
    return [name for bit, name in THROTTLE_REASONS.items() if mask & bit]


def clock_fields(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The row's clock columns from two :func:`gpu_state` snapshots (None where unknown)."""
    out: dict[str, Any] = {}
    for key in ("sm_clock_mhz", "mem_clock_mhz", "temp_c", "power_w"):
        out[f"{key}_before"] = before.get(key)
        out[f"{key}_after"] = after.get(key)
    reasons = sorted(set(before.get("reasons") or []) | set(after.get("reasons") or []))
    known = "reasons" in before or "reasons" in after
    out["throttle"] = bool(reasons) if known else None
    out["throttle_reasons"] = ",".join(reasons) if reasons else ("" if known else None)
    return out


def max_clocks(device: str | torch.device) -> dict[str, Any]:
    handle = nvml_handle(device)
    if handle is None:
        return {}
    lib = _nvml
    out = {}
    for key, fn in {"max_sm_clock_mhz": lambda: lib.nvmlDeviceGetMaxClockInfo(handle, lib.NVML_CLOCK_SM),
                    "max_mem_clock_mhz": lambda: lib.nvmlDeviceGetMaxClockInfo(handle, lib.NVML_CLOCK_MEM),
                    "power_limit_w": lambda: lib.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0,
                    "driver": lambda: _text(lib.nvmlSystemGetDriverVersion())}.items():
        try:
            out[key] = fn()
        except Exception:
            out[key] = None
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------------------------------
# The environment of a run
# --------------------------------------------------------------------------------------------------
def gpu_name(device: str | torch.device) -> str:
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({platform.processor() or platform.machine()})"


def package_version(name: str) -> str:
    """Installed version from package metadata (never imports: mamba_ssm fails to import without a GPU)."""
    for candidate in (name, name.replace("_", "-")):
        try:
            return importlib.metadata.version(candidate)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "not installed"


def git_revision() -> str | None:
    """HEAD of the checkout this package runs from, with ``-dirty`` when it has local changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: str | torch.device, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything needed to tell two runs apart (written to ``RUN/env.json``)."""
    dev = torch.device(device)
    env: dict[str, Any] = {
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(dev),
        "gpu": gpu_name(dev),
        "git_revision": git_revision(),
        "versions": {name: package_version(name) for name in PACKAGES},
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if dev.type == "cuda" else None,
        "triton_interpret": os.environ.get("TRITON_INTERPRET"),
        "nvml": None if nvml() else nvml_error(),
        "settings": settings or {},
    }
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        env.update(compute_capability=f"{props.major}.{props.minor}", sm_count=props.multi_processor_count,
                   total_memory_B=props.total_memory, l2_cache_B=getattr(props, "L2_cache_size", None),
                   clocks={**max_clocks(dev), **gpu_state(dev)})
        env["driver"] = env["clocks"].pop("driver", None)
    else:
        env.update(compute_capability=None, cpu_count=os.cpu_count())
    return env


def write_environment(run_dir: str | Path, env: dict[str, Any]) -> Path:
    """Write ``RUN/env.json``; an earlier session's environment (a resumed or profiled run) is kept under
    ``previous`` so that every session that added rows is on record."""
    path = Path(run_dir) / "env.json"
    if path.exists():
        try:
            old = json.loads(path.read_text())
            previous = old.pop("previous", [])
            env = {**env, "previous": [*previous, old]}
        except (OSError, json.JSONDecodeError):
            pass
    path.write_text(json.dumps(env, indent=2, default=str) + "\n")
    return path
