"""Operator breakdown: GPU kernel names -> operator classes, and the SSM classes -> kernel families.

The classes follow the paper's breakdown, with device time only: SSM-specific kernels (selective scan, causal
conv1d, the SSD kernels, state updates), GEMM, attention, and the non-GEMM subclasses normalization,
activation, memory/layout, elementwise arithmetic and other. Rules are ordered: the first match wins, so
specific names (``_selective_scan_update_kernel``) come before general ones (``selective_scan``), and torch's
generic elementwise launchers are told apart by the functor inside their name.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping

CLASSES = ("ssm", "attention", "gemm", "normalization", "activation", "memory", "elementwise", "other")


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    cls: str
    family: str | None  # the ssmscope.kernels family the kernel belongs to, where one does


def _rule(pattern: str, cls: str, family: str | None = None) -> Rule:
    return Rule(re.compile(pattern, re.IGNORECASE), cls, family)


RULES: tuple[Rule, ...] = (
    # SSM: decode steps first (their names contain the prefill names)
    _rule(r"selective_scan_update|selective_state_update", "ssm", "selective_state_update"),
    _rule(r"causal_conv1d.*update", "ssm", "causal_conv1d_update"),
    _rule(r"selective_scan", "ssm", "selective_scan"),
    _rule(r"causal_conv1d", "ssm", "causal_conv1d"),
    _rule(r"chunk_cumsum|chunk_state|state_passing|bmm_chunk|chunk_scan|_ssd_kernel", "ssm", "ssd"),
    # attention: FlashAttention, cuDNN SDPA, memory-efficient attention, our kernels
    _rule(r"flash_fwd|flash_attn|fmha|_sdpa_|sdpa_|efficient_attention|attention_fwd|decode_split|"
          r"flash_fprop", "attention", None),
    _rule(r"scaled_dot_product", "attention", None),  # torch's CPU op name for SDPA
    # matrix products: cuBLAS(Lt) / CUTLASS names on Ampere…Hopper, and aten's CPU ops
    _rule(r"nvjet|gemm|gemv|cutlass|xmma|cublas|s16816|s1688|matmul|wgmma|aten::(mm|addmm|bmm|linear)\b",
          "gemm", None),
    _rule(r"layer_?norm|rms_?norm|group_?norm|batch_?norm", "normalization", None),
    _rule(r"silu|gelu|softplus|sigmoid|tanh|relu|swish|act_and_mul|softmax", "activation", None),
    _rule(r"copy|cat_?array|transpose|gather|scatter|index|embedding|fill|contiguous|reduce_?kernel.*sum|"
          r"roll|pad|flip|arange", "memory", None),
    _rule(r"elementwise|functor|add|mul|div|sub|pow|exp|neg|rsqrt|sqrt|where|clamp", "elementwise", None),
)


def classify(kernel_name: str) -> tuple[str, str | None]:
    """(class, kernel family or None) of one GPU kernel name."""
    for rule in RULES:
        if rule.pattern.search(kernel_name):
            return rule.cls, rule.family
    return "other", None


def breakdown(kernel_times: Iterable[tuple[str, float]]) -> dict[str, dict[str, float]]:
    """Sum device time per class and per kernel family from (kernel name, seconds) pairs.

    Returns {"classes": {class: seconds}, "families": {family: seconds}, "shares": {class: fraction}}.
    """
    classes = {c: 0.0 for c in CLASSES}
    families: dict[str, float] = {}
    for name, seconds in kernel_times:
        cls, family = classify(name)
        classes[cls] += seconds
        if family:
            families[family] = families.get(family, 0.0) + seconds
    total = sum(classes.values())
    shares = {c: (t / total if total else 0.0) for c, t in classes.items()}
    return {"classes": classes, "families": families, "shares": shares}


def amdahl_gain(op_seconds: Mapping[str, float], floors: Mapping[str, float], total_seconds: float) -> dict[str, float]:
    """Per kernel family: the end-to-end speed-up if that family alone ran at its roofline floor,
    total / (total − t_op + floor_op) (Amdahl). Families without a floor are left out."""
    return {op: total_seconds / (total_seconds - t + min(floors[op], t))
            for op, t in op_seconds.items() if op in floors and total_seconds > 0}
