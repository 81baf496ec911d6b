"""Analytic memory of a model at a prompt length: weights, KV cache, SSM and conv state, logits.

These are the sizes the configuration forces, before activations and allocator overhead (which only a
measurement gives: ``torch.cuda.max_memory_allocated`` minus these parts, and reserved minus allocated).
The logits get their own line on purpose: a prefill that materializes full-vocabulary logits for every
position needs batch·L·vocab values — 151,936 × 32K × 4 B = 19.9 GB for Qwen2.5 at 32K tokens in fp32, more
than its weights and KV cache together — and that, not the KV cache, is where many long-prompt OOMs come from.
"""
from __future__ import annotations

from dataclasses import dataclass

from .models import ModelSpec

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


@dataclass(frozen=True)
class MemoryParts:
    weights: int
    kv_cache: int
    ssm_state: int
    conv_state: int
    logits_all: int   # logits for every prompt position (what a plain HF forward materializes)
    logits_last: int  # logits for the last position only (what generation needs)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def memory_parts(model: ModelSpec, seqlen: int, batch: int = 1, dtype: str = "bf16",
                 logits_dtype: str = "fp32") -> MemoryParts:
    """Bytes of each part at ``seqlen`` tokens; the state is kept in the model dtype (as mamba_ssm's and
    transformers' caches allocate it), the logits in ``logits_dtype`` (HF upcasts them to fp32)."""
    e, le = DTYPE_BYTES[dtype], DTYPE_BYTES[logits_dtype]
    kv = ssm = conv = 0
    for call in model.op_calls(seqlen, batch=batch, phase="decode"):
        p, n = call.params, call.count
        if call.op == "attention_decode":
            kv += n * 2 * batch * seqlen * p["kv_heads"] * p["head_dim"] * e
        elif call.op == "selective_state_update":
            rows = p.get("nheads", 1) * p["dim"]
            ssm += n * batch * rows * p["dstate"] * e
        elif call.op == "causal_conv1d_update":
            conv += n * batch * p["dim"] * p["width"] * e  # mamba_ssm keeps d_conv columns per channel
    vocab = model.config["vocab_size"]
    return MemoryParts(weights=(model.params or 0) * e, kv_cache=kv, ssm_state=ssm, conv_state=conv,
                       logits_all=batch * seqlen * vocab * le, logits_last=batch * vocab * le)
