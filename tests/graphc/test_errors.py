"""Errors a user can act on: each names the op or input at fault, the shapes, and the
user's own file:line, and comes with a short traceback (no NumPy frames from deep inside)."""

import inspect
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import graphc as gc
from graphc.errors import DtypeError, FeedError, GraphcError, ShapeError


def line(offset=0) -> str:
    """`test_errors.py:N` for the caller's line N (plus offset)."""
    return f"test_errors.py:{inspect.currentframe().f_back.f_lineno + offset}"


# NumPy's own package: graphc's backends/numpy/ has "numpy" in its path too
NUMPY_DIR = os.path.dirname(np.__file__) + os.sep


def assert_short(info):
    """graphc re-raises with `from None` (or raises fresh): no chained NumPy error, and no
    frame inside NumPy in the traceback."""
    e = info.value
    assert e.__cause__ is None
    assert e.__suppress_context__ or e.__context__ is None
    assert not any(str(entry.path).startswith(NUMPY_DIR) for entry in info.traceback)


# --- build time -----------------------------------------------------------------------

def test_broadcast_mismatch_names_op_shapes_and_user_line():
    a = gc.input("a", (2, 3))
    b = gc.input("b", (4,))
    with pytest.raises(ShapeError) as info:
        a + b
    where = line(-1)
    message = str(info.value)
    assert "add: shapes (2, 3) and (4,) do not broadcast" in message
    assert f"at {where}" in message
    assert "operand 0: a : f32[2,3]" in message and "operand 1: b : f32[4]" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert_short(info)


def test_matmul_mismatch():
    x = gc.input("x", ("batch", 3))
    W = gc.param("W", np.zeros((4, 2)))
    with pytest.raises(ShapeError) as info:
        gc.relu(x @ W + 1)
    message = str(info.value)
    assert "matmul" in message and "(batch, 3)" in message and "(4, 2)" in message
    assert line(-3) in message
    assert_short(info)


def test_two_different_symbolic_dims_do_not_broadcast():
    a, b = gc.input("a", ("batch", 3)), gc.input("b", ("other", 3))
    with pytest.raises(ShapeError) as info:
        gc.maximum(a, b)
    assert "maximum" in str(info.value) and "(batch, 3) and (other, 3)" in str(info.value)
    assert line(-2) in str(info.value)


def test_error_inside_an_nn_composite_points_at_the_users_line():
    x = gc.input("x", ("n", 3))
    W = gc.param("W", np.zeros((4, 2)))
    with pytest.raises(ShapeError) as info:
        gc.nn.dense(x, W)
    message = str(info.value)
    assert "matmul" in message and "(n, 3)" in message and "(4, 2)" in message
    assert line(-3) in message and "nn.py" not in message.split("at ")[-1]
    assert_short(info)


@pytest.mark.parametrize("build,op", [
    (lambda x: x.reshape((5, -1)), "reshape"),
    (lambda x: x.reshape((4, 2)), "reshape"),
    (lambda x: x[7], "index 7"),
    (lambda x: x[0, 0, 0], "more entries"),
    (lambda x: x.sum(axis=2), "sum"),
    (lambda x: gc.transpose(x, (1, 1)), "transpose"),
    (lambda x: gc.concat([x, x.T], axis=0), "concat"),
    (lambda x: gc.squeeze(x, 0), "squeeze"),
    (lambda x: gc.nn.maxout(x, 4), "maxout"),
    (lambda x: gc.broadcast_to(x, (3, 2)), "broadcast_to"),
    (lambda x: gc.concat([]), "concat: needs at least one value"),
])
def test_every_build_time_shape_error_names_the_op_and_user_line(build, op):
    x = gc.input("x", (2, 3))
    with pytest.raises(ShapeError) as info:
        build(x)
    assert op in str(info.value)
    assert "test_errors.py:" in str(info.value)  # the lambda's line, in this file
    assert_short(info)


def test_dtype_error_names_op_and_line():
    labels = gc.input("labels", (3,), "int64")
    with pytest.raises(DtypeError) as info:
        gc.exp(labels)
    assert "exp: needs a float operand, got int64" in str(info.value)
    assert line(-2) in str(info.value)
    assert_short(info)


# --- call time: feeds -----------------------------------------------------------------

@pytest.fixture
def model(backend):
    x = gc.input("x", ("batch", 2))
    y = gc.input("y", ("batch",), "int64")
    W = gc.param("W", np.ones((2, 3)))
    loss = gc.nn.softmax_cross_entropy(x @ W, y)
    return backend.compile(loss)


X, Y = np.zeros((4, 2), np.float32), np.array([0, 1, 2, 1])


def test_the_model_runs(model):
    assert model(x=X, y=Y) == pytest.approx(np.log(3), rel=1e-6)


@pytest.mark.parametrize("feeds,words", [
    (dict(x=X), ["missing input 'y'", "i64[batch]"]),
    (dict(x=X, y=Y, z=X), ["unknown input 'z'", "'x'", "'y'"]),
    (dict(x=X[0], y=Y), ["input 'x'", "(batch, 2)", "rank 2", "(2,)"]),
    (dict(x=np.zeros((4, 3)), y=Y), ["input 'x'", "dim 1 must be 2, got 3"]),
    (dict(x=X, y=Y.astype(np.float64)), ["input 'y'", "int64", "float64", "lose information"]),
    (dict(x=X, y=np.array(["a", "b", "c", "d"])), ["input 'y'", "int64", "<U1"]),
    (dict(x=[[1, 2], [3]], y=Y), ["input 'x'", "not an array"]),
    (dict(x=X, y=Y[:3]), ["symbolic dim 'batch'", "4 in input 'x'", "3 in input 'y'"]),
])
def test_feed_errors_name_the_input(model, feeds, words):
    with pytest.raises(FeedError) as info:
        model(**feeds)
    for word in words:
        assert word in str(info.value)
    assert_short(info)


def test_positional_feeds(backend):
    x = gc.input("x", (2,))
    y = gc.input("y", (2,))
    f = backend.compile(x - y, inputs=[x, y])
    np.testing.assert_array_equal(f(np.ones(2), np.zeros(2)), [1, 1])
    np.testing.assert_array_equal(f(np.ones(2), y=np.full(2, 3.0)), [-2, -2])
    with pytest.raises(FeedError, match="3 positional arrays for 2 inputs"):
        f(np.ones(2), np.ones(2), np.ones(2))
    with pytest.raises(FeedError, match="'x' is given both by position and by name"):
        f(np.ones(2), x=np.ones(2))


@pytest.mark.parametrize("dtype,value,ok", [
    ("float32", np.ones(2, np.float64), True),     # float64 -> float32: same kind
    ("float32", np.array([1, 2]), True),           # ints are exact in floats this small
    ("float32", np.array([True, False]), True),
    ("int32", np.array([1, 2], np.int64), True),   # in range: nothing is lost
    ("int32", np.array([1, 2**40]), False),        # out of int32's range
    ("int64", np.array([1.0, 2.0]), False),        # float -> int
    ("bool", np.array([0, 1]), False),             # int -> bool
    ("int64", np.array([1, 2], np.uint8), True),
])
def test_feed_dtypes_that_would_lose_information_are_refused(dtype, value, ok, backend):
    x = gc.input("x", (2,), dtype)
    f = backend.compile(gc.cast(x, "float64"))
    if ok:
        np.testing.assert_array_equal(f(x=value), value.astype(np.float64))
    else:
        with pytest.raises(FeedError, match="input 'x' expects " + dtype):
            f(x=value)


F32_MAX = float(np.finfo(np.float32).max)
F32_ROUNDS_TO_INF = 2.0**128 - 2.0**103  # halfway from float32's max to 2**128: ties to even


@pytest.mark.parametrize("value, largest", [
    ([1.0, 1e39, -1e300], "1e+300"),
    ([F32_ROUNDS_TO_INF, 0.0, 0.0], "3.40282357e+38"),
    ([np.inf, -2e38, -4e38], "4e+38"),
])
def test_a_finite_float64_feed_that_overflows_float32_is_refused(value, largest, backend):
    x = gc.input("x", (3,))
    f = backend.compile(x * 1)
    with pytest.raises(FeedError, match=f"input 'x' expects float32; a finite value of "
                                        f"magnitude {re.escape(largest)} does not fit in it "
                                        r"\(its largest is 3.40282347e\+38\)"):
        f(x=np.array(value))


def test_float64_feeds_at_float32s_edge_and_inf_and_nan_stay_values(backend):
    x = gc.input("x", (4,))
    f = backend.compile(x * 1)
    edge = np.nextafter(F32_ROUNDS_TO_INF, 0)  # rounds down to float32's max
    np.testing.assert_array_equal(f(x=np.array([edge, -F32_MAX, 1e-50, 0.0])),
                                  np.array([F32_MAX, -F32_MAX, 0.0, 0.0], np.float32))
    np.testing.assert_array_equal(f(x=np.array([np.inf, -np.inf, np.nan, 1.0])),
                                  [np.inf, -np.inf, np.nan, 1.0])


def test_a_torch_tensor_feed_is_read_as_its_values(backend):
    import torch

    x = gc.input("x", (3,))
    labels = gc.input("labels", (3,), "int64")
    f = backend.compile([x * 2, labels + 1])
    tracked = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    weights = torch.nn.Parameter(torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64))
    for value in (tracked, weights, tracked * 1):  # a leaf, a Parameter, a non-leaf
        doubled, _ = f(x=value, labels=torch.tensor([0, 1, 2]))
        np.testing.assert_array_equal(doubled, 2 * value.detach().numpy())
    assert tracked.requires_grad and tracked.grad is None  # left as it was
    with pytest.raises(FeedError, match="input 'labels' expects int64; casting float32"):
        f(x=tracked, labels=tracked)


def test_the_numpy_path_never_imports_torch():
    script = ("import sys, numpy as np, graphc as gc\n"
              "x = gc.input('x', (2,)); W = gc.param('W', [1.0, 2.0])\n"
              "f = gc.compile(x * W); f(x=np.ones(2)); W.value = np.ones(2)\n"
              "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.strip() == "False", result.stderr


def test_one_symbolic_dim_bound_twice_within_one_input(backend):
    x = gc.input("x", ("n", "n"))
    f = backend.compile(x.sum())
    assert f(x=np.ones((3, 3))) == 9
    with pytest.raises(FeedError, match="symbolic dim 'n' is 2 in input 'x' but 3"):
        f(x=np.ones((2, 3)))


def test_two_inputs_with_the_same_name_are_refused_at_compile(backend):
    a, b = gc.input("x", (2,)), gc.input("x", (2,))
    with pytest.raises(FeedError, match="two different inputs are named 'x'"):
        backend.compile(a + b)


def test_two_params_with_the_same_name_are_refused_at_compile_naming_both_lines(backend):
    first = gc.param("W", np.ones(2))
    second = gc.param("W", np.zeros(2))
    lines = line(-2), line(-1)
    with pytest.raises(GraphcError, match="two different params are named 'W'") as info:
        backend.compile(first + second)
    assert f"made at {lines[0]} and {lines[1]}" in str(info.value)
    with pytest.raises(GraphcError, match="two different params are named 'W'"):
        backend.compile(first.sum(), updates={second: second + 1})  # an update's param too
    with pytest.raises(GraphcError, match="two different params are named 'W'"):
        gc.Function([first + second], None, None, backend.name, backend.opt)


def test_params_without_names_do_not_collide(backend):
    # parsed text IR may hold params numbered, not named
    graph = gc.ir.parse("%0 = param() : f32[2]\n%1 = param() : f32[2]\n"
                        "%2 = add(%0, %1) : f32[2]\nreturn %2")
    assert [p.name for p in graph.params] == [None, None]
    np.testing.assert_array_equal(backend.run(graph.outputs[0]), [0.0, 0.0])


# --- call time: run-time errors and updates -----------------------------------------------

def test_run_time_error_names_the_node_and_user_line(backend):
    labels = gc.input("labels", ("n",), "int64")
    hot = gc.one_hot(labels, 3)
    where = line(-1)
    f = backend.compile(hot.sum())
    with pytest.raises(GraphcError) as info:
        f(labels=np.array([0, 5]))
    assert "label 5 is outside [0, 3)" in str(info.value) and where in str(info.value)
    assert_short(info)


@pytest.mark.parametrize("optimizer", ["sgd_momentum", "adam"])
def test_a_step_with_a_label_out_of_range_raises_and_changes_nothing(optimizer, backend):
    """The labels are checked while the step runs (triton: its kernel records the bad
    label and the host raises before any result returns): the same error on every
    backend, and no param or optimizer state moves."""
    x, labels = gc.input("x", ("batch", 3)), gc.input("labels", ("batch",), "int64")
    W, b = gc.param("W", np.eye(3) + 0.5), gc.param("b", np.zeros(3))
    logits = x @ W + b
    where = line(1)
    loss = gc.nn.softmax_cross_entropy(logits, labels)
    make = {"sgd_momentum": lambda: gc.optim.sgd(loss, [W, b], lr=0.1, momentum=0.9),
            "adam": lambda: gc.optim.adam(loss, [W, b], lr=0.1)}
    updates = make[optimizer]()
    step = backend.compile(loss, updates=updates)
    X = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    step(x=X, labels=np.array([0, 2, 1, 1]))          # the state is no longer all zeros
    before = {p.name: p.value.copy() for p in updates}
    with pytest.raises(GraphcError) as info:
        step(x=X, labels=np.array([0, 7, 1, 9]))
    message = str(info.value)
    assert message.startswith("one_hot: label 7 is outside [0, 3)") and where in message
    for p in updates:
        np.testing.assert_array_equal(p.value, before[p.name], err_msg=p.name)
    step(x=X, labels=np.array([0, 2, 1, 1]))          # and the next good step runs
    assert not np.array_equal(W.value, before["W"])


def test_update_of_the_wrong_shape_or_dtype_is_refused_at_compile(backend):
    x = gc.input("x", ("batch", 2))
    W = gc.param("W", np.zeros((2, 2)))
    counter = gc.param("counter", 0, dtype="int64")
    loss = (x @ W).sum()
    with pytest.raises(ShapeError) as info:
        backend.compile(loss, updates={W: W.sum(0)})
    assert "param 'W' (f32[2,2])" in str(info.value) and "f32[2]" in str(info.value)
    assert line(-2) in str(info.value)
    with pytest.raises(DtypeError, match="param 'counter'"):
        backend.compile(loss, updates={counter: counter + 0.5})


def test_a_symbolic_dim_no_input_binds_is_refused_at_compile(backend):
    x = gc.input("x", (3,))
    wide = gc.broadcast_to(x, ("k", 3))
    with pytest.raises(ShapeError) as info:
        backend.compile(wide.sum())
    assert "symbolic dim 'k'" in str(info.value) and line(-3) in str(info.value)


@pytest.mark.parametrize("build", [
    lambda labels: gc.nn.softmax_cross_entropy(gc.input("logits", (2, "classes")), labels),
    lambda labels: gc.one_hot(labels, 0),
])
def test_one_hot_needs_a_fixed_positive_depth(build):
    labels = gc.input("labels", (2,), "int64")
    with pytest.raises(ShapeError, match="one_hot: depth must be a fixed size >= 1") as info:
        build(labels)
    assert "test_errors.py:" in str(info.value)
    assert_short(info)


def test_an_unknown_backend_is_named():
    with pytest.raises(GraphcError, match="unknown backend 'nope'; choose one of reference"):
        gc.compile(gc.input("x", (2,)) * 2, backend="nope", opt="O0")
