"""Time generation end to end: TTFT (prefill + first token), TPOT (per decoded token), throughput, peak memory.

Both go through ``model.generate`` (greedy, a fixed number of new tokens), the path users run: TTFT is one
call with one new token, TPOT the extra time of ``gen_len`` tokens over that, divided by ``gen_len − 1``.
Each is the median of ``reps`` runs after a warm-up run, synchronised on the GPU.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

import torch


def _generate_seconds(model, ids: torch.Tensor, new_tokens: int) -> float:
    sync = torch.cuda.synchronize if ids.is_cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    with torch.no_grad():
        model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                       pad_token_id=0)
    sync()
    return time.perf_counter() - start


def measure_generation(model, *, seqlen: int, gen_len: int = 256, batch: int = 1, reps: int = 3,
                       seed: int = 0) -> dict[str, Any]:
    """TTFT, TPOT (seconds), decode tokens/s and peak memory of ``model`` on a synthetic prompt."""
    if gen_len < 2:
        raise ValueError("gen_len must be >= 2 to separate TPOT from TTFT")
    device = next(model.parameters()).device
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, seqlen), generator=gen).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _generate_seconds(model, ids, 2)  # warm-up: kernels, autotuning, allocator growth
    ttft = statistics.median(_generate_seconds(model, ids, 1) for _ in range(reps))
    total = statistics.median(_generate_seconds(model, ids, gen_len) for _ in range(reps))
    tpot = max(total - ttft, 0.0) / (gen_len - 1)
    row = {"seqlen": seqlen, "gen_len": gen_len, "batch": batch, "reps": reps, "ttft_s": ttft, "tpot_s": tpot,
           "total_s": total, "decode_tokens_per_s": batch / tpot if tpot else None,
           "e2e_tokens_per_s": batch * gen_len / total if total else None}
    if device.type == "cuda":
        row["peak_allocated_B"] = torch.cuda.max_memory_allocated(device)
        row["peak_reserved_B"] = torch.cuda.max_memory_reserved(device)
        row.update(measure_energy(lambda: _generate_seconds(model, ids, gen_len), device.index or 0))
    return row


def measure_energy(work, gpu_index: int = 0) -> dict[str, Any]:
    """Energy (J) and average power (W) of one call of ``work`` from NVML: the total-energy counter where the
    GPU has one (Volta and newer), else power sampled every 10 ms; {} with a reason when NVML is missing."""
    try:
        import pynvml
    except ImportError:
        return {"energy_note": "nvidia-ml-py not installed"}
    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(gpu_index)
        try:
            before = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # mJ
            seconds = work()
            joules = (pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) - before) / 1e3
            source = "nvml total energy counter"
        except pynvml.NVMLError:
            joules, seconds, source = _sampled_energy(pynvml, handle, work), None, "nvml power sampling (10 ms)"
        result = {"energy_J": joules, "energy_source": source}
        if seconds:
            result["avg_power_W"] = joules / seconds
        return result
    finally:
        pynvml.nvmlShutdown()


def _sampled_energy(pynvml, handle, work) -> float:
    import threading

    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append((time.perf_counter(), pynvml.nvmlDeviceGetPowerUsage(handle) / 1e3))
            stop.wait(0.01)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    work()
    stop.set()
    thread.join()
    return sum((t1 - t0) * p0 for (t0, p0), (t1, _) in zip(samples, samples[1:]))
