"""Build the paper's models from their configuration with random weights (no hub access needed).

Speed does not depend on weight values, so a model built from ``hf_config_kwargs`` (models.yaml) with random
weights times like the released checkpoint. Two backends:

* ``hf``: the transformers class (``attn``: sdpa | eager | flash_attention_2). transformers calls the official
  mamba_ssm / causal_conv1d kernels only when those packages import; otherwise its PyTorch fallback runs. Which
  one ran is read from the profiled kernel names (:func:`ssmscope.e2e.breakdown.kernel_paths`), not assumed.
* ``mamba_ssm``: ``MambaLMHeadModel`` (Mamba and Mamba-2 only), decoding with its CUDA-graph path (``cg=True``).

:func:`build` returns a :class:`Built`, the one interface the measurements use (generate, prefill with a cache,
the cache's tensors). Models whose code is not available (Hymba: remote code) raise :class:`Unbuildable` with the
reason, so a sweep records it and goes on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .models import ModelSpec

TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
BACKENDS = ("hf", "mamba_ssm")
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")


class Unbuildable(RuntimeError):
    """This model cannot be built here (with this backend); the message says why."""


def hf_config(spec: ModelSpec, **overrides: Any):
    """The transformers config of ``spec`` (use ``spec.derive(layers=...)`` to shorten it first)."""
    if spec.config.get("trust_remote_code"):
        raise Unbuildable(f"{spec.name}: needs the model's remote code ({spec.hf_id}: {spec.hf_class}), which is "
                          "not in transformers and not available offline; cannot build here")
    import transformers

    name = spec.hf_class.replace("ForCausalLM", "Config")
    config_cls = getattr(transformers, name, None)
    if config_cls is None:
        raise Unbuildable(f"{spec.name}: transformers {transformers.__version__} has no {name}")
    kwargs = {k: (float(v) if k == "rope_theta" else v) for k, v in spec.config["hf_config_kwargs"].items()}
    kwargs.update(overrides)
    return config_cls(**kwargs)


@dataclass
class Built:
    """A model ready to measure: the module, how it was built, and the calls every measurement goes through."""

    spec: ModelSpec
    model: torch.nn.Module
    backend: str
    attn: str       # attention implementation actually in use ("n/a" without attention)
    dtype: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def vocab_size(self) -> int:
        if self.backend == "mamba_ssm":
            return self.model.lm_head.weight.shape[0]
        return self.model.config.vocab_size

    def prompt(self, seqlen: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
        """Synthetic token ids [B, L] (speed does not depend on which tokens)."""
        gen = torch.Generator().manual_seed(seed)
        return torch.randint(1, self.vocab_size, (batch, seqlen), generator=gen).to(self.device)

    @torch.inference_mode()
    def generate(self, ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
        """Greedy generation of exactly ``new_tokens`` tokens after the prompt ``ids`` [B, L]."""
        if self.backend == "mamba_ssm":
            cg = ids.is_cuda  # the CUDA-graph decode path of mamba_ssm
            return self.model.generate(ids, max_length=ids.shape[1] + new_tokens, cg=cg, top_k=1)
        return self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                   min_new_tokens=new_tokens, do_sample=False)

    @torch.inference_mode()
    def prefill(self, ids: torch.Tensor, logits: str = "last") -> tuple[torch.Tensor, Any]:
        """One forward over the prompt that fills the cache; returns (logits, cache). ``logits`` = "last" keeps
        the last position only (what generation needs), "all" materializes [B, L, vocab] (a plain forward)."""
        keep = 1 if logits == "last" else 0
        if self.backend == "mamba_ssm":
            from mamba_ssm.utils.generation import InferenceParams

            params = InferenceParams(max_seqlen=ids.shape[1] + 1, max_batch_size=ids.shape[0])
            out = self.model(ids, inference_params=params, num_last_tokens=keep)
            return out.logits, params.key_value_memory_dict
        out = self.model(ids, use_cache=True, logits_to_keep=keep)
        cache = getattr(out, "past_key_values", None) or getattr(out, "cache_params", None)
        return out.logits, cache

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """One prefill forward without a cache, last-position logits (the profiled and OOM-probed pass)."""
        if self.backend == "mamba_ssm":
            return self.model(ids, num_last_tokens=1).logits
        return self.model(ids, use_cache=False, logits_to_keep=1).logits


def build(spec: ModelSpec, *, backend: str = "hf", dtype: str = "bf16", device: str = "cpu",
          attn_implementation: str = "sdpa", checkpoint: str | Path | None = None) -> Built:
    """``spec`` with random weights (or from a local ``checkpoint`` folder), in eval mode on ``device``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"attention implementation must be one of {ATTN_IMPLEMENTATIONS}, got {attn_implementation!r}")
    if dtype not in TORCH_DTYPES:
        raise ValueError(f"dtype must be one of {tuple(TORCH_DTYPES)}, got {dtype!r}")
    if backend == "mamba_ssm":
        return Built(spec, _build_mamba_ssm(spec, dtype, device), "mamba_ssm", "n/a", dtype)
    model = _build_hf(spec, dtype, device, attn_implementation, checkpoint)
    attn = str(getattr(model.config, "_attn_implementation", None) or "n/a") if spec.arch().attn_layers else "n/a"
    return Built(spec, model, "hf", attn, dtype)


def _build_hf(spec: ModelSpec, dtype: str, device: str, attn: str, checkpoint: str | Path | None):
    from transformers import AutoModelForCausalLM

    torch_dtype = TORCH_DTYPES[dtype]
    if checkpoint is not None:
        model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch_dtype, attn_implementation=attn,
                                                     local_files_only=True)
    else:
        config = hf_config(spec)
        try:
            with torch.device(device):  # allocate the random weights where they run
                model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype, attn_implementation=attn)
        except (ValueError, ImportError) as exc:
            # GPT-Neo has no SDPA path; flash_attention_2 needs flash_attn: fall back to eager, recorded in attn
            if "attention" not in str(exc).lower() or attn == "eager":
                raise Unbuildable(f"{spec.name}: {exc}") from None
            with torch.device(device):
                model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype, attn_implementation="eager")
    model = model.to(device).eval()
    # never stop early: every run decodes exactly the tokens asked for
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


def _build_mamba_ssm(spec: ModelSpec, dtype: str, device: str):
    if spec.family not in ("mamba", "mamba2") or "mamba_ssm_config" not in spec.config:
        raise Unbuildable(f"{spec.name}: the mamba_ssm backend builds Mamba and Mamba-2 models only")
    if not str(device).startswith("cuda"):
        raise Unbuildable(f"{spec.name}: the mamba_ssm backend needs a CUDA device")
    try:
        from mamba_ssm.models.config_mamba import MambaConfig
        from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel
    except ImportError as exc:
        raise Unbuildable(f"{spec.name}: mamba_ssm does not import here ({exc})") from None
    config = MambaConfig(**spec.config["mamba_ssm_config"])
    return MambaLMHeadModel(config, device=device, dtype=TORCH_DTYPES[dtype]).eval()


def cache_tensors(cache: Any) -> list[torch.Tensor]:
    """Every distinct tensor reachable from a cache object (transformers Cache classes across versions, or
    mamba_ssm's {layer: (conv_state, ssm_state)} dict), found by walking its attributes."""
    found: dict[int, torch.Tensor] = {}
    seen: set[int] = set()

    def walk(obj: Any, depth: int) -> None:
        if depth > 6 or id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            if obj.numel():
                found.setdefault(obj.untyped_storage().data_ptr() if obj.device.type != "meta" else id(obj), obj)
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v, depth + 1)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                walk(v, depth + 1)
        elif hasattr(obj, "__dict__") and not isinstance(obj, (torch.nn.Module, type)):
            for v in vars(obj).values():
                walk(v, depth + 1)

    walk(cache, 0)
    return list(found.values())


def weight_bytes(model: torch.nn.Module, buffers: bool = True) -> int:
    """Bytes of the distinct parameters (tied weights once) and, with ``buffers``, the buffers (rotary tables;
    GPT-Neo keeps a max_positions² causal mask per layer: 50 MB for the 125M model)."""
    tensors = {t.untyped_storage().data_ptr(): t for t in [*model.parameters(), *(model.buffers() if buffers else ())]}
    return sum(t.untyped_storage().nbytes() for t in tensors.values())
