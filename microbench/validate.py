"""``ssmscope validate``: is a user's kernel right, and is it faster than the baseline, with a confidence interval?

The candidate takes the op's official keyword arguments (``kernels.get(op).generate`` makes them). Per config
of the grid it is checked against the float64 reference (``kernels.check.check_one``: fresh seeded inputs,
NaN-poisoned allocations, the op's tolerance), then it and the baseline are timed on the same inputs by
:func:`timing.time_callable`, and the speedup median(baseline) / median(candidate) gets a percentile bootstrap
interval over the repetitions. The run fails when a point is wrong or crashes, or when ``fail_below`` is given
and a point's interval lies entirely below it (its upper bound < fail_below) or has no baseline time.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from ..kernels.check import check_one
from ..kernels.op import DTYPES, Impl, Op, default_device, use_triton_interpreter
from .grid import build_configs
from .nvtx import config_id as make_config_id
from .stats import bootstrap_speedup
from .sweep import classify, normalize_device
from .timing import time_callable

CANDIDATE = "candidate"
FAILING = ("wrong", "error", "oom")


class ValidateError(ValueError):
    """A candidate that cannot be loaded, or options that do not fit the op."""


@dataclass(frozen=True)
class CallableImpl(Impl):
    """An implementation given as a function object rather than an import path (a candidate, a test fake)."""

    fn: Callable[..., Any] | None = None

    def load(self) -> Callable[..., Any]:
        if self.fn is None:
            return super().load()
        return self.fn


def load_candidate(spec: str) -> Callable[..., Any]:
    """``"my_pkg.module:function"`` or ``"path/to/file.py:function"`` -> the function."""
    module_part, sep, attr = spec.rpartition(":")
    if not sep or not module_part or not attr:
        raise ValidateError(f"--candidate {spec!r}: expected module.path:function or path/to/file.py:function")
    try:
        if module_part.endswith(".py") or "/" in module_part:
            module = _import_file(Path(module_part))
        else:
            module = importlib.import_module(module_part)
    except ValidateError:
        raise
    except Exception as exc:  # the user's module failed: say so in one line
        raise ValidateError(f"cannot import candidate module {module_part!r}: {type(exc).__name__}: {exc}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValidateError(f"{module_part} has no function {attr!r}")
    return fn


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise ValidateError(f"candidate file {path} does not exist")
    resolved = path.resolve()
    name = f"ssmscope_candidate_{hashlib.sha1(str(resolved).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ValidateError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    return module


@dataclass
class PointResult:
    config_id: str
    params: dict[str, Any]
    dtype: str
    status: str  # ok | wrong | error | oom | unsupported | unavailable
    rel_err: float | None = None
    tolerance: float | None = None
    message: str = ""
    candidate_ms: float | None = None
    baseline_ms: float | None = None
    speedup: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    baseline_message: str = ""
    candidate_samples_ms: list[float] = field(default_factory=list, repr=False)
    baseline_samples_ms: list[float] = field(default_factory=list, repr=False)

    def as_dict(self, samples: bool = False) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if not samples:
            out.pop("candidate_samples_ms")
            out.pop("baseline_samples_ms")
        return out


@dataclass
class ValidateResult:
    op: str
    candidate: str
    baseline: str
    device: str
    fail_below: float | None
    points: list[PointResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def validate(op: Op, candidate: str | Callable[..., Any], *, baseline: str | None = None, grid: str = "quick",
             configs: Sequence[Mapping[str, Any]] | None = None, device: str | None = None,
             fail_below: float | None = None, cache: str = "cold", budget_s: float = 0.5, min_reps: int = 10,
             max_reps: int = 1000, cv_target: float = 0.02, confidence: float = 0.95, seed: int = 0,
             limit: int | None = None, where: str | None = None,
             on_point: Callable[[PointResult], None] | None = None) -> ValidateResult:
    """Check ``candidate`` against the reference and time it against ``baseline`` (default: the op's) per config."""
    device = normalize_device(device or default_device())
    if device.startswith("cpu"):
        use_triton_interpreter()  # before the candidate's module is imported: @triton.jit reads it then
    fn = load_candidate(candidate) if isinstance(candidate, str) else candidate
    baseline = baseline or op.baseline
    if baseline not in op.impls:
        raise ValidateError(f"{op.name}: no impl {baseline!r} to compare with; impls are {', '.join(op.impls)}")
    name = candidate if isinstance(candidate, str) else getattr(fn, "__name__", "candidate")
    test_op = dataclasses.replace(op, impls={**op.impls, CANDIDATE: CallableImpl(CANDIDATE, name, "candidate", fn=fn)})
    cases = list(configs) if configs is not None else build_configs(op, grid=grid, where=where, limit=limit)
    result = ValidateResult(op=op.name, candidate=name, baseline=baseline, device=device, fail_below=fail_below)
    timing = dict(device=device, cache=cache, budget_s=budget_s, min_reps=min_reps, max_reps=max_reps,
                  cv_target=cv_target)
    for i, config in enumerate(cases):
        point = _validate_point(test_op, config, baseline, seed + i, timing, confidence)
        result.points.append(point)
        _judge(result, point)
        if on_point:
            on_point(point)
    return result


def _validate_point(op: Op, config: Mapping[str, Any], baseline: str, seed: int, timing: dict[str, Any],
                    confidence: float) -> PointResult:
    device = timing["device"]
    res = check_one(op, CANDIDATE, config, device=device, seed=seed)
    point = PointResult(config_id=res.config if res.config == "?" else f"{res.config}-{res.dtype}",
                        params=dict(config), dtype=res.dtype, rel_err=res.rel_err, tolerance=res.tolerance,
                        status={"pass": "ok", "fail": "wrong"}.get(res.status, res.status), message=res.message)
    if res.status not in ("pass", "fail"):
        return point
    shape, dtype = op.split_config(config)
    point.config_id, point.params = make_config_id(shape, dtype), shape.params()
    try:
        inputs = op.generate(shape, DTYPES[dtype], torch.device(device), torch.Generator().manual_seed(seed))
        t = time_callable(lambda: op.impls[CANDIDATE].fn(**inputs), **timing)
        point.candidate_ms, point.candidate_samples_ms = t.median_ms, t.samples_ms
    except Exception as exc:
        point.status, point.message = classify(exc)
        return point
    point.baseline_message = _time_baseline(op, baseline, shape, dtype, inputs, timing, point)
    if point.baseline_samples_ms and len(point.baseline_samples_ms) > 1 and len(point.candidate_samples_ms) > 1:
        ci = bootstrap_speedup(point.baseline_samples_ms, point.candidate_samples_ms, confidence=confidence, seed=seed)
        point.speedup, point.ci_low, point.ci_high = ci.speedup, ci.low, ci.high
    elif point.baseline_ms:
        point.speedup = point.baseline_ms / point.candidate_ms
    return point


def _time_baseline(op: Op, baseline: str, shape: Any, dtype: str, inputs: Mapping[str, Any],
                   timing: dict[str, Any], point: PointResult) -> str:
    """Time the baseline on the candidate's inputs; returns why it could not run ('' when it did)."""
    impl = op.impls[baseline]
    ok, why = impl.availability(timing["device"])
    if not ok:
        return f"{baseline} unavailable: {why}"
    reason = impl.unsupported_reason(shape, dtype)
    if reason:
        return f"{baseline} unsupported: {reason}"
    try:
        base_fn = impl.load()
        t = time_callable(lambda: base_fn(**inputs), **timing)
    except Exception as exc:
        status, message = classify(exc)
        return f"{baseline} {status}: {message}"
    point.baseline_ms, point.baseline_samples_ms = t.median_ms, t.samples_ms
    return ""


def _judge(result: ValidateResult, point: PointResult) -> None:
    where = point.config_id
    if point.status in FAILING:
        result.failures.append(f"{where}: {point.status} {point.message}".strip())
        return
    if result.fail_below is None or point.status != "ok":
        return
    if point.ci_high is None:
        why = point.baseline_message or "too few repetitions for an interval"
        result.failures.append(f"{where}: no speedup interval to compare with --fail-below ({why})")
    elif point.ci_high < result.fail_below:
        result.failures.append(f"{where}: speedup {point.speedup:.3f} [{point.ci_low:.3f}, {point.ci_high:.3f}] "
                               f"is below {result.fail_below}")
