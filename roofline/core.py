"""The roofline model: one small pure function, and the placement of an op at a shape on a device.

Three resources bound a kernel's time from below; the floor is the slowest of them:

    t_dram    = bytes / dram_bandwidth_B_per_s
    t_compute = (flops - tensor_flops) / fp32_flop_per_s  +  tensor_flops / tensor_peak(precision)
    t_sfu     = transcendentals / sfu_op_per_s
    floor     = max(t_dram, t_compute, t_sfu)          bound = the argmax

* Non-tensor FLOPs are charged at the FP32 CUDA-core rate for every dtype: our kernels and the official ones
  load bf16/fp16 but do their elementwise math (the scan's recurrence, softplus, silu, softmax) in FP32.
* The two compute terms add (one instruction stream issues both, and they share the register file and the
  issue slots); this is conservative by at most 2x when both terms are large, which none of our ops has
  (the SSD chunked scan comes closest).
* Transcendentals (exp, log, sigmoid's exp …) run on the special-function unit (MUFU, 16 results/clk/SM on
  CC 7.x-9.0). The SFU is its own pipe, so it is a separate term of the max, not added to the FP32 time.
* ``attainable`` is flops / floor: the best FLOP/s the op can reach on the device, the point's height on
  the roofline chart.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .devices import Device, DeviceError, get_device

BOUNDS = ("dram", "compute", "sfu")


@dataclass(frozen=True)
class Roofline:
    """Where one piece of work sits on one device.

    intensity:  FLOP per byte of DRAM traffic (the x axis).
    attainable: FLOP/s at the floor (the y axis of the point on the roof).
    bound:      "dram" | "compute" | "sfu" — the resource that sets the floor.
    floor_s:    the minimum time, seconds.
    times_s:    each resource's time, seconds (the floor is their max).
    """

    intensity: float
    attainable: float
    bound: str
    floor_s: float
    times_s: Mapping[str, float]

    def __iter__(self):  # (intensity, attainable, bound, floor_s) = roofline(...)
        return iter((self.intensity, self.attainable, self.bound, self.floor_s))

    def as_dict(self) -> dict[str, Any]:
        return {"intensity": self.intensity, "attainable_flop_per_s": self.attainable, "bound": self.bound,
                "floor_s": self.floor_s, **{f"t_{k}_s": v for k, v in self.times_s.items()}}


def roofline(flops: float, bytes: float, transcendentals: float, device: Device | str, precision: str = "bf16",
             *, tensor_flops: float = 0.0) -> Roofline:
    """Intensity, attainable FLOP/s, bound and floor time of work (flops, bytes, transcendentals) on ``device``.

    ``tensor_flops`` is the part of ``flops`` that runs on tensor cores at ``precision``'s dense peak
    (bf16, fp16: FP32 accumulate; tf32; fp32 = no tensor cores, the CUDA-core FP32 rate).
    """
    device = get_device(device)
    if min(flops, bytes, transcendentals, tensor_flops) < 0:
        raise ValueError(f"work must be non-negative: flops={flops}, bytes={bytes}, "
                         f"transcendentals={transcendentals}, tensor_flops={tensor_flops}")
    if tensor_flops > flops * (1 + 1e-9):
        raise ValueError(f"tensor_flops ({tensor_flops:.4g}) cannot exceed flops ({flops:.4g})")
    if flops == 0 and bytes == 0 and transcendentals == 0:
        raise ValueError("no work: flops, bytes and transcendentals are all zero")
    tensor_peak = device.tensor_peak(precision) or device.fp32_flop_per_s
    times = {
        "dram": bytes / device.dram_bandwidth_B_per_s,
        "compute": (flops - tensor_flops) / device.fp32_flop_per_s + tensor_flops / tensor_peak,
        "sfu": transcendentals / device.sfu_op_per_s,
    }
    bound = max(BOUNDS, key=lambda b: times[b])
    floor = times[bound]
    return Roofline(intensity=flops / bytes if bytes else float("inf"),
                    attainable=flops / floor if floor else 0.0, bound=bound, floor_s=floor, times_s=times)


def precision_of(dtype: str) -> str:
    """The tensor precision a kernel of this I/O dtype uses for its matmuls (see devices.TENSOR_PEAK_KEY)."""
    return {"bf16": "bf16", "fp16": "fp16", "fp32": "fp32", "fp64": "fp32"}.get(dtype, dtype)


def sfu_flop_equivalent(device: Device, flops: float, transcendentals: float) -> float | None:
    """The SFU ceiling in FLOP/s for an op doing ``flops / transcendentals`` FLOPs per exp: the FLOP/s it
    reaches when the SFU is saturated. None when the op has no transcendentals."""
    if transcendentals <= 0:
        return None
    return device.sfu_op_per_s * flops / transcendentals


# --------------------------------------------------------------------------------------------------
# Placement: an op family at a shape
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Placement:
    """An op at a shape and dtype on a device: the cost model's work and the roofline of it."""

    op: str
    params: Mapping[str, Any]
    dtype: str
    label: str
    device: str
    flops: float
    tensor_flops: float
    transcendentals: float
    bytes: float
    roofline: Roofline

    def as_dict(self) -> dict[str, Any]:
        return {"op": self.op, "params": dict(self.params), "dtype": self.dtype, "label": self.label,
                "device": self.device, "flops": self.flops, "tensor_flops": self.tensor_flops,
                "transcendentals": self.transcendentals, "bytes": self.bytes, **self.roofline.as_dict()}


def op_cost(op_name: str, params: Mapping[str, Any], dtype: str = "bf16"):
    """(Op, Shape, Cost) of a kernels family at ``params`` (ShapeError for an unknown op or field)."""
    from ..kernels import get

    op = get(op_name)
    shape = op.shape(**dict(params))
    return op, shape, op.cost(shape, dtype)


def place(op_name: str, params: Mapping[str, Any], device: Device | str, dtype: str = "bf16",
          precision: str | None = None) -> Placement:
    """Analytic placement of ``op_name`` at ``params`` (shape fields) on ``device``; no GPU needed."""
    device = get_device(device)
    _, shape, cost = op_cost(op_name, params, dtype)
    line = roofline(cost.flops, cost.min_bytes, cost.transcendentals, device, precision or precision_of(dtype),
                    tensor_flops=cost.tensor_flops)
    return Placement(op=op_name, params=shape.params(), dtype=dtype, label=shape.label(), device=device.id,
                     flops=cost.flops, tensor_flops=cost.tensor_flops, transcendentals=cost.transcendentals,
                     bytes=cost.min_bytes, roofline=line)


def parse_shape(text: str) -> dict[str, Any]:
    """``"batch=1,dim=1536,silu=false"`` -> {"batch": 1, "dim": 1536, "silu": False}."""
    params: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"shape field {part!r} is not key=value")
        params[key.strip()] = _scalar(value.strip())
    return params


def _scalar(value: str) -> Any:
    low = value.lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    if low.endswith("k") and low[:-1].isdigit():  # seqlen=4k
        return int(low[:-1]) * 1024
    return value


__all__ = ["BOUNDS", "DeviceError", "Placement", "Roofline", "op_cost", "parse_shape", "place", "precision_of",
           "roofline", "sfu_flop_equivalent"]
