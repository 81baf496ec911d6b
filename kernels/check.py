"""Correctness: every implementation against a float64 run of the reference, on fresh seeded random inputs.

For each (op, impl, config):
  * inputs are drawn fresh (seeded; the seed is recorded), never zeros;
  * the reference runs on the same inputs upcast to float64;
  * the implementation runs with every fresh allocation poisoned with NaN (torch's
    ``fill_uninitialized_memory``, which also covers ``torch::empty`` inside C++ extensions), so an
    element the kernel never writes shows up as NaN instead of a lucky zero;
  * the error is ‖out − ref‖ / ‖ref‖ per output (state tensors updated in place included), checked
    against the op's tolerance for the dtype; NaNs always fail;
  * when a baseline (the official kernel) runs too, ours is also compared with it using the upstream
    test suite's (rtol, atol) for the dtype.
"""
from __future__ import annotations

import contextlib
import dataclasses
import random
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import torch

from .op import DTYPES, Op, ShapeError, Unavailable, default_device, first_line, use_triton_interpreter


@dataclass
class CheckResult:
    op: str
    impl: str
    config: str
    dtype: str
    device: str
    seed: int
    status: str  # pass | fail | unsupported | unavailable | oom | error
    rel_err: float | None = None
    tolerance: float | None = None
    errors: dict[str, float] = field(default_factory=dict)
    nan_count: int = 0
    baseline: str | None = None
    baseline_max_abs: float | None = None
    baseline_ok: bool | None = None
    message: str = ""
    seconds: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status in ("fail", "error") or self.baseline_ok is False

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@contextlib.contextmanager
def poisoned_allocations() -> Iterator[None]:
    """Fill every fresh torch allocation with NaN while the block runs (restores the previous mode)."""
    import torch.utils.deterministic as det

    was_on = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    was_filling = det.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    det.fill_uninitialized_memory = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        det.fill_uninitialized_memory = was_filling
        torch.use_deterministic_algorithms(was_on, warn_only=was_warn_only)


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """‖out − ref‖₂ / ‖ref‖₂ in float64 (NaN when ``out`` has NaNs)."""
    out64, ref64 = out.detach().to(torch.float64), ref.detach().to(torch.float64)
    denom = torch.linalg.vector_norm(ref64).item()
    num = torch.linalg.vector_norm(out64 - ref64.to(out64.device)).item()
    return num / denom if denom > 0 else num


def clone_inputs(kwargs: Mapping[str, Any], dtype: torch.dtype | None = None) -> dict[str, Any]:
    """Deep-enough copy (in-place decode ops mutate their state); floating tensors optionally cast."""
    copied = {}
    for key, value in kwargs.items():
        if isinstance(value, torch.Tensor):
            value = clone_keep_broadcast(value)
            if dtype is not None and value.is_floating_point():
                value = value.to(dtype)
        copied[key] = value
    return copied


def clone_keep_broadcast(t: torch.Tensor) -> torch.Tensor:
    """A copy that keeps stride-0 (expanded) dims expanded: kernels detect tied parameters by their strides
    (mamba_ssm's Mamba2 passes per-head dt/A/D as expansions), and ``clone`` would densify them."""
    broadcast = [d for d in range(t.dim()) if t.stride(d) == 0 and t.size(d) > 1]
    if not broadcast:
        return t.detach().clone()
    base = t.detach()
    for d in broadcast:
        base = base.narrow(d, 0, 1)
    return base.clone().expand(t.shape)


def run_outputs(op: Op, impl_name: str, kwargs: Mapping[str, Any], *, poison: bool) -> dict[str, torch.Tensor]:
    inputs = clone_inputs(kwargs)
    with poisoned_allocations() if poison else contextlib.nullcontext():
        result = op.impls[impl_name](**inputs)
    if any(isinstance(v, torch.Tensor) and v.is_cuda for v in inputs.values()):
        torch.cuda.synchronize()
    return op.outputs(result, inputs)


def reference_outputs(op: Op, kwargs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The reference on the same inputs upcast to float64."""
    inputs = clone_inputs(kwargs, dtype=torch.float64)
    return op.outputs(op.impls[op.reference](**inputs), inputs)


def compare(outs: Mapping[str, torch.Tensor], refs: Mapping[str, torch.Tensor]) -> tuple[dict[str, float], int]:
    errors, nans = {}, 0
    for name, ref in refs.items():
        out = outs[name]
        if tuple(out.shape) != tuple(ref.shape):
            raise AssertionError(f"output {name!r} has shape {tuple(out.shape)}, expected {tuple(ref.shape)}")
        nans += int(torch.isnan(out).sum().item())
        errors[name] = relative_error(out, ref)
    return errors, nans


def check_one(op: Op, impl_name: str, config: Mapping[str, Any], *, device: str, seed: int,
              baseline: str | None = None) -> CheckResult:
    """Check one implementation at one config; never raises for bad shapes, missing kernels or OOM."""
    started = time.perf_counter()
    res = CheckResult(op=op.name, impl=impl_name, config="?", dtype=str(config.get("dtype", "bf16")),
                      device=device, seed=seed, status="error", params=dict(config))
    try:
        shape, dtype = op.split_config(config)
        res.config, res.dtype = shape.label(), dtype
        impl = op.impls[impl_name]
        ok, why = impl.availability(device)
        if not ok:
            res.status, res.message = "unavailable", why
            return res
        reason = impl.unsupported_reason(shape, dtype)
        if reason:
            res.status, res.message = "unsupported", reason
            return res
        kwargs = op.generate(shape, DTYPES[dtype], torch.device(device), torch.Generator().manual_seed(seed))
        refs = reference_outputs(op, kwargs)
        outs = run_outputs(op, impl_name, kwargs, poison=True)
        res.errors, res.nan_count = compare(outs, refs)
        res.rel_err = max(res.errors.values())
        res.tolerance = op.tolerance[dtype]
        passed = res.nan_count == 0 and res.rel_err <= res.tolerance
        res.status = "pass" if passed else "fail"
        if res.nan_count:
            res.message = f"{res.nan_count} NaN element(s): unwritten output or overflow"
        if baseline and baseline != impl_name and baseline in op.impls:
            _compare_with_baseline(op, res, shape, dtype, kwargs, outs, baseline, device)
    except ShapeError as exc:
        res.status, res.message = "unsupported", str(exc)
    except Unavailable as exc:
        res.status, res.message = "unavailable", str(exc)
    except torch.cuda.OutOfMemoryError:
        res.status, res.message = "oom", "CUDA out of memory"
    except Exception as exc:  # one line per failure, never a traceback
        res.status, res.message = "error", f"{type(exc).__name__}: {first_line(exc)}"
    finally:
        res.seconds = time.perf_counter() - started
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return res


def _compare_with_baseline(op: Op, res: CheckResult, shape, dtype: str, kwargs, outs, baseline: str,
                           device: str) -> None:
    impl = op.impls[baseline]
    ok, _ = impl.availability(device)
    if not ok or impl.unsupported_reason(shape, dtype):
        return
    base = run_outputs(op, baseline, kwargs, poison=False)
    rtol, atol = op.upstream_tolerance[dtype]
    res.baseline = baseline
    res.baseline_max_abs = max(float((outs[k].float() - base[k].float()).abs().max()) for k in base)
    res.baseline_ok = all(torch.allclose(outs[k].float(), base[k].float(), rtol=rtol, atol=atol) for k in base)


def check(op: Op, impls: Sequence[str] | None = None, *, grid: str = "small",
          configs: Sequence[Mapping[str, Any]] | None = None, device: str | None = None,
          seed: int | None = None, against: str | None = None) -> Iterator[CheckResult]:
    """Yield one :class:`CheckResult` per (config, impl), as each finishes.

    impls:   default: every implementation except the reference.
    configs: explicit configs instead of the named grid.
    seed:    base seed (default: drawn fresh and recorded in each result); case i uses ``seed + i``.
    against: also compare each implementation with this one (default: the op's baseline) using the
             upstream (rtol, atol).
    """
    device = device or default_device()
    if device.startswith("cpu"):
        use_triton_interpreter()
    names = list(impls) if impls else [n for n in op.impls if n != op.reference]
    for name in names:
        if name not in op.impls:
            raise ShapeError(f"{op.name}: unknown impl {name!r}; impls are {', '.join(op.impls)}")
    base_seed = random.randrange(2**31) if seed is None else seed
    cases = list(configs) if configs is not None else op.grid(grid)
    against = against if against is not None else op.baseline
    for i, config in enumerate(cases):
        for name in names:
            yield check_one(op, name, config, device=device, seed=base_seed + i, baseline=against)


def summarize(results: Sequence[CheckResult | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (op, impl, dtype): counts by status, the worst error, agreement with the baseline."""
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for r in results:
        row = r.as_dict() if isinstance(r, CheckResult) else r
        groups.setdefault((row["op"], row["impl"], row["dtype"]), []).append(row)
    summary = []
    for (op, impl, dtype), rows in groups.items():
        errs = [r["rel_err"] for r in rows if r.get("rel_err") is not None]
        base = [r for r in rows if r.get("baseline_ok") is not None]
        entry = {"op": op, "impl": impl, "dtype": dtype, "cases": len(rows)}
        for status in ("pass", "fail", "unsupported", "unavailable", "oom", "error"):
            entry[status] = sum(r["status"] == status for r in rows)
        entry["max_rel_err"] = max(errs) if errs else None
        entry["tolerance"] = max((r["tolerance"] for r in rows if r.get("tolerance") is not None), default=None)
        entry["baseline"] = base[0]["baseline"] if base else None
        entry["within_upstream_tol"] = sum(bool(r["baseline_ok"]) for r in base) if base else None
        entry["compared_with_baseline"] = len(base)
        summary.append(entry)
    return summary


def disagreements(results: Sequence[CheckResult], ours: Sequence[str] = ("triton",)) -> list[tuple]:
    """The rows a GPU gate should reject: any failure, any of ``ours`` not confirmed within the upstream
    tolerance of the baseline, and any baseline (kind official/library) that itself did not pass."""
    bad = []
    for r in results:
        if r.failed or (r.impl in ours and r.baseline_ok is not True) or (r.impl not in ours and r.status != "pass"):
            bad.append((r.impl, r.config, r.dtype, r.status, r.rel_err, r.baseline_max_abs, r.message))
    return bad
