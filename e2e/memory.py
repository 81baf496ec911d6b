"""Memory of a model at a prompt length: the analytic parts the configuration forces, and a measured breakdown.

Definitions (bytes; B batch, L prompt length, e bytes per element):

* weights      parameters × e (tied embeddings once).
* kv_cache     Σ over layers that own a KV cache of B·L·kv_heads·(d_k + d_v)·e. Hymba: its 17 KV-producing layers;
               its sliding-window layers keep min(L, window) tokens; its 128 meta tokens are cached too.
* ssm_state    Σ over Mamba layers of B·E·N (Mamba-1) or B·H·P·N (Mamba-2). transformers keeps it in fp32;
               mamba_ssm in the model dtype.
* conv_state   Σ over Mamba layers of B·C·K (C conv channels: E, or E + 2·G·N for Mamba-2; K = d_conv), model dtype.
* logits       B·L·V (a plain forward over the prompt: every position) or B·V (generation: transformers passes
               logits_to_keep=1). transformers' Mamba / Mamba-2 classes return fp32 logits, the others the
               model dtype. Full-vocabulary logits at long prompts can exceed weights and cache together.
* activations  measured only: the peak of the prefill minus what stays allocated after it (weights, cache,
               logits): the transient working memory of the forward pass.
* allocator overhead  measured only: peak reserved − peak allocated (the caching allocator's slack).
* workspace    measured only: what stays allocated after a first short forward beyond the weights — cuBLAS's
               workspace (32 MiB on Hopper, taken from the caching allocator at the first GEMM) and the like.
               Without the warm-up forward it would land in the cache (found on the H100: 33.85 MB "cache"
               for a 0.30 MB state).

:func:`measure_memory` measures the same parts around one prefill (``torch.cuda.max_memory_allocated`` and
``memory_allocated`` before and after); on a CPU it sums the tensors themselves and leaves the allocator parts out.
"""
from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any

import torch

from .build import Built, cache_tensors, weight_bytes
from .models import ModelSpec

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


@dataclass(frozen=True)
class MemoryParts:
    weights: int
    kv_cache: int
    ssm_state: int
    conv_state: int
    logits_all: int   # logits for every prompt position (what a plain forward materializes)
    logits_last: int  # logits for the last position only (what generation needs)

    @property
    def cache(self) -> int:
        """Everything generation keeps between steps: KV cache + SSM state + conv state."""
        return self.kv_cache + self.ssm_state + self.conv_state

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def state_dtypes(spec: ModelSpec, dtype: str, backend: str = "hf") -> dict[str, str]:
    """The dtype of each part as each backend allocates it (checked against built models in the tests)."""
    hf = backend == "hf"
    # transformers' caches keep the SSM state in fp32; mamba_ssm (and, unconfirmed, Hymba's remote code) in the
    # model dtype. transformers' Mamba and Mamba-2 heads upcast the logits to fp32.
    ssm = "fp32" if hf and spec.config["model_type"] != "hymba" else dtype
    return {"weights": dtype, "kv_cache": dtype, "conv_state": dtype, "ssm_state": ssm,
            "logits": "fp32" if hf and spec.family in ("mamba", "mamba2") else dtype}


def memory_parts(spec: ModelSpec, seqlen: int, batch: int = 1, dtype: str = "bf16",
                 backend: str = "hf") -> MemoryParts:
    """Bytes of each analytic part with ``seqlen`` tokens in the cache (see the module docstring)."""
    if seqlen < 1 or batch < 1:
        raise ValueError(f"seqlen and batch must be >= 1, got seqlen={seqlen}, batch={batch}")
    a = spec.arch()
    b = {part: DTYPE_BYTES[d] for part, d in state_dtypes(spec, dtype, backend).items()}
    kv = 0
    for layer in a.kv_layers:
        tokens = (min(seqlen, a.window) if layer in a.windowed else seqlen) + a.meta_tokens
        kv += batch * tokens * a.kv_heads * (a.head_dim + a.v_head_dim) * b["kv_cache"]
    n_ssm = len(a.ssm_layers)
    rows = a.nheads * a.headdim if a.ssm == "mamba2" else a.d_inner
    ssm = n_ssm * batch * rows * a.d_state * b["ssm_state"]
    conv = n_ssm * batch * a.conv_dim * a.d_conv * b["conv_state"]
    positions = seqlen + a.meta_tokens
    return MemoryParts(weights=(spec.params or 0) * b["weights"], kv_cache=kv, ssm_state=ssm, conv_state=conv,
                       logits_all=batch * positions * a.vocab * b["logits"], logits_last=batch * a.vocab * b["logits"])


def dominant_part(parts: dict[str, int | None]) -> str | None:
    """The largest of the parts (None values and totals ignored)."""
    sized = {k: v for k, v in parts.items() if v and not k.startswith(("peak", "total", "reserved"))}
    return max(sized, key=sized.get) if sized else None


def measure_memory(built: Built, seqlen: int, batch: int = 1, logits: str = "last") -> dict[str, Any]:
    """The measured breakdown of one prefill that fills the cache, next to the analytic parts.

    On CUDA, after a 16-token warm-up forward: weights = the parameters' bytes; workspace = allocated before −
    weights; cache = allocated after − before − logits − prompt ids; activations = peak − allocated after;
    allocator overhead = peak reserved − peak allocated. On CPU: the tensors' own sizes.
    """
    analytic = memory_parts(built.spec, seqlen, batch, built.dtype, built.backend)
    cuda = built.device.type == "cuda"
    gc.collect()
    if cuda:
        warm_logits, warm_cache = built.prefill(built.prompt(min(16, seqlen), 1), logits="last")
        del warm_logits, warm_cache
        gc.collect()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    ids = built.prompt(seqlen, batch)
    out_logits, cache = built.prefill(ids, logits=logits)
    logits_b = out_logits.untyped_storage().nbytes()
    row: dict[str, Any] = {"seqlen": seqlen, "batch": batch, "logits_mode": logits,
                           "logits_B": logits_b, "analytic": analytic.as_dict()}
    if cuda:
        torch.cuda.synchronize()
        after, peak = torch.cuda.memory_allocated(), torch.cuda.max_memory_allocated()
        reserved = torch.cuda.max_memory_reserved()
        ids_b = ids.untyped_storage().nbytes()
        weights = weight_bytes(built.model)
        row.update(weights_B=weights, workspace_B=before - weights, cache_B=after - before - logits_b - ids_b,
                   activations_B=peak - after, peak_allocated_B=peak, peak_reserved_B=reserved, allocator_overhead_B=reserved - peak)
    else:
        state = [t for t in cache_tensors(cache) if t.is_floating_point()]
        row.update(weights_B=weight_bytes(built.model), cache_B=sum(t.untyped_storage().nbytes() for t in state),
                   activations_B=None, workspace_B=None, peak_allocated_B=None, peak_reserved_B=None,
                   allocator_overhead_B=None)
    parts = ("weights_B", "workspace_B", "cache_B", "logits_B", "activations_B")
    row["dominant"] = dominant_part({k: row[k] for k in parts})
    del out_logits, cache, ids
    if cuda:
        torch.cuda.empty_cache()
    return row
