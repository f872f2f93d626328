"""Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11),
vectorized in NumPy: the counter-based generator behind gc.random (graphc/random.py).

A Philox draw is a pure function of a 64-bit key and a 128-bit counter, so element i of
a random tensor can be computed anywhere, in any order, with no state between elements:
the reference, NumPy and Triton backends compute the same bits independently. Triton's
own tl.philox / tl.randint are this function (same constants, same round; its `seed`
is our key, its 64-bit `offset` our counter's low words), so its kernels call it.

graphc's draw (the `philox` op of graphc/ops.py): for a key param holding
(seed, stream) as two int64 bit patterns, element i of the draw (row-major, i a 64-bit
index) is word 0 (and word 1, where 32 bits are too few) of

    philox4x32_10(counter=(i_lo, i_hi, stream_lo, stream_hi), key=(seed_lo, seed_hi))

and a value of dtype
    float32: (w0 >> 8) * 2**-24                      (exact, in [0, 1), 24 bits)
    float64: ((w1 >> 11) * 2**32 + w0) * 2**-53      (exact, in [0, 1), 53 bits)
    int64:   (w1 << 32) | w0 as an int64 bit pattern (raw bits: new keys, graphc.random.split)
"""

from __future__ import annotations

import numpy as np

ROUNDS = 10
# Random123's constants: the multipliers of the two lanes and the key's Weyl increments.
MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
KEY_STEPS = (0x9E3779B9, 0xBB67AE85)
# Elements computed at once: the round's temporaries stay in cache (3x faster than a
# whole 128k-element draw at a time, measured on this machine's NumPy).
CHUNK = 1 << 15
_MASK = np.uint64(0xFFFFFFFF)
_32 = np.uint64(32)


def _rounds(c0, c1, c2, c3, k0: int, k1: int, rounds: int) -> tuple:
    """Philox-4x32's rounds on uint64 arrays holding 32-bit words, in place: each product
    of a 32-bit multiplier and word fits 64 bits, its high and low halves the mulhilo."""
    p0, p1 = np.empty_like(c0), np.empty_like(c0)
    for r in range(rounds):
        np.multiply(c0, np.uint64(MULTIPLIERS[0]), out=p0)
        np.multiply(c2, np.uint64(MULTIPLIERS[1]), out=p1)
        # (c0, c1, c2, c3) <- (hi(p1) ^ c1 ^ k0, lo(p1), hi(p0) ^ c3 ^ k1, lo(p0))
        np.right_shift(p1, _32, out=c0)
        c0 ^= c1
        c0 ^= np.uint64(k0)
        np.bitwise_and(p1, _MASK, out=c1)
        np.right_shift(p0, _32, out=c2)
        c2 ^= c3
        c2 ^= np.uint64(k1)
        np.bitwise_and(p0, _MASK, out=c3)
        k0, k1 = (k0 + KEY_STEPS[0]) & 0xFFFFFFFF, (k1 + KEY_STEPS[1]) & 0xFFFFFFFF
    return c0, c1, c2, c3


def philox4x32(counter: tuple, key: tuple, rounds: int = ROUNDS) -> tuple:
    """The four output words (uint32 arrays) of Philox-4x32 for counter words
    (c0, c1, c2, c3) and key words (k0, k1), the counter's arrays or ints broadcast."""
    words = [np.array(c, dtype=np.uint64) for c in np.broadcast_arrays(*counter)]
    out = _rounds(*words, int(key[0]), int(key[1]), rounds)
    return tuple(w.astype(np.uint32) for w in out)


def words(key: np.ndarray, count: int) -> tuple:
    """Words 0 and 1 (uint64 arrays of 32-bit values) of the draw of `count` elements
    from key (seed, stream) (int64[2])."""
    seed, stream = (int(v) for v in np.asarray(key, dtype=np.int64).view(np.uint64))
    w0, w1 = np.empty(count, np.uint64), np.empty(count, np.uint64)
    for lo in range(0, count, CHUNK):
        c0 = np.arange(lo, min(count, lo + CHUNK), dtype=np.uint64)
        c1 = c0 >> _32
        c0 &= _MASK
        c2, c3 = (np.full(len(c0), half, np.uint64) for half in (stream & 0xFFFFFFFF,
                                                                  stream >> 32))
        w0[lo:lo + len(c0)], w1[lo:lo + len(c0)], _, _ = _rounds(
            c0, c1, c2, c3, seed & 0xFFFFFFFF, seed >> 32, ROUNDS)
    return w0, w1


def draw(key: np.ndarray, shape: tuple, dtype: str) -> np.ndarray:
    """The values of a draw of `shape` and dtype (float32, float64 or int64) from key."""
    w0, w1 = words(key, int(np.prod(shape, dtype=np.int64)))
    return CONVERT[dtype](w0, w1).reshape(shape)


# dtype -> (words 0 and 1 -> values): the dtypes a draw may have
CONVERT = {
    "float32": lambda w0, w1: (w0 >> np.uint64(8)).astype(np.float32) * np.float32(2.0**-24),
    "float64": lambda w0, w1: (((w1 >> np.uint64(11)) << _32) | w0).astype(np.float64)
    * 2.0**-53,
    "int64": lambda w0, w1: ((w1 << _32) | w0).view(np.int64),
}
