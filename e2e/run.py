"""Time generation end to end: TTFT, TPOT, throughput; peak memory; energy; one row per (model, length).

Both go through the backend's own generate (greedy, a fixed number of new tokens), the path users run: TTFT is
one call with one new token (prefill + first token), TPOT the extra time of ``gen_len`` tokens over that, divided
by ``gen_len − 1``. Each is the median of ``reps`` runs after a warm-up run (for mamba_ssm that warm-up also
captures its decode CUDA graph at the longest length, so no timed run recaptures it), synchronised on the GPU.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import torch

from .build import Built
from .profile import timed


def tpot_from(ttft_s: float, total_s: float, gen_len: int) -> float | None:
    """Time per output token from a 1-token and a gen_len-token generation of the same prompt; None when the
    longer one was not slower (a handful of decode steps lost in the prompt's timing noise) rather than a
    TPOT of 0."""
    return (total_s - ttft_s) / (gen_len - 1) if total_s > ttft_s else None


def measure_generation(built: Built, *, seqlen: int, gen_len: int = 256, batch: int = 1, reps: int = 3,
                       seed: int = 0, energy: bool = True) -> dict[str, Any]:
    """TTFT, TPOT (seconds), throughput and peak memory of ``built`` on a synthetic prompt [batch, seqlen]."""
    if gen_len < 2:
        raise ValueError("gen_len must be >= 2 to separate TPOT from TTFT")
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    device = built.device
    ids = built.prompt(seqlen, batch, seed)
    cuda = device.type == "cuda"
    built.generate(ids, gen_len)  # warm-up: kernels, autotuning, allocator growth, CUDA-graph capture
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    ttft = timed(lambda: built.generate(ids, 1), device, reps)
    total = timed(lambda: built.generate(ids, gen_len), device, reps)
    # The bare prefill forward (cache filled, last logits), without the generate loop around it: TTFT minus
    # this is what the framework adds (HF's generate setup, mamba_ssm's graph-cache bookkeeping).
    built.prefill(ids)  # its own warm-up: the first bare forward may still tune or allocate
    prefill = timed(lambda: built.prefill(ids), device, reps)
    tpot = tpot_from(ttft, total, gen_len)
    row: dict[str, Any] = {
        "seqlen": seqlen, "gen_len": gen_len, "batch": batch, "reps": reps, "ttft_s": ttft, "prefill_s": prefill,
        "tpot_s": tpot,
        "total_s": total, "decode_tokens_per_s": batch / tpot if tpot else None,
        "e2e_tokens_per_s": batch * gen_len / total if total else None,
        "prefill_tokens_per_s": batch * seqlen / ttft if ttft else None}
    if tpot is None:
        row["tpot_note"] = (f"{gen_len} tokens took no longer than 1 ({total * 1e3:.1f} vs {ttft * 1e3:.1f} ms): the "
                            "decode steps are below the timing noise; raise --gen or --reps")
    if cuda:
        peak = torch.cuda.max_memory_allocated(device)
        row.update(resident_B=base, peak_generate_B=peak, peak_reserved_B=torch.cuda.max_memory_reserved(device))
        if energy:
            work, calls = repeated_for(lambda: timed(lambda: built.generate(ids, gen_len), device, 1), ENERGY_MIN_S)
            found = measure_energy(work, device.index or 0)
            if found.get("energy_J") is not None:  # per generation: the window held calls[0] of them
                found.update(energy_window_J=found["energy_J"], energy_generations=calls[0],
                             energy_J=found["energy_J"] / calls[0])
                found["energy_per_token_J"] = found["energy_J"] / (batch * gen_len)
            row.update(found)
    return row


# NVML's energy counter advances in coarse steps: over one 0.15 s generation on the H100 it read 1.0 kW
# (the board's limit is 700 W). Energy is therefore read over at least this many seconds of repeats.
ENERGY_MIN_S = 1.0


def repeated_for(fn: Callable[[], Any], min_seconds: float) -> tuple[Callable[[], float], list[int]]:
    """A work function that calls ``fn`` until ``min_seconds`` have passed (at least once) and returns the
    seconds taken; the list holds how many calls the last run made."""
    calls = [0]

    def work() -> float:
        calls[0] = 0
        start = time.perf_counter()
        while True:
            fn()
            calls[0] += 1
            if time.perf_counter() - start >= min_seconds:
                return time.perf_counter() - start

    return work, calls


def measure_energy(work: Callable[[], float], gpu_index: int = 0) -> dict[str, Any]:
    """Energy (J) and average power (W) of one call of ``work`` (which returns its seconds) from NVML: the
    total-energy counter where the GPU has one (Volta and newer), else power sampled every 10 ms in a thread."""
    try:
        import pynvml
    except ImportError:
        return {"energy_note": "nvidia-ml-py not installed"}
    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(gpu_index)
        try:
            before = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # mJ since the driver loaded
        except pynvml.NVMLError:
            joules, seconds = _sampled_energy(pynvml, handle, work)
            source = "nvml power sampling (10 ms)"
        else:
            seconds = work()
            joules = (pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) - before) / 1e3
            source = "nvml total energy counter"
        result: dict[str, Any] = {"energy_J": joules, "energy_source": source}
        if seconds:
            result["avg_power_W"] = joules / seconds
        return result
    finally:
        pynvml.nvmlShutdown()


def _sampled_energy(pynvml, handle, work: Callable[[], float]) -> tuple[float, float]:
    """Left Riemann sum of power × interval over ~10 ms samples taken while ``work`` runs; (J, s)."""
    import threading

    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.perf_counter(), pynvml.nvmlDeviceGetPowerUsage(handle) / 1e3))  # mW -> W
            stop.wait(0.01)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        seconds = work()
    finally:
        stop.set()
        thread.join()
    samples.append((time.perf_counter(), samples[-1][1] if samples else 0.0))
    return sum((t1 - t0) * p0 for (t0, p0), (t1, _) in zip(samples, samples[1:])), seconds
