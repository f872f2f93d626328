"""Every op of the op table (graphc.ops.OPS) on every backend of tests/conftest.py,
against the reference interpreter at O0, on data that crosses a 4096 block (rows of
2**12 + 1 = 4097: pointwise tails, and reductions on the looped path), with NaN and inf
among the values; and every elementwise op has a row in each renderer table. An op
added to the table without an example here, or one a backend's table lacks, fails
loudly instead of passing untested. (Zero-size dims: test_zero_size.py.)"""

import numpy as np
import pytest

import graphc as gc
from graphc import ops
from graphc.backends import c_render
from graphc.backends.numpy import ufunc_ops
from graphc.backends.triton import elementwise as triton_elementwise
from tests.strategies import assert_close

N = 2**12 + 1


def inputs(rows: int, cols: int) -> list:
    """x, y (float32, NaN and inf among them), w (float32 [cols, 3]), i (int64), b (bool),
    labels (int64 [cols] in [0, 5)): the operands the examples draw on."""
    return [gc.input("x", (rows, cols)), gc.input("y", (rows, cols)),
            gc.input("w", (cols, 3)), gc.input("i", (rows, cols), "int64"),
            gc.input("b", (rows, cols), "bool"), gc.input("labels", (cols,), "int64")]


def feeds(rows: int, cols: int, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    x, y = (rng.standard_normal((2, rows, cols)) * 2).astype(np.float32)
    flat = x.reshape(-1)
    flat[::97], flat[5::89], flat[7::101] = np.nan, np.inf, -np.inf
    return {"x": x, "y": y, "w": rng.standard_normal((cols, 3)).astype(np.float32),
            "i": rng.integers(-50, 50, (rows, cols)), "b": rng.standard_normal((rows, cols)) > 0,
            "labels": rng.integers(0, 5, cols)}


# op -> a node made with it from the inputs (x, y, w, i, b, labels); the op's domain is
# kept where the op's meaning needs it (log of |x| + 0.1), NaN and inf pass through.
EXAMPLES = {
    "neg": lambda x, y, w, i, b, labels: -x,
    "exp": lambda x, y, w, i, b, labels: gc.exp(x),
    "log": lambda x, y, w, i, b, labels: gc.log(gc.abs(x) + 0.1),
    "log1p": lambda x, y, w, i, b, labels: gc.log1p(gc.abs(x)),
    "sqrt": lambda x, y, w, i, b, labels: gc.sqrt(gc.abs(x)),
    "abs": lambda x, y, w, i, b, labels: gc.abs(x),
    "sign": lambda x, y, w, i, b, labels: gc.sign(x) + gc.cast(gc.sign(i), "float32"),
    "tanh": lambda x, y, w, i, b, labels: gc.tanh(x),
    "sigmoid": lambda x, y, w, i, b, labels: gc.sigmoid(x),
    "relu": lambda x, y, w, i, b, labels: gc.relu(x),
    "step": lambda x, y, w, i, b, labels: gc.step(x),
    "cast": lambda x, y, w, i, b, labels: gc.cast(gc.cast(y * 10, "int32"), "float64"),
    "stop_gradient": lambda x, y, w, i, b, labels: gc.stop_gradient(x) * 2,
    "add": lambda x, y, w, i, b, labels: x + y,
    "sub": lambda x, y, w, i, b, labels: x - y[:1],
    "mul": lambda x, y, w, i, b, labels: x * y,
    "div": lambda x, y, w, i, b, labels: x / y,
    "pow": lambda x, y, w, i, b, labels: gc.abs(x) ** y,
    "maximum": lambda x, y, w, i, b, labels: gc.maximum(x, y),
    "minimum": lambda x, y, w, i, b, labels: gc.minimum(x, y),
    "gt": lambda x, y, w, i, b, labels: x > y,
    "ge": lambda x, y, w, i, b, labels: x >= 0,
    "lt": lambda x, y, w, i, b, labels: x < y,
    "le": lambda x, y, w, i, b, labels: i <= 3,
    "eq": lambda x, y, w, i, b, labels: gc.eq(x, gc.maximum(x, y)),
    "ne": lambda x, y, w, i, b, labels: x != gc.maximum(x, y),  # nan != nan is true
    "where": lambda x, y, w, i, b, labels: gc.where(b, x, y),
    "sum": lambda x, y, w, i, b, labels: gc.sum(y, axis=1, keepdims=True) + gc.sum(y, axis=0),
    "max": lambda x, y, w, i, b, labels: (gc.max(y, axis=1, keepdims=True) + gc.max(x, axis=0)
                                          + gc.cast(gc.max(b, axis=1, keepdims=True), "float32")
                                          + gc.cast(gc.max(i, axis=1, keepdims=True), "float32")),
    "size": lambda x, y, w, i, b, labels: gc.sum(y, axis=1) / gc.size(y, axis=1),
    "reshape": lambda x, y, w, i, b, labels: gc.reshape(x, (-1,)) * 2,
    "transpose": lambda x, y, w, i, b, labels: x.T * y.T[:, :1],
    "broadcast_to": lambda x, y, w, i, b, labels: gc.broadcast_to(y[:1], (3,) + y.shape),
    "expand_dims": lambda x, y, w, i, b, labels: gc.expand_dims(x, 1) + y,
    "squeeze": lambda x, y, w, i, b, labels: gc.squeeze(gc.expand_dims(x, 0), 0) * 2,
    "slice": lambda x, y, w, i, b, labels: x[:, 1::3] * 2,
    "concat": lambda x, y, w, i, b, labels: gc.concat([x, y * 2, i], axis=1),
    "matmul": lambda x, y, w, i, b, labels: gc.relu(y @ w + 1.0),
    "one_hot": lambda x, y, w, i, b, labels: gc.one_hot(labels, 5) * 3,
    # one process: the all-reduce of a world of one (the numpy and triton O2 graphs run
    # it as all_reduce_start and all_reduce_wait)
    "all_reduce": lambda x, y, w, i, b, labels: (gc.all_reduce(x * y, op="mean")
                                                 + gc.cast(gc.all_reduce(i), "float32")),
    # indexing by data (h-index): labels in [0, 5) as indices into the columns
    "gather": lambda x, y, w, i, b, labels: gc.take(x, labels - 5, axis=1) * 2,
    "scatter_add": lambda x, y, w, i, b, labels: gc.scatter_add(
        y, 1, gc.broadcast_to(labels, y.shape), x),
    # --- issue 14's elementwise ops (h-elem) ---
    "sin": lambda x, y, w, i, b, labels: gc.sin(x),
    "cos": lambda x, y, w, i, b, labels: gc.cos(x) * y,
    "erf": lambda x, y, w, i, b, labels: gc.erf(x),
    "floor": lambda x, y, w, i, b, labels: gc.floor(x * 3),
    "tan": lambda x, y, w, i, b, labels: gc.tan(x),
    "ceil": lambda x, y, w, i, b, labels: gc.ceil(x * 3),
    "round": lambda x, y, w, i, b, labels: gc.round(x * 2),          # halves: ties to even
    "trunc": lambda x, y, w, i, b, labels: gc.trunc(x * 3),
    "reciprocal": lambda x, y, w, i, b, labels: gc.reciprocal(x),
    "rsqrt": lambda x, y, w, i, b, labels: gc.rsqrt(gc.abs(x)),
    "square": lambda x, y, w, i, b, labels: gc.square(x) + gc.cast(gc.square(i), "float32"),
    "isnan": lambda x, y, w, i, b, labels: gc.isnan(x),
    "isinf": lambda x, y, w, i, b, labels: gc.logical_or(gc.isinf(x), gc.isinf(i)),
    "isfinite": lambda x, y, w, i, b, labels: gc.isfinite(x * y),
    "logical_not": lambda x, y, w, i, b, labels: gc.logical_and(gc.logical_not(b),
                                                                         gc.logical_not(x)),
    "mod": lambda x, y, w, i, b, labels: gc.mod(x, y),
    "fmod": lambda x, y, w, i, b, labels: gc.fmod(x, y[:1]),
    "logical_and": lambda x, y, w, i, b, labels: gc.logical_and(x, b),
    "logical_or": lambda x, y, w, i, b, labels: gc.logical_or(y > 1, i),
    "logical_xor": lambda x, y, w, i, b, labels: gc.logical_xor(b, x),
    "min": lambda x, y, w, i, b, labels: (gc.min(y, axis=1, keepdims=True) + gc.min(x, axis=0)
                                          + gc.cast(gc.min(b, axis=1, keepdims=True), "float32")
                                          + gc.cast(gc.min(i, axis=1, keepdims=True), "float32")),
    "prod": lambda x, y, w, i, b, labels: (gc.prod(x, axis=0) + gc.prod(y[:, :9] * 0.5, axis=1,
                                                                        keepdims=True)),
    # randomness (issue 15): a float32 and a float64 draw from a const key, the bits
    # (the same on every backend) mixed with x, NaN and inf passing through
    "philox": lambda x, y, w, i, b, labels: (
        gc.random.uniform(_KEY, x.shape) * x
        + gc.random.normal(_KEY, (x.shape[1],), "float64")),
    # sliding windows (h-conv): x as a 1-D signal of one channel
    "conv": lambda x, y, w, i, b, labels: gc.conv(_signal(x), _FILTERS, stride=2, padding=1),
    "conv_input_grad": lambda x, y, w, i, b, labels: gc.vjp(
        gc.conv(_signal(x), _FILTERS, padding=((0, 2),)), x, gc.stop_gradient(
            gc.conv(_signal(y), _FILTERS, padding=((0, 2),)))),
    "conv_weight_grad": lambda x, y, w, i, b, labels: gc.grad(
        gc.sum(gc.conv(_signal(x), _FILTERS, dilation=2, padding=2) ** 2), _FILTERS),
    "max_pool": lambda x, y, w, i, b, labels: gc.max_pool(_signal(x), 3, stride=2, padding=1),
    "max_pool_grad": lambda x, y, w, i, b, labels: gc.vjp(
        gc.max_pool(_signal(x), 3, stride=2, padding=1), x,
        gc.stop_gradient(gc.max_pool(_signal(y), 3, stride=2, padding=1))),
}
_FILTERS = gc.const(np.linspace(-1.0, 1.0, 6).reshape(2, 1, 3))
_KEY = gc.const(np.array([2**40 + 9, 3], np.int64))
# Ops a backend refuses at build time, naming the op (the test checks the refusal).
REFUSED = {"triton": {"conv", "conv_input_grad", "conv_weight_grad", "max_pool",
                      "max_pool_grad"}}


def _signal(x):
    """x (rows, cols) as rows 1-D signals of one channel, (rows, 1, cols)."""
    return gc.reshape(x, (x.shape[0], 1, x.shape[1]))
# Ops of the table with no example of their own, and why.
NO_EXAMPLE = {"fused": "the kernel op: the fusion pass builds it, and every example runs "
                       "on the O2 graph of numpy and triton, which is made of fused nodes",
              **{op: "the schedule splits all_reduce into them: all_reduce's example runs "
                     "them on numpy and triton" for op in ("all_reduce_start",
                                                           "all_reduce_wait")}}


def test_every_op_of_the_table_has_an_example():
    assert set(EXAMPLES) | set(NO_EXAMPLE) == set(ops.OPS)
    assert not set(EXAMPLES) & set(NO_EXAMPLE)


def example(op, rows, cols):
    """(the op's example node, its feeds) for x of shape (rows, cols)."""
    node, fed = EXAMPLES[op](*inputs(rows, cols)), feeds(rows, cols)
    return node, {n.name: fed[n.name] for n in gc.Graph(node).inputs}


def assert_agree(got, want, what):
    assert got.dtype == want.dtype and got.shape == want.shape, what
    if want.dtype.kind == "f":
        assert_close(got, want, want.dtype.name, what=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


@pytest.mark.parametrize("op", sorted(EXAMPLES))
def test_every_op_on_a_block_crossing_row(op, backend):
    node, fed = example(op, 2, N)
    if op in REFUSED.get(backend.name, ()):
        # (the example's graph may hold another refused op before this one)
        refused = "|".join(REFUSED[backend.name])
        with pytest.raises(gc.GraphcError, match=f"cannot generate ({refused}) "):
            backend.compile(node)(**fed)
        return
    want = gc.compile(node, backend="reference", opt="O0")(**fed)
    assert_agree(backend.compile(node)(**fed), want, op)


# --- every elementwise op has a row in each backend's renderer table --------------------

ELEMENTWISE_OPS = sorted(n for n, d in ops.OPS.items() if d.kind in ops.ELEMENTWISE_KINDS)
TABLES = {"numpy": ufunc_ops.EMIT, "c": c_render.OPS_C, "triton": triton_elementwise.ELEMENTWISE}
# Elementwise ops a table leaves out on purpose: (where they are handled, why).
ELSEWHERE = {
    "numpy": {"stop_gradient": (ufunc_ops.VIEWS, "the identity: a view of its operand")},
    "c": {"stop_gradient": (ops.with_trait("view"), "the identity: the lowering reads "
                                                     "through it")},
    "triton": {"stop_gradient": (ops.with_trait("view"), "the identity: the lowering reads "
                                                          "through it")},
}


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_elementwise_op_has_a_row_in_each_renderer_table(table):
    missing = [op for op in ELEMENTWISE_OPS if op not in TABLES[table]
               and op not in ELSEWHERE[table]]
    assert not missing, f"{table}: no row for {missing}"
    for op, (handled_by, _why) in ELSEWHERE[table].items():
        assert op in ops.OPS and op not in TABLES[table] and op in handled_by
