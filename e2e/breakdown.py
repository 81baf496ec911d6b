"""Operator breakdown: kernel names -> operator classes, the SSM classes -> kernel families, and which path ran.

The classes follow the paper's breakdown, with device time only: SSM-specific kernels (selective scan, causal
conv1d, the SSD kernels, state updates), GEMM, attention, and the non-GEMM subclasses normalization, activation,
memory/layout, elementwise arithmetic and other.

Two steps. :data:`RULES` classify by kernel name, first match wins, so specific names
(``_selective_scan_update_kernel``) come before general ones (``selective_scan``), and torch's generic elementwise
launchers are told apart by the functor inside their name. Then the enclosing ``nn.Module`` (from the profiler's
call stack), where known, refines what a name cannot tell: transformers' RMSNorm is five generic kernels (pow,
mean, add, rsqrt, mul) that belong to normalization; eager attention is a bmm and a softmax that belong to
attention; the PyTorch fallback of a Mamba mixer is elementwise kernels that belong to the SSM (family unknown).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

CLASSES = ("ssm", "attention", "gemm", "normalization", "activation", "memory", "elementwise", "other")
GENERIC = ("activation", "memory", "elementwise", "other")  # classes a module hint may refine


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    cls: str
    family: str | None  # the ssmscope.kernels family the kernel belongs to, where one does
    path: str | None    # which implementation the name reveals (official CUDA, Triton, cuDNN, ...)


def _rule(pattern: str, cls: str, family: str | None = None, path: str | None = None) -> Rule:
    return Rule(re.compile(pattern, re.IGNORECASE), cls, family, path)


RULES: tuple[Rule, ...] = (
    # SSM: decode steps first (their names contain the prefill names)
    _rule(r"selective_scan_update|selective_state_update", "ssm", "selective_state_update", "Triton"),
    _rule(r"causal_conv1d.*update", "ssm", "causal_conv1d_update", "CUDA"),
    _rule(r"selective_scan", "ssm", "selective_scan", "CUDA"),
    _rule(r"causal_conv1d", "ssm", "causal_conv1d", "CUDA"),
    _rule(r"chunk_cumsum|chunk_state|state_passing|bmm_chunk|chunk_scan|_ssd_", "ssm", "ssd", "Triton"),
    # a generic depthwise conv: in these LMs only the Mamba mixer's causal conv (transformers' fallback) runs one
    _rule(r"conv_depthwise|depthwise_conv|conv2d_grouped_direct|implicit_convolve|xmma_fprop|"
          r"aten::(_?convolution|conv1d|_conv_depthwise2d|mkldnn_convolution|thnn_conv)", "ssm", "causal_conv1d",
          "fallback (PyTorch conv)"),
    # attention: FlashAttention (flash_attn / PyTorch's copy), cuDNN SDPA, memory-efficient, our kernels, CPU SDPA
    _rule(r"flash_fwd|flash_attn|flashattn", "attention", "attention", "FlashAttention"),
    _rule(r"cudnn.*sdpa|sdpa.*(fprop|flash)", "attention", "attention", "cuDNN SDPA"),
    _rule(r"fmha|efficient_attention|memeffattention", "attention", "attention", "memory-efficient attention"),
    _rule(r"_attention_fwd_kernel|_decode_(split|combine)_kernel", "attention", "attention", "ssmscope Triton"),
    _rule(r"scaled_dot_product|_sdpa_|flex_attention", "attention", "attention", "PyTorch SDPA"),
    # matrix products: cuBLAS(Lt) / CUTLASS names on Ampere…Hopper, and aten's CPU ops
    _rule(r"nvjet|gemm|gemv|cutlass|xmma|cublas|splitkreduce|s16816|s1688|matmul|wgmma|"
          r"aten::(mm|addmm|bmm|baddbmm|linear|matmul|einsum)\b", "gemm"),
    _rule(r"layer_?norm|rms_?norm|group_?norm|batch_?norm|rowwisemoments", "normalization"),
    _rule(r"silu|gelu|softplus|sigmoid|tanh|relu|swish|act_and_mul|softmax", "activation"),
    _rule(r"copy|cat_?array|aten::cat\b|transpose|gather|scatter|index|embedding|fill|contiguous|memcpy|memset|"
          r"roll|pad|flip|arange|tril|triu|aten::(slice|view|reshape|select|empty|zeros|ones|split|chunk)", "memory"),
    _rule(r"elementwise|functor|reduce|scan|add|mul|div|sub|pow|exp|log|neg|rsqrt|sqrt|where|clamp|mean|sum|"
          r"cumsum", "elementwise"),
)


def classify(kernel_name: str, module: str | None = None) -> tuple[str, str | None]:
    """(class, kernel family or None) of one kernel, refined by its enclosing ``nn.Module`` class name."""
    cls, family = "other", None
    for rule in RULES:
        if rule.pattern.search(kernel_name):
            cls, family = rule.cls, rule.family
            break
    if module:
        cls, family = _refine(cls, family, module)
    return cls, family


def _refine(cls: str, family: str | None, module: str) -> tuple[str, str | None]:
    m = module.lower()
    if m.endswith("conv1d") and cls not in ("ssm", "attention"):  # nn.Conv1d of a Mamba mixer: the causal conv
        return "ssm", "causal_conv1d"
    if cls not in GENERIC + ("gemm",):
        return cls, family
    if "norm" in m and cls in GENERIC:
        return "normalization", None
    if "attention" in m and "decoderlayer" not in m:
        return "attention", "attention"  # eager / math attention and its RoPE (the projections are nn.Linear modules)
    if ("mixer" in m or m in ("mamba", "mamba2")) and cls in GENERIC:
        return "ssm", None        # a Mamba mixer's PyTorch ops (the fallback scan, gating, dt softplus)
    return cls, family


def breakdown(records: Iterable[Sequence]) -> dict[str, dict[str, float]]:
    """Sum device time per class and per kernel family from (kernel name, seconds[, module]) records.

    Returns {"classes": {class: s}, "families": {family: s}, "shares": {class: fraction}, "kernels": {name: s}}.
    """
    classes = {c: 0.0 for c in CLASSES}
    families: dict[str, float] = {}
    kernels: dict[str, float] = {}
    for record in records:
        name, seconds = record[0], record[1]
        cls, family = classify(name, record[2] if len(record) > 2 else None)
        classes[cls] += seconds
        kernels[name] = kernels.get(name, 0.0) + seconds
        if family:
            families[family] = families.get(family, 0.0) + seconds
    total = sum(classes.values())
    shares = {c: (t / total if total else 0.0) for c, t in classes.items()}
    return {"classes": classes, "families": families, "shares": shares, "kernels": kernels}


def kernel_paths(expected_ops: Iterable[str], kernel_names: Iterable[str]) -> dict[str, str]:
    """Which implementation ran each kernel family the model needs (from ``op_calls``), read off the kernel
    names: e.g. {"selective_scan": "CUDA: selective_scan_fwd_kernel", "attention": "cuDNN SDPA: ..."} or
    "PyTorch fallback (no ... kernel ran)" when no name of that family appears."""
    names = list(kernel_names)
    paths: dict[str, str] = {}
    for op in dict.fromkeys(expected_ops):
        family = op.replace("attention_decode", "attention")
        hits = [(rule, n) for n in names for rule in RULES[:_first_gemm_rule()]
                if rule.family == family and rule.pattern.search(n)]
        if hits:
            rule, name = hits[0]
            paths[op] = f"{rule.path}: {_short(name)}"
        else:
            what = "attention as GEMMs + softmax (eager/math)" if family == "attention" else "PyTorch ops"
            paths[op] = f"fallback: {what}; no {family} kernel ran"
    return paths


def _first_gemm_rule() -> int:
    return next(i for i, r in enumerate(RULES) if r.cls == "gemm")


def _short(name: str, width: int = 80) -> str:
    name = re.sub(r"^void\s+", "", name)
    return name if len(name) <= width else name[: width - 1] + "…"


def amdahl_gain(op_seconds: Mapping[str, float], floors: Mapping[str, float], total_seconds: float) -> dict[str, float]:
    """Per kernel family: the end-to-end speed-up if that family alone ran at its roofline floor,
    total / (total − t_op + min(floor_op, t_op)) (Amdahl). Families without a floor are left out."""
    return {op: total_seconds / (total_seconds - t + min(floors[op], t))
            for op, t in op_seconds.items() if op in floors and total_seconds > 0}
