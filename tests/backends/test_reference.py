"""backends/reference.py, the node-by-node NumPy interpreter, and gc.compile's contract
around it: feeds by name, NumPy arrays out, updates applied only after a whole call
succeeded."""

import warnings

import numpy as np
import pytest

import graphc as gc
from graphc.backends import reference
from graphc.errors import GraphcError


def compile_ref(outputs, **kwargs):
    return gc.compile(outputs, backend="reference", opt="O0", **kwargs)


def test_run_graph_evaluates_every_node():
    x = gc.input("x", ("n", 2))
    W = gc.param("W", [[1.0, 2.0], [3.0, 4.0]])
    h = x @ W
    out = gc.relu(h - 5)
    g = gc.Graph(out)
    values = reference.run_graph(g, {x: np.array([[1.0, 1.0]], np.float32)}, {"n": 1})
    assert set(values) == set(g.nodes)
    np.testing.assert_array_equal(values[h], [[4, 6]])
    np.testing.assert_array_equal(values[out], [[0, 1]])
    with pytest.raises(GraphcError, match="input 'x' was not fed"):
        reference.run_graph(g, {}, {"n": 1})


def test_executable_shows_what_it_runs():
    x = gc.input("x", (2,))
    f = compile_ref(gc.exp(x))
    f(x=np.zeros(2))
    assert f.source == str(gc.Graph(f.outputs)) and f.kernels == [] and f.stats["nodes"] == 2


def test_results_are_numpy_arrays_of_the_declared_dtype_and_fresh_copies():
    x = gc.input("x", (2,), "float64")
    W = gc.param("W", [1.0, 2.0])
    f = compile_ref([W, x, x * 2, (x > 0)])
    w_out, x_out, double, positive = f(x=np.array([1.0, -1.0]))
    assert double.dtype == np.float64 and positive.dtype == np.bool_
    w_out[0] = 100.0
    assert W.value[0] == 1.0  # a returned param value is a copy, not the param itself


def test_params_are_read_at_each_call():
    W = gc.param("W", [1.0])
    f = compile_ref(W * 2)
    assert f()[0] == 2
    W.value[...] = 5
    assert f()[0] == 10


def test_inf_and_nan_are_values_not_warnings():
    x = gc.input("x", (3,))
    f = compile_ref([gc.log(x), x / 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logs, quotients = f(x=np.array([0.0, 1.0, -1.0]))
    assert logs[0] == -np.inf and logs[1] == 0 and np.isnan(logs[2])
    assert np.isnan(quotients[0]) and quotients[1] == np.inf and quotients[2] == -np.inf


def test_a_numpy_failure_at_run_time_becomes_a_graphc_error_naming_the_node():
    x = gc.input("x", ("n", 3))
    f = compile_ref(x.max(0))
    np.testing.assert_array_equal(f(x=np.ones((2, 3))), [1, 1, 1])
    with pytest.raises(GraphcError, match=r"max failed on operands of shapes \(0, 3\)") as info:
        f(x=np.ones((0, 3)))
    assert "test_reference.py:" in str(info.value) and info.value.__suppress_context__


# --- updates --------------------------------------------------------------------------

def test_updates_use_the_old_values_and_apply_after_the_call():
    W = gc.param("W", [1.0, 2.0])
    b = gc.param("b", [0.0, 0.0])
    step = compile_ref(W.sum(), updates={W: W + 1, b: b + W})
    total = step()
    assert total == 3  # the output sees the values from before the update
    np.testing.assert_array_equal(W.value, [2, 3])
    np.testing.assert_array_equal(b.value, [1, 2])  # b + W used the old W
    step()
    np.testing.assert_array_equal(W.value, [3, 4])
    np.testing.assert_array_equal(b.value, [3, 5])


def test_sgd_steps_on_seed_002_network_lower_the_loss():
    x = gc.input("x", ("batch", 2))
    t = gc.input("t", ("batch", 1))
    W1 = gc.param("W1", [[2, -1, 0], [4, 5, 2]])
    b1 = gc.param("b1", [3, -2, -2])
    W2 = gc.param("W2", [[3], [2], [-4]])
    b2 = gc.param("b2", [-4])
    out = gc.relu(x @ W1 + b1) @ W2 + b2
    loss = gc.nn.mse(out, t)
    # a hand-written gradient step on the output bias only: d loss / d b2 = 2 mean(out - t)
    lr = 0.1
    step = compile_ref(loss, updates={b2: b2 - lr * 2 * gc.mean(out - t, axis=0)})
    X, T = np.array([[3.0, -1.0]]), np.array([[10.0]])
    losses = [float(step(x=X, t=T)) for _ in range(3)]
    assert losses[0] == 1.0 and losses[1] < losses[0] and losses[2] < losses[1]
    assert b2.value[0] == pytest.approx(-4 - 0.2 - 0.16 - 0.128, rel=1e-6)


def test_a_failed_call_leaves_every_param_unchanged():
    labels = gc.input("labels", ("n",), "int64")
    x = gc.input("x", ("n", 3))
    W = gc.param("W", np.eye(3))
    b = gc.param("b", np.zeros(3))
    count = gc.param("count", 0, dtype="int64")
    logits = x @ W + b
    loss = gc.nn.softmax_cross_entropy(logits, labels)   # one_hot runs late in the graph
    step = compile_ref(loss, updates={W: W * 0.5, b: b + 1, count: count + 1})
    X = np.ones((2, 3), np.float32)
    step(x=X, labels=np.array([0, 2]))
    before = [p.value.copy() for p in (W, b, count)]
    assert count.value == 1
    with pytest.raises(GraphcError, match="label 3 is outside"):
        step(x=X, labels=np.array([0, 3]))   # out of range: found only while running
    with pytest.raises(gc.FeedError):
        step(x=X, labels=np.array([0.5, 1.0]))
    for param, old in zip((W, b, count), before):
        np.testing.assert_array_equal(param.value, old)


def test_a_failure_in_an_update_value_leaves_every_param_unchanged():
    labels = gc.input("labels", (2,), "int64")
    W = gc.param("W", [1.0, 2.0])
    b = gc.param("b", [1.0, 2.0])
    hot = gc.one_hot(labels, 2).sum(0)
    step = compile_ref(W.sum(), updates={W: W + 1, b: b + hot})  # b's value fails, not W's
    with pytest.raises(GraphcError, match="one_hot"):
        step(labels=np.array([0, 7]))
    np.testing.assert_array_equal(W.value, [1, 2])
    np.testing.assert_array_equal(b.value, [1, 2])
    step(labels=np.array([0, 0]))
    np.testing.assert_array_equal(W.value, [2, 3])
    np.testing.assert_array_equal(b.value, [3, 2])


def test_symbolic_dims_bind_per_call():
    x = gc.input("x", ("batch", 2))
    y = gc.input("y", ("batch",))
    f = compile_ref((x.sum(1) * y).mean())
    for n in (1, 4, 7):
        X, Y = np.ones((n, 2)), np.arange(n, dtype=np.float32)
        assert f(x=X, y=Y) == pytest.approx((2 * Y).mean())


def test_the_oracle_checks_each_result_against_the_declared_type():
    x = gc.input("x", ("n", 3))
    lying = gc.Node("sum", (x,), {"axes": (1,), "keepdims": False}, gc.TensorType(("n", 3)))
    with pytest.raises(GraphcError, match=r"sum .* computed shape \(2,\), but its type is "
                                          r"f32\[n,3\]"):
        reference.run_graph(gc.Graph(lying), {x: np.ones((2, 3), np.float32)}, {"n": 2})
