"""selective_state_update — one decode step of the selective scan (the SSM kernel behind TPOT).

    δ = softplus(dt + dt_bias);  state ← state ⊙ exp(δ·A) + (δ·x) ⊗ B;  out = state·C + D·x;  out ·= silu(z)

Official (mamba_ssm 2.3.2, a Triton kernel): ``selective_state_update(state, x, dt, A, B, C, D=None, z=None,
dt_bias=None, dt_softplus=False)``; ``state`` is updated in place. Two layouts:
  Mamba-1 (``heads=False``): state [B, D, N], x/dt/z [B, D], A [D, N], B/C [B, N], D/dt_bias [D].
  Mamba-2 (``heads=True``): state [B, H, P, N], x/z [B, H, P], B/C [B, G, N], and — as mamba_ssm's Mamba2
  passes them — dt [B, H, P], A [H, P, N], D/dt_bias [H, P] as stride-0 expansions of per-head values
  (``tied=True``), or full per-channel tensors (``tied=False``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..op import DTYPE_BYTES, Cost, Impl, Op, Shape, ShapeError, randn, uniform


@dataclass(frozen=True)
class StateUpdateShape(Shape):
    batch: int = 1
    nheads: int = 1
    dim: int = 1536  # channels (Mamba-1) or headdim P (Mamba-2)
    dstate: int = 16
    ngroups: int = 1
    heads: bool = False
    tied: bool = True
    D: bool = True
    z: bool = True
    dt_bias: bool = True
    softplus: bool = True

    ABBREV = {"batch": "B", "nheads": "H", "dim": "P", "dstate": "N", "ngroups": "G"}

    def validate(self) -> None:
        super().validate()
        if not self.heads and (self.nheads != 1 or self.ngroups != 1):
            raise ShapeError("selective_state_update: the Mamba-1 layout (heads=False) has nheads = ngroups = 1")
        if self.nheads % self.ngroups:
            raise ShapeError(f"selective_state_update: nheads {self.nheads} not divisible by ngroups {self.ngroups}")
        if self.dstate > 256:
            raise ShapeError(f"selective_state_update: dstate {self.dstate} exceeds the limit of 256")


def _per_head(values: torch.Tensor, shape: StateUpdateShape, *trailing: int) -> torch.Tensor:
    """[H] -> [H, P, ...] stride-0 expansion (tied) as mamba_ssm's Mamba2.step builds it."""
    return values.reshape(values.shape + (1,) * (len(trailing) + 1)).expand(*values.shape, shape.dim, *trailing)


def generate(shape: StateUpdateShape, dtype: torch.dtype, device: torch.device, gen: torch.Generator) -> dict[str, Any]:
    """As mamba's test_selective_state_update: state, x, dt, B, C, D, z ~ N(0, 1); dt_bias ~ U(0,1) − 4;
    A ~ −U(0,1) − 1. The state is in the input dtype, as in that test."""
    b, h, p, n, g = shape.batch, shape.nheads, shape.dim, shape.dstate, shape.ngroups
    f32 = torch.float32
    kw: dict[str, Any] = {"state": randn((b, h, p, n), gen, dtype=dtype, device=device),
                          "x": randn((b, h, p), gen, dtype=dtype, device=device)}
    if shape.heads and shape.tied:
        kw["dt"] = randn((b, h), gen, dtype=dtype, device=device)[..., None].expand(b, h, p)
        kw["A"] = _per_head(-uniform((h,), gen, 1.0, 2.0, dtype=f32, device=device), shape, n)
        kw["D"] = _per_head(randn((h,), gen, dtype=f32, device=device), shape) if shape.D else None
        kw["dt_bias"] = _per_head(uniform((h,), gen, -4.0, -3.0, dtype=f32, device=device), shape) \
            if shape.dt_bias else None
    else:
        kw["dt"] = randn((b, h, p), gen, dtype=dtype, device=device)
        kw["A"] = -uniform((h, p, n), gen, 1.0, 2.0, dtype=f32, device=device)
        kw["D"] = randn((h, p), gen, dtype=f32, device=device) if shape.D else None
        kw["dt_bias"] = uniform((h, p), gen, -4.0, -3.0, dtype=f32, device=device) if shape.dt_bias else None
    kw["B"] = randn((b, g, n), gen, dtype=dtype, device=device)
    kw["C"] = randn((b, g, n), gen, dtype=dtype, device=device)
    kw["z"] = randn((b, h, p), gen, dtype=dtype, device=device) if shape.z else None
    kw["dt_softplus"] = shape.softplus
    if not shape.heads:  # Mamba-1 layout: drop the unit head / group axes
        for key in ("state", "x", "dt", "z", "B", "C"):
            if kw[key] is not None:
                kw[key] = kw[key].squeeze(1)
        for key in ("A", "D", "dt_bias"):
            if kw[key] is not None:
                kw[key] = kw[key].squeeze(0)
    return kw


def cost(shape: StateUpdateShape, dtype: str) -> Cost:
    """Per state element (b, h, p, n): δ·A (1), exp (1 transcendental), (δ·x)·B (1), state·a + … (FMA, 2),
    out += state·C (FMA, 2): 6 FLOPs. Per channel (b, h, p): δ·x (1), + dt_bias (1), softplus (2
    transcendentals + 1 add), + D·x (FMA, 2), silu(z) (1 exp + 4).
    Minimum bytes: the state read and written (it dominates), x, z and out, B and C per group, and the
    per-channel parameters — per head only when they are stride-0 expansions (tied): dt [B, H], A/D/bias [H].
    """
    b, h, p, n, g = shape.batch, shape.nheads, shape.dim, shape.dstate, shape.ngroups
    e = DTYPE_BYTES[dtype]
    rows, elems = b * h * p, b * h * p * n
    tied = shape.heads and shape.tied
    per_row = 1 + (1 if shape.dt_bias else 0) + (1 if shape.softplus else 0) + (2 if shape.D else 0) \
        + (4 if shape.z else 0)
    bytes_ = {
        "state_read": elems * e, "state_write": elems * e,
        "x": rows * e, "out": rows * e, "z": rows * e if shape.z else 0,
        "dt": (b * h if tied else rows) * e,
        "A": (h if tied else h * p * n) * 4,
        "B": b * g * n * e, "C": b * g * n * e,
        "D": (h if tied else h * p) * 4 if shape.D else 0,
        "dt_bias": (h if tied else h * p) * 4 if shape.dt_bias else 0,
    }
    return Cost(
        flops=float(6 * elems + per_row * rows),
        transcendentals=float(elems + rows * ((2 if shape.softplus else 0) + (1 if shape.z else 0))),
        bytes={k: float(v) for k, v in bytes_.items()},
    )


def outputs(result: torch.Tensor, kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {"out": result, "state": kwargs["state"]}


def _official_supports(shape: StateUpdateShape, dtype: str) -> str | None:
    if shape.heads and shape.tied and not shape.dt_bias:
        return "the official kernel reads dt_bias.stride() to detect tied heads: dt_bias is required there"
    return None


def _flags():
    for D in (False, True):
        for z in (False, True):
            for bias in (False, True):
                yield dict(D=D, z=z, dt_bias=bias, softplus=bias)


def _grid_small() -> list[dict[str, Any]]:
    grid = []
    for dtype in ("fp32", "fp16", "bf16"):
        grid.append(dict(batch=2, dim=24, dstate=16, dtype=dtype))
        grid.append(dict(batch=2, nheads=4, dim=8, dstate=16, ngroups=2, heads=True, dtype=dtype))
        grid.append(dict(batch=3, nheads=2, dim=5, dstate=3, heads=True, tied=False, dtype=dtype))
    grid += [dict(batch=1, dim=7, dstate=4, dtype="fp32", **f) for f in _flags()]
    return grid


def _grid_upstream() -> list[dict[str, Any]]:
    """mamba's tests/ops/triton/test_selective_state_update.py (not in the sdist; from the mamba repository):
    Mamba-1: dim {2048, 2064, 4096} × dstate {16, 32, 64} × has_z × itype, batch 2, dt_softplus, dt_bias.
    With heads: dim {2048, 4096} (headdim 64), dstate {16, 32, 64}, ngroups {1, 2, 4}, tie_hdim, has_z, itype."""
    grid = []
    for dtype in ("fp32", "fp16", "bf16"):
        for dstate in (16, 32, 64):
            for z in (False, True):
                for dim in (2048, 2048 + 16, 4096):
                    grid.append(dict(batch=2, dim=dim, dstate=dstate, z=z, dtype=dtype))
                for dim in (2048, 4096):
                    for ngroups in (1, 2, 4):
                        for tied in (False, True):
                            grid.append(dict(batch=2, nheads=dim // 64, dim=64, dstate=dstate, ngroups=ngroups,
                                             heads=True, tied=tied, z=z, dtype=dtype))
    return grid


def _grid_paper() -> list[dict[str, Any]]:
    """Decode at batch 1 and 64: Mamba-130M…2.8B (d_inner 1536…5120, N 16); Mamba-2 130M…2.7B (headdim 64,
    N 128, nheads 24…80, ngroups 1)."""
    grid = [dict(batch=b, dim=d, dstate=16, dtype="bf16") for b in (1, 64) for d in (1536, 2048, 3072, 4096, 5120)]
    grid += [dict(batch=b, nheads=h, dim=64, dstate=128, heads=True, dtype="bf16")
             for b in (1, 64) for h in (24, 32, 48, 64, 80)]
    return grid


OP = Op(
    name="selective_state_update",
    summary="selective-scan decode step (Mamba-1 and Mamba-2 head layouts), state updated in place",
    shape_type=StateUpdateShape,
    generate=generate,
    cost=cost,
    impls={
        "ref": Impl("ref", "ssmscope.kernels.selective_state_update.ref:selective_state_update", "reference",
                    "PyTorch"),
        "triton": Impl("triton", "ssmscope.kernels.selective_state_update.triton_kernel:selective_state_update",
                       "ours", "state tile in registers, one program per (batch, head, rows)"),
        "official": Impl("official", "ssmscope.kernels.selective_state_update.official:selective_state_update",
                         "official", "mamba_ssm Triton kernel", needs_cuda=True, supports=_official_supports),
    },
    # One step in fp32: errors are the input/output rounding of the dtype (state written back in it).
    tolerance={"fp32": 1e-5, "fp16": 3e-3, "bf16": 2e-2},
    # mamba's test: (3e-4, 1e-3) fp32, (5e-3, 1e-2) fp16, (1e-2, 5e-2) bf16
    upstream_tolerance={"fp32": (3e-4, 1e-3), "fp16": (5e-3, 1e-2), "bf16": (1e-2, 5e-2)},
    grids={"small": _grid_small, "upstream": _grid_upstream, "paper": _grid_paper},
    outputs=outputs,
)
