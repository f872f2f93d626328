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
_MASK = np.uint64(0xFFFFFFFF)
_U32 = np.uint32


def _mulhilo(a: int, b: np.ndarray) -> tuple:
    """(high, low) 32-bit halves of the 64-bit product a * b, elementwise."""
    product = np.uint64(a) * b.astype(np.uint64)
    return (product >> np.uint64(32)).astype(_U32), (product & _MASK).astype(_U32)


def philox4x32(counter: tuple, key: tuple, rounds: int = ROUNDS) -> tuple:
    """The four output words (uint32 arrays) of Philox-4x32 for counter words
    (c0, c1, c2, c3) and key words (k0, k1), each a uint32 array or scalar (broadcast)."""
    c0, c1, c2, c3 = np.broadcast_arrays(*(np.asarray(c, dtype=_U32) for c in counter))
    k0, k1 = (np.asarray(k, dtype=_U32) for k in key)
    with np.errstate(over="ignore"):   # the key schedule wraps mod 2**32, as it should
        for r in range(rounds):
            hi0, lo0 = _mulhilo(MULTIPLIERS[0], c0)
            hi1, lo1 = _mulhilo(MULTIPLIERS[1], c2)
            c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
            if r + 1 < rounds:
                k0, k1 = k0 + _U32(KEY_STEPS[0]), k1 + _U32(KEY_STEPS[1])
    return c0, c1, c2, c3


def _halves(value: np.int64) -> tuple:
    """(low, high) 32-bit words of a 64-bit value given as an int64 bit pattern."""
    bits = np.asarray(value, dtype=np.int64).view(np.uint64)
    return (bits & _MASK).astype(_U32), (bits >> np.uint64(32)).astype(_U32)


def words(key: np.ndarray, count: int) -> tuple:
    """Words 0 and 1 of the draw of `count` elements from key (seed, stream) (int64[2])."""
    key = np.asarray(key, dtype=np.int64)
    index = np.arange(count, dtype=np.uint64)
    counter = ((index & _MASK).astype(_U32), (index >> np.uint64(32)).astype(_U32),
               *_halves(key[1]))
    w0, w1, _, _ = philox4x32(counter, _halves(key[0]))
    return w0, w1


def draw(key: np.ndarray, shape: tuple, dtype: str) -> np.ndarray:
    """The values of a draw of `shape` and dtype (float32, float64 or int64) from key."""
    w0, w1 = words(key, int(np.prod(shape, dtype=np.int64)))
    return CONVERT[dtype](w0, w1).reshape(shape)


def _float64(w0, w1):
    bits = ((w1 >> _U32(11)).astype(np.uint64) << np.uint64(32)) | w0.astype(np.uint64)
    return bits.astype(np.float64) * 2.0**-53


def _int64(w0, w1):
    return ((w1.astype(np.uint64) << np.uint64(32)) | w0.astype(np.uint64)).view(np.int64)


# dtype -> (words 0 and 1 -> values): the dtypes a draw may have
CONVERT = {
    "float32": lambda w0, w1: (w0 >> _U32(8)).astype(np.float32) * np.float32(2.0**-24),
    "float64": _float64,
    "int64": _int64,
}
