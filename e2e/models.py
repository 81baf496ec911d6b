"""The paper's models as data (``models.yaml``, each entry with its sources), and the kernel calls each makes.

    >>> from ssmscope.e2e.models import get_model
    >>> [(c.op, c.count) for c in get_model("mamba-130m").op_calls(4096)]
    [('selective_scan', 24), ('causal_conv1d', 24)]

``op_calls`` is the bridge from a model to the kernel families: which op, at which shape, how many times per
forward pass. The roofline stage places those shapes; the e2e stage matches profiled kernels to them.
Adding a model is one entry in ``models.yaml``.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

REGISTRY_FILE = Path(__file__).with_name("models.yaml")
FAMILIES = ("transformer", "mamba", "mamba2", "hybrid")


@dataclass(frozen=True)
class OpCall:
    """One kernel family invoked by a model: ``count`` times per forward pass at shape ``params``."""

    op: str
    params: Mapping[str, Any]
    count: int
    where: str


@dataclass(frozen=True)
class ModelSpec:
    name: str
    hf_id: str
    family: str  # transformer | mamba | mamba2 | hybrid
    hf_class: str
    params: int | None  # parameter count computed from the config (see param_count_check in the yaml)
    source: Mapping[str, Any]
    unconfirmed: tuple[str, ...]
    config: Mapping[str, Any] = field(repr=False)

    def op_calls(self, seqlen: int, batch: int = 1, phase: str = "prefill") -> list[OpCall]:
        """The SSM / attention kernel calls of one forward pass: a prompt of ``seqlen`` tokens (prefill), or
        one new token against state / a KV cache of ``seqlen`` tokens (decode). GEMMs and norms are not ops."""
        if phase not in ("prefill", "decode"):
            raise ValueError(f"phase must be 'prefill' or 'decode', got {phase!r}")
        c = self.config
        calls: list[OpCall] = []
        if self.family == "transformer":
            calls += _attention(batch, seqlen, phase, c["num_attention_heads"], c["num_key_value_heads"],
                                c["head_dim"], c["num_hidden_layers"], "every layer")
        elif self.family == "mamba":
            calls += _mamba1(batch, seqlen, phase, c["intermediate_size"], c["d_state"], c["d_conv"],
                             c["n_layer"], "every layer")
        elif self.family == "mamba2":
            calls += _mamba2(batch, seqlen, phase, c["num_heads"], c["headdim"], c["d_state"], c["ngroups"],
                             c["chunk_size"], c["d_conv"], c["n_layer"], "every layer")
        elif self.name.startswith("zamba2"):
            calls += _mamba2(batch, seqlen, phase, c["n_mamba_heads"], c["mamba_headdim"], c["mamba_d_state"],
                             c["mamba_ngroups"], c["chunk_size"], c["mamba_d_conv"], c["num_hidden_layers"],
                             "every layer")
            calls += _attention(batch, seqlen, phase, c["num_attention_heads"], c["num_key_value_heads"],
                                c["attention_head_dim"], len(c["hybrid_layer_ids"]),
                                "the shared transformer block, at the hybrid layer ids")
        elif self.name.startswith("falcon-h1"):
            n = c["num_hidden_layers"]
            calls += _mamba2(batch, seqlen, phase, c["mamba_n_heads"], c["mamba_d_head"], c["mamba_d_state"],
                             c["mamba_n_groups"], c.get("mamba_chunk_size", 256), c["mamba_d_conv"], n,
                             "every layer (parallel with attention)")
            calls += _attention(batch, seqlen, phase, c["num_attention_heads"], c["num_key_value_heads"],
                                c["head_dim"], n, "every layer (parallel with the mixer)")
        elif self.name.startswith("hymba"):
            n = c["num_hidden_layers"]
            calls += _attention(batch, seqlen, phase, c["num_attention_heads"], c["num_key_value_heads"],
                                c["head_dim"], n, "every layer; modelled as full causal attention although 29 "
                                "of 32 layers use a 1024-token sliding window (an upper bound)")
            calls += _mamba1(batch, seqlen, phase, c["mamba_expand"] * c["hidden_size"], c["mamba_d_state"],
                             c["mamba_d_conv"], n, "every layer (parallel with attention)")
        else:
            raise ValueError(f"{self.name}: no op mapping for family {self.family!r}")
        return calls


def _attention(batch: int, seqlen: int, phase: str, heads: int, kv_heads: int, head_dim: int, count: int,
               where: str) -> list[OpCall]:
    shape = dict(batch=batch, seqlen=seqlen, heads=heads, kv_heads=kv_heads, head_dim=head_dim)
    return [OpCall("attention" if phase == "prefill" else "attention_decode", shape, count, where)]


def _mamba1(batch, seqlen, phase, d_inner, d_state, d_conv, count, where) -> list[OpCall]:
    if phase == "prefill":
        return [OpCall("selective_scan", dict(batch=batch, dim=d_inner, dstate=d_state, seqlen=seqlen), count, where),
                OpCall("causal_conv1d", dict(batch=batch, dim=d_inner, seqlen=seqlen, width=d_conv), count, where)]
    return [OpCall("selective_state_update", dict(batch=batch, dim=d_inner, dstate=d_state), count, where),
            OpCall("causal_conv1d_update", dict(batch=batch, dim=d_inner, width=d_conv, seqlen=1,
                                                state_len=d_conv - 1), count, where)]


def _mamba2(batch, seqlen, phase, nheads, headdim, d_state, ngroups, chunk, d_conv, count, where) -> list[OpCall]:
    conv_dim = nheads * headdim + 2 * ngroups * d_state  # the conv runs over x, B and C together
    if phase == "prefill":
        return [OpCall("ssd", dict(batch=batch, seqlen=seqlen, nheads=nheads, headdim=headdim, dstate=d_state,
                                   ngroups=ngroups, chunk_size=chunk), count, where),
                OpCall("causal_conv1d", dict(batch=batch, dim=conv_dim, seqlen=seqlen, width=d_conv,
                                             channel_last=True), count, where)]
    return [OpCall("selective_state_update", dict(batch=batch, nheads=nheads, dim=headdim, dstate=d_state,
                                                  ngroups=ngroups, heads=True), count, where),
            OpCall("causal_conv1d_update", dict(batch=batch, dim=conv_dim, width=d_conv, seqlen=1,
                                                state_len=d_conv - 1), count, where)]


def _family(entry: Mapping[str, Any]) -> str:
    if entry["family"] == "ssm":
        return "mamba2" if entry.get("model_type") == "mamba2" else "mamba"
    return entry["family"]


@functools.lru_cache(maxsize=1)
def registry() -> dict[str, ModelSpec]:
    """Every model of ``models.yaml`` by name."""
    data = yaml.safe_load(REGISTRY_FILE.read_text())
    models = {}
    for name, entry in data["models"].items():
        check = entry.get("param_count_check") or {}
        models[name] = ModelSpec(name=name, hf_id=entry.get("hf_id", ""), family=_family(entry),
                                 hf_class=entry.get("hf_class", ""), params=check.get("computed"),
                                 source=entry.get("source", {}), unconfirmed=tuple(entry.get("unconfirmed") or ()),
                                 config=entry)
    return models


def get_model(name: str) -> ModelSpec:
    models = registry()
    if name not in models:
        raise ValueError(f"unknown model {name!r}; models are {', '.join(models)}")
    return models[name]
