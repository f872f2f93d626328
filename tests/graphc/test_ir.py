"""graphc/ir.py: immutable nodes with the user's line, Graph (reachable nodes, a
deterministic topological order, users, networkx, lint) and the text form, which
ir.parse reads back to an equivalent graph for every op in ops.OPS."""

import inspect
import re

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings

import graphc as gc
from graphc import dsl, ir, ops
from graphc.errors import ParseError, ShapeError
from graphc.types import numpy_dtype
from tests.graphc.test_op_table import REFUSED
from tests.identity import same
from tests.strategies import graphs


def here(offset=0) -> str:
    """file:line of the caller's line plus `offset`, as nodes record it."""
    return f"test_ir.py:{inspect.currentframe().f_back.f_lineno + offset}"


def run(backend, outputs, feeds):
    """The outputs' values, given the feeds the graph has inputs for."""
    f = backend.compile(list(outputs))
    names = {n.name for n in f.source_graph.inputs}
    return f(**{k: v for k, v in feeds.items() if k in names})


# --- nodes ----------------------------------------------------------------------------

def test_nodes_are_immutable_and_hash_by_identity():
    x = gc.input("x", (2,))
    a, b = x + 1, x + 1
    assert a is not b and len({a, b}) == 2 and {a: 1, b: 2}[b] == 2
    for field, value in [("op", "sub"), ("inputs", ()), ("attrs", {}), ("type", x.type)]:
        with pytest.raises(AttributeError, match="immutable"):
            setattr(a, field, value)
    s = x.sum(0)
    with pytest.raises(TypeError):
        s.attrs["keepdims"] = True
    assert s.attrs == {"axes": (0,), "keepdims": False}
    assert s.attrs_key() == (("axes", (0,)), ("keepdims", False))


def test_a_param_value_is_the_one_thing_training_changes():
    W = gc.param("W", np.zeros(2))
    W.value[...] = 3.0
    assert (W.value == 3).all()
    c = gc.const([1.0, 2.0])
    with pytest.raises(ValueError):
        c.value[0] = 5.0  # a const's array is read-only


def test_nodes_record_the_users_source_line():
    x = gc.input("x", ("batch", 2))
    x_line = here(-1)
    W = gc.param("W", np.ones((2, 3)))
    h = gc.relu(x @ W)
    h_line = here(-1)
    loss = gc.nn.softmax_cross_entropy(h, gc.input("y", ("batch",), "int64"))
    loss_line = here(-1)
    assert x.loc == x_line and h.loc == h_line and h.inputs[0].loc == h_line
    # nodes made inside graphc (nn composites) point at the model line that asked for them
    assert loss.loc == loss_line
    made_by_nn = [n for n in gc.Graph(loss).nodes if n not in {x, W, h, h.inputs[0]}]
    assert len(made_by_nn) > 5 and all(n.loc == loss_line for n in made_by_nn)


def test_a_node_has_no_truth_value():
    x = gc.input("x", (2,))
    with pytest.raises(TypeError, match="gc.where"):
        if x > 0:
            pass


# --- graphs ---------------------------------------------------------------------------

def small_graph():
    x = gc.input("x", ("n", 3))
    W = gc.param("W", np.arange(6.0).reshape(3, 2))
    h = x @ W
    a, b = gc.exp(h), gc.tanh(h)
    out = (a + b).sum()
    return x, W, h, a, b, out


def test_graph_holds_only_reachable_nodes_in_topological_order():
    x, W, h, a, b, out = small_graph()
    unused = gc.sigmoid(h)
    g = gc.Graph(out)
    assert unused not in set(g.nodes) and len(g.nodes) == len(set(g.nodes)) == 7
    position = {n: i for i, n in enumerate(g.nodes)}
    assert all(position[i] < position[n] for n in g.nodes for i in n.inputs)
    assert same(g.inputs, [x]) and same(g.params, [W]) and same(g.outputs, [out])
    g.lint()


def test_topological_order_is_deterministic():
    first = [n.op for n in gc.Graph(small_graph()[-1]).nodes]
    second = [n.op for n in gc.Graph(small_graph()[-1]).nodes]
    assert first == second
    out = small_graph()[-1]
    assert same(gc.Graph(out).nodes, gc.Graph(out).nodes)


def test_users():
    x, W, h, a, b, out = small_graph()
    sq = x * x
    g = gc.Graph([out, sq])
    assert same(g.users[h], [a, b])
    assert same(g.users[x], [h, sq])  # x * x lists its user once
    assert g.users[out] == []


def test_to_networkx():
    x, W, h, a, b, out = small_graph()
    g = gc.Graph(out)
    nxg = g.to_networkx()
    assert nx.is_directed_acyclic_graph(nxg)
    assert set(nxg.nodes) == set(g.nodes)
    assert nxg.has_edge(h, a) and nxg.has_edge(x, h) and not nxg.has_edge(a, h)
    assert nxg.number_of_edges() == sum(len(set(n.inputs)) for n in g.nodes)


def test_order_argument_and_lint():
    x, W, h, a, b, out = small_graph()
    g = gc.Graph(out)
    swapped = list(g.nodes)
    position = {n: k for k, n in enumerate(swapped)}
    i, j = position[a], position[b]
    swapped[i], swapped[j] = b, a
    gc.Graph(out, order=swapped).lint()  # another valid order
    with pytest.raises(AssertionError, match="before it is defined"):
        gc.Graph(out, order=list(reversed(g.nodes))).lint()
    with pytest.raises(ValueError, match="exactly"):
        gc.Graph(out, order=g.nodes[1:])


def test_lint_finds_a_wrong_type_and_duplicate_names():
    x = gc.input("x", (2,))
    bad = gc.Node("exp", (x,), {}, gc.TensorType((3,)))
    with pytest.raises(AssertionError, match="inferred f32\\[2\\]"):
        gc.Graph(bad).lint()
    twin = gc.input("x", (2,))
    with pytest.raises(AssertionError, match="two inputs are named 'x'"):
        gc.Graph(x + twin).lint()


def test_updates_are_part_of_the_graph_and_must_target_params():
    x, W, h, a, b, out = small_graph()
    new_W = W - 0.1
    g = gc.Graph(out, updates={W: new_W})
    assert new_W in set(g.nodes) and same(g.updates, {W: new_W})
    with pytest.raises(TypeError, match="params"):
        gc.Graph(out, updates={x: x + 1})


# --- text form ----------------------------------------------------------------------

def test_text_form_is_one_node_a_line_with_its_type():
    x, W, h, a, b, out = small_graph()
    g = gc.Graph(out, updates={W: W * 0.5})
    lines = str(g).splitlines()
    assert lines[0].startswith("%x = input() : f32[n,3]  # test_ir.py:")
    assert lines[1].startswith("%W = param() : f32[3,2]")
    assert any(line.startswith("%0 = matmul(%x, %W) : f32[n,2]") for line in lines)
    assert any(re.search(r"sum\(%\d+, axes=\(0, 1\), keepdims=False\) : f32\[\]", line)
               for line in lines)
    assert lines[-2].startswith("return %") and lines[-1].startswith("update %W = %")
    assert len(lines) == len(g.nodes) + 2


def _inputs():
    return dict(x=gc.input("x", ("n", 3)), y=gc.input("y", (3,)),
                labels=gc.input("labels", ("n",), "int64"),
                W=gc.param("W", np.arange(6.0).reshape(3, 2) / 10))


FEEDS = dict(x=np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], np.float32),
             y=np.array([0.3, -0.2, 1.7], np.float32), labels=np.array([3, 0]))


def _unary(op):
    return lambda v: getattr(gc, op)(gc.abs(v["x"]) + 0.5)  # inside every unary op's domain


def _binary(op):
    return lambda v: getattr(gc, op)(gc.abs(v["x"]) + 0.5, v["y"])


ROUND_TRIP = {
    **{op: _unary(op) for op in ("neg", "exp", "log", "log1p", "sqrt", "abs", "sign", "tanh",
                                 "sigmoid", "relu", "step", "stop_gradient",
                                 "sin", "cos", "erf", "floor", "tan", "ceil", "round",
                                 "trunc", "reciprocal", "rsqrt", "square", "isnan", "isinf",
                                 "isfinite", "logical_not")},
    **{op: _binary(op) for op in ("add", "sub", "mul", "div", "pow", "maximum", "minimum",
                                  "gt", "ge", "lt", "le", "eq", "ne", "mod", "fmod",
                                  "logical_and", "logical_or", "logical_xor")},
    "cast": lambda v: gc.cast(v["x"] * 3, "int32"),
    "where": lambda v: gc.where(v["x"] > 0, v["x"], np.float32(0.1)),
    "sum": lambda v: v["x"].sum(1, keepdims=True),
    "max": lambda v: v["x"].max(0),
    "min": lambda v: v["x"].min(1, keepdims=True),
    "prod": lambda v: v["x"].prod(0),
    "size": lambda v: gc.size(v["x"], 0),
    "reshape": lambda v: v["x"].reshape(("n", 1, 3)),
    "transpose": lambda v: v["x"].T,
    "broadcast_to": lambda v: gc.broadcast_to(v["y"], (2, 3)),
    "expand_dims": lambda v: gc.expand_dims(v["x"], 1),
    "squeeze": lambda v: gc.squeeze(gc.expand_dims(v["x"], 2), 2),
    "slice": lambda v: v["x"][:, 1:3],
    "concat": lambda v: gc.concat([v["x"], v["x"] * 2], axis=1),
    "matmul": lambda v: v["x"] @ v["W"],
    "one_hot": lambda v: gc.one_hot(v["labels"], 4),
    "all_reduce": lambda v: gc.all_reduce(v["x"], op="mean"),
    "gather": lambda v: gc.take(v["y"], v["labels"] - 1),
    "scatter_add": lambda v: gc.scatter_add(v["y"], 0, np.array([2, -3, 2]), v["y"] * 2),
    # randomness (issue 15): a draw of a symbolic shape from a const key
    "philox": lambda v: gc.random.normal(gc.const(np.array([5, 2], np.int64)),
                                         v["x"].shape) * v["x"]
    + gc.cast(gc.random.bits(gc.const(np.array([1, 0], np.int64)), (3,)), "float32"),
    # sliding windows (h-conv): x as (n, 1, 3) signals
    "conv": lambda v: gc.conv(_signal(v), _FILTERS, padding=((1, 0),), dilation=2),
    "conv_input_grad": lambda v: gc.vjp(gc.conv(_signal(v), _FILTERS, padding=1), v["x"],
                                        gc.stop_gradient(gc.conv(_signal(v), _FILTERS,
                                                                 padding=1))),
    "conv_weight_grad": lambda v: gc.grad(gc.sum(gc.conv(_signal(v), _FILTERS) ** 2),
                                          _FILTERS),
    "max_pool": lambda v: gc.max_pool(_signal(v), 2, stride=1, padding=1),
    "max_pool_grad": lambda v: gc.grad(gc.sum(gc.max_pool(_signal(v), 2) * 3.0), v["x"]),
}
# Ops only passes make, with their text form tested where they are made.
MADE_BY_PASSES = {"all_reduce_start": "tests/graphc/test_collectives.py (the schedule)",
                  "all_reduce_wait": "tests/graphc/test_collectives.py (the schedule)"}


_FILTERS = gc.const(np.linspace(-1.0, 1.0, 4).reshape(2, 1, 2))


def _signal(v):
    return v["x"].reshape(("n", 1, 3))


def test_the_round_trip_table_covers_every_op():
    # fused kernels hold a body graph; their text form is tested with the fusion pass
    assert set(ROUND_TRIP) | set(MADE_BY_PASSES) == {
        n for n, d in ops.OPS.items() if d.kind != "fused"}


def assert_equivalent(g, parsed):
    assert str(parsed) == str(g)
    assert len(parsed.nodes) == len(g.nodes)
    old_position = {n: k for k, n in enumerate(g.nodes)}
    new_position = {n: k for k, n in enumerate(parsed.nodes)}
    for old, new in zip(g.nodes, parsed.nodes):
        assert (new.op, new.type, dict(new.attrs), new.tags, new.loc) == (
            old.op, old.type, dict(old.attrs), old.tags, old.loc)
        assert [old_position[i] for i in old.inputs] == [new_position[i] for i in new.inputs]
        if old.op in ("input", "param"):
            assert new.name == old.name
        if old.op == "const":  # bit for bit: -0.0 is not 0.0
            assert new.value.tobytes() == old.value.tobytes()
            assert new.value.dtype == old.value.dtype
    parsed.lint()


def run_both(backend, g, parsed):
    by_name = {p.name: p for p in g.params}
    for p in parsed.params:  # parse gives params zeros: the text holds no data
        assert not p.value.any()
        p.value[...] = by_name[p.name].value
    for want, got in zip(run(backend, g.outputs, FEEDS), run(backend, parsed.outputs, FEEDS)):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("op", sorted(ROUND_TRIP))
def test_round_trip(op, backend):
    out = ROUND_TRIP[op](_inputs())
    g = gc.Graph(out)
    assert op in {n.op for n in g.nodes}
    parsed = ir.parse(str(g))
    assert_equivalent(g, parsed)
    if op in REFUSED.get(backend.name, ()):
        with pytest.raises(gc.GraphcError, match="cannot generate"):
            run(backend, g.outputs, FEEDS)
        return
    run_both(backend, g, parsed)
    (value,) = run(backend, g.outputs, FEEDS)  # the result has exactly the type the op declared
    assert value.dtype == numpy_dtype(out.dtype)
    assert value.shape == out.type.concrete_shape({"n": 2})


def test_round_trip_keeps_tags_updates_and_multiple_outputs(backend):
    v = _inputs()
    W = v["W"]
    h = dsl.apply("exp", v["x"] @ W, tags={"grad", "fwd"})
    loss = h.sum()
    g = gc.Graph([loss, h], updates={W: W - 0.5 * W})
    text = str(g)
    assert "# [fwd,grad] test_ir.py:" in text
    parsed = ir.parse(text)
    assert_equivalent(g, parsed)
    (p, new_value), = parsed.updates.items()
    assert p.name == "W" and p.op == "param" and new_value.op == "sub"
    run_both(backend, g, parsed)


@pytest.mark.parametrize("value,dtype", [
    ([[1.5, -2.0], [0.1, 3.0]], "float32"), (0.1, "float64"),
    ([np.nan, np.inf, -np.inf], "float32"),
    ([True, False], "bool"), ([7, -3, 2**40], "int64"), (np.full((2, 3), 2.5), "float32"),
    (np.zeros((2, 0)), "float32"), ([1e-30, 3.4e38], "float32"), ([0.0, -0.0], "float64"),
    (-0.0, "float32"), ([np.nan, np.nan], "float64")])
def test_consts_round_trip_exactly(value, dtype):
    c = gc.const(value, dtype)
    x = gc.input("x", c.shape, dtype)
    g = gc.Graph([c, x])
    parsed = ir.parse(str(g))
    assert_equivalent(g, parsed)


def test_parse_a_hand_written_graph(backend):
    text = """
    # a comment and blank lines are fine

    %x = input() : f32[batch,2]
    %W = param() : f32[2,3]
    %h = matmul(%x, %W) : f32[batch,3]
    %c = const(fill=1.0) : f32[]
    %out = add(%h, %c) : f32[batch,3]  # [grad] model.py:7
    return %out, %h
    """
    g = ir.parse(text)
    out, h = g.outputs
    assert out.op == "add" and out.tags == {"grad"} and out.loc == "model.py:7"
    assert h.type == gc.TensorType(("batch", 3)) and [n.name for n in g.inputs] == ["x"]
    assert out.name == "out"  # a named op keeps its name
    np.testing.assert_array_equal(run(backend, [out], {"x": np.ones((1, 2))})[0], np.ones((1, 3)))


@pytest.mark.parametrize("text,message", [
    ("%x = input() : f32[2]\n%y = nosuchop(%x) : f32[2]\nreturn %y", "line 2: unknown op"),
    ("%y = exp(%x) : f32[2]\nreturn %y", "line 1: %x is used before it is defined"),
    ("%x = input() : q8[2]\nreturn %x", "bad type"),
    ("%x = input() : f32[-2]\nreturn %x", "bad type 'f32[-2]'"),
    ("%x = input() : f32[2]", "no 'return' line"),
    ("%x = input() : f32[2]\nreturn %z", "line 2: %z is not defined"),
    ("%x = input() : f32[2]\nthis is not ir\nreturn %x", "line 2: cannot read"),
    ("%x = input() : f32[2]\n%y = sum(%x, axes=(0,)) : f32[]\nreturn %y", "line 2: sum: takes"),
    ("%x = input() : f32[2]\n%y = exp(%x, 3) : f32[2]\nreturn %y", "line 2: positional"),
    ("%x = input() : f32[2]\nupdate %x %x\nreturn %x", "line 2: expected 'update"),
])
def test_parse_errors_name_the_line(text, message):
    with pytest.raises(ParseError, match=re.escape(message)) as info:
        ir.parse(text)
    assert info.value.__cause__ is None


@settings(max_examples=30)
@given(case=graphs(dtype="float64", max_ops=8))
def test_random_graphs_round_trip(case, backend):
    outputs, feeds = case
    g = gc.Graph(outputs)
    parsed = ir.parse(str(g))
    assert_equivalent(g, parsed)
    for want, got in zip(run(backend, g.outputs, feeds), run(backend, parsed.outputs, feeds)):
        np.testing.assert_array_equal(got, want)


def test_a_source_location_with_spaces_round_trips():
    text = ("%x = input() : f32[2]  # my model.py:3\n"
            "%y = exp(%x) : f32[2]  # [grad] my model.py:4\n"
            "return %y")
    g = ir.parse(text)
    assert [n.loc for n in g.nodes] == ["my model.py:3", "my model.py:4"]
    assert g.outputs[0].tags == {"grad"} and str(g) == text


def test_lint_checks_param_and_const_values_against_their_types():
    W = gc.param("W", np.zeros((2, 3)))
    g = gc.Graph(W.sum())
    g.lint()
    # (an assigned value is checked at once; the array held can still change in place)
    W.value.shape = (3, 2)
    with pytest.raises(AssertionError, match=r"its value is float32\[3, 2\], not f32\[2,3\]"):
        g.lint()
    W.value = np.zeros((2, 3))
    W.value.dtype = np.int32
    with pytest.raises(AssertionError, match="int32"):
        g.lint()
    c = gc.Node("const", (), {}, gc.TensorType((2,), "int64"), value=np.zeros(2, np.int32))
    with pytest.raises(AssertionError, match="int32"):
        gc.Graph(c).lint()


def test_lint_reports_operands_an_op_does_not_accept_by_its_type_rule():
    a, b = gc.input("a", (2,)), gc.input("b", (3,))
    bad = gc.Node("add", (a, b), {}, gc.TensorType((2,)))
    with pytest.raises(ShapeError, match=r"add: shapes \(2,\) and \(3,\) do not broadcast"):
        gc.Graph(bad).lint()
    no_attrs = gc.Node("sum", (a,), {}, gc.TensorType(()))
    with pytest.raises(ShapeError, match="sum: takes attributes"):
        gc.Graph(no_attrs).lint()


def test_numpy_integers_given_as_attributes_print_as_plain_ints():
    x = gc.input("x", (2, 3))
    k = np.int64(1)
    out = gc.concat([gc.expand_dims(x, k), gc.expand_dims(x, k)], axis=k).sum(k)
    out = out.transpose((np.int64(1), np.int64(0))).reshape((np.int64(3), -1))
    g = gc.Graph(out)
    assert "np." not in str(g)
    assert_equivalent(g, ir.parse(str(g)))
