"""How our split-KV decode kernel cuts the cache (pure Python: the cost model uses it without importing Triton).

With one query token per (batch, kv head) there are only B·Hkv independent rows of work; at batch 1 that
is 2-8 programs on a 132-SM GPU. Splitting the S cached tokens into chunks, each reduced by its own
program, and combining the partial softmaxes afterwards ("flash decoding") fills the machine.
"""
from __future__ import annotations

H100_SMS = 132           # SMs of the H100 SXM the paper measures on (the cost model's default)
INTERPRETER_SMS = 4      # a nominal count for the CPU interpreter, so small CPU cases still split
WAVES = 2                # aim for about two programs per SM
MIN_KEYS_PER_SPLIT = 128  # below this, the partial-result traffic outweighs the parallelism gained
MAX_SPLITS = 128


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def gpu_tiles(head_dim: int, elem_bytes: int) -> tuple[int, int]:
    """(keys per tile, pipeline stages) of our decode kernel on a GPU. Checked with ptxas -v on sm_90: no
    register spills with these (fp32 runs IEEE FMA dots and needs a narrower tile at d = 256)."""
    if head_dim <= 128:
        return 64, 3
    return (16 if elem_bytes == 4 else 32), 2


def split_plan(batch: int, kv_heads: int, seqlen: int, block_n: int, num_sms: int) -> tuple[int, int]:
    """(num_splits, keys_per_split) with keys_per_split a multiple of block_n and every split non-empty."""
    want = cdiv(WAVES * num_sms, max(1, batch * kv_heads))
    splits = max(1, min(want, cdiv(seqlen, MIN_KEYS_PER_SPLIT), MAX_SPLITS))
    keys = cdiv(cdiv(seqlen, splits), block_n) * block_n
    return cdiv(seqlen, keys), keys
