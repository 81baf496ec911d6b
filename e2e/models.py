"""The paper's models as data (``models.yaml``, each entry with its sources), and the kernel calls each makes.

    >>> from ssmscope.e2e.models import get_model
    >>> [(c.op, c.count) for c in get_model("mamba-130m").op_calls(4096)]
    [('selective_scan', 24), ('causal_conv1d', 24)]

``op_calls`` is the bridge from a model to the kernel families: which op, at which shape, how many times per
forward pass. The roofline stage places those shapes; the e2e stage matches profiled kernels to them.

Every shape comes from one place: :meth:`ModelSpec.arch` reads the entry's ``hf_config_kwargs`` (what is built)
and fills in the class defaults and derived sizes explicitly, so the kernel calls, the parameter count and the
analytic memory all describe the model that is actually built — also after :meth:`ModelSpec.derive` shortens it
(``--layers``) or shrinks it (tests). Adding a model is one entry in ``models.yaml``.
"""
from __future__ import annotations

import copy
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
class Arch:
    """The shape-bearing sizes of one model, normalised across its transformers config class.

    Layer sets are tuples of layer ids. ``attn_layers`` run attention (Zamba2: the layers where the shared
    block runs); ``kv_layers`` own a KV cache (Hymba: the producers of its cross-layer KV sharing);
    ``windowed`` use a sliding window of ``window`` tokens. ``ssm_layers`` run a Mamba mixer.
    """

    layers: int
    hidden: int
    vocab: int
    tied: bool
    ffn: int = 0                        # MLP intermediate size (0: no MLP)
    attn_layers: tuple[int, ...] = ()
    heads: int = 0
    kv_heads: int = 0
    head_dim: int = 0
    v_head_dim: int = 0                 # = head_dim except Hymba (V is 2x wider than Q/K)
    kv_layers: tuple[int, ...] = ()
    window: int | None = None
    windowed: tuple[int, ...] = ()
    ssm: str | None = None              # "mamba1" | "mamba2"
    ssm_layers: tuple[int, ...] = ()
    d_inner: int = 0                    # SSM channels (Mamba-2: nheads * headdim)
    d_state: int = 0
    d_conv: int = 0
    dt_rank: int = 0                    # Mamba-1 only
    nheads: int = 0                     # Mamba-2 only
    headdim: int = 0
    ngroups: int = 1
    chunk_size: int = 256
    meta_tokens: int = 0                # Hymba prepends learned tokens to every sequence

    @property
    def conv_dim(self) -> int:
        """Channels of the causal conv1d: Mamba-2 convolves x, B and C together."""
        return self.d_inner + (2 * self.ngroups * self.d_state if self.ssm == "mamba2" else 0)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    hf_id: str
    family: str  # transformer | mamba | mamba2 | hybrid
    hf_class: str
    params: int | None  # parameter count computed from the config (checked against the yaml's param_count_check)
    source: Mapping[str, Any]
    unconfirmed: tuple[str, ...]
    config: Mapping[str, Any] = field(repr=False)

    def arch(self) -> Arch:
        """The normalised sizes of the model that :func:`ssmscope.e2e.build.build_model` builds."""
        return _arch(self.config)

    def op_calls(self, seqlen: int, batch: int = 1, phase: str = "prefill") -> list[OpCall]:
        """The SSM / attention kernel calls of one forward pass: a prompt of ``seqlen`` tokens (prefill), or
        one new token against state / a KV cache of ``seqlen`` tokens (decode). GEMMs and norms are not ops."""
        if phase not in ("prefill", "decode"):
            raise ValueError(f"phase must be 'prefill' or 'decode', got {phase!r}")
        if seqlen < 1 or batch < 1:
            raise ValueError(f"seqlen and batch must be >= 1, got seqlen={seqlen}, batch={batch}")
        a = self.arch()
        length = seqlen + a.meta_tokens
        calls: list[OpCall] = []
        if a.ssm == "mamba1":
            calls += _mamba1(a, batch, length, phase, _where(a.ssm_layers, a.layers, "Mamba-1 mixer"))
        elif a.ssm == "mamba2":
            calls += _mamba2(a, batch, length, phase, _where(a.ssm_layers, a.layers, "Mamba-2 mixer"))
        calls += _attention(a, batch, length, phase)
        return calls

    def derive(self, layers: int | None = None, **hf_overrides: Any) -> "ModelSpec":
        """This model with only its first ``layers`` layers and/or other ``hf_config_kwargs`` (a shrunk test
        model): the build, the kernel calls, the parameter count and the memory all follow."""
        config = copy.deepcopy(dict(self.config))
        kwargs = config["hf_config_kwargs"]
        if layers is not None:
            kwargs.update(_cut_layers(config, layers))
        kwargs.update(hf_overrides)
        if "mamba_ssm_config" in config:  # the mamba_ssm backend builds from its own schema
            native = config["mamba_ssm_config"]
            native.update(d_model=kwargs["hidden_size"], n_layer=kwargs["num_hidden_layers"])
            if "vocab_size" in hf_overrides:
                native["vocab_size"] = hf_overrides["vocab_size"]
        config["derived"] = {"layers": layers, **hf_overrides}
        return ModelSpec(name=self.name, hf_id=self.hf_id, family=self.family, hf_class=self.hf_class,
                         params=param_count(_arch(config), config), source=self.source,
                         unconfirmed=self.unconfirmed, config=config)


def _where(ids: tuple[int, ...], layers: int, what: str) -> str:
    return f"{what}, every layer" if len(ids) == layers else f"{what} at layers {_ranges(ids)}"


def _ranges(ids: tuple[int, ...]) -> str:
    """Layer ids as runs: (0, 1, 2, 5) -> '0-2,5'."""
    runs: list[list[int]] = []
    for i in ids:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ",".join(map(str, r)) for r in runs)


def _attention(a: Arch, batch: int, length: int, phase: str) -> list[OpCall]:
    if not a.attn_layers:
        return []
    shape = dict(batch=batch, seqlen=length, heads=a.heads, kv_heads=a.kv_heads, head_dim=a.head_dim)
    vnote = f"; V heads are {a.v_head_dim} wide (modelled at {a.head_dim})" if a.v_head_dim != a.head_dim else ""
    if phase == "prefill":
        note = _where(a.attn_layers, a.layers, "causal attention")
        if a.windowed:
            note += (f"; {len(a.windowed)} of them use a {a.window}-token sliding window, modelled as full causal "
                     "attention (an upper bound)")
        return [OpCall("attention", shape, len(a.attn_layers), note + vnote)]
    full = [i for i in a.attn_layers if i not in a.windowed]
    calls = []
    if full:
        calls.append(OpCall("attention_decode", shape, len(full), _where(tuple(full), a.layers, "decode attention")
                            + vnote))
    if a.windowed:  # a windowed layer reads at most `window` cached tokens (plus the always-visible meta tokens)
        s = min(length - a.meta_tokens, a.window) + a.meta_tokens
        calls.append(OpCall("attention_decode", {**shape, "seqlen": s}, len(a.windowed),
                            f"decode attention over the {a.window}-token window at layers {_ranges(a.windowed)}"
                            + vnote))
    return calls


def _mamba1(a: Arch, batch: int, length: int, phase: str, where: str) -> list[OpCall]:
    n = len(a.ssm_layers)
    if phase == "prefill":
        return [OpCall("selective_scan", dict(batch=batch, dim=a.d_inner, dstate=a.d_state, seqlen=length), n, where),
                OpCall("causal_conv1d", dict(batch=batch, dim=a.d_inner, seqlen=length, width=a.d_conv), n, where)]
    return [OpCall("selective_state_update", dict(batch=batch, dim=a.d_inner, dstate=a.d_state), n, where),
            OpCall("causal_conv1d_update", dict(batch=batch, dim=a.d_inner, width=a.d_conv, seqlen=1,
                                                state_len=a.d_conv - 1), n, where)]


def _mamba2(a: Arch, batch: int, length: int, phase: str, where: str) -> list[OpCall]:
    n = len(a.ssm_layers)
    if phase == "prefill":
        return [OpCall("ssd", dict(batch=batch, seqlen=length, nheads=a.nheads, headdim=a.headdim, dstate=a.d_state,
                                   ngroups=a.ngroups, chunk_size=a.chunk_size), n, where),
                OpCall("causal_conv1d", dict(batch=batch, dim=a.conv_dim, seqlen=length, width=a.d_conv,
                                             channel_last=True), n, where + "; channels = x, B and C")]
    return [OpCall("selective_state_update", dict(batch=batch, nheads=a.nheads, dim=a.headdim, dstate=a.d_state,
                                                  ngroups=a.ngroups, heads=True), n, where),
            OpCall("causal_conv1d_update", dict(batch=batch, dim=a.conv_dim, width=a.d_conv, seqlen=1,
                                                state_len=a.d_conv - 1), n, where + "; channels = x, B and C")]


# ----------------------------------------------------------------------------------------------------------------
# config -> Arch, one function per transformers config class (defaults as in that class, spelled out)

def _arch(config: Mapping[str, Any]) -> Arch:
    kw = config["hf_config_kwargs"]
    builder = _ARCH.get(config["model_type"])
    if builder is None:
        raise ValueError(f"no architecture reader for model_type {config['model_type']!r}")
    return builder(kw)


def _decoder(kw: Mapping[str, Any]) -> Arch:  # qwen2, llama, phi3: pre-norm attention + SwiGLU blocks
    h, heads, n = kw["hidden_size"], kw["num_attention_heads"], kw["num_hidden_layers"]
    every = tuple(range(n))
    return Arch(layers=n, hidden=h, vocab=kw["vocab_size"], tied=kw.get("tie_word_embeddings", False),
                ffn=kw["intermediate_size"], attn_layers=every, heads=heads,
                kv_heads=kw.get("num_key_value_heads") or heads, head_dim=kw.get("head_dim") or h // heads,
                v_head_dim=kw.get("head_dim") or h // heads, kv_layers=every)


def _gpt_neo(kw: Mapping[str, Any]) -> Arch:
    h, heads, n = kw["hidden_size"], kw["num_heads"], kw["num_layers"]
    every = tuple(range(n))
    # HF GPT-Neo computes local layers as masked full attention and caches every position: not windowed here
    return Arch(layers=n, hidden=h, vocab=kw["vocab_size"], tied=kw.get("tie_word_embeddings", True),
                ffn=kw.get("intermediate_size") or 4 * h, attn_layers=every, heads=heads, kv_heads=heads,
                head_dim=h // heads, v_head_dim=h // heads, kv_layers=every)


def _mamba(kw: Mapping[str, Any]) -> Arch:
    h, n = kw["hidden_size"], kw["num_hidden_layers"]
    d_inner = kw.get("intermediate_size") or kw.get("expand", 2) * h
    rank = kw.get("time_step_rank", "auto")
    rank = -(-h // 16) if rank == "auto" else int(rank)
    return Arch(layers=n, hidden=h, vocab=kw["vocab_size"], tied=kw.get("tie_word_embeddings", True), ssm="mamba1",
                ssm_layers=tuple(range(n)), d_inner=d_inner, d_state=kw.get("state_size", 16),
                d_conv=kw.get("conv_kernel", 4), dt_rank=rank)


def _mamba2_arch(kw: Mapping[str, Any]) -> Arch:
    h, n = kw["hidden_size"], kw["num_hidden_layers"]
    nheads, headdim = kw["num_heads"], kw.get("head_dim", 64)
    return Arch(layers=n, hidden=h, vocab=kw["vocab_size"], tied=kw.get("tie_word_embeddings", False), ssm="mamba2",
                ssm_layers=tuple(range(n)), d_inner=nheads * headdim, d_state=kw.get("state_size", 128),
                d_conv=kw.get("conv_kernel", 4), nheads=nheads, headdim=headdim, ngroups=kw.get("n_groups", 8),
                chunk_size=kw.get("chunk_size", 256))


def _zamba2(kw: Mapping[str, Any]) -> Arch:
    h, n = kw["hidden_size"], kw["num_hidden_layers"]
    types = kw.get("layers_block_type")
    if types is None:  # the class default is the 54-layer Zamba2-2.7B pattern
        types = _ZAMBA2_DEFAULT_TYPES[:n]
    hybrid = tuple(i for i, t in enumerate(types) if t == "hybrid")
    heads = kw["num_attention_heads"]
    d_inner = kw.get("mamba_expand", 2) * h
    nheads = kw.get("n_mamba_heads", 8)
    # the shared block attends over concat(hidden, original embeddings): 2*hidden wide
    return Arch(layers=n, hidden=h, vocab=kw["vocab_size"], tied=kw.get("tie_word_embeddings", True),
                ffn=kw.get("intermediate_size") or 4 * h, attn_layers=hybrid, heads=heads,
                kv_heads=kw.get("num_key_value_heads") or heads, head_dim=2 * h // heads, v_head_dim=2 * h // heads,
                kv_layers=hybrid, ssm="mamba2", ssm_layers=tuple(range(n)), d_inner=d_inner,
                d_state=kw.get("mamba_d_state", 64), d_conv=kw.get("mamba_d_conv", 4), nheads=nheads,
                headdim=d_inner // nheads, ngroups=kw.get("mamba_ngroups", 1), chunk_size=kw.get("chunk_size", 256))


def _falcon_h1(kw: Mapping[str, Any]) -> Arch:
    h, n, heads = kw["hidden_size"], kw["num_hidden_layers"], kw["num_attention_heads"]
    every = tuple(range(n))
    nheads, headdim = kw["mamba_n_heads"], kw["mamba_d_head"]
    return Arch(layers=n, hidden=h, vocab=kw["vocab_size"], tied=kw.get("tie_word_embeddings", False),
                ffn=kw["intermediate_size"], attn_layers=every, heads=heads, kv_heads=kw["num_key_value_heads"],
                head_dim=kw.get("head_dim") or h // heads, v_head_dim=kw.get("head_dim") or h // heads,
                kv_layers=every, ssm="mamba2", ssm_layers=every,
                d_inner=kw.get("mamba_d_ssm") or nheads * headdim, d_state=kw["mamba_d_state"],
                d_conv=kw.get("mamba_d_conv", 4), nheads=nheads, headdim=headdim, ngroups=kw.get("mamba_n_groups", 1),
                chunk_size=kw.get("mamba_chunk_size", 256))


def _hymba(kw: Mapping[str, Any]) -> Arch:
    h, n, heads = kw["hidden_size"], kw["num_hidden_layers"], kw["num_attention_heads"]
    every = tuple(range(n))
    consumers = {i for group in kw.get("kv_reuse_group") or () for i in group[1:]}
    d_inner = kw["mamba_expand"] * h
    global_ids = set(kw.get("global_attn_idx") or every)
    window = kw.get("sliding_window")
    return Arch(layers=n, hidden=h, vocab=kw["vocab_size"], tied=kw.get("tie_word_embeddings", True),
                ffn=kw["intermediate_size"], attn_layers=every, heads=heads, kv_heads=kw["num_key_value_heads"],
                head_dim=h // heads, v_head_dim=d_inner // heads,  # HymbaBlock sets v_head_dim = d_inner / heads
                kv_layers=tuple(i for i in every if i not in consumers), window=window,
                windowed=tuple(i for i in every if window and i not in global_ids),
                ssm="mamba1", ssm_layers=every, d_inner=d_inner, d_state=kw["mamba_d_state"],
                d_conv=kw["mamba_d_conv"], dt_rank=kw["mamba_dt_rank"], meta_tokens=kw.get("num_memory_tokens", 0))


_ARCH = {"qwen2": _decoder, "llama": _decoder, "phi3": _decoder, "gpt_neo": _gpt_neo, "mamba": _mamba,
         "mamba2": _mamba2_arch, "zamba2": _zamba2, "falcon_h1": _falcon_h1, "hymba": _hymba}
_ZAMBA2_DEFAULT_TYPES = ["hybrid" if i in (6, 12, 18, 24, 30, 36, 42, 47, 51) else "mamba" for i in range(54)]


def _cut_layers(config: Mapping[str, Any], layers: int) -> dict[str, Any]:
    """``hf_config_kwargs`` that keep only the first ``layers`` layers (per-layer lists cut to match)."""
    kw = config["hf_config_kwargs"]
    n = _arch(config).layers
    if not 1 <= layers <= n:
        raise ValueError(f"{config.get('hf_id', 'model')}: layers must be in [1, {n}], got {layers}")
    if config["model_type"] == "gpt_neo":  # layer types are listed as [[pattern], repeats]
        pattern = [t for types, reps in kw["attention_types"] for _ in range(reps) for t in types][:layers]
        return {"num_layers": layers, "attention_types": [[[t], 1] for t in pattern]}
    cut: dict[str, Any] = {"num_hidden_layers": layers}
    if config["model_type"] == "zamba2":  # keep at least one hybrid (attention) layer in the cut
        types = list(kw.get("layers_block_type") or _ZAMBA2_DEFAULT_TYPES)[:layers]
        if "hybrid" not in types:
            types[-1] = "hybrid"
        cut["layers_block_type"] = types
    if config["model_type"] == "hymba":
        cut["kv_reuse_group"] = [[i for i in g if i < layers] for g in kw.get("kv_reuse_group") or ()
                                 if sum(i < layers for i in g) > 1]
        cut["global_attn_idx"] = [i for i in kw.get("global_attn_idx") or () if i < layers]
        cut["layer_type"] = (kw.get("layer_type") or ["h"] * layers)[:layers]
    return cut


# ----------------------------------------------------------------------------------------------------------------
# parameter counts, module by module as each transformers class (or Hymba's remote code) builds them

def param_count(a: Arch, config: Mapping[str, Any]) -> int:
    """Parameters of the built model: embeddings, every layer, final norm, untied head.

    Per block (H hidden, I MLP width, V vocab): attention q/k/v/o = H·(heads + 2·kv)·d + heads·d·H (+ biases
    where the class has them); SwiGLU MLP = 3·H·I; Mamba-1 = in_proj H·2E, conv E·(K+1), x_proj E·(R+2N),
    dt_proj (R+1)·E, A_log E·N, D E, out_proj E·H; Mamba-2 = in_proj H·(2E+2GN+nh), conv C·(K+1) with
    C = E+2GN, dt_bias/A_log/D 3·nh, gated norm E, out_proj E·H; RMSNorm weights H each.
    """
    kw, mt = config["hf_config_kwargs"], config["model_type"]
    h, n = a.hidden, a.layers
    total = a.vocab * h * (1 if a.tied else 2)
    if mt in ("qwen2", "llama", "phi3"):
        attn = h * (a.heads + 2 * a.kv_heads) * a.head_dim + a.heads * a.head_dim * h
        if mt == "qwen2" or kw.get("attention_bias"):
            attn += (a.heads + 2 * a.kv_heads) * a.head_dim + (h if kw.get("attention_bias") else 0)
        mlp = 3 * h * a.ffn + (2 * a.ffn + h if kw.get("mlp_bias") else 0)
        return total + n * (attn + mlp + 2 * h) + h
    if mt == "gpt_neo":  # learned positions; LayerNorms have bias; q/k/v without bias
        block = 4 * h + 3 * h * h + h * h + h + h * a.ffn + a.ffn + a.ffn * h + h
        return total + kw["max_position_embeddings"] * h + n * block + 2 * h
    if mt == "mamba":
        e, r, s = a.d_inner, a.dt_rank, a.d_state
        bias = e * 2 + h if kw.get("use_bias") else 0
        block = h * 2 * e + e * a.d_conv + (e if kw.get("use_conv_bias", True) else 0) + e * (r + 2 * s) \
            + r * e + e + e * s + e + e * h + bias
        return total + n * (block + h) + h
    if mt == "mamba2":
        return total + n * (_mamba2_params(a, norm=kw.get("rms_norm", True)) + h) + h
    if mt == "zamba2":
        return total + _zamba2_params(a, kw) + h
    if mt == "falcon_h1":
        attn = h * (a.heads + 2 * a.kv_heads) * a.head_dim + a.heads * a.head_dim * h
        block = attn + 3 * h * a.ffn + _mamba2_params(a, norm=kw.get("mamba_rms_norm", False)) + 2 * h
        return total + n * block + h
    if mt == "hymba":
        return total + _hymba_params(a, kw) + h
    raise ValueError(f"no parameter count for model_type {mt!r}")


def _mamba2_params(a: Arch, norm: bool) -> int:
    e, h = a.d_inner, a.hidden
    return (h * (2 * e + 2 * a.ngroups * a.d_state + a.nheads) + a.conv_dim * (a.d_conv + 1) + 3 * a.nheads
            + (e if norm else 0) + e * h)


def _zamba2_params(a: Arch, kw: Mapping[str, Any]) -> int:
    """Mamba-2 layers (+ input norm), a per-hybrid-layer linear, the shared block(s) (attention over 2H, gated
    MLP; the q/k/v read 2H, o writes H), and one LoRA adapter per hybrid position (q/k/v adapters only with use_shared_attention_adapter)."""
    h, r, hybrid = a.hidden, kw.get("adapter_rank", 128), len(a.attn_layers)
    ah = 2 * h
    mamba = a.layers * (_mamba2_params(a, norm=True) + h) + hybrid * h * h
    attn = ah * (a.heads + 2 * a.kv_heads) * a.head_dim + a.heads * a.head_dim * h
    # the shared blocks are used round-robin over the hybrid layers; a block no layer uses is not built
    blocks = min(kw.get("num_mem_blocks", 1), hybrid) * (attn + 3 * h * a.ffn + ah + h)
    adapters = hybrid * ((h * r + r * 2 * a.ffn) if kw.get("use_shared_mlp_adapter", True) else 0)
    if kw.get("use_shared_attention_adapter", False):
        adapters += hybrid * 3 * (ah * r + r * ah)
    return mamba + blocks + adapters


def _hymba_params(a: Arch, kw: Mapping[str, Any]) -> int:
    """HymbaBlock: one in_proj for the Mamba branch (x and gate) and the attention q (+ k, v unless the layer
    reuses another layer's KV), Mamba-1 parameters with inner dt/B/C norms, two pre-average norms, out_proj;
    a SwiGLU MLP; two norms per layer; the meta tokens."""
    h, e, r, s = a.hidden, a.d_inner, a.dt_rank, a.d_state
    k_width, v_width = a.kv_heads * a.head_dim, a.kv_heads * a.v_head_dim
    ssm = e * h + e * a.d_conv + e + e * (r + 2 * s) + r * e + e + e * s + e + (r + 2 * s) + 2 * e
    per_layer = ssm + 3 * h * a.ffn + 2 * h
    total = 0
    for i in range(a.layers):
        latent = e + h + (0 if i not in a.kv_layers else k_width + v_width)
        total += h * (latent + e) + per_layer
    return total + a.meta_tokens * h


# ----------------------------------------------------------------------------------------------------------------
# tiny versions of each architecture: the same classes and layer patterns, CPU-sized (tests, smoke runs)

_TINY: dict[str, dict[str, Any]] = {
    "qwen2": dict(hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2),
    "llama": dict(hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2, head_dim=16),
    "phi3": dict(hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=4),
    "gpt_neo": dict(hidden_size=64, num_heads=4, max_position_embeddings=512),
    "mamba": dict(hidden_size=64, intermediate_size=128, state_size=8, time_step_rank=4),
    "mamba2": dict(hidden_size=64, num_heads=8, head_dim=16, state_size=16, chunk_size=16),
    "zamba2": dict(hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=4,
                   n_mamba_heads=8, mamba_d_state=16, adapter_rank=8, chunk_size=16),
    "falcon_h1": dict(hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                      mamba_d_ssm=128, mamba_n_heads=8, mamba_d_head=16, mamba_d_state=16, mamba_chunk_size=16),
    "hymba": dict(hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2,
                  mamba_d_state=8, mamba_dt_rank=4, num_memory_tokens=4, sliding_window=8),
}


def tiny(spec: ModelSpec, layers: int = 2, vocab_size: int = 256) -> ModelSpec:
    """``spec`` shrunk to ``layers`` layers, 64 hidden and a ``vocab_size`` vocabulary, keeping its config class,
    layer pattern and head ratios: the whole pipeline runs on it on a CPU in well under a second."""
    tokens = dict(bos_token_id=1, eos_token_id=2, pad_token_id=0)  # the real ids lie outside a tiny vocabulary
    return spec.derive(layers=layers, vocab_size=vocab_size, **tokens, **_TINY[spec.config["model_type"]])


# ----------------------------------------------------------------------------------------------------------------

def _family(entry: Mapping[str, Any]) -> str:
    if entry["family"] == "ssm":
        return "mamba2" if entry.get("model_type") == "mamba2" else "mamba"
    return entry["family"]


@functools.lru_cache(maxsize=1)
def registry() -> dict[str, ModelSpec]:
    """Every model of ``models.yaml`` by name (``params`` computed from the config, see :func:`param_count`)."""
    data = yaml.safe_load(REGISTRY_FILE.read_text())
    models = {}
    for name, entry in data["models"].items():
        models[name] = ModelSpec(name=name, hf_id=entry.get("hf_id", ""), family=_family(entry),
                                 hf_class=entry.get("hf_class", ""), params=param_count(_arch(entry), entry),
                                 source=entry.get("source", {}), unconfirmed=tuple(entry.get("unconfirmed") or ()),
                                 config=entry)
    return models


def get_model(name: str) -> ModelSpec:
    models = registry()
    if name not in models:
        raise ValueError(f"unknown model {name!r}; models are {', '.join(models)}")
    return models[name]
