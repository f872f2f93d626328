"""Hypothesis strategies for random graphs, shared by the pass and backend property tests.

    from tests.strategies import graphs, assert_close

    @given(graphs(dtype="float32"))
    def test_something(case):
        outputs, feeds = case                   # feeds: input name -> array
        ...

A graph is a random DAG over 1..3 inputs of small static shapes, grown one op at a time
from a pool of the values built so far: elementwise unary and binary ops (with NumPy
broadcasting), reductions (sum, max, mean; random axes and keepdims), layout ops
(reshape, transpose, broadcast_to, expand_dims, squeeze, slice, concat), matmul, and
idioms that the simplify pass rewrites (IDIOMS).
Every op is built so that it type-checks, and the unary ops that have a restricted
domain get operands in a safe range (log of |x|+1, sqrt of |x|, exp of tanh x), so
comparing two evaluations of a graph is meaningful: no nan or inf arises, unless the
inputs hold some (`graphs(special=True)`), and then every evaluation must agree on
where they go.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import graphc as gc

DIMS = (1, 2, 3, 4)


# --- ops, each a function (draw, pool) -> node or None (when it does not apply) --------

def _pick(draw, pool, fits=lambda node: True):
    candidates = [node for node in pool if fits(node)]
    return draw(st.sampled_from(candidates)) if candidates else None


# Unary ops in safe forms: the operand of log/sqrt/exp is mapped into the op's domain.
UNARY = {
    "neg": gc.neg,
    "abs": gc.abs,
    "tanh": gc.tanh,
    "sigmoid": gc.sigmoid,
    "relu": gc.relu,
    "exp": lambda x: gc.exp(gc.tanh(x)),
    "log": lambda x: gc.log(gc.abs(x) + 1.0),
    "log1p": lambda x: gc.log1p(gc.abs(x)),
    "sqrt": lambda x: gc.sqrt(gc.abs(x)),
    "square": lambda x: x * x,
}

BINARY = {
    "add": gc.add,
    "sub": gc.sub,
    "mul": gc.mul,
    "maximum": gc.maximum,
    "minimum": gc.minimum,
    "div": lambda a, b: a / (gc.abs(b) + 1.0),
}


def _unary(draw, pool):
    x = _pick(draw, pool)
    return UNARY[draw(st.sampled_from(sorted(UNARY)))](x)


def _broadcasts(a, b) -> bool:
    return gc.types.broadcast_shapes(a.shape, b.shape) is not None


def _binary(draw, pool):
    a = _pick(draw, pool)
    if draw(st.booleans()):
        b = _pick(draw, pool, lambda n: _broadcasts(a, n))
    else:  # a constant of a shape that broadcasts against a: scalar or a suffix of a's
        shape = a.shape[draw(st.integers(0, a.ndim)):]
        b = gc.const(draw(_arrays(shape, np.float64)), a.dtype)
    op = BINARY[draw(st.sampled_from(sorted(BINARY)))]
    return op(a, b) if draw(st.booleans()) else op(b, a)


def _axes(draw, node):
    if node.ndim == 0:
        return ()
    return tuple(sorted(draw(st.sets(st.integers(0, node.ndim - 1), min_size=1))))


def _reduce(draw, pool):
    x = _pick(draw, pool, lambda n: n.ndim > 0)
    if x is None:
        return None
    fn = draw(st.sampled_from([gc.sum, gc.max, gc.mean]))
    return fn(x, axis=_axes(draw, x), keepdims=draw(st.booleans()))


def _reshape(draw, pool):
    x = _pick(draw, pool)
    size = int(np.prod(x.shape, dtype=np.int64))
    shapes = [(size,), (1,) + x.shape, tuple(reversed(x.shape))]
    return gc.reshape(x, draw(st.sampled_from(shapes)))


def _transpose(draw, pool):
    x = _pick(draw, pool, lambda n: n.ndim >= 2)
    if x is None:
        return None
    return gc.transpose(x, draw(st.permutations(range(x.ndim))))


def _broadcast_to(draw, pool):
    x = _pick(draw, pool, lambda n: n.ndim <= 3)
    shape = tuple(3 if d == 1 and draw(st.booleans()) else d for d in x.shape)
    if draw(st.booleans()) or shape == x.shape:
        shape = (draw(st.sampled_from(DIMS)),) + shape
    return gc.broadcast_to(x, shape)


def _expand_dims(draw, pool):
    x = _pick(draw, pool, lambda n: n.ndim <= 3)
    return gc.expand_dims(x, draw(st.integers(0, x.ndim)))


def _squeeze(draw, pool):
    x = _pick(draw, pool, lambda n: 1 in n.shape)
    if x is None:
        return None
    ones = [i for i, d in enumerate(x.shape) if d == 1]
    return gc.squeeze(x, tuple(sorted(draw(st.sets(st.sampled_from(ones), min_size=1)))))


def _slice(draw, pool):
    x = _pick(draw, pool, lambda n: any(d > 1 for d in n.shape))
    if x is None:
        return None
    axis = draw(st.sampled_from([i for i, d in enumerate(x.shape) if d > 1]))
    index = [slice(None)] * x.ndim
    index[axis] = draw(st.sampled_from([slice(1, None), slice(None, -1), slice(None, None, 2)]))
    return x[tuple(index)]


def _concat(draw, pool):
    a = _pick(draw, pool, lambda n: n.ndim > 0)
    if a is None:
        return None
    axis = draw(st.integers(0, a.ndim - 1))
    b = _pick(draw, pool, lambda n: n.ndim == a.ndim and n.dtype == a.dtype and all(
        p == q for i, (p, q) in enumerate(zip(n.shape, a.shape)) if i != axis))
    return gc.concat([a, b], axis=axis)


def _matmul(draw, pool):
    a = _pick(draw, pool, lambda n: n.ndim >= 2)
    if a is None:
        return None

    def fits(n):
        return (n.ndim >= 2 and n.shape[-2] == a.shape[-1]
                and gc.types.broadcast_shapes(n.shape[:-2], a.shape[:-2]) is not None)

    b = _pick(draw, pool, fits)
    if b is None:  # a @ a^T always fits
        b = gc.transpose(a, tuple(range(a.ndim - 2)) + (a.ndim - 1, a.ndim - 2))
    return gc.matmul(a, b)


# Forms the simplify rules rewrite (x + 0, neg neg, log of sigmoid or softmax, chains of
# layout ops, division by a constant, sum of a broadcast), so that optimized graphs differ.
IDIOMS = {
    "add-zero": lambda x: x + 0.0,
    "mul-one": lambda x: 1.0 * x,
    "neg-neg": lambda x: -(-x),
    "div-const": lambda x: x / 4.0,
    # operands squashed by tanh: the unoptimized forms underflow for large |x| (that is
    # why they are rewritten), and the graph before and after must agree
    "log-sigmoid": lambda x: gc.log(gc.sigmoid(gc.tanh(x))),
    "log-one-minus-sigmoid": lambda x: gc.log(1.0 - gc.sigmoid(gc.tanh(x))),
    "softplus-naive": lambda x: gc.log1p(gc.exp(gc.tanh(x))),
    "exp-log": lambda x: gc.exp(gc.log(gc.abs(x) + 1.0)),
    "log-softmax": lambda x: gc.log(gc.nn.softmax(x, axis=-1)) if x.ndim else x,
    "transpose-transpose": lambda x: gc.transpose(gc.transpose(x)),
    "reshape-reshape": lambda x: gc.reshape(gc.reshape(x, (-1,)), x.shape),
    "sum-of-broadcast": lambda x: gc.sum(gc.broadcast_to(x, (3,) + x.shape), axis=0),
}


def _idiom(draw, pool):
    x = _pick(draw, pool)
    return IDIOMS[draw(st.sampled_from(sorted(IDIOMS)))](x)


OP_FAMILIES = {
    "unary": _unary, "binary": _binary, "reduce": _reduce, "reshape": _reshape,
    "transpose": _transpose, "broadcast_to": _broadcast_to, "expand_dims": _expand_dims,
    "squeeze": _squeeze, "slice": _slice, "concat": _concat, "matmul": _matmul,
    "idiom": _idiom,
}


# --- graphs ----------------------------------------------------------------------------

def _arrays(shape, dtype, special=False):
    """Arrays of `shape` with values in [-2, 2] (finite, not tiny), as a strategy; with
    `special`, nan, inf and -inf among them."""
    size = int(np.prod(shape, dtype=np.int64))
    floats = st.floats(-2, 2, allow_nan=False, width=32)
    if special:
        floats = st.one_of(floats, st.sampled_from([np.nan, np.inf, -np.inf]))
    values = st.lists(floats, min_size=size, max_size=size)
    return values.map(lambda v: np.array(v, dtype=dtype).reshape(shape))


def shapes(max_rank=3):
    return st.lists(st.sampled_from(DIMS), max_size=max_rank).map(tuple)


@st.composite
def graphs(draw, dtype="float32", max_ops=10, families=tuple(OP_FAMILIES), special=False):
    """A random graph as (outputs: list of nodes, feeds: {input name: array}).

    dtype: "float32" or "float64" (inputs and consts).  max_ops: ops drawn (each may add
    a few nodes).  families: names in OP_FAMILIES to draw ops from.  special: inputs
    may hold nan, inf and -inf."""
    n_inputs = draw(st.integers(1, 3))
    pool, feeds = [], {}
    for i in range(n_inputs):
        shape = draw(shapes())
        node = gc.input(f"x{i}", shape, dtype)
        pool.append(node)
        feeds[node.name] = draw(_arrays(shape, np.dtype(dtype), special))
    for _ in range(draw(st.integers(1, max_ops))):
        node = OP_FAMILIES[draw(st.sampled_from(sorted(families)))](draw, pool)
        if node is not None:
            pool.append(node)
    extra = draw(st.lists(st.sampled_from(pool[n_inputs:] or pool), max_size=2))
    outputs = list(dict.fromkeys([pool[-1]] + extra))
    used = {node.name for node in gc.Graph(outputs).inputs}
    return outputs, {name: array for name, array in feeds.items() if name in used}


# --- comparing results -----------------------------------------------------------------

TOLERANCE = {"float32": 2e-4, "float64": 1e-10}


def assert_close(actual, expected, dtype="float32", what="value"):
    """Equal within a tolerance suited to `dtype`, relative to the values' magnitude."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    tol = TOLERANCE[dtype]
    finite = np.abs(expected[np.isfinite(expected)])  # inf and nan must match exactly
    scale = max(1.0, float(np.max(finite, initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale, err_msg=what)


def run_reference(outputs, feeds) -> list:
    """The outputs' values under the reference interpreter, with no optimization."""
    results = gc.compile(list(outputs), backend="reference", opt="O0")(**feeds)
    return list(results)


__all__ = ["graphs", "shapes", "assert_close", "run_reference", "UNARY", "BINARY", "IDIOMS",
           "OP_FAMILIES"]
