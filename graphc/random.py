"""gc.random: random numbers drawn in the graph from explicit keys, as in JAX.

    key = gc.random.key(0, name="dropout_key")    # a param: int64[2] (seed, stream)
    k1, k2 = gc.random.split(key)                 # independent keys for two draws
    noise = gc.random.normal(k1, x.shape)         # symbolic dims ("batch") are fine
    step = gc.compile(loss, updates={**gc.optim.adam(loss, params),
                                     key: gc.random.next(key)})

A key is a value, not a hidden state: a draw is a pure function of its key and shape
(graphc/philox.py: Philox-4x32-10 on the counter (element index, stream) under the
seed), so every backend computes the same bits, and a run is reproducible from its seed.
Fresh numbers each call come from the step: the key is a param whose stream `next`
advances through `updates`, committed with the other updates only when the call
succeeds (a failed call draws again from the same key). Two draws from one key give the
same numbers; `split` the key for draws that must differ, and do not draw from a key you
split (its splits are made from its own numbers). A param holds a key, so gc.save and
gc.load keep it with the weights.
"""

from __future__ import annotations

import math

import numpy as np

from graphc import dsl
from graphc.arguments import describe
from graphc.errors import UsageError
from graphc.ir import Node
from graphc.node import apply, user_error
from graphc.types import canonical_dtype, canonical_shape

KEY_TYPE = "int64[2]"
# split draws its keys' seeds on the key's stream with the top bit set: a stream `next`
# never reaches (2**63 steps), so they are numbers no draw of the key or its successors has.
SPLIT_STREAM = -(2**63)


def key(seed: int, name: str = "key") -> Node:
    """A param holding a new key: seed (an int in [0, 2**64)) and stream 0."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or \
            not 0 <= int(seed) < 2**64:
        raise user_error(UsageError, f"gc.random.key: seed must be an int in [0, 2**64), got "
                         f"{describe(seed)}")
    value = np.array([int(seed), 0], dtype=np.uint64).view(np.int64)
    return dsl.param(name, value, "int64")


def next(key: Node) -> Node:  # noqa: A001  (JAX-like name: the key after this one)
    """The key's successor: the same seed, the next stream. Put {key: next(key)} in a
    step's updates so that each call draws fresh numbers."""
    return _checked(key, "next") + dsl.const(np.array([0, 1], dtype=np.int64))


def split(key: Node, n: int = 2) -> list:
    """n new keys, independent of each other and of the key's own draws: seeds drawn
    from the key (on a stream of their own), each with stream 0."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise user_error(UsageError, f"gc.random.split: n must be an int >= 1, got "
                         f"{describe(n)}")
    on_split_stream = _checked(key, "split") + dsl.const(
        np.array([0, SPLIT_STREAM], dtype=np.int64))
    seeds = bits(on_split_stream, (n, 1))
    zero = dsl.const(np.zeros(1, dtype=np.int64))
    return [dsl.concat([seeds[j], zero]) for j in range(n)]


def bits(key: Node, shape) -> Node:
    """Random int64 values, every bit pattern equally likely (raw Philox words)."""
    return _draw(key, shape, "int64", "bits")


def uniform(key: Node, shape, dtype="float32", minval=0.0, maxval=1.0) -> Node:
    """Floats uniform in [0, 1) (a multiple of 2**-24 for float32, of 2**-53 for
    float64), or u * (maxval - minval) + minval (whose rounding may reach maxval)."""
    dtype = _float_dtype(dtype, "uniform")
    u = _draw(key, shape, dtype, "uniform")
    if (minval, maxval) == (0.0, 1.0):
        return u
    return u * (maxval - minval) + minval


def normal(key: Node, shape, dtype="float32", mean=0.0, std=1.0) -> Node:
    """Normal floats by the Box-Muller transform of two uniform draws u1, u2 in [0, 1):
    sqrt(-2 log(1 - u1)) cos(2 pi u2) (1 - u1 lies in (0, 1], so the log is finite; a
    float32 value lies within about 5.8 standard deviations, as u1 has 24 bits)."""
    dtype = _float_dtype(dtype, "normal")
    u = _draw(key, (2,) + canonical_shape(shape), dtype, "normal")
    radius = dsl.sqrt(-2.0 * dsl.log(1.0 - u[0]))
    z = radius * dsl.cos((2 * math.pi) * u[1])
    if (mean, std) == (0.0, 1.0):
        return z
    return z * std + mean


def bernoulli(key: Node, p, shape) -> Node:
    """Bools, each true with probability p (a number in [0, 1], or a float node that
    broadcasts to shape): uniform < p, as jax.random.bernoulli."""
    if not isinstance(p, Node) and not (isinstance(p, (int, float)) and 0 <= p <= 1):
        raise user_error(UsageError, f"gc.random.bernoulli: p must be a probability in [0, 1] or a "
                         f"node, got {describe(p)}")
    dtype = p.dtype if isinstance(p, Node) and p.dtype == "float64" else "float32"
    return _draw(key, shape, dtype, "bernoulli") < p


def _draw(key: Node, shape, dtype: str, what: str) -> Node:
    shape = (shape,) if shape is None or isinstance(shape, (int, str)) else tuple(shape)
    if None in shape:
        raise user_error(UsageError, f"gc.random.{what}: shape {shape} has a None dim; give "
                         "sizes and dim names (x.shape) only: a draw has no input to "
                         "bind a new dim from")
    return apply("philox", _checked(key, what), shape=canonical_shape(shape), dtype=dtype)


def _float_dtype(dtype, what: str) -> str:
    dtype = canonical_dtype(dtype)
    if dtype not in ("float32", "float64"):
        raise user_error(UsageError, f"gc.random.{what}: dtype must be float32 or float64, "
                         f"got {dtype}")
    return dtype


def _checked(key, what: str) -> Node:
    """The key, after checking it is one (an int64[2] node: gc.random.key's param, or a
    key made from one)."""
    if not isinstance(key, Node) or key.dtype != "int64" or key.shape != (2,):
        raise user_error(UsageError, f"gc.random.{what}: key must be a key ({KEY_TYPE}: "
                         f"gc.random.key(seed, name=...), or split or next of one), got "
                         f"{describe(key)}")
    return key
