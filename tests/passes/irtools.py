"""Helpers for pass tests: text IR in and out, and evaluation before/after on random data."""

from __future__ import annotations

import re

import numpy as np

from graphc.backends.reference import run_graph
from graphc.ir import Graph, parse
from graphc.types import is_float, numpy_dtype
from tests.strategies import assert_close

DIMS = {"batch": 3, "n": 2}


def strip(text: str) -> str:
    """The IR text without `# ...` notes (locations, tags) and surrounding blank space."""
    lines = (re.sub(r"\s*#.*$", "", line).rstrip() for line in text.strip().splitlines())
    return "\n".join(line.strip() for line in lines if line.strip())


def random_feeds(graph: Graph, seed=0, dims=DIMS) -> dict:
    """{input node: array} for every input, and fresh random values for every param."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for node in graph.nodes:
        if node.op not in ("input", "param"):
            continue
        shape = node.type.concrete_shape(dims)
        dtype = numpy_dtype(node.dtype)
        if is_float(node.dtype):
            value = rng.uniform(-2, 2, shape).astype(dtype)
        elif node.dtype == "bool":
            value = rng.integers(0, 2, shape).astype(bool)
        else:
            value = rng.integers(-3, 4, shape).astype(dtype)
        if node.op == "param":
            node.value = value
        else:
            feeds[node] = value
    return feeds


def evaluate(graph: Graph, feeds: dict, dims=DIMS) -> list:
    """The graph's outputs and update values under the reference interpreter."""
    values = run_graph(graph, {k: v for k, v in feeds.items() if k in set(graph.nodes)}, dims)
    return [values[node] for node in list(graph.outputs) + list(graph.updates.values())]


def assert_same_values(before: Graph, after: Graph, seed=0, dims=DIMS):
    feeds = random_feeds(before, seed, dims)
    expected, actual = evaluate(before, feeds, dims), evaluate(after, feeds, dims)
    assert len(expected) == len(actual)
    for k, (e, a) in enumerate(zip(expected, actual)):
        assert a.dtype == e.dtype, f"result {k}: dtype {a.dtype} != {e.dtype}"
        if is_float(e.dtype.name):
            assert_close(a, e, e.dtype.name, what=f"result {k}")
        else:
            np.testing.assert_array_equal(a, e, err_msg=f"result {k}")


def run_text(pass_fn, text: str) -> tuple[Graph, Graph]:
    """Parse `text`, run the pass, check values agree; return (before, after)."""
    before = parse(text)
    after = pass_fn(before)
    assert_same_values(before, after)
    return before, after
