"""Names and scopes: name= on ops, `with gc.scope(...)`, nn composites' scopes, the
grad/... scopes of gradients, the text IR's {path}, and passes keeping a node's scope."""

import threading

import numpy as np
import pytest

import graphc as gc
from graphc import scopes
from graphc.ir import Graph, parse
from graphc.passes import optimize


def paths(nodes):
    return {str(n.scope) for n in nodes}


def test_name_labels_any_op_and_is_checked():
    x = gc.input("x", (2, 3))
    assert gc.relu(x, name="a1").name == "a1"
    assert gc.matmul(x, gc.transpose(x), name="gram").name == "gram"
    assert gc.sum(x, axis=1, name="total").name == "total"
    assert x.sum(0, name="col").name == "col" and x.mean(name="m").name == "m"
    assert gc.add(x, 1.0, name="shifted").name == "shifted"
    assert gc.getitem(x, (0, slice(None)), name="row").name == "row"
    assert gc.relu(x).name is None
    with pytest.raises(ValueError, match="identifier"):
        gc.relu(x, name="not a name")
    # The name is the node's printed name, and reads back.
    text = str(Graph([gc.exp(x, name="e")]))
    assert "%e = exp(%x)" in text and parse(text).outputs[0].name == "e"


def test_scopes_nest_and_close():
    x = gc.input("x", (2,))
    with gc.scope("layer1") as outer:
        a = gc.exp(x)
        with gc.scope("act"):
            b = gc.relu(a)
    c = gc.neg(b)
    assert a.scope is outer and str(b.scope) == "layer1/act" and b.scope.parent is outer
    assert c.scope is scopes.ROOT and x.scope is scopes.ROOT and c.scope.path == ()
    with pytest.raises(ValueError, match="identifier"):
        with gc.scope("a/b"):
            pass


def test_a_scope_is_closed_when_its_block_raises():
    with pytest.raises(RuntimeError):
        with gc.scope("broken"):
            raise RuntimeError("boom")
    assert scopes.current() is scopes.ROOT


def test_each_thread_builds_in_its_own_scope():
    seen = {}
    inside, done = threading.Event(), threading.Event()

    def other():
        inside.wait()
        seen["other"] = str(gc.exp(gc.input("t", (1,))).scope)
        done.set()

    thread = threading.Thread(target=other)
    thread.start()
    with gc.scope("main_only"):
        inside.set()
        done.wait(10)
        seen["main"] = str(gc.exp(gc.input("m", (1,))).scope)
    thread.join()
    assert seen == {"other": "", "main": "main_only"}


def test_two_calls_of_one_composite_are_two_scopes_with_one_path():
    x = gc.input("x", (3,))
    a, b = gc.nn.softplus(x), gc.nn.softplus(x)
    assert str(a.scope) == str(b.scope) == "softplus" and a.scope is not b.scope


def test_nn_composites_open_scopes_and_name_renames_them():
    x = gc.input("x", ("batch", 4))
    y = gc.input("y", ("batch",), dtype="int64")
    loss = gc.nn.softmax_cross_entropy(x, y)
    assert paths(Graph([loss]).nodes) == {"", "softmax_cross_entropy",
                                          "softmax_cross_entropy/logsumexp"}
    assert str(gc.nn.mse(x, 0.0, name="reconstruction").scope) == "reconstruction"
    W = gc.param("W", np.ones((4, 2)))
    assert str(gc.nn.dense(x, W, activation=gc.relu).scope) == "dense"
    for fn in (gc.nn.softmax, gc.nn.log_softmax, gc.nn.logsumexp, gc.nn.leaky_relu):
        assert str(fn(x).scope) == fn.__name__


def test_mlp_builds_each_layer_and_its_params_in_its_scope():
    x = gc.input("x", ("batch", 4))
    out, params = gc.nn.mlp(x, [4, 8, 3])
    assert [str(p.scope) for p in params] == ["layer1"] * 2 + ["layer2"] * 2
    assert str(out.scope) == "layer2" and x.scope is scopes.ROOT


def test_gradients_go_in_grad_scopes_mirroring_the_forward_ones():
    x = gc.input("x", ("batch", 4))
    y = gc.input("y", ("batch",), dtype="int64")
    logits, params = gc.nn.mlp(x, [4, 8, 3])
    loss = gc.nn.softmax_cross_entropy(logits, y)
    grads = gc.grad(loss, params)
    forward = set(Graph([loss]).nodes)
    built = [n for n in Graph(grads).nodes if n not in forward]
    assert all(n.scope.path[0] == "grad" for n in built)
    assert paths(built) == {"grad/layer1", "grad/layer2", "grad/softmax_cross_entropy",
                            "grad/softmax_cross_entropy/logsumexp"}
    # One grad call: one copy of each scope (one cluster each in a picture).
    layer1 = {id(n.scope) for n in built if str(n.scope) == "grad/layer1"}
    assert len(layer1) == 1
    # grad opens inside the scope open at the call.
    with gc.scope("train"):
        (g,) = gc.grad(loss, [params[0]])
    assert str(g.scope) == "train/grad/layer1"


def test_text_ir_prints_and_reads_scopes():
    x = gc.input("x", ("batch", 4))
    out, params = gc.nn.mlp(x, [4, 3])
    loss = gc.nn.mse(out, 0.0)
    graph = Graph([loss, *gc.grad(loss, params)])
    text = str(graph)
    assert "# {layer1} " in text and "# [grad] {grad/mse} " in text
    again = parse(text)
    assert str(again) == text
    assert [str(n.scope) for n in again.nodes] == [str(n.scope) for n in graph.nodes]
    # Nodes that printed the same path share one scope after reading.
    layer1 = {id(n.scope) for n in again.nodes if str(n.scope) == "layer1"}
    assert len(layer1) == 1
    # A line without a scope, or with only a loc, reads as before.
    plain = parse("%x = input() : f32[2]  # m.py:3\n%0 = exp(%x) : f32[2]  # [grad]\nreturn %0")
    assert [n.scope for n in plain.nodes] == [scopes.ROOT, scopes.ROOT]
    assert plain.nodes[0].loc == "m.py:3"


def test_passes_keep_a_nodes_scope():
    x = gc.input("x", ("batch", 2))
    with gc.scope("block"):
        y = gc.log(gc.sigmoid(x)) + gc.const(1.0) * 2.0  # simplify and fold rewrite these
    graph = optimize(Graph([gc.sum(y)]), "O1")
    assert {str(n.scope) for n in graph.nodes if n.op not in ("input", "sum")} == {"block"}
    fused = optimize(Graph([gc.sum(y)]), "O2")
    kernels = [n for n in fused.nodes if n.op == "fused"]
    assert kernels and all(str(b.scope) == "block" for k in kernels
                           for b in k.body.nodes if b.op not in ("input", "sum"))
