"""The paper's prefill-length schedule and the OOM frontier (the largest prefill that fits a memory budget)."""
from __future__ import annotations

from typing import Callable

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


def prefill_fits(model, seqlen: int, batch: int = 1) -> bool:
    """One prefill forward at ``seqlen`` on the model's GPU; False on CUDA out-of-memory."""
    import torch

    device = next(model.parameters()).device
    ids = torch.randint(0, model.config.vocab_size, (batch, seqlen), device=device)
    try:
        with torch.no_grad():
            model(ids, logits_to_keep=1)
        torch.cuda.synchronize(device)
        return True
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        del ids
        torch.cuda.empty_cache()


def cap_memory(budget_bytes: float, device: int = 0) -> float:
    """Emulate a smaller GPU (24 GiB for an RTX 4090, 8 GiB for an Orin Nano) by capping this process's
    share of the device's memory; returns the fraction set."""
    import torch

    total = torch.cuda.get_device_properties(device).total_memory
    fraction = min(1.0, budget_bytes / total)
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    return fraction
