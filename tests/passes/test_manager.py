"""The pass manager: pipelines as data, verification after each pass, dumps, errors, and
gc.compile(opt=...) running it."""

import numpy as np
import pytest

import graphc as gc
from graphc.errors import GraphcError
from graphc.ir import Graph, Node
from graphc.passes import PASSES, PIPELINES, PassManager, optimize
from graphc.passes.verify import VerifyError
from graphc.types import TensorType


def mlp_training_graph(layers=3, batch="batch", width=16):
    x = gc.input("x", (batch, width))
    y = gc.input("y", (batch,), dtype="int64")
    out, params = gc.nn.mlp(x, [width] * layers + [4])
    loss = gc.nn.softmax_cross_entropy(out, y)
    return Graph([loss, *gc.grad(loss, params)])


def test_pipelines_name_only_known_passes():
    assert set(PIPELINES) >= {"O0", "O1", "O2"}
    assert PIPELINES["O0"] == []
    for names in PIPELINES.values():
        assert all(name in PASSES for name in names)
    assert PIPELINES["O2"][-1] == "schedule"


def test_O0_returns_the_graph():
    g = Graph([gc.input("x", (2,)) * 1.0])
    assert optimize(g, "O0") is g


def test_dump_sees_every_pass_in_order():
    steps = []
    g = mlp_training_graph()
    optimize(g, "O2", verify=True, dump=lambda name, graph: steps.append((name, graph)))
    assert [name for name, _ in steps] == PIPELINES["O2"]
    assert all(isinstance(graph, Graph) for _, graph in steps)


def test_verify_names_the_pass_that_broke_the_types(monkeypatch):
    def bad(graph):  # records a wrong type on a rebuilt node
        out = graph.outputs[0]
        wrong = Node(out.op, out.inputs, out.attrs, TensorType((7,), "float32"))
        return Graph([wrong])

    monkeypatch.setitem(PASSES, "bad", bad)
    g = Graph([gc.exp(gc.input("x", (2,)))])
    with pytest.raises(VerifyError, match="after pass 'bad'.*recorded type"):
        PassManager(["bad"], verify=True).run(g)
    PassManager(["bad"]).run(g)  # without verify the manager trusts the pass


def test_verify_rejects_a_copied_source(monkeypatch):
    def copy_input(graph):
        x = graph.inputs[0]
        return Graph([gc.exp(gc.input(x.name, x.shape))])

    monkeypatch.setitem(PASSES, "copy", copy_input)
    g = Graph([gc.exp(gc.input("x", (2,)))])
    with pytest.raises(VerifyError, match="new input"):
        PassManager(["copy"], verify=True).run(g)


def test_verify_rejects_a_pass_that_updates_another_param(monkeypatch):
    def retarget(graph):  # the same shapes, but the update now writes V, not W
        (W, value), = graph.updates.items()
        return Graph(graph.outputs, {V: value})

    x, W, V = gc.input("x", (2,)), gc.param("W", np.ones(2)), gc.param("V", np.ones(2))
    monkeypatch.setitem(PASSES, "retarget", retarget)
    g = Graph([gc.sum(x * W * V)], {W: W * 2.0})
    with pytest.raises(VerifyError, match="updated params changed"):
        PassManager(["retarget"], verify=True).run(g)


def test_unknown_names_are_errors():
    with pytest.raises(GraphcError, match="unknown pass 'nope'"):
        PassManager(["simplify", "nope"])
    with pytest.raises(GraphcError, match="unknown optimization level 'O9'"):
        optimize(Graph([gc.input("x", (1,))]), "O9")


def test_compile_runs_the_pipeline_and_keeps_the_values():
    g = mlp_training_graph()
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((8, 16)), "y": rng.integers(0, 4, 8)}
    plain = gc.compile(list(g.outputs), backend="reference", opt="O0")(**feeds)
    optimized_fn = gc.compile(list(g.outputs), backend="reference", opt="O2")
    optimized = optimized_fn(**feeds)
    for a, b in zip(optimized, plain):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert optimized_fn.graph is not optimized_fn.source_graph


def test_a_training_step_updates_params_the_same_at_every_level_and_on_numpy():
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((8, 16)), "y": rng.integers(0, 4, 8)}
    results = {}
    for backend, level in [("reference", "O0"), ("reference", "O2"), ("numpy", "O2")]:
        x = gc.input("x", ("batch", 16))
        y = gc.input("y", ("batch",), dtype="int64")
        out, params = gc.nn.mlp(x, [16, 16, 4], rng=np.random.default_rng(0))
        loss = gc.nn.softmax_cross_entropy(out, y)
        step = gc.compile(loss, updates=gc.optim.sgd(loss, params, lr=0.1),
                          backend=backend, opt=level)
        losses = [step(**feeds) for _ in range(3)]
        results[backend, level] = losses, [p.value.copy() for p in params]
    want_losses, want_params = results.pop(("reference", "O0"))  # the unoptimized oracle
    for losses, params in results.values():
        np.testing.assert_allclose(losses, want_losses, rtol=1e-5)
        for a, b in zip(params, want_params):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
