"""The one timing function: :func:`time_callable` runs a prepared closure and returns :class:`Timing`.

GPU (``device="cuda"``):
  1. Warm-up outside the timed region: the first call (Triton autotuning, JIT, cuBLAS/cuDNN heuristics,
     allocator growth) and then synchronized calls for ``warmup_s``; their wall times give ``host_ms``.
  2. ``host_issue_ms``: CPU time to issue one call, from back-to-back calls without synchronization.
  3. Device time by CUDA-graph replay: the closure is captured once (``calls_per_sample`` calls in one graph
     when the cache is warm, one when cold) and each sample is a replay between two CUDA events. When capture
     fails (a host sync, a CPU-side branch on GPU values, an unsupported library call), the closure is launched
     eagerly between the events instead (``timer = "events"``, the reason in ``note``).
     Either way a batch of samples is queued behind a GPU spin (``torch.cuda._sleep``) that lasts longer than
     the host needs to queue the batch, so the timed launches run back-to-back and host gaps are not timed.
  4. Cold cache (default): before each sample a kernel *reads* a buffer of 2x the L2 size, outside the event
     pair, so nothing is subtracted; reading (not writing) leaves L2 holding clean lines, so the timed kernel
     is not charged for writing back the flush's dirty lines. Warm: samples repeat on the same inputs.
  5. Samples are taken in growing batches until the CV (std / mean) is at most ``cv_target`` with at least
     ``min_reps`` samples, ``max_reps`` is reached, or ``budget_s`` is spent (then at least 3 samples, even
     when that means fewer than ``min_reps``).
  6. NVML SM / memory clocks, temperature, power and throttle reasons right before and after the samples.

``launch_bound`` is ``host_issue_ms > device_ms``: the CPU needs longer to issue a call than the GPU needs to
run it, so eager back-to-back calls leave the GPU idle (a model running these calls eagerly is host-bound).

CPU (``device="cpu"``): ``time.perf_counter`` per sample (``calls_per_sample`` calls when one is under a
millisecond), a cold cache by reading a 64 MiB buffer between samples, the same statistics and stopping rule.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..kernels.op import first_line
from . import env as _env
from .stats import summarize

GRAPH_SAMPLE_MS = 0.5  # warm-cache samples hold enough calls for this much device time (amortizes replay)
MAX_CALLS_PER_SAMPLE = 64
MAX_QUEUED_CALLS = 256  # launches queued behind one spin: well under the driver's pending-launch queue
CPU_FLUSH_BYTES = 64 << 20
MIN_SAMPLES_ON_BUDGET = 3


@dataclass
class Timing:
    """Result of :func:`time_callable`. Times in milliseconds per call."""

    samples_ms: list[float]
    median_ms: float
    iqr_ms: float
    min_ms: float
    cv: float
    reps: int
    timer: str  # cuda_graph | events | host
    cache: str  # cold | warm
    calls_per_sample: int
    host_ms: float | None  # wall time of one synchronized call (median over the warm-up)
    host_issue_ms: float | None  # CPU time to issue one call without waiting for it (GPU only)
    launch_bound: bool | None  # host_issue_ms > median_ms (GPU only)
    flush: str | None = None  # how the cache was made cold
    flush_ms: float | None = None  # time of one flush (not part of the samples)
    note: str = ""
    warmup_calls: int = 0
    elapsed_s: float = 0.0
    clocks: dict[str, Any] = field(default_factory=dict)

    def row_fields(self) -> dict[str, Any]:
        """The bench row's timing columns."""
        return {"device_ms": self.median_ms, "device_ms_iqr": self.iqr_ms, "device_ms_min": self.min_ms,
                "device_ms_cv": self.cv, "reps": self.reps, "calls_per_sample": self.calls_per_sample,
                "host_ms": self.host_ms, "host_issue_ms": self.host_issue_ms, "timer": self.timer,
                "timer_note": self.note, "cache": self.cache, "flush_ms": self.flush_ms,
                "launch_bound": self.launch_bound, **self.clocks}


def time_callable(fn: Callable[[], Any], *, device: str | torch.device = "cuda", cache: str = "cold",
                  budget_s: float = 1.0, min_reps: int = 10, max_reps: int = 1000, cv_target: float = 0.02,
                  warmup_s: float = 0.05, use_graph: bool = True, flush_bytes: int | None = None) -> Timing:
    """Time ``fn()`` (a closure over inputs prepared beforehand) on ``device``; see the module docstring.

    cache: "cold" (L2 flushed before every sample) or "warm".
    budget_s: time for the samples (warm-up and capture come on top, about ``warmup_s`` plus a few calls).
    flush_bytes: size of the flush buffer (default 2x L2 on a GPU, 64 MiB on the CPU).
    """
    if cache not in ("cold", "warm"):
        raise ValueError(f"cache must be 'cold' or 'warm', got {cache!r}")
    if min_reps < 1 or max_reps < min_reps:
        raise ValueError(f"need 1 <= min_reps <= max_reps, got {min_reps}, {max_reps}")
    dev = torch.device(device)
    if dev.type == "cuda":
        return _time_cuda(fn, dev, cache, budget_s, min_reps, max_reps, cv_target, warmup_s, use_graph,
                          flush_bytes)
    if dev.type == "cpu":
        return _time_cpu(fn, cache, budget_s, min_reps, max_reps, cv_target, warmup_s, flush_bytes)
    raise ValueError(f"unsupported device {device!r} (cpu or cuda)")


# --------------------------------------------------------------------------------------------------
# Sampling loop (shared)
# --------------------------------------------------------------------------------------------------
def _sample_until_stable(run_batch: Callable[[int], list[float]], budget_s: float, min_reps: int, max_reps: int,
                         cv_target: float) -> list[float]:
    """Call ``run_batch(n)`` (returns n samples) with growing n until the stopping rule holds.

    The first batch is small (it measures what a sample costs); later ones double the count, within the
    budget that is left. ``min_reps`` yields to the budget once there are 3 samples.
    """
    samples: list[float] = []
    start = time.perf_counter()
    floor = min(MIN_SAMPLES_ON_BUDGET, min_reps)
    n = floor
    while True:
        t0 = time.perf_counter()
        samples += run_batch(n)
        per_sample_s = (time.perf_counter() - t0) / n
        spent = time.perf_counter() - start
        if len(samples) >= max_reps:
            break
        if len(samples) >= min_reps and summarize(samples).cv <= cv_target:
            break
        if spent >= budget_s and len(samples) >= floor:
            break
        room = int((budget_s - spent) / max(per_sample_s, 1e-9))
        n = max(1, min(max(len(samples), min_reps - len(samples)), room, max_reps - len(samples)))
    return samples[:max_reps]


def _timing(samples: list[float], **kw: Any) -> Timing:
    s = summarize(samples)
    return Timing(samples_ms=samples, median_ms=s.median, iqr_ms=s.iqr, min_ms=s.min, cv=s.cv, reps=s.n, **kw)


# --------------------------------------------------------------------------------------------------
# CPU
# --------------------------------------------------------------------------------------------------
def _time_cpu(fn: Callable[[], Any], cache: str, budget_s: float, min_reps: int, max_reps: int, cv_target: float,
              warmup_s: float, flush_bytes: int | None) -> Timing:
    started = time.perf_counter()
    walls, calls = [], 0
    while calls < 2 or (time.perf_counter() - started < warmup_s and calls < 100):
        t0 = time.perf_counter()
        fn()
        walls.append((time.perf_counter() - t0) * 1e3)
        calls += 1
    host_ms = summarize(walls[1:]).median
    flush_fn, flush_desc, flush_ms = None, None, None
    if cache == "cold":
        buf = torch.ones((flush_bytes or CPU_FLUSH_BYTES) // 4, dtype=torch.float32)
        flush_fn = buf.sum
        t0 = time.perf_counter()
        flush_fn()
        flush_ms = (time.perf_counter() - t0) * 1e3
        flush_desc = f"read {buf.numel() * 4} B between samples"
    k = 1 if cache == "cold" else max(1, min(MAX_CALLS_PER_SAMPLE, math.ceil(1.0 / max(host_ms, 1e-6))))

    def run_batch(n: int) -> list[float]:
        out = []
        for _ in range(n):
            if flush_fn is not None:
                flush_fn()
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            out.append((time.perf_counter() - t0) * 1e3 / k)
        return out

    samples = _sample_until_stable(run_batch, budget_s, min_reps, max_reps, cv_target)
    return _timing(samples, timer="host", cache=cache, calls_per_sample=k, host_ms=host_ms, host_issue_ms=None,
                   launch_bound=None, flush=flush_desc, flush_ms=flush_ms, warmup_calls=calls,
                   elapsed_s=time.perf_counter() - started)


# --------------------------------------------------------------------------------------------------
# CUDA
# --------------------------------------------------------------------------------------------------
_flush_buffers: dict[tuple[str, int], torch.Tensor] = {}


def l2_bytes(dev: torch.device) -> int:
    size = int(getattr(torch.cuda.get_device_properties(dev), "L2_cache_size", 0) or 0)
    return size if size > 0 else 64 << 20  # unknown: as large as any current L2


def flush_buffer(dev: torch.device, nbytes: int | None = None) -> torch.Tensor:
    """A float32 buffer of 2x L2 (at least 8 MiB) on ``dev``, allocated once and filled once."""
    nbytes = nbytes or max(2 * l2_bytes(dev), 8 << 20)
    key = (str(dev), nbytes)
    if key not in _flush_buffers:
        _flush_buffers.clear()  # one at a time: it is large
        _flush_buffers[key] = torch.ones(nbytes // 4, dtype=torch.float32, device=dev)
    return _flush_buffers[key]


def _clock_hz(dev: torch.device) -> float:
    """SM clock for turning a spin time into cycles (a high guess only lengthens the spin)."""
    mhz = _env.max_clocks(dev).get("max_sm_clock_mhz")
    if mhz:
        return float(mhz) * 1e6
    khz = getattr(torch.cuda.get_device_properties(dev), "clock_rate", 0) or 0
    return float(khz) * 1e3 if khz else 2.5e9


def _release_rng_from_capture(dev: torch.device) -> None:
    """After a failed capture the default CUDA generator still believes it is capturing (PyTorch runs the
    generator's capture epilogue only when capture_end succeeds), and every later random op on the device fails
    with 'Offset increment outside graph capture'. Give it a fresh state carrying the same seed and offset."""
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    gen = torch.cuda.default_generators[index]
    if not hasattr(gen, "graphsafe_set_state"):
        return
    fresh = torch.Generator(device=torch.device("cuda", index))
    fresh.set_state(gen.get_state())
    gen.graphsafe_set_state(fresh)


class _CudaRunner:
    """Holds what one timing needs on the GPU: the flush, the spin, the graph (or eager fallback)."""

    def __init__(self, fn: Callable[[], Any], dev: torch.device, cache: str, flush_bytes: int | None):
        self.fn, self.dev, self.cache = fn, dev, cache
        self.graph: torch.cuda.CUDAGraph | None = None
        self.calls = 1
        self.note = ""
        self.issue_ms = 0.0  # host time to queue one sample (set after the first batch)
        buf = flush_buffer(dev, flush_bytes) if cache == "cold" else None
        self.flush = buf.sum if buf is not None else None
        self.flush_desc = f"read {buf.numel() * 4} B before each sample" if buf is not None else None
        self.clock_hz = _clock_hz(dev)

    def capture(self, calls: int) -> bool:
        """Capture ``calls`` calls into one graph; False (with the reason in ``note``) when capture fails."""
        side = torch.cuda.Stream(self.dev)
        side.wait_stream(torch.cuda.current_stream(self.dev))
        with torch.cuda.stream(side):  # capture-time allocations and library handles, made off the graph
            self.fn()
        torch.cuda.current_stream(self.dev).wait_stream(side)
        torch.cuda.synchronize(self.dev)
        graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.current_stream(self.dev)
        try:
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                for _ in range(calls):
                    self.fn()  # results dropped inside the loop: the graph pool reuses their memory
            torch.cuda.synchronize(self.dev)
        except Exception as exc:  # capture is an optimization; the eager path measures the same work
            # torch.cuda.graph's __exit__ skips restoring the stream when capture_end raises: restore it here.
            torch.cuda.set_stream(stream)
            _release_rng_from_capture(self.dev)
            self.graph, self.calls = None, 1
            self.note = f"graph capture failed ({type(exc).__name__}: {first_line(exc, 200)}); timed eager launches"
            torch.cuda.synchronize(self.dev)
            return False
        self.graph, self.calls = graph, calls
        return True

    def run_once(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        else:
            for _ in range(self.calls):
                self.fn()

    def batch(self, n: int) -> list[float]:
        """n samples (ms per call), queued behind a spin so that they run back-to-back."""
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
        spin_ms = min(200.0, 1.5 * n * self.issue_ms + 0.05) if self.issue_ms else 1.0
        if hasattr(torch.cuda, "_sleep"):
            torch.cuda._sleep(int(spin_ms * 1e-3 * self.clock_hz))
        t0 = time.perf_counter()
        for start, end in events:
            if self.flush is not None:
                self.flush()
            start.record()
            self.run_once()
            end.record()
        self.issue_ms = (time.perf_counter() - t0) * 1e3 / n
        torch.cuda.synchronize(self.dev)
        return [start.elapsed_time(end) / self.calls for start, end in events]

    def flush_ms(self) -> float | None:
        if self.flush is None:
            return None
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        self.flush()
        start.record()
        for _ in range(5):
            self.flush()
        end.record()
        torch.cuda.synchronize(self.dev)
        return start.elapsed_time(end) / 5


def _time_cuda(fn: Callable[[], Any], dev: torch.device, cache: str, budget_s: float, min_reps: int, max_reps: int,
               cv_target: float, warmup_s: float, use_graph: bool, flush_bytes: int | None) -> Timing:
    started = time.perf_counter()
    with torch.cuda.device(dev):
        host_ms, warmup_calls = _warm_up(fn, dev, warmup_s, budget_s)
        issue_ms = _issue_time(fn, dev, host_ms, budget_s)
        runner = _CudaRunner(fn, dev, cache, flush_bytes)
        graphed = use_graph and runner.capture(1)
        if not use_graph:
            runner.note = "CUDA graphs off; timed eager launches"
        estimate = summarize(runner.batch(3)).median
        if cache == "warm" and estimate < GRAPH_SAMPLE_MS:
            calls = min(MAX_CALLS_PER_SAMPLE, math.ceil(GRAPH_SAMPLE_MS / max(estimate, 1e-4)))
            if graphed:
                runner.capture(calls)
            else:
                runner.calls = calls
        runner.batch(1)  # the new graph's first replay uploads it
        before = _env.gpu_state(dev)
        samples = _sample_until_stable(lambda n: _batched(runner, n), budget_s, min_reps, max_reps, cv_target)
        after = _env.gpu_state(dev)
        flush_ms = runner.flush_ms()
    median = summarize(samples).median
    return _timing(samples, timer="cuda_graph" if runner.graph is not None else "events", cache=cache,
                   calls_per_sample=runner.calls, host_ms=host_ms, host_issue_ms=issue_ms,
                   launch_bound=issue_ms > median, note=runner.note,
                   flush=runner.flush_desc,
                   flush_ms=flush_ms, warmup_calls=warmup_calls, elapsed_s=time.perf_counter() - started,
                   clocks=_env.clock_fields(before, after))


def _batched(runner: _CudaRunner, n: int) -> list[float]:
    """Split n samples into batches whose launches fit behind one spin."""
    per_batch = max(1, MAX_QUEUED_CALLS // (runner.calls if runner.graph is None else 2))
    out: list[float] = []
    while len(out) < n:
        out += runner.batch(min(per_batch, n - len(out)))
    return out


def _warm_up(fn: Callable[[], Any], dev: torch.device, warmup_s: float, budget_s: float) -> tuple[float, int]:
    """Synchronized calls: the first (autotune, JIT) untimed, then for ``warmup_s`` — at least 3, fewer only when
    they would take over a quarter of the budget, at most 100. Returns their median wall time and the count."""
    fn()
    torch.cuda.synchronize(dev)
    walls: list[float] = []
    started = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize(dev)
        walls.append((time.perf_counter() - t0) * 1e3)
        elapsed = time.perf_counter() - started
        if len(walls) >= 100 or (elapsed >= warmup_s and (len(walls) >= 3 or elapsed >= 0.25 * budget_s)):
            break
    return summarize(walls).median, len(walls) + 1


def _issue_time(fn: Callable[[], Any], dev: torch.device, host_ms: float, budget_s: float) -> float:
    """CPU time per call of m back-to-back unsynchronized calls, m <= 10 (median of 3 bursts, or 1 burst when
    calls are so long that 3 would take over a tenth of the budget: such calls are not launch-bound anyway)."""
    m = max(1, min(10, int(0.05 * budget_s * 1e3 / max(host_ms, 1e-3))))
    n_bursts = 3 if 3 * m * host_ms < 100 * budget_s else 1
    bursts = []
    for _ in range(n_bursts):
        torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        for _ in range(m):
            fn()
        bursts.append((time.perf_counter() - t0) * 1e3 / m)
    torch.cuda.synchronize(dev)
    return summarize(bursts).median


