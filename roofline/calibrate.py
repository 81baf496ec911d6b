"""`ssmscope roofline calibrate`: measure the ceilings of the GPU at hand (in the spirit of the Empirical
Roofline Toolkit) and save them as a measured device profile beside the datasheet one.

Each benchmark is a small CUDA kernel compiled at run time with CuPy (``cupy`` is optional: without it the
command says how to install it), except the tensor peak, which is a ``torch.matmul``:

    dram_copy    float4 grid-stride copy of an array >= 16x L2 (bytes = read + write)
    dram_triad   a = b + s*c on float4 (bytes = 2 reads + 1 write)
    dram_torch   torch's device-to-device ``copy_`` (the reference point: 3022 GB/s on the H100 here)
    l2_read      repeated __ldcg (L1-bypassing) reads of a third of L2, rotating each pass
    smem_read    conflict-free 128-bit shared-memory loads (L1/shared bandwidth)
    fp32_fma     8 independent FMA chains per thread (FLOPs = 2 per FMA)
    sfu_exp      8 independent chains x <- __expf(-x) per thread, built with --use_fast_math so each exp
                 is one FMUL + one MUFU.EX2 (ex2.approx.ftz); the chains converge to the omega constant
    bf16_gemm    torch.matmul of two n x n bf16 matrices (n = 8192; FLOPs = 2 n^3)

Every kernel is checked for the right result (exact sums, the fixed point, a GEMM block against FP32), timed
with CUDA events after warm-up, and reported as the median of the repetitions (min and spread kept).

The analysis (statistics, checks, the profile file) is plain Python, tested on the CPU with synthetic
timings; only ``run_calibration`` needs the GPU.
"""
from __future__ import annotations

import datetime
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from .devices import Device, DeviceError, get_device, match_device, measured_dir

OMEGA = 0.5671432904097838  # x = exp(-x)


class CalibrationError(RuntimeError):
    """No GPU, no CuPy, or a benchmark that computed a wrong result (the message says which)."""


# --------------------------------------------------------------------------------------------------
# Analysis (pure)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Measurement:
    """One benchmark: ``value = work / median(times)`` in ``unit``; ``fraction`` of the datasheet spec."""

    name: str
    spec: str | None          # the device spec it measures (None: informational)
    value: float
    unit: str
    work: float               # bytes, FLOPs or exps per timed launch
    median_s: float
    min_s: float
    spread: float             # (p90 - p10) / median of the times
    reps: int
    datasheet: float | None
    check: str                # what was verified, and that it passed
    detail: str = ""
    sm_clock_MHz: float | None = None

    @property
    def fraction(self) -> float | None:
        return self.value / self.datasheet if self.datasheet else None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "spec": self.spec, "value": self.value, "unit": self.unit, "work": self.work,
                "median_s": self.median_s, "min_s": self.min_s, "spread": self.spread, "reps": self.reps,
                "datasheet": self.datasheet, "fraction": self.fraction, "check": self.check,
                "detail": self.detail, "sm_clock_MHz": self.sm_clock_MHz}


def time_stats(times_s: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, spread) of positive times; spread = (p90 - p10) / median."""
    times = sorted(float(t) for t in times_s)
    if not times or times[0] <= 0 or not all(math.isfinite(t) for t in times):
        raise CalibrationError(f"timings must be positive and finite, got {list(times_s)}")
    med = statistics.median(times)
    p10 = times[int(0.1 * (len(times) - 1))]
    p90 = times[math.ceil(0.9 * (len(times) - 1))]
    return med, times[0], (p90 - p10) / med


def summarize(name: str, spec: str | None, work: float, unit: str, times_s: Sequence[float],
              datasheet: float | None, check: str, detail: str = "", sm_clock_MHz: float | None = None) -> Measurement:
    med, best, spread = time_stats(times_s)
    return Measurement(name=name, spec=spec, value=work / med, unit=unit, work=work, median_s=med, min_s=best,
                       spread=spread, reps=len(times_s), datasheet=datasheet, check=check, detail=detail,
                       sm_clock_MHz=sm_clock_MHz)


def check_exact(got: float, expected: float, what: str) -> str:
    """Sums of small integers in FP32 are exact: any difference means the kernel skipped or repeated work."""
    if got != expected:
        raise CalibrationError(f"{what}: got {got!r}, expected exactly {expected!r}")
    return f"{what} exact ({expected:.6g})"


def check_fixed_point(values: Sequence[float], target: float, tol: float, what: str) -> str:
    worst = max(abs(float(v) - target) for v in values)
    if not worst <= tol:
        raise CalibrationError(f"{what}: values deviate from {target:.7f} by up to {worst:.3g} (> {tol:.1g})")
    return f"{what} within {worst:.1e} of {target:.6f}"


def check_relative(got: Any, ref: Any, tol: float, what: str) -> str:
    """‖got − ref‖ / ‖ref‖ <= tol (arrays of any kind with __sub__ and a norm via numpy)."""
    import numpy as np

    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    err = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
    if not err <= tol:
        raise CalibrationError(f"{what}: relative error {err:.3g} > {tol:.1g}")
    return f"{what} rel. err {err:.1e}"


def exp_fixed_point(start: float, iters: int) -> float:
    """The value the sfu_exp chains reach (float64 reference of x <- exp(-x))."""
    x = start
    for _ in range(iters):
        x = math.exp(-x)
    return x


MEASURED_SPECS = {  # measured profile key <- benchmark(s); the best of several is the ceiling
    "dram_bandwidth_B_per_s": ("dram_copy", "dram_triad"),
    "l2_bandwidth_B_per_s": ("l2_read",),
    "l1_bandwidth_B_per_s": ("smem_read",),
    "fp32_flop_per_s": ("fp32_fma",),
    "sfu_op_per_s": ("sfu_exp",),
    "tensor_bf16_f32acc_flop_per_s": ("bf16_gemm",),
}


def profile_from(measurements: Sequence[Measurement], base: Device, info: Mapping[str, Any],
                 profile_id: str | None = None) -> dict[str, Any]:
    """The measured profile (a YAML-able dict) that overrides ``base``'s specs with what was measured."""
    by_name = {m.name: m for m in measurements}
    specs: dict[str, dict[str, Any]] = {}
    for key, names in MEASURED_SPECS.items():
        found = [by_name[n] for n in names if n in by_name]
        if not found:
            continue
        best = max(found, key=lambda m: m.value)
        specs[key] = {"value": float(f"{best.value:.6g}"),
                      "source": f"measured: {best.name}, median of {best.reps} after warm-up "
                                f"({best.detail}; check: {best.check}; spread {best.spread:.1%})"}
    profile_id = profile_id or f"{base.id}@measured"
    return {"id": profile_id, "name": f"{base.name} (measured)", "base": base.id,
            "measured_on": dict(info), "specs": specs}


def write_profile(profile: Mapping[str, Any], out: str | Path | None = None) -> Path:
    """Write ``profile`` as ``<id>.yaml`` (in ``out`` if it is a folder, else measured_dir()); a file path
    must be named ``<base>@<tag>.yaml`` so that the profile loads by id."""
    out = Path(out) if out else measured_dir()
    if out.suffix in (".yaml", ".yml"):
        if "@" not in out.stem or out.stem.split("@")[0] != profile["base"]:
            raise CalibrationError(f"--out {out}: name it {profile['base']}@<tag>.yaml so it loads by id")
        profile = {**profile, "id": out.stem}
        path = out
    else:
        path = out / f"{profile['id']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ("# Measured by `ssmscope roofline calibrate`; loads as device id "
              f"{profile['id']!r} (specs not listed here come from {profile['base']}.yaml).\n")
    path.write_text(header + yaml.safe_dump(dict(profile), sort_keys=False, width=120))
    return path


# --------------------------------------------------------------------------------------------------
# The GPU side
# --------------------------------------------------------------------------------------------------
_KERNELS = r"""
extern "C" __global__ void copy_f4(const float4* __restrict__ src, float4* __restrict__ dst, long long n4) {
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += stride) dst[i] = src[i];
}

extern "C" __global__ void triad_f4(const float4* __restrict__ b, const float4* __restrict__ c,
                                    float4* __restrict__ a, float s, long long n4) {
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += stride) {
        float4 x = b[i], y = c[i];
        a[i] = make_float4(fmaf(s, y.x, x.x), fmaf(s, y.y, x.y), fmaf(s, y.z, x.z), fmaf(s, y.w, x.w));
    }
}

// The array is `rows` rows of one float4 per thread. Every pass reads each row once with __ldcg (cache global:
// L2 only, not L1), starting one row further each pass so that no load can be hoisted out of the pass loop.
// 32-bit indexing keeps the loop a handful of instructions per 512-byte warp load.
extern "C" __global__ void l2_read(const float4* __restrict__ src, float* __restrict__ out, int rows,
                                   int passes) {
    const int tid = blockIdx.x * blockDim.x + threadIdx.x;
    const int nthreads = gridDim.x * blockDim.x;
    float acc0 = 0.f, acc1 = 0.f;
    int row = 0;
    for (int p = 0; p < passes; ++p) {
        int r = row;
        for (int j = 0; j < rows; ++j) {
            float4 v = __ldcg(src + (r * nthreads + tid));
            acc0 += v.x + v.y;
            acc1 += v.z + v.w;
            if (++r == rows) r = 0;
        }
        if (++row == rows) row = 0;
    }
    out[tid] = acc0 + acc1;
}

// 128-bit loads of consecutive float4 per lane: conflict-free. Four loads per iteration at immediate offsets
// from a base that moves each iteration (so nothing can be hoisted out of the loop).
#define SMEM_F4 1024
extern "C" __global__ void smem_read(const float4* __restrict__ src, float* __restrict__ out, int iters) {
    __shared__ float4 buf[SMEM_F4];
    for (int i = threadIdx.x; i < SMEM_F4; i += blockDim.x) buf[i] = src[i];
    __syncthreads();
    float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;  // few registers: full occupancy
    int base = threadIdx.x & 31;
    for (int it = 0; it < iters; ++it) {
        float4 v0 = buf[base], v1 = buf[base + 32], v2 = buf[base + 64], v3 = buf[base + 96];
        a0 += (v0.x + v0.y) + (v0.z + v0.w);
        a1 += (v1.x + v1.y) + (v1.z + v1.w);
        a2 += (v2.x + v2.y) + (v2.z + v2.w);
        a3 += (v3.x + v3.y) + (v3.z + v3.w);
        base += 128;
        if (base >= SMEM_F4) base -= SMEM_F4;
    }
    out[(long long)blockIdx.x * blockDim.x + threadIdx.x] = (a0 + a1) + (a2 + a3);
}

// 8 independent chains a_k <- a_k * b + c; b and c are run-time arguments, so nothing folds.
extern "C" __global__ void fma_chains(float* __restrict__ out, float b, float c, int iters) {
    float a0 = 0.f, a1 = 1.f, a2 = 2.f, a3 = 3.f, a4 = 4.f, a5 = 5.f, a6 = 6.f, a7 = 7.f;
    #pragma unroll 16
    for (int i = 0; i < iters; ++i) {
        a0 = fmaf(a0, b, c); a1 = fmaf(a1, b, c); a2 = fmaf(a2, b, c); a3 = fmaf(a3, b, c);
        a4 = fmaf(a4, b, c); a5 = fmaf(a5, b, c); a6 = fmaf(a6, b, c); a7 = fmaf(a7, b, c);
    }
    out[(long long)blockIdx.x * blockDim.x + threadIdx.x] = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
}
"""

_SFU_KERNEL = r"""
// 8 independent chains x <- exp(-x); __expf under --use_fast_math is FMUL + MUFU.EX2 (ex2.approx.ftz).
extern "C" __global__ void sfu_exp(float* __restrict__ out, float start, int iters) {
    float x0 = start, x1 = start, x2 = start, x3 = start, x4 = start, x5 = start, x6 = start, x7 = start;
    #pragma unroll 8
    for (int i = 0; i < iters; ++i) {
        x0 = __expf(-x0); x1 = __expf(-x1); x2 = __expf(-x2); x3 = __expf(-x3);
        x4 = __expf(-x4); x5 = __expf(-x5); x6 = __expf(-x6); x7 = __expf(-x7);
    }
    long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    out[8 * t + 0] = x0; out[8 * t + 1] = x1; out[8 * t + 2] = x2; out[8 * t + 3] = x3;
    out[8 * t + 4] = x4; out[8 * t + 5] = x5; out[8 * t + 6] = x6; out[8 * t + 7] = x7;
}
"""

THREADS = 256


@dataclass
class _Gpu:
    """The device under test, and the handles the benchmarks share."""

    cp: Any
    name: str
    sm_count: int
    max_clock_Hz: float
    l2_bytes: int
    free_bytes: int
    datasheet: Device
    blocks_per_sm: int = 8       # 256-thread blocks per SM the thread limit allows
    regs_per_sm: int = 65536
    smem_per_sm: int = 100 * 1024
    module: Any = None
    sfu_module: Any = None
    nvml: Any = None
    reps: int = 20
    warmup: int = 3
    last_clock_MHz: float | None = None

    def time(self, launch: Callable[[], None]) -> list[float]:
        """CUDA-event times (s) of ``reps`` launches after ``warmup`` ones, on the current stream. The SM clock
        is read (NVML) while the middle repetition runs, i.e. under load."""
        cp = self.cp
        for _ in range(self.warmup):
            launch()
        cp.cuda.Device().synchronize()
        times = []
        self.last_clock_MHz = None
        for rep in range(self.reps):
            start, end = cp.cuda.Event(), cp.cuda.Event()
            start.record()
            launch()
            end.record()
            if rep == self.reps // 2:
                self.last_clock_MHz = self.sm_clock_MHz()
            end.synchronize()
            times.append(cp.cuda.get_elapsed_time(start, end) * 1e-3)
        return times

    def sm_clock_MHz(self) -> float | None:
        if self.nvml is None:
            return None
        try:
            pynvml, handle = self.nvml
            return float(pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM))
        except Exception:  # clocks are context, never a reason to fail
            return None

    def full_wave(self, kernel: Any = None) -> int:
        """Blocks of THREADS that are resident at once: one full wave, no tail, for kernels whose blocks all
        do the same work. Limited by threads, registers (allocated per warp in units of 256) and shared
        memory; the kernel's own attributes when CuPy exposes them."""
        per_sm = self.blocks_per_sm
        try:
            regs, smem = int(kernel.num_regs), int(kernel.shared_size_bytes)
        except Exception:  # no kernel or an older CuPy: the thread limit alone
            return self.sm_count * per_sm
        regs_per_warp = math.ceil(max(regs, 1) * 32 / 256) * 256
        per_sm = min(per_sm, self.regs_per_sm // (regs_per_warp * (THREADS // 32)))
        if smem:
            per_sm = min(per_sm, self.smem_per_sm // (smem + 1024))  # 1 KB per block is reserved on sm_80+
        return self.sm_count * max(1, per_sm)

    def grid(self, n_items: int, per_sm: int = 32) -> int:
        return max(1, min(math.ceil(n_items / THREADS), self.sm_count * per_sm))

    def scaled(self, launch_with: Callable[[int], Callable[[], None]], start: int, target_s: float) -> int:
        """A repetition count for which one launch takes about ``target_s`` (at least ``start``)."""
        cp = self.cp
        n = start
        for _ in range(6):
            launch = launch_with(n)
            launch()
            cp.cuda.Device().synchronize()
            t = statistics.median(self.time_once(launch) for _ in range(3))
            if t >= 0.5 * target_s:
                break
            n = int(n * min(64.0, max(2.0, target_s / max(t, 1e-6))))
        return n

    def time_once(self, launch: Callable[[], None]) -> float:
        cp = self.cp
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        launch()
        end.record()
        end.synchronize()
        return cp.cuda.get_elapsed_time(start, end) * 1e-3


def _require_gpu(device_id: str | None) -> _Gpu:
    try:
        import cupy as cp
    except ImportError:
        raise CalibrationError("calibrate needs CuPy: pip install cupy-cuda12x (CUDA 12) or cupy-cuda13x "
                               "(CUDA 13), or `pip install -e '.[gpu]'`") from None
    try:
        n = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver / no device
        raise CalibrationError(f"no CUDA GPU visible to CuPy ({exc})") from None
    if n < 1:
        raise CalibrationError("no CUDA GPU visible to CuPy")
    dev = cp.cuda.Device().id
    props = cp.cuda.runtime.getDeviceProperties(dev)

    def prop(key: str, attr: int) -> int | None:
        # CUDA 13 dropped some cudaDeviceProp fields (clockRate); the attribute query still answers
        if key in props:
            return int(props[key])
        try:
            return int(cp.cuda.runtime.deviceGetAttribute(attr, dev))
        except Exception:
            return None

    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    sm_count = prop("multiProcessorCount", 16)
    clock_kHz = prop("clockRate", 13)
    datasheet = get_device(device_id) if device_id else match_device(
        name, sm_count, clock_kHz * 1e3 if clock_kHz else None)
    if datasheet.kind != "datasheet":
        raise DeviceError(f"calibrate refines a datasheet device; {datasheet.id} is {datasheet.kind}")
    free, _total = cp.cuda.runtime.memGetInfo()
    gpu = _Gpu(cp=cp, name=name, sm_count=sm_count,
               max_clock_Hz=clock_kHz * 1e3 if clock_kHz else datasheet.boost_clock_Hz,
               l2_bytes=prop("l2CacheSize", 38) or int(datasheet.l2_size_B or 0),
               free_bytes=int(free), datasheet=datasheet,
               blocks_per_sm=max(1, (prop("maxThreadsPerMultiProcessor", 39) or 2048) // THREADS),
               regs_per_sm=prop("regsPerMultiprocessor", 82) or 65536,
               smem_per_sm=prop("sharedMemPerMultiprocessor", 81) or 100 * 1024)
    if gpu.l2_bytes <= 0:
        raise CalibrationError("cannot read the L2 size of this GPU")
    gpu.module = cp.RawModule(code=_KERNELS, options=("-std=c++14",))
    gpu.sfu_module = cp.RawModule(code=_SFU_KERNEL, options=("-std=c++14", "--use_fast_math"))
    try:
        import pynvml

        pynvml.nvmlInit()
        try:  # NVML and CUDA may number GPUs differently (CUDA_VISIBLE_DEVICES): go by PCI bus id
            handle = pynvml.nvmlDeviceGetHandleByPciBusId(cp.cuda.Device().pci_bus_id.encode())
        except Exception:
            handle = pynvml.nvmlDeviceGetHandleByIndex(dev)
        gpu.nvml = (pynvml, handle)
    except Exception:  # NVML is optional context
        gpu.nvml = None
    return gpu


def _spin_up(gpu: _Gpu, seconds: float = 0.3) -> None:
    """Run FMA chains for a while so that the clocks have left idle before the first timed benchmark."""
    cp = gpu.cp
    kernel = gpu.module.get_function("fma_chains")
    blocks = gpu.full_wave(kernel)
    out = cp.zeros(blocks * THREADS, dtype=cp.float32)
    launch = lambda: kernel((blocks,), (THREADS,), (out, cp.float32(1.0), cp.float32(1.0), cp.int32(4096)))  # noqa: E731
    launch()
    cp.cuda.Device().synchronize()
    t = max(gpu.time_once(launch), 1e-5)
    for _ in range(min(int(seconds / t), 20000)):
        launch()
    cp.cuda.Device().synchronize()


def _dram_elems(gpu: _Gpu, arrays: int) -> int:
    """float32 elements per array: >= 16x L2 (>= 256 MiB, <= 1 GiB), all arrays within half the free memory."""
    per_array = min(max(16 * gpu.l2_bytes, 256 << 20), 1 << 30, gpu.free_bytes // (2 * arrays))
    return (per_array // 16) * 4  # a whole number of float4


def bench_dram(gpu: _Gpu) -> list[Measurement]:
    cp = gpu.cp
    n = _dram_elems(gpu, 3)
    n4 = n // 4
    rng = cp.random.RandomState(1)
    b = rng.random_sample(n, dtype=cp.float32)
    c = rng.random_sample(n, dtype=cp.float32)
    a = cp.empty_like(b)
    copy, triad = gpu.module.get_function("copy_f4"), gpu.module.get_function("triad_f4")
    grid = gpu.grid(n4)
    mib = n * 4 / 2**20
    out = []

    times = gpu.time(lambda: copy((grid,), (THREADS,), (b, a, cp.int64(n4))))
    ok = check_exact(float(cp.count_nonzero(a != b)), 0.0, "copy: mismatching elements")
    out.append(summarize("dram_copy", "dram_bandwidth_B_per_s", 2.0 * n * 4, "B/s", times,
                         gpu.datasheet.dram_bandwidth_B_per_s, ok, f"{mib:.0f} MiB per array, read+write",
                         gpu.last_clock_MHz))

    s = cp.float32(0.5)
    times = gpu.time(lambda: triad((grid,), (THREADS,), (b, c, a, s, cp.int64(n4))))
    step = slice(None, None, max(1, n // 1_000_000))  # b + s*c rounds twice, fmaf once: compare to ~1 ulp
    ok = check_relative(cp.asnumpy(a[step]), cp.asnumpy(b[step] + s * c[step]), 1e-6, "triad")
    out.append(summarize("dram_triad", "dram_bandwidth_B_per_s", 3.0 * n * 4, "B/s", times,
                         gpu.datasheet.dram_bandwidth_B_per_s, ok, f"{mib:.0f} MiB per array, 2 reads + 1 write",
                         gpu.last_clock_MHz))
    a = b = c = None  # release the arrays before handing their memory back
    cp.get_default_memory_pool().free_all_blocks()
    return out


def _torch_times(gpu: _Gpu, launch: Callable[[], Any]) -> list[float]:
    """Like _Gpu.time, with torch's events on torch's current stream (warm-up included)."""
    import torch

    for _ in range(gpu.warmup):
        launch()
    torch.cuda.synchronize()
    times = []
    gpu.last_clock_MHz = None
    for rep in range(gpu.reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        launch()
        end.record()
        if rep == gpu.reps // 2:
            gpu.last_clock_MHz = gpu.sm_clock_MHz()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e-3)
    return times


def bench_dram_torch(gpu: _Gpu) -> Measurement:
    """torch's device-to-device copy, timed with torch's events: the reference number (informational)."""
    import torch

    n = _dram_elems(gpu, 2)
    src = torch.rand(n, device="cuda")
    dst = torch.empty_like(src)
    times = _torch_times(gpu, lambda: dst.copy_(src))
    ok = check_exact(float((dst != src).sum().item()), 0.0, "torch copy: mismatching elements")
    m = summarize("dram_torch", None, 2.0 * n * 4, "B/s", times, gpu.datasheet.dram_bandwidth_B_per_s, ok,
                  f"torch Tensor.copy_, {n * 4 / 2**20:.0f} MiB, read+write", gpu.last_clock_MHz)
    src = dst = None  # release the tensors before emptying torch's cache
    torch.cuda.empty_cache()
    return m


def bench_l2(gpu: _Gpu) -> Measurement:
    cp = gpu.cp
    kernel = gpu.module.get_function("l2_read")
    target = max(gpu.l2_bytes // 3 // 16, 4 * THREADS)  # float4 in a third of L2
    grid = max(1, min(gpu.full_wave(kernel), target // (4 * THREADS)))  # >= 4 rows, so passes rotate
    nthreads = grid * THREADS
    rows = max(4, target // nthreads)
    n4 = rows * nthreads
    src = (cp.arange(4 * n4, dtype=cp.int64) % 4).astype(cp.float32)  # small integers: the sums are exact
    out = cp.zeros(nthreads, dtype=cp.float32)
    max_passes = (1 << 24) // (6 * rows)  # each FP32 accumulator gains <= 6 per row: exact below 2**24

    def launch_with(passes: int):
        return lambda: kernel((grid,), (THREADS,), (src, out, cp.int32(rows), cp.int32(min(passes, max_passes))))

    passes = min(gpu.scaled(launch_with, 8, target_s=5e-3), max_passes)
    times = gpu.time(launch_with(passes))
    ok = check_exact(float(out.astype(cp.float64).sum()), float(src.astype(cp.float64).sum()) * passes,
                     "l2 read: sum over all passes")
    return summarize("l2_read", "l2_bandwidth_B_per_s", 16.0 * n4 * passes, "B/s", times,
                     gpu.datasheet.l2_bandwidth_B_per_s, ok,
                     f"{16 * n4 / 2**20:.1f} MiB working set (L2 {gpu.l2_bytes / 2**20:.0f} MiB), {passes} passes",
                     gpu.last_clock_MHz)


def bench_smem(gpu: _Gpu) -> Measurement:
    cp = gpu.cp
    src = cp.ones(4 * 1024, dtype=cp.float32)
    kernel = gpu.module.get_function("smem_read")
    blocks = gpu.full_wave(kernel)
    out = cp.zeros(blocks * THREADS, dtype=cp.float32)
    max_iters = (1 << 24) // 16  # each thread sums 16 ones per iteration: exact below 2**24

    def launch_with(iters: int):
        return lambda: kernel((blocks,), (THREADS,), (src, out, cp.int32(min(iters, max_iters))))

    iters = min(gpu.scaled(launch_with, 256, target_s=5e-3), max_iters)
    times = gpu.time(launch_with(iters))
    ok = check_exact(float(out.astype(cp.float64).sum()), 16.0 * iters * blocks * THREADS, "smem read: sum")
    return summarize("smem_read", "l1_bandwidth_B_per_s", 64.0 * iters * blocks * THREADS, "B/s", times,
                     gpu.datasheet.l1_bandwidth_B_per_s, ok, f"{blocks} blocks x {THREADS} threads, {iters} iters",
                     gpu.last_clock_MHz)


def bench_fp32(gpu: _Gpu) -> Measurement:
    cp = gpu.cp
    kernel = gpu.module.get_function("fma_chains")
    blocks = gpu.full_wave(kernel)
    out = cp.zeros(blocks * THREADS, dtype=cp.float32)

    def clamp(iters: int) -> int:
        # a multiple of the unroll; the per-thread sum 28 + 8 * iters stays an exact FP32 integer (< 2**24)
        return min(16 * max(1, iters // 16), 1 << 20)

    def launch_with(iters: int):
        return lambda: kernel((blocks,), (THREADS,), (out, cp.float32(1.0), cp.float32(1.0), cp.int32(clamp(iters))))

    iters = clamp(gpu.scaled(launch_with, 1024, target_s=5e-3))
    times = gpu.time(launch_with(iters))
    per_thread = sum(k + iters for k in range(8))
    ok = check_exact(float(out.astype(cp.float64).sum()), float(per_thread) * blocks * THREADS, "fma chains: sum")
    return summarize("fp32_fma", "fp32_flop_per_s", 2.0 * 8 * iters * blocks * THREADS, "FLOP/s", times,
                     gpu.datasheet.fp32_flop_per_s, ok, f"8 chains x {iters} FMAs per thread, {blocks} blocks",
                     gpu.last_clock_MHz)


def bench_sfu(gpu: _Gpu) -> Measurement:
    cp = gpu.cp
    kernel = gpu.sfu_module.get_function("sfu_exp")
    blocks = gpu.full_wave(kernel)
    out = cp.zeros(8 * blocks * THREADS, dtype=cp.float32)

    def launch_with(iters: int):
        iters = 8 * max(1, iters // 8)
        return lambda: kernel((blocks,), (THREADS,), (out, cp.float32(0.25), cp.int32(iters)))

    iters = 8 * max(1, gpu.scaled(launch_with, 512, target_s=5e-3) // 8)
    times = gpu.time(launch_with(iters))
    ok = check_fixed_point(cp.asnumpy(out[:: max(1, out.size // 100_000)]), exp_fixed_point(0.25, min(iters, 200)),
                           1e-4, "exp chains: fixed point")
    m = summarize("sfu_exp", "sfu_op_per_s", 8.0 * iters * blocks * THREADS, "exp/s", times,
                  gpu.datasheet.sfu_op_per_s, ok, f"__expf (FMUL + MUFU.EX2), 8 chains x {iters} per thread",
                  gpu.last_clock_MHz)
    clock = (m.sm_clock_MHz or 0) * 1e6 or gpu.max_clock_Hz
    per_clk = m.value / (gpu.sm_count * clock)
    detail = m.detail + f"; {per_clk:.1f} results/clk/SM at {clock / 1e6:.0f} MHz"
    return Measurement(**{**m.__dict__, "detail": detail})


def bench_gemm(gpu: _Gpu, n: int = 8192) -> Measurement:
    import torch

    gen = torch.Generator(device="cuda").manual_seed(3)
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16, generator=gen)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16, generator=gen)
    c = torch.empty(n, n, device="cuda", dtype=torch.bfloat16)
    times = _torch_times(gpu, lambda: torch.matmul(a, b, out=c))
    ref = a[:128].float() @ b[:, :128].float()
    ok = check_relative(c[:128, :128].float().cpu().numpy(), ref.cpu().numpy(), 2e-2, "gemm 128x128 block vs FP32")
    m = summarize("bf16_gemm", "tensor_bf16_f32acc_flop_per_s", 2.0 * n**3, "FLOP/s", times,
                  gpu.datasheet.tensor_bf16_f32acc_flop_per_s, ok, f"torch.matmul bf16 {n}^3", gpu.last_clock_MHz)
    a = b = c = None  # release the tensors before emptying torch's cache
    torch.cuda.empty_cache()
    return m


BENCHMARKS: dict[str, Callable[[_Gpu], Any]] = {
    "dram": bench_dram, "dram_torch": bench_dram_torch, "l2": bench_l2, "smem": bench_smem, "fp32": bench_fp32,
    "sfu": bench_sfu, "gemm": bench_gemm,
}


@dataclass
class Calibration:
    device: Device
    gpu_name: str
    measurements: list[Measurement]
    info: dict[str, Any]
    errors: dict[str, str]


def run_calibration(device_id: str | None = None, *, only: Sequence[str] | None = None, reps: int = 20,
                    gemm_n: int = 8192, progress: Callable[[str], None] | None = None) -> Calibration:
    """Run the benchmarks on GPU 0 (CuPy's current device). A benchmark that fails (wrong result, out of
    memory) is recorded in ``errors`` and the others still run."""
    gpu = _require_gpu(device_id)
    gpu.reps = max(3, reps)
    _spin_up(gpu)
    measurements: list[Measurement] = []
    errors: dict[str, str] = {}
    for name in only or BENCHMARKS:
        if name not in BENCHMARKS:
            raise CalibrationError(f"unknown benchmark {name!r}; benchmarks are {', '.join(BENCHMARKS)}")
        if progress:
            progress(name)
        try:
            result = bench_gemm(gpu, gemm_n) if name == "gemm" else BENCHMARKS[name](gpu)
        except CalibrationError as exc:
            errors[name] = str(exc)
            continue
        except Exception as exc:  # out of memory, a compile error: report it, keep the other benchmarks
            errors[name] = f"{type(exc).__name__}: {exc}"
            continue
        measurements.extend(result if isinstance(result, list) else [result])
    info = {"gpu": gpu.name, "sm_count": gpu.sm_count, "max_sm_clock_MHz": gpu.max_clock_Hz / 1e6,
            "l2_bytes": gpu.l2_bytes, "date": datetime.date.today().isoformat(), "cupy": gpu.cp.__version__,
            "reps": gpu.reps}
    try:
        import torch

        info["torch"] = str(torch.__version__)
    except ImportError:
        pass
    return Calibration(device=gpu.datasheet, gpu_name=gpu.name, measurements=measurements, info=info,
                       errors=errors)
