"""selective_state_update — one decode step of the selective scan, the SSM kernel behind Mamba's TPOT.

    δ = softplus(dt + dt_bias);  state ← exp(δ·A) ⊙ state + (δ·x) ⊗ B_g;  y = state·C_g + D·x;
    out = y · silu(z)                                   (head h reads group g = h // (H/G))

Official (mamba_ssm 2.3.2, a Triton kernel): ``selective_state_update(state, x, dt, A, B, C, D=None,
z=None, dt_bias=None, dt_softplus=False)`` returns out and updates ``state`` in place. Two layouts:
  Mamba-1 (``heads=False``): state [B, D, N], x/dt/z [B, D], A [D, N], B/C [B, N], D/dt_bias [D].
  Mamba-2 (``heads=True``): state [B, H, P, N], x/dt/z [B, H, P], A [H, P, N], B/C [B, G, N],
  D/dt_bias [H, P]. Mamba2.step passes dt, A, D and dt_bias as stride-0 expansions of per-head values
  (``tied=True``, the default); the upstream test also runs full per-channel tensors (``tied=False``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from ..op import DTYPE_BYTES, Cost, Impl, Op, Shape, ShapeError, randn, uniform


@dataclass(frozen=True)
class StateUpdateShape(Shape):
    """B, H (heads), D (channels per head: d_inner for Mamba-1, headdim P for Mamba-2), N, G (B/C groups).
    ``heads`` picks the Mamba-2 layout; ``tied`` (Mamba-2 only, the default as Mamba2.step calls it) passes
    dt/A/D/dt_bias as stride-0 expansions of per-head values; the Mamba-1 layout ignores it (its
    parameters are per channel)."""

    batch: int = 1
    nheads: int = 1
    dim: int = 1536
    dstate: int = 16
    ngroups: int = 1
    heads: bool = False
    tied: bool = True
    D: bool = True
    z: bool = True
    dt_bias: bool = True
    softplus: bool = True

    ABBREV = {"batch": "B", "nheads": "H", "dim": "D", "dstate": "N", "ngroups": "G"}

    def validate(self) -> None:
        super().validate()
        if not self.heads and (self.nheads != 1 or self.ngroups != 1):
            raise ShapeError("selective_state_update: the Mamba-1 layout (heads=False) has nheads = ngroups = 1; "
                             "set heads=True for the Mamba-2 layout")
        if self.nheads % self.ngroups:
            raise ShapeError(f"selective_state_update: nheads {self.nheads} must be divisible by "
                             f"ngroups {self.ngroups}")

    @property
    def per_head(self) -> bool:
        """dt, A, D, dt_bias are per-head values expanded with stride 0 (Mamba-2, tied)."""
        return self.heads and self.tied


def _per_head(values: torch.Tensor, *trailing: int) -> torch.Tensor:
    """[..., H] -> [..., H, *trailing] as a stride-0 expansion (einops ``repeat`` in Mamba2.step)."""
    return values.reshape(values.shape + (1,) * len(trailing)).expand(*values.shape, *trailing)


def _step_sizes(shape: StateUpdateShape, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(dt, dt_bias) on the CPU, per (batch, head, channel) — or per (batch, head) when tied — such that the
    effective δ follows upstream's test for every flag combination: softplus(N(0, 1) + U(−4, −3)), i.e.
    δ ≈ 0.002…0.3. Without the bias flag the bias is folded into dt; without softplus, δ is drawn as above
    and split into dt_bias = softplus(level)/2 and dt = δ − dt_bias."""
    b, h, p = shape.batch, shape.nheads, shape.dim
    chan = (h,) if shape.per_head else (h, p)
    level = torch.rand(chan, generator=gen) - 4.0
    noise = torch.randn((b, *chan), generator=gen)
    if shape.softplus:
        return (noise, level) if shape.dt_bias else (noise + level, level)
    bias = F.softplus(level) / 2
    delta = F.softplus(noise + level)
    return (delta - bias, bias) if shape.dt_bias else (delta, bias)


def generate(shape: StateUpdateShape, dtype: torch.dtype, device: torch.device, gen: torch.Generator) -> dict[str, Any]:
    """As mamba's test_selective_state_update: state, x, B, C, z, D ~ N(0, 1), A = −U(1, 2), step sizes as
    in :func:`_step_sizes`; state, x, dt, z, B, C in the input dtype (the model's), A, D, dt_bias fp32.
    (Upstream draws B and C in fp32; Mamba's step passes them in the model dtype, as here.)"""
    b, h, p, n, g = shape.batch, shape.nheads, shape.dim, shape.dstate, shape.ngroups
    f32 = torch.float32
    dt, bias = _step_sizes(shape, gen)
    chan = (h,) if shape.per_head else (h, p)
    A = -uniform(chan + ((n,) if not shape.per_head else ()), gen, 1.0, 2.0, dtype=f32, device=device)
    D = randn(chan, gen, dtype=f32, device=device)
    kw: dict[str, Any] = {
        "state": randn((b, h, p, n), gen, dtype=dtype, device=device),
        "x": randn((b, h, p), gen, dtype=dtype, device=device),
        "dt": dt.to(device=device, dtype=dtype),
        "A": A,
        "B": randn((b, g, n), gen, dtype=dtype, device=device),
        "C": randn((b, g, n), gen, dtype=dtype, device=device),
        "D": D if shape.D else None,
        "z": randn((b, h, p), gen, dtype=dtype, device=device) if shape.z else None,
        "dt_bias": bias.to(device) if shape.dt_bias else None,
        "dt_softplus": shape.softplus,
    }
    if shape.per_head:
        kw["dt"] = _per_head(kw["dt"], p)
        kw["A"] = _per_head(kw["A"], p, n)
        for key in ("D", "dt_bias"):
            kw[key] = _per_head(kw[key], p) if kw[key] is not None else None
    if not shape.heads:  # Mamba-1: drop the unit head / group axes (views of contiguous tensors)
        for key in ("state", "x", "dt", "z", "B", "C"):
            kw[key] = kw[key].squeeze(1) if kw[key] is not None else None
        for key in ("A", "D", "dt_bias"):
            kw[key] = kw[key].squeeze(0) if kw[key] is not None else None
    return kw


def cost(shape: StateUpdateShape, dtype: str) -> Cost:
    """Counted per state element (b, h, p, n), per row (b, h, p) and per (b, h); an FMA is 2 FLOPs.

    Per state element: state·exp(δ·A) + (δ·x)·B is δ·A (1) and its exp (1 transcendental), the decay
    multiply (1), (δx)·B (1), the add (1); y += state·C (FMA, 2): 6 FLOPs and 1 exp. When dt, A and
    dt_bias are tied per head (Mamba-2), δ·A and its exp happen once per (b, h): 5 FLOPs per element.
    Per row: δ·x (1), y + D·x (FMA, 2), y·silu(z) (negate, add, divide, multiply: 4, plus 1 exp); and, per
    row or per (b, h) when tied: + dt_bias (1), softplus = log1p(exp(·)) (1 add, 2 transcendentals).
    Minimum DRAM bytes: the state read and written back (2·B·H·P·N elements, the bulk), x, z and out per
    row, B and C per (b, g), dt per row (per (b, h) when tied) in the input dtype; A, D and dt_bias in fp32
    per channel — per head when they are stride-0 expansions.

    The official kernel moves this minimum too (untied A is re-read per batch element from L2; tied inputs
    are read as one scalar per program), so there is no impl_bytes entry; nothing is matrix shaped.
    """
    b, h, p, n, g = shape.batch, shape.nheads, shape.dim, shape.dstate, shape.ngroups
    e = DTYPE_BYTES[dtype]
    rows, elems, bh = b * h * p, b * h * p * n, b * h
    dt_sites = bh if shape.per_head else rows  # where δ (bias, softplus) and, tied, the decay are computed
    chan = h if shape.per_head else h * p
    flops = ((5 if shape.per_head else 6) * elems
             + rows * (1 + (2 if shape.D else 0) + (4 if shape.z else 0))
             + dt_sites * ((1 if shape.dt_bias else 0) + (1 if shape.softplus else 0))
             + (bh if shape.per_head else 0))  # tied: δ·A once per head
    transcendentals = ((bh if shape.per_head else elems) + (rows if shape.z else 0)
                       + (2 * dt_sites if shape.softplus else 0))
    parts = {
        "state_read": elems * e, "state_write": elems * e,
        "x": rows * e, "z": rows * e if shape.z else 0, "out": rows * e,
        "dt": dt_sites * e, "B": b * g * n * e, "C": b * g * n * e,
        "A": (chan if shape.per_head else chan * n) * 4,
        "D": chan * 4 if shape.D else 0, "dt_bias": chan * 4 if shape.dt_bias else 0,
    }
    return Cost(flops=float(flops), transcendentals=float(transcendentals),
                bytes={k: float(v) for k, v in parts.items()}, tensor_flops=0.0)


def outputs(result: torch.Tensor, kwargs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The step's output and the state it updated in place."""
    return {"out": result, "state": kwargs["state"]}


def official_supports(shape: StateUpdateShape, dtype: str) -> str | None:
    """Limits of mamba_ssm 2.3.2's ops/triton/selective_state_update.py."""
    if dtype not in ("fp32", "fp16", "bf16"):
        return f"official is run on fp32, fp16 and bf16 only, got {dtype}"
    for flag in ("D", "dt_bias"):
        if not getattr(shape, flag):
            return (f"official needs {flag}: its launcher unpacks `*({flag}.stride(0), {flag}.stride(1)) if "
                    f"{flag} is not None else 0`, a TypeError when {flag} is None")
    if shape.batch * shape.nheads * shape.dim * shape.dstate >= 2 ** 31:
        return "official computes state offsets in 32-bit ints: B·H·D·N must be < 2^31"
    return None


FLAG_NAMES = ("D", "z", "dt_bias", "softplus")


def _grid_small() -> list[dict[str, Any]]:
    """CPU / interpreter grid (21 configs): per dtype a Mamba-1 step (odd D 19, N 16), a tied Mamba-2 step
    (H 4, P 8, N 16, G 2) and an untied one (H 6, P 5, N 3, G 3); then six flag combinations in fp32, each
    on the Mamba-1 and the tied layout."""
    grid = []
    for dtype in ("fp32", "fp16", "bf16"):
        grid.append(dict(batch=2, dim=19, dstate=16, dtype=dtype))
        grid.append(dict(batch=2, nheads=4, dim=8, dstate=16, ngroups=2, heads=True, dtype=dtype))
        grid.append(dict(batch=3, nheads=6, dim=5, dstate=3, ngroups=3, heads=True, tied=False, dtype=dtype))
    combos = [dict(zip(FLAG_NAMES, bits)) for bits in
              ((False, False, False, False), (True, False, True, False), (False, True, False, True),
               (False, True, True, False), (True, True, False, True), (False, False, True, True))]
    for flags in combos:
        grid.append(dict(batch=1, dim=7, dstate=4, dtype="fp32", **flags))
        grid.append(dict(batch=2, nheads=2, dim=4, dstate=8, heads=True, dtype="fp32", **flags))
    return grid


def _grid_upstream() -> list[dict[str, Any]]:
    """mamba's tests/ops/triton/test_selective_state_update.py (not in the sdist; read from the
    state-spaces/mamba repository), batch 2, D, z, dt_bias and dt_softplus as there (D and dt_bias always):
    test_selective_state_update: dim {2048, 2064, 4096} x dstate {16, 32, 64} x has_z x itype (54);
    test_selective_state_update_with_heads: headdim 64, nheads = dim/64 for dim {2048, 4096}, dstate
    {16, 32, 64}, ngroups {1, 2, 4}, tie_hdim, has_z, itype (216)."""
    grid = []
    for dtype in ("fp32", "fp16", "bf16"):
        for dstate in (16, 32, 64):
            for z in (False, True):
                grid += [dict(batch=2, dim=dim, dstate=dstate, z=z, dtype=dtype) for dim in (2048, 2048 + 16, 4096)]
                grid += [dict(batch=2, nheads=dim // 64, dim=64, dstate=dstate, ngroups=ngroups, heads=True,
                              tied=tied, z=z, dtype=dtype)
                         for dim in (2048, 4096) for ngroups in (1, 2, 4) for tied in (False, True)]
    return grid


MAMBA1_DIMS = (1536, 2048, 3072, 4096, 5120)  # d_inner of Mamba-130M…2.8B, dstate 16
MAMBA2_HEADS = (24, 32, 48, 64, 80)  # Mamba-2 130M…2.7B: d_inner / headdim 64, dstate 128, 1 group


def _grid_paper() -> list[dict[str, Any]]:
    """Decode at batch 1 and 64 (bf16, every flag on): Mamba-1 130M…2.8B, and Mamba-2 130M…2.7B in the
    head layout with tied per-head dt/A/D/dt_bias, as Mamba2.step calls it."""
    grid = [dict(batch=b, dim=d, dstate=16, dtype="bf16") for b in (1, 64) for d in MAMBA1_DIMS]
    grid += [dict(batch=b, nheads=h, dim=64, dstate=128, heads=True, dtype="bf16")
             for b in (1, 64) for h in MAMBA2_HEADS]
    return grid


OP = Op(
    name="selective_state_update",
    summary="selective-scan decode step (Mamba-1 and Mamba-2 head layouts), state updated in place",
    shape_type=StateUpdateShape,
    generate=generate,
    cost=cost,
    impls={
        "ref": Impl("ref", "ssmscope.kernels.selective_state_update.ref:selective_state_update", "reference",
                    "PyTorch (fp32 / fp64)"),
        "triton": Impl("triton", "ssmscope.kernels.selective_state_update.triton_kernel:selective_state_update",
                       "ours", "Triton, [rows, N] state tile in registers, every load before the state store"),
        "triton_v1": Impl("triton_v1",
                          "ssmscope.kernels.selective_state_update.triton_kernel_v1:selective_state_update",
                          "previous", "Triton v1, [rows, N] state tile in registers, per-head scalars when tied"),
        "official": Impl("official", "ssmscope.kernels.selective_state_update.official:selective_state_update",
                         "official", "mamba_ssm selective_state_update (Triton; the package needs CUDA)",
                         needs_cuda=True, supports=official_supports),
    },
    # Relative error against float64 on the same inputs. One step in fp32: fp32 sees ~1e-7. Half types are
    # limited by rounding the new state and the output once each (unit roundoff 2^-11 fp16, 2^-8 bf16;
    # norm-wise error near 0.5-1 of it); the bounds leave 3-10x of margin. (Triton's CPU interpreter
    # truncates fp32 -> bf16 instead of rounding to nearest, which doubles the bf16 error there.)
    tolerance={"fp32": 1e-5, "fp16": 2e-3, "bf16": 1e-2},
    # mamba's test_selective_state_update: fp32 (3e-4, 1e-3), fp16 (5e-3, 1e-2), bf16 (1e-2, 5e-2). Its
    # with_heads test allows more atol for half types (fp16 3e-2, bf16 1e-1); the op keeps one pair per
    # dtype, so the stricter Mamba-1 pair applies to both layouts.
    upstream_tolerance={"fp32": (3e-4, 1e-3), "fp16": (5e-3, 1e-2), "bf16": (1e-2, 5e-2)},
    grids={"small": _grid_small, "upstream": _grid_upstream, "paper": _grid_paper},
    outputs=outputs,
)
