"""Semantic preservation: on random graphs, every pass and every pipeline gives the same
values as the unoptimized graph under the reference interpreter, float32 and float64,
and keeps the IR well formed and the source nodes by identity."""

import pytest
from hypothesis import given, settings

import graphc as gc
from graphc.ir import Graph
from graphc.passes import PASSES, PIPELINES, optimize
from graphc.passes.verify import check_same_interface, check_well_formed
from tests.passes.irtools import evaluate
from tests.strategies import assert_close, graphs

DTYPES = ("float32", "float64")


def _check(before: Graph, after: Graph, feeds: dict, dtype: str):
    check_well_formed(after)
    check_same_interface(before, after)
    by_node = {node: feeds[node.name] for node in before.inputs}
    expected, actual = evaluate(before, by_node, {}), evaluate(after, by_node, {})
    for k, (e, a) in enumerate(zip(expected, actual)):
        assert_close(a, e, dtype, what=f"output {k}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(PASSES))
def test_each_pass_preserves_values(name, dtype):
    @settings(max_examples=15)
    @given(graphs(dtype=dtype))
    def check(case):
        outputs, feeds = case
        graph = Graph(outputs)
        _check(graph, PASSES[name](graph), feeds, dtype)

    check()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("level", sorted(PIPELINES))
def test_each_pipeline_preserves_values(level, dtype):
    @settings(max_examples=25)
    @given(graphs(dtype=dtype, max_ops=14))
    def check(case):
        outputs, feeds = case
        graph = Graph(outputs)
        _check(graph, optimize(graph, level, verify=True), feeds, dtype)

    check()


@settings(max_examples=25)
@given(graphs(dtype="float64", max_ops=10))
def test_the_pipeline_preserves_gradient_graphs(case):
    outputs, feeds = case
    graph = Graph(outputs)
    loss = gc.sum(outputs[0] * outputs[0])
    wrt = graph.inputs
    grad_graph = Graph([loss, *gc.grad(loss, wrt, allow_disconnected=True)])
    _check(grad_graph, optimize(grad_graph, "O2", verify=True), feeds, "float64")
