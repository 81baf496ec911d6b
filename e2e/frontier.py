"""The paper's prefill-length schedule and the OOM frontier (the largest prefill that fits a memory budget)."""
from __future__ import annotations

import gc
from typing import Any, Callable

from ..kernels.op import first_line
from .build import Built

K = 1024


def paper_schedule(max_len: int = 220 * K) -> list[int]:
    """1K–8K doubling, then +8K steps to 64K, then +16K steps beyond (arXiv 2507.12442's sweep)."""
    lengths, n = [], K
    while n <= min(8 * K, max_len):
        lengths.append(n)
        n *= 2
    n = 16 * K
    while n <= min(64 * K, max_len):
        lengths.append(n)
        n += 8 * K
    n = 80 * K
    while n <= max_len:
        lengths.append(n)
        n += 16 * K
    return lengths


def parse_lengths(text: str) -> list[int]:
    """"1024,4096" -> [1024, 4096]; "paper" -> the paper's schedule; "paper:64K" -> that schedule up to 64K."""
    text = text.strip().lower()
    if text.startswith("paper"):
        _, _, cap = text.partition(":")
        return paper_schedule(parse_tokens(cap)) if cap else paper_schedule()
    lengths = [parse_tokens(part) for part in text.split(",") if part.strip()]
    if not lengths or min(lengths) < 1:
        raise ValueError(f"lengths must be positive integers (or 'paper'), got {text!r}")
    return lengths


def parse_tokens(text: str) -> int:
    """"4096" / "4K" (×1024) / "1M" (×1024²) -> tokens."""
    text = text.strip().lower()
    scale = {"k": K, "m": K * K}.get(text[-1:], 1)
    try:
        return int(float(text[:-1] if scale > 1 else text) * scale)
    except ValueError:
        raise ValueError(f"not a length: {text!r} (use e.g. 4096 or 4K)") from None


def largest_fitting(fits: Callable[[int], bool], start: int = K, limit: int = 1 << 20, step: int = 256) -> int:
    """The largest length ≤ ``limit`` (a multiple of ``step``) for which ``fits`` holds, assuming fitting is
    monotone: double from ``start`` until it fails, then bisect. 0 when even ``start`` does not fit."""
    if not fits(start):
        return 0
    good, bad = start, None
    while bad is None:
        nxt = min(good * 2, limit)
        if nxt == good:
            return good
        if fits(nxt):
            good = nxt
        else:
            bad = nxt
    while bad - good > step:
        mid = (good + bad) // 2 // step * step
        if mid <= good:
            break
        if fits(mid):
            good = mid
        else:
            bad = mid
    return good


def is_oom(exc: BaseException) -> bool:
    """CUDA out-of-memory, whether torch raised it as such or a library (cuBLAS, Triton) as a RuntimeError."""
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and ("out of memory" in str(exc).lower() or "ALLOC_FAILED" in str(exc)))


class KernelFault(RuntimeError):
    """A prefill died of a CUDA error that is not out-of-memory (an illegal address, a failed launch): the CUDA
    context is lost, so nothing more can run in this process."""


# How a lost CUDA context reads: torch ("CUDA error: an illegal memory access"), Triton's launcher
# ("Triton Error [CUDA]: ..."), cuBLAS / cuDNN ("CUBLAS_STATUS_EXECUTION_FAILED", "CUDNN_STATUS_EXECUTION_FAILED").
FAULT_MARKERS = ("CUDA error", "Triton Error [CUDA]", "EXECUTION_FAILED", "illegal memory access",
                 "unspecified launch failure")


def is_kernel_fault(exc: BaseException) -> bool:
    text = str(exc)
    return not is_oom(exc) and any(marker in text for marker in FAULT_MARKERS)


def prefill_fits(built: Built, seqlen: int, batch: int = 1, logits: str = "last") -> bool:
    """One prefill that fills the cache at ``seqlen`` on the model's GPU; False on out-of-memory, KernelFault
    on any other CUDA error."""
    import torch

    try:
        out = built.prefill(built.prompt(seqlen, batch), logits=logits)
        torch.cuda.synchronize()
        del out
        return True
    except Exception as exc:  # noqa: BLE001 - out-of-memory is an answer; a CUDA fault ends the search
        if is_kernel_fault(exc):
            raise KernelFault(f"prefill at {seqlen} tokens: {first_line(exc)}") from None
        if not is_oom(exc):
            raise
        return False
    finally:
        gc.collect()
        try:
            torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001 - after a fault the context is gone; the fault is reported above
            pass


def cap_memory(budget_bytes: float, device: int = 0) -> dict[str, Any]:
    """Emulate a smaller GPU (24 GiB for an RTX 4090, 8 GiB for an Orin Nano) by capping this process's share
    of the device's memory (torch.cuda.set_per_process_memory_fraction); returns the cap set."""
    import torch

    total = torch.cuda.get_device_properties(device).total_memory
    if budget_bytes <= 0:
        raise ValueError(f"memory budget must be positive, got {budget_bytes}")
    fraction = min(1.0, budget_bytes / total)
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    return {"memory_budget_B": budget_bytes, "device_total_B": total, "fraction": fraction}


def parse_bytes(text: str) -> float:
    """"24GiB" / "8GB" / "512MiB" / "1e9" -> bytes."""
    units = {"gib": 2**30, "gb": 1e9, "mib": 2**20, "mb": 1e6, "kib": 2**10, "kb": 1e3}
    low = text.strip().lower()
    for unit, scale in units.items():
        if low.endswith(unit):
            return float(low[: -len(unit)]) * scale
    try:
        return float(low)
    except ValueError:
        raise ValueError(f"not a memory size: {text!r} (use e.g. 24GiB)") from None


def find_frontier(built: Built, batch: int = 1, logits: str = "last", start: int = K, limit: int = 1 << 20,
                  step: int = 256, probe: Callable[..., bool] = prefill_fits) -> dict[str, Any]:
    """The largest prefill of ``built`` that fits (doubling, then bisection to ``step`` tokens), and the measured
    memory breakdown at that length: what dominates there (weights, cache, logits or activations).

    A CUDA fault (not an OOM) ends the search: the lengths already found to fit stand, ``stopped_by`` says
    which length faulted and why, and no memory breakdown is measured (the context is lost)."""
    from .memory import measure_memory

    tried: list[tuple[int, bool]] = []
    fault: list[str] = []

    def fits(n: int) -> bool:
        if fault:  # nothing runs after a fault: the bisection settles on the last length that fitted
            return False
        try:
            ok = probe(built, n, batch, logits)
        except KernelFault as exc:
            fault.append(str(exc))
            ok = False
        tried.append((n, ok))
        return ok

    n = largest_fitting(fits, start=start, limit=limit, step=step)
    row: dict[str, Any] = {"frontier_tokens": n, "batch": batch, "logits_mode": logits, "probes": tried,
                           "hit_limit": n == limit, "stopped_by": fault[0] if fault else None}
    if n and not fault:
        try:
            at = measure_memory(built, n, batch, logits)
            row.update(memory_at_frontier=at, dominant=at["dominant"])
        except Exception as exc:  # noqa: BLE001 - the frontier stands; only its breakdown is lost
            if not (is_oom(exc) or is_kernel_fault(exc)):
                raise
            row["memory_note"] = f"breakdown at the frontier failed: {first_line(exc)}"
    return row
