"""The sweep: every (op, impl, config) point is checked, timed (or profiled once under NVTX) and written.

Per point, in order:
  1. availability on the device (``unavailable``) and the impl's own limits (``unsupported``);
  2. the correctness check, ``kernels.check.check_one`` against the float64 reference, at the point's shape or,
     when its seqlen exceeds ``check_seqlen_cap``, at that seqlen (``check_seqlen`` says which). A failing
     check makes the point ``wrong``: it is still timed, and flagged;
  3. inputs generated once per config (seeded, outside the timing) and shared by the config's impls; the
     closure ``lambda: impl(**inputs)`` is built before timing;
  4. :func:`timing.time_callable` (or, with ``profile``, warm-up then one call inside the NVTX ranges);
  5. rates from ``op.cost`` and the speedup over the baseline impl (timed first within each config);
  6. the row is appended to ``RUN/rows.jsonl`` (flushed and fsynced) and its samples to ``RUN/samples.jsonl``.
Exceptions become statuses (OOM -> ``oom``, ShapeError -> ``unsupported``, Unavailable -> ``unavailable``,
anything else -> ``error`` with a one-line message); KeyboardInterrupt stops the sweep with every finished
row on disk, and ``resume=True`` then skips the points that have a row.
"""
from __future__ import annotations

import datetime as _dt
import functools
import gc
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from .. import kernels
from ..kernels.check import check_one
from ..kernels.op import DTYPES, Op, Shape, ShapeError, Unavailable, default_device, first_line, use_triton_interpreter
from . import env as _env
from . import metrics
from .grid import build_configs
from .nvtx import config_id as make_config_id
from .nvtx import nvtx_ranges
from .rows import ROWS, SAMPLES, AppendLog, finished_keys, load_samples, make_row, point_key, read_jsonl
from .stats import bootstrap_speedup
from .timing import Timing, time_callable

PROFILE_WARMUP_CALLS = 3


class SweepError(ValueError):
    """A sweep that cannot start (unknown impl, a run directory that already holds this kind of rows …)."""


@dataclass
class Settings:
    """How each point is measured (recorded in env.json)."""

    device: str = ""
    cache: str = "cold"
    budget_s: float = 1.0
    min_reps: int = 10
    max_reps: int = 1000
    cv_target: float = 0.02
    warmup_s: float = 0.05
    use_graph: bool = True
    check: bool = True
    check_seqlen_cap: int = 2048
    seed: int = 0
    profile: bool = False
    baseline: str | None = None
    peaks: Mapping[str, float] | None = None
    flush_bytes: int | None = None


@dataclass
class Point:
    op: Op
    impl: str
    config: dict[str, Any]
    index: int  # position of the config in the op's list (its seed offset)
    shape: Shape | None = None
    dtype: str = ""
    config_id: str = ""
    invalid: str | None = None  # why the config is not a valid shape


@dataclass
class _ConfigState:
    """What the impls of one config share: the inputs and the baseline's timing."""

    inputs: dict[str, Any] | None = None
    baseline_ms: float | None = None
    baseline_samples: list[float] | None = None


# --------------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------------
def resolve_ops(ops: str | Op | Sequence[str | Op]) -> list[Op]:
    """``"all"``, a name, an Op, or a list of those -> Ops."""
    if isinstance(ops, (str, Op)):
        ops = [ops]
    out: list[Op] = []
    for item in ops:
        if isinstance(item, Op):
            out.append(item)
        elif item == "all":
            out.extend(kernels.all_ops())
        else:
            out.append(kernels.get(item))
    return out


def select_impls(op: Op, impls: Sequence[str] | None, *, several_ops: bool, baseline: str | None) -> list[str]:
    """The impls to run for ``op``, the baseline first (its time is the speedup's numerator).

    Default: every impl but the reference and earlier versions of ours (kind ``previous``, kept so that a
    sweep naming them can compare versions). With several ops, names an op lacks are skipped; with one op,
    an unknown name is an error listing the op's impls.
    """
    if impls:
        unknown = [i for i in impls if i not in op.impls]
        if unknown and not several_ops:
            raise SweepError(f"{op.name}: unknown impl(s) {', '.join(unknown)}; impls are {', '.join(op.impls)}")
        names = [i for i in impls if i in op.impls]
    else:
        names = [i for i, impl in op.impls.items() if i != op.reference and impl.kind != "previous"]
    base = baseline or op.baseline
    return sorted(names, key=lambda n: n != base)  # stable: the baseline first, the rest in order


def plan(ops: Sequence[Op], impls: Sequence[str] | Mapping[str, Sequence[str] | None] | None = None,
         configs: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
         *, grid: str | None = None, baseline: str | None = None) -> list[Point]:
    """Points in run order: op by op, config by config, the baseline impl first within a config.

    impls and configs may be mappings op name -> list (an op missing from ``configs`` gets none)."""
    points = []
    for op in ops:
        op_impls = impls.get(op.name) if isinstance(impls, Mapping) else impls
        if isinstance(configs, Mapping):
            op_configs = list(configs.get(op.name, []))
        elif configs is not None:
            op_configs = [dict(c) for c in configs]
        else:
            op_configs = build_configs(op, grid=grid)
        names = select_impls(op, op_impls, several_ops=len(ops) > 1, baseline=baseline)
        seen: set[str] = set()
        for index, config in enumerate(op_configs):
            template = _resolve_config(op, config, index)
            if template.config_id in seen:  # the same shape twice (e.g. a default spelled out): run it once
                continue
            seen.add(template.config_id)
            points.extend(Point(**{**template.__dict__, "impl": name}) for name in names)
    return points


def _resolve_config(op: Op, config: Mapping[str, Any], index: int) -> Point:
    point = Point(op=op, impl="", config=dict(config), index=index)
    try:
        point.shape, point.dtype = op.split_config(config)
        if point.dtype not in op.dtypes:
            raise ShapeError(f"{op.name}: dtype {point.dtype} not supported (supported: {', '.join(op.dtypes)})")
        point.config_id = make_config_id(point.shape, point.dtype)
    except (ShapeError, TypeError) as exc:
        point.invalid = str(exc)
        point.dtype = str(config.get("dtype", "bf16"))
        point.config_id = "-".join(f"{k}={v}" for k, v in config.items() if k != "dtype") + f"-{point.dtype}"
    return point


# --------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------
def run_sweep(ops: str | Op | Sequence[str | Op], impls: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
              configs: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
              out_dir: str | Path = "runs/bench", *, grid: str | None = None, resume: bool = False,
              on_row: Callable[[dict[str, Any]], None] | None = None, on_plan: Callable[[int], None] | None = None,
              **settings: Any) -> list[dict[str, Any]]:
    """Check and time every point; returns the rows written by this call (see README.md for the keys).

    ops:     "all", an op name, an Op, or a list of them.
    impls:   impl names (default: all but the reference), or a mapping op name -> impl names.
    configs: a list of configs for every op, a mapping op name -> configs, or None for ``grid``
             (default ``paper``).
    out_dir: the run directory (``rows.jsonl``, ``samples.jsonl``, ``env.json``).
    resume:  skip points that already have a row of this mode; without it, a timed sweep refuses a
             directory that holds timed rows (a profile sweep may repeat: ncu is re-run on the same RUN).
    on_row:  called with each row as it is written; ``on_plan`` with the number of points to run.
    settings: fields of :class:`Settings` (device, cache, budget_s, min_reps, max_reps, cv_target, profile,
             check, check_seqlen_cap, seed, baseline, peaks, use_graph, warmup_s, flush_bytes).
    """
    cfg = Settings(**settings)
    cfg.device = normalize_device(cfg.device or default_device())
    if cfg.device.startswith("cpu"):
        use_triton_interpreter()
    op_list = resolve_ops(ops)
    points = plan(op_list, impls, configs, grid=grid, baseline=cfg.baseline)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mode = "profile" if cfg.profile else "time"
    existing = read_jsonl(out / ROWS)
    _guard_existing(out, existing, mode, resume)
    done = finished_keys(existing) if resume else set()
    todo = [p for p in points if _key(p, cfg, mode) not in done]
    if on_plan:
        on_plan(len(todo))
    _env.write_environment(out, _env.environment(cfg.device, {**asdict(cfg), "mode": mode,
                                                             "peaks": dict(cfg.peaks or {})}))
    previous = {point_key(r): r for r in existing}
    previous_samples = load_samples(out) if resume else {}
    written: list[dict[str, Any]] = []
    states: dict[tuple, _ConfigState] = {}
    with AppendLog(out / ROWS) as rows_log, AppendLog(out / SAMPLES) as samples_log:
        for point in todo:
            key = (point.op.name, point.config_id)
            if key not in states:  # a new config: free the previous one's inputs first
                states.clear()
                _free(cfg.device)
                states[key] = _baseline_from_previous(point, cfg, mode, previous, previous_samples)
            row, samples = run_point(point, cfg, states[key])
            rows_log.write(row)
            if samples:  # 7 significant digits: a CUDA event reads float32 ms, ~0.5 µs resolution
                samples_log.write({**{k: row[k] for k in ("op", "impl", "config_id", "device", "cache", "mode")},
                                   "samples_ms": [float(f"{ms:.7g}") for ms in samples]})
            written.append(row)
            if on_row:
                on_row(row)
    _free(cfg.device)
    return written


def normalize_device(device: str) -> str:
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SweepError("--device cuda: no CUDA GPU is visible to torch")
        return f"cuda:{dev.index if dev.index is not None else torch.cuda.current_device()}"
    if dev.type != "cpu":
        raise SweepError(f"unsupported device {device!r} (cpu or cuda)")
    return "cpu"


def _key(point: Point, cfg: Settings, mode: str) -> tuple:
    return point_key({"op": point.op.name, "impl": point.impl, "config_id": point.config_id, "device": cfg.device,
                      "cache": None if mode == "profile" else cfg.cache, "mode": mode})


def _guard_existing(out: Path, rows: list[dict[str, Any]], mode: str, resume: bool) -> None:
    same = [r for r in rows if r.get("mode", "time") == mode]
    if same and not resume and mode == "time":
        raise SweepError(f"{out} already holds {len(same)} timed row(s): pass --resume to continue that run "
                         "(finished points are skipped) or choose a new --out")


def _baseline_from_previous(point: Point, cfg: Settings, mode: str, previous: Mapping[tuple, dict[str, Any]],
                            samples: Mapping[tuple, list[float]]) -> _ConfigState:
    """A resumed run's baseline time for this config, when the baseline was measured before the interruption."""
    state = _ConfigState()
    base = cfg.baseline or point.op.baseline
    key = point_key({"op": point.op.name, "impl": base, "config_id": point.config_id, "device": cfg.device,
                     "cache": cfg.cache, "mode": mode})
    row = previous.get(key)
    if row and row.get("device_ms"):
        state.baseline_ms, state.baseline_samples = row["device_ms"], samples.get(key)
    return state


def _free(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def run_point(point: Point, cfg: Settings, state: _ConfigState) -> tuple[dict[str, Any], list[float] | None]:
    """One point -> (row, per-repetition samples or None). Never raises except KeyboardInterrupt/SystemExit."""
    op, name = point.op, point.impl
    impl = op.impls[name]
    fields: dict[str, Any] = {
        "op": op.name, "impl": name, "impl_kind": impl.kind, "config_id": point.config_id,
        "params": point.shape.params() if point.shape else dict(point.config), "dtype": point.dtype,
        "device": cfg.device, "gpu": _env.gpu_name(cfg.device), "mode": "profile" if cfg.profile else "time",
        "cache": None if cfg.profile else cfg.cache, "seed": cfg.seed + point.index,
        "baseline": cfg.baseline or op.baseline, "status": "error", "message": "",
    }
    samples = None
    try:
        samples = _measure(point, cfg, state, impl, fields)
    except Exception as exc:  # every failure is a status with one line, never a traceback
        fields["status"], fields["message"] = classify(exc)
    if fields["status"] == "oom":  # outside the except block: its traceback no longer pins the tensors
        state.inputs = None
        _free(cfg.device)
    fields["timestamp"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return make_row(**fields), samples


def _measure(point: Point, cfg: Settings, state: _ConfigState, impl: Any, fields: dict[str, Any]) -> list[float] | None:
    op = point.op
    if point.invalid:
        raise ShapeError(point.invalid)
    ok, why = impl.availability(cfg.device)
    if not ok:
        raise Unavailable(why)
    reason = impl.unsupported_reason(point.shape, point.dtype)
    if reason:
        raise ShapeError(reason)
    notes = []
    if cfg.check:
        verdict = _check(point, cfg, fields)
        if verdict is not None:  # the check could not run the impl: that is the point's status
            fields["status"], fields["message"] = verdict
            return None
        if fields["check_status"] == "fail":
            notes.append(f"WRONG: rel err {fields['rel_err']:.3g} > tolerance {fields['tolerance']:.3g}")
        if fields.get("check_seqlen") is not None and fields["check_seqlen"] != point.shape.params().get("seqlen"):
            notes.append(f"checked at seqlen={fields['check_seqlen']}")
    cost = op.cost(point.shape, point.dtype)
    fields.update(metrics.cost_fields(cost, point.impl))
    if state.inputs is None:
        state.inputs = op.generate(point.shape, DTYPES[point.dtype], torch.device(cfg.device),
                                   torch.Generator().manual_seed(cfg.seed + point.index))
    fn = impl.load()
    fields["impl_detail"] = _describe(fn, state.inputs)
    call = functools.partial(fn, **state.inputs)
    status = "wrong" if fields.get("check_status") == "fail" else "ok"
    if cfg.profile:
        _profile(call, point, cfg)
        fields.update(status=status, message="; ".join(["profiled once under NVTX", *notes]))
        return None
    timing = time_callable(call, device=cfg.device, cache=cfg.cache, budget_s=cfg.budget_s, min_reps=cfg.min_reps,
                           max_reps=cfg.max_reps, cv_target=cfg.cv_target, warmup_s=cfg.warmup_s,
                           use_graph=cfg.use_graph, flush_bytes=cfg.flush_bytes)
    fields.update(timing.row_fields())
    fields.update(metrics.rates(cost, timing.median_ms, point.dtype, cfg.peaks))
    _speedup(point, cfg, state, timing, fields)
    if timing.note:
        notes.append(timing.note)
    fields.update(status=status, message="; ".join(notes))
    return timing.samples_ms


def _check(point: Point, cfg: Settings, fields: dict[str, Any]) -> tuple[str, str] | None:
    """Run the correctness check; fills check columns. Returns (status, message) when the impl did not run."""
    params = point.shape.params()
    config = {**params, "dtype": point.dtype}
    if "seqlen" in params:
        fields["check_seqlen"] = min(params["seqlen"], cfg.check_seqlen_cap)
        config["seqlen"] = fields["check_seqlen"]
    res = check_one(point.op, point.impl, config, device=cfg.device, seed=cfg.seed + point.index)
    fields.update(check_status=res.status, rel_err=res.rel_err, tolerance=res.tolerance)
    if res.status in ("pass", "fail"):
        return None
    status = {"unsupported": "unsupported", "unavailable": "unavailable", "oom": "oom"}.get(res.status, "error")
    return status, f"check: {res.message}" if res.message else "check failed to run"


def _profile(call: Callable[[], Any], point: Point, cfg: Settings) -> None:
    """Warm-up outside the ranges (autotune, allocator), then one call inside them, synchronized."""
    cuda = cfg.device.startswith("cuda")
    for _ in range(PROFILE_WARMUP_CALLS):
        call()
    if cuda:
        torch.cuda.synchronize(cfg.device)
    with nvtx_ranges(point.op, point.impl, point.config_id, enabled=cuda):
        call()
        if cuda:
            torch.cuda.synchronize(cfg.device)


def _speedup(point: Point, cfg: Settings, state: _ConfigState, timing: Timing, fields: dict[str, Any]) -> None:
    if point.impl == fields["baseline"]:
        state.baseline_ms, state.baseline_samples = timing.median_ms, timing.samples_ms
        fields["speedup_vs_baseline"] = 1.0
        return
    fields["speedup_vs_baseline"] = metrics.speedup(state.baseline_ms, timing.median_ms)
    if state.baseline_samples and len(state.baseline_samples) > 1 and timing.reps > 1:
        ci = bootstrap_speedup(state.baseline_samples, timing.samples_ms, seed=cfg.seed)
        fields["speedup_ci_low"], fields["speedup_ci_high"] = ci.low, ci.high


def _describe(fn: Callable[..., Any], inputs: Mapping[str, Any]) -> str | None:
    describe = getattr(fn, "describe", None)
    if describe is None:
        return None
    try:
        return str(describe(**inputs))
    except Exception as exc:  # a description must never cost the measurement
        return f"describe() failed: {type(exc).__name__}"


def classify(exc: BaseException) -> tuple[str, str]:
    """An exception -> (status, one-line message)."""
    text = str(exc).strip()
    line = first_line(exc)
    low = text.lower()
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in low \
            or "can't allocate memory" in low:
        return "oom", line or "out of memory"
    if isinstance(exc, ShapeError):
        return "unsupported", line
    if isinstance(exc, Unavailable):
        return "unavailable", line
    return "error", f"{type(exc).__name__}: {line}" if line else type(exc).__name__
