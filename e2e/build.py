"""Build the paper's models from their configuration with random weights (no hub access needed).

Speed does not depend on weight values, so a model built from ``hf_config_kwargs`` (models.yaml) with
random weights times like the released checkpoint. ``layers`` shortens a model for quick runs; a local
checkpoint folder loads instead when given. Models whose code is not in transformers (Hymba: remote code)
raise :class:`Unbuildable` with the reason, so a sweep records it and goes on.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .models import ModelSpec

TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


class Unbuildable(RuntimeError):
    """This model cannot be built here; the message says why."""


def hf_config(spec: ModelSpec, layers: int | None = None, **overrides: Any):
    """The transformers config of ``spec``, optionally cut to its first ``layers`` layers."""
    if spec.config.get("trust_remote_code"):
        raise Unbuildable(f"{spec.name}: needs the model's remote code ({spec.hf_id}), which is not available "
                          "offline; skipped")
    import transformers

    config_cls = getattr(transformers, spec.hf_class.replace("ForCausalLM", "Config"), None)
    if config_cls is None:
        raise Unbuildable(f"{spec.name}: transformers {transformers.__version__} has no "
                          f"{spec.hf_class.replace('ForCausalLM', 'Config')}")
    kwargs = {k: (float(v) if k == "rope_theta" else v) for k, v in spec.config["hf_config_kwargs"].items()}
    if layers is not None:
        kwargs.update(_cut_layers(spec, kwargs, layers))
    kwargs.update(overrides)
    return config_cls(**kwargs)


def _cut_layers(spec: ModelSpec, kwargs: dict[str, Any], layers: int) -> dict[str, Any]:
    """Layer-count fields to set so that only the first ``layers`` layers are built."""
    if layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    cut: dict[str, Any] = {}
    if "num_layers" in kwargs:  # GPT-Neo names it differently and lists attention types per layer
        cut["num_layers"] = layers
        cut["attention_types"] = [[["global", "local"][: min(2, layers)], max(1, layers // 2)]]
        if layers == 1:
            cut["attention_types"] = [[["global"], 1]]
    else:
        cut["num_hidden_layers"] = layers
    if "layers_block_type" in kwargs:  # Zamba2: keep at least one hybrid (attention) layer in the cut
        types = list(kwargs["layers_block_type"][:layers])
        if "hybrid" not in types:
            types[-1] = "hybrid"
        cut["layers_block_type"] = types
    return cut


def build_model(spec: ModelSpec, *, layers: int | None = None, dtype: str = "bf16", device: str = "cpu",
                attn_implementation: str = "sdpa", checkpoint: str | Path | None = None, **overrides: Any):
    """A causal LM with random weights (or from a local ``checkpoint`` folder), in eval mode."""
    from transformers import AutoModelForCausalLM

    torch_dtype = TORCH_DTYPES[dtype]
    if checkpoint is not None:
        model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch_dtype,
                                                     attn_implementation=attn_implementation)
    else:
        config = hf_config(spec, layers, **overrides)
        try:
            model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype,
                                                     attn_implementation=attn_implementation)
        except ValueError as exc:  # e.g. GPT-Neo has no SDPA path: fall back to eager, and say so
            if "attention implementation" not in str(exc) or attn_implementation == "eager":
                raise
            model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype, attn_implementation="eager")
    return model.to(device).eval()


def attention_backend(model) -> str:
    """The attention implementation the built model really uses (after any fallback)."""
    return str(getattr(model.config, "_attn_implementation", None) or "n/a")
