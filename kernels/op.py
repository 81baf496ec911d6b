"""The one declaration every operator family makes, and that check, bench, ncu, roofline and tests read.

An :class:`Op` bundles a family's shape description (a frozen dataclass with validation), its input
generator (official argument names and layouts), its analytic :class:`Cost`, its tolerances and its
implementations (:class:`Impl`, imported lazily so that a missing official package never breaks import).
"""
from __future__ import annotations

import dataclasses
import importlib
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

import torch

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "fp64": torch.float64,
}
DTYPE_BYTES: dict[str, int] = {"fp32": 4, "fp16": 2, "bf16": 2, "fp64": 8}


def dtype_name(dtype: torch.dtype | str) -> str:
    """``torch.bfloat16`` or ``"bf16"`` -> ``"bf16"``; anything else is a :class:`ShapeError`."""
    if isinstance(dtype, str):
        if dtype in DTYPES:
            return dtype
        aliases = {"float32": "fp32", "float": "fp32", "float16": "fp16", "half": "fp16",
                   "bfloat16": "bf16", "float64": "fp64", "double": "fp64"}
        if dtype in aliases:
            return aliases[dtype]
        raise ShapeError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    for name, dt in DTYPES.items():
        if dt == dtype:
            return name
    raise ShapeError(f"unsupported dtype {dtype}")


class ShapeError(ValueError):
    """A shape or option that an op (or one implementation) does not support; the message names the limit."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (CUDA and Triton errors run to many lines), cut at ``limit``."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else ""


def check_powers_of_two(where: str, **knobs: int | None) -> None:
    """Tuning knobs that must be powers of two (None: the heuristic picks); a ValueError naming the first bad one."""
    for name, value in knobs.items():
        if value is not None and (value < 1 or value & (value - 1)):
            raise ValueError(f"{where}: {name} must be a power of two, got {value}")


class Unavailable(RuntimeError):
    """An implementation that cannot run here: not installed, no GPU, unsupported architecture."""


# --------------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shape:
    """Base of every family's shape: frozen fields with defaults, ``validate()`` and a readable label.

    Subclasses declare ``ABBREV`` (field -> short tag for labels, e.g. ``{"batch": "B"}``) and override
    ``validate`` to raise :class:`ShapeError` naming the violated limit.
    """

    ABBREV: ClassVar[Mapping[str, str]] = {}

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and not isinstance(value, bool) and value < 1 and f.name in self.ABBREV:
                raise ShapeError(f"{f.name} must be >= 1, got {value}")

    def label(self) -> str:
        """``B1-D1536-N16-L4096`` plus flags that differ from the defaults (``z``, ``softplus`` …)."""
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            tag = self.ABBREV.get(f.name)
            if tag is not None and not isinstance(value, bool):
                parts.append(f"{tag}{value}")
            elif value != f.default:
                if isinstance(value, bool):
                    parts.append(f.name if value else f"no{f.name}")
                else:
                    parts.append(f"{f.name}={value}")
        return "-".join(parts)

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


# --------------------------------------------------------------------------------------------------
# Cost model
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cost:
    """What an op must do, counted analytically (each family's ``cost()`` docstring derives its terms).

    flops:           all floating-point operations; an FMA counts as 2.
    tensor_flops:    the part of ``flops`` that is matrix-multiply shaped (can run on tensor cores).
    transcendentals: exp/log/… evaluations; they run on the special-function unit (MUFU), whose rate
                     can bound an op (the selective scan does one exp per (d, l, n)).
    bytes:           named parts of the minimum DRAM traffic (every input read once, every output
                     written once), in bytes; ``min_bytes`` is their sum.
    impl_bytes:      what a known implementation moves instead (e.g. the official selective scan also
                     writes out·silu(z)), so that excess traffic can be reported.
    """

    flops: float
    transcendentals: float
    bytes: Mapping[str, float]
    tensor_flops: float = 0.0
    impl_bytes: Mapping[str, float] = field(default_factory=dict)

    @property
    def min_bytes(self) -> float:
        return float(sum(self.bytes.values()))

    @property
    def intensity(self) -> float:
        """Arithmetic intensity at DRAM, FLOP per byte of mandatory traffic."""
        return self.flops / self.min_bytes if self.min_bytes else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {
            "flops": self.flops,
            "tensor_flops": self.tensor_flops,
            "transcendentals": self.transcendentals,
            "min_bytes": self.min_bytes,
            "bytes": dict(self.bytes),
            "impl_bytes": dict(self.impl_bytes),
            "intensity": self.intensity,
        }


# --------------------------------------------------------------------------------------------------
# Implementations
# --------------------------------------------------------------------------------------------------
IMPL_KINDS = ("reference", "ours", "official", "library")


@dataclass(frozen=True)
class Impl:
    """One implementation of an op, taking the official keyword arguments.

    target:   ``"ssmscope.kernels.selective_scan.official:selective_scan"`` — imported on first use, so
              that an uninstalled official package shows up as a reason, not an import error.
    kind:     reference | ours | previous (an earlier version of ours, run only when named) | official | library.
    needs_cuda: cannot run on the CPU (official CUDA kernels, SDPA's fused backends).
    supports: optional ``(shape, dtype_name) -> reason | None`` for limits beyond the op's own
              (e.g. the official scan's dstate <= 256).
    """

    name: str
    target: str
    kind: str
    description: str = ""
    needs_cuda: bool = False
    supports: Callable[[Shape, str], str | None] | None = None

    def load(self) -> Callable[..., Any]:
        module_name, _, attr = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # the official packages are optional
            raise Unavailable(f"{self.name}: cannot import {module_name} ({exc})") from exc
        except Exception as exc:  # e.g. a CUDA extension that fails to load on a CPU-only machine
            raise Unavailable(f"{self.name}: {module_name} failed to load ({type(exc).__name__}: {exc})") from exc
        return getattr(module, attr)

    def availability(self, device: str | None = None) -> tuple[bool, str]:
        """(True, how it runs) or (False, why not) on ``device`` (default: cuda if present)."""
        device = device or default_device()
        if device.startswith("cpu") and self.needs_cuda:
            return False, "needs a CUDA GPU" if not torch.cuda.is_available() else "needs --device cuda"
        if device.startswith("cpu") and self.kind == "ours":
            use_triton_interpreter()
        try:
            self.load()
        except Unavailable as exc:
            return False, str(exc).split(": ", 1)[-1]
        if device.startswith("cpu") and self.kind == "ours":
            return True, "Triton interpreter (TRITON_INTERPRET=1, slow)"
        return True, "ok"

    def unsupported_reason(self, shape: Shape, dtype: str) -> str | None:
        return self.supports(shape, dtype) if self.supports else None

    def __call__(self, **kwargs: Any) -> Any:
        return self.load()(**kwargs)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def use_triton_interpreter() -> None:
    """Run our Triton kernels on the CPU. Must happen before a kernel module is imported (``@triton.jit``
    reads it at decoration time); harmless when a GPU build of Triton is in use with CPU tensors."""
    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")


# --------------------------------------------------------------------------------------------------
# The op
# --------------------------------------------------------------------------------------------------
Generator = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class Op:
    """An operator family. ``make_inputs`` -> official kwargs; ``impls[name](**kwargs)`` runs one.

    shape_type:  the family's :class:`Shape` subclass.
    generate:    ``(shape, dtype: torch.dtype, device, generator) -> kwargs`` with fresh random values in
                 realistic ranges (never zeros).
    cost:        ``(shape, dtype_name) -> Cost``.
    tolerance:   dtype name -> max relative error ‖out − ref‖/‖ref‖ against the float64 reference.
    upstream_tolerance: dtype name -> (rtol, atol) of the upstream test suite, for ours-vs-official.
    grids:       grid name (small | paper | upstream) -> callable returning a list of configs, each a
                 dict of shape fields plus ``dtype``.
    outputs:     ``(result, kwargs) -> {name: tensor}``: the results to compare, including state tensors
                 an implementation updates in place (decode steps).
    """

    name: str
    summary: str
    shape_type: type[Shape]
    generate: Generator
    cost: Callable[[Shape, str], Cost]
    impls: Mapping[str, Impl]
    tolerance: Mapping[str, float]
    upstream_tolerance: Mapping[str, tuple[float, float]]
    grids: Mapping[str, Callable[[], list[dict[str, Any]]]]
    outputs: Callable[[Any, Mapping[str, Any]], dict[str, torch.Tensor]] = lambda result, kwargs: {"out": result}
    baseline: str = "official"
    reference: str = "ref"
    dtypes: tuple[str, ...] = ("fp32", "fp16", "bf16")

    def shape(self, **params: Any) -> Shape:
        """Build and validate a shape; unknown fields are a :class:`ShapeError`."""
        unknown = set(params) - set(self.shape_type.field_names())
        if unknown:
            raise ShapeError(
                f"{self.name}: unknown shape field(s) {', '.join(sorted(unknown))}; "
                f"fields are {', '.join(self.shape_type.field_names())}"
            )
        shape = self.shape_type(**params)
        shape.validate()
        return shape

    def split_config(self, config: Mapping[str, Any]) -> tuple[Shape, str]:
        params = dict(config)
        dtype = dtype_name(params.pop("dtype", "bf16"))
        return self.shape(**params), dtype

    def make_inputs(
        self,
        *,
        dtype: torch.dtype | str = "bf16",
        device: str | torch.device = "cpu",
        seed: int = 0,
        **params: Any,
    ) -> dict[str, Any]:
        """Fresh seeded random inputs as the official function's keyword arguments."""
        shape = self.shape(**params)
        name = dtype_name(dtype)
        if name not in self.dtypes and name != "fp64":  # fp64 inputs feed the references
            raise ShapeError(f"{self.name}: dtype {name} not supported (supported: {', '.join(self.dtypes)})")
        gen = torch.Generator(device="cpu").manual_seed(seed)
        return self.generate(shape, DTYPES[name], torch.device(device), gen)

    def cost_of(self, dtype: str = "bf16", **params: Any) -> Cost:
        return self.cost(self.shape(**params), dtype_name(dtype))

    def grid(self, name: str) -> list[dict[str, Any]]:
        if name not in self.grids:
            raise ShapeError(f"{self.name}: no grid {name!r} (grids: {', '.join(self.grids)})")
        return list(self.grids[name]())


# --------------------------------------------------------------------------------------------------
# Helpers shared by the families' input generators
# --------------------------------------------------------------------------------------------------
# Above this many elements a host draw costs seconds per tensor (a 17 GB KV cache: minutes), so large tensors
# are drawn on the GPU from a seed taken from the host generator: still seeded and repeatable on one GPU model
# (PyTorch's device draws depend on the launch grid, i.e. the SM count), but their values differ from a CPU
# run's (the correctness checks run at reduced shapes, below this size). They are drawn in float32 slices into
# the final tensor, so the GPU never holds more than the tensor plus one slice.
DEVICE_DRAW_ELEMENTS = 1 << 27
DEVICE_DRAW_SLICE = 1 << 26


def _draw_on_device(device: torch.device, numel: int) -> bool:
    return device.type == "cuda" and numel > DEVICE_DRAW_ELEMENTS


def _sample(draw: Callable[..., torch.Tensor], shape: tuple[int, ...], gen: torch.Generator, *, dtype: torch.dtype,
            device: torch.device, scale: float, shift: float) -> torch.Tensor:
    """``draw(...) * scale + shift`` in float32, as a ``dtype`` tensor on ``device``."""
    n = math.prod(shape)
    if not _draw_on_device(device, n):
        x = draw(shape, generator=gen, dtype=torch.float32).mul_(scale).add_(shift)
        return x.to(device=device, dtype=dtype)
    seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    device_gen = torch.Generator(device=device).manual_seed(seed)
    out = torch.empty(shape, dtype=dtype, device=device)
    flat = out.view(-1)
    for start in range(0, n, DEVICE_DRAW_SLICE):
        part = draw((min(DEVICE_DRAW_SLICE, n - start),), generator=device_gen, dtype=torch.float32, device=device)
        flat[start:start + part.numel()].copy_(part.mul_(scale).add_(shift))
    return out


def randn(shape: tuple[int, ...], gen: torch.Generator, *, dtype: torch.dtype, device: torch.device,
          scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    """Seeded normal samples, drawn on the CPU (same values on every device) up to DEVICE_DRAW_ELEMENTS."""
    return _sample(torch.randn, tuple(shape), gen, dtype=dtype, device=torch.device(device), scale=scale,
                   shift=shift)


def uniform(shape: tuple[int, ...], gen: torch.Generator, low: float, high: float, *, dtype: torch.dtype,
            device: torch.device) -> torch.Tensor:
    return _sample(torch.rand, tuple(shape), gen, dtype=dtype, device=torch.device(device), scale=high - low,
                   shift=low)
