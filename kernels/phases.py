"""In-register phases of a Triton tile: ``[R, G, K]`` <-> K tiles ``[R, G]`` (K = 2, 4, 8), one by one or as a tuple.

When each thread holds the K elements of the last axis (the contiguous one of a vector load), ``tl.reshape``
+ ``tl.split`` and ``tl.join`` + ``tl.reshape`` are register renames: a kernel can index its tile by
position at compile time (Triton tensors cannot be indexed otherwise) without shuffles or shared memory.
Used by the causal conv1d (taps from neighbouring phases) and the selective scan (one step per phase).
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def split4(t):
    """[R, G, 4] -> its 4 phases t[:, :, 0..3], each [R, G]."""
    t = tl.reshape(t, (t.shape[0], t.shape[1], 2, 2))
    e, o = tl.split(t)  # phase 2a + 0, 2a + 1
    t0, t2 = tl.split(e)
    t1, t3 = tl.split(o)
    return t0, t1, t2, t3


@triton.jit
def split8(t):
    """[R, G, 8] -> its 8 phases, each [R, G]."""
    t = tl.reshape(t, (t.shape[0], t.shape[1], 2, 2, 2))
    e, o = tl.split(t)  # phase 4a + 2b + 0 / + 1
    e0, e1 = tl.split(e)  # b
    o0, o1 = tl.split(o)
    t0, t4 = tl.split(e0)
    t2, t6 = tl.split(e1)
    t1, t5 = tl.split(o0)
    t3, t7 = tl.split(o1)
    return t0, t1, t2, t3, t4, t5, t6, t7


@triton.jit
def join4(t0, t1, t2, t3):
    """Inverse of split4: 4 phases [R, G] -> [R, G, 4]. join adds the new axis last, so the lowest bit of
    the phase is joined last."""
    u = tl.join(tl.join(t0, t2), tl.join(t1, t3))  # [R, G, a, b], phase 2a + b
    return tl.reshape(u, (t0.shape[0], t0.shape[1], 4))


@triton.jit
def join8(t0, t1, t2, t3, t4, t5, t6, t7):
    """Inverse of split8: 8 phases [R, G] -> [R, G, 8] (phase 4a + 2b + c, c joined last)."""
    c0 = tl.join(tl.join(t0, t4), tl.join(t2, t6))  # [R, G, a, b] with c = 0
    c1 = tl.join(tl.join(t1, t5), tl.join(t3, t7))
    return tl.reshape(tl.join(c0, c1), (t0.shape[0], t0.shape[1], 8))


@triton.jit
def split_phases(v, P: tl.constexpr):
    """[R, G, P] -> its P phases [R, G] as a tuple (P = 4 or 8): for loops over phases (tl.static_range)."""
    if P == 8:
        p0, p1, p2, p3, p4, p5, p6, p7 = split8(v)
        return (p0, p1, p2, p3, p4, p5, p6, p7)
    else:
        p0, p1, p2, p3 = split4(v)
        return (p0, p1, p2, p3)


@triton.jit
def join_phases(ph, i: tl.constexpr, P: tl.constexpr):
    """Phases i … i + P - 1 of the tuple ph -> [R, G, P] (P = 4 or 8)."""
    if P == 8:
        return join8(ph[i], ph[i + 1], ph[i + 2], ph[i + 3], ph[i + 4], ph[i + 5], ph[i + 6], ph[i + 7])
    else:
        return join4(ph[i], ph[i + 1], ph[i + 2], ph[i + 3])
