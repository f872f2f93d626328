"""10,000-node graphs: building, printing, parsing, Graph(), lint() and running must be
iterative (no recursion limit) and fast. The work runs under a low recursion limit, so a
recursive traversal anywhere fails here rather than in a user's big model."""

import sys
import time
from contextlib import contextmanager

import networkx  # noqa: F401  (imported here so its import time is not counted below)
import numpy as np
import pytest

import graphc as gc
from graphc import ir

N = 10_000
SECONDS = 2.0  # CPU seconds per step (CPU time: other jobs on the machine do not count)


@contextmanager
def shallow_stack(limit=400):
    """Python's recursion limit lowered well below N: recursion over the chain fails."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, len(_frames()) + 200))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def _frames():
    frame, frames = sys._getframe(), []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return frames


@contextmanager
def timed(what, timings):
    start = time.process_time()
    yield
    timings[what] = time.process_time() - start


def chain(n):
    """x -> tanh -> *0.5 -> +1 -> ... : n op nodes in one line of dependencies."""
    x = gc.input("x", ("batch", 3))
    h = x
    for i in range(n // 2):
        h = gc.tanh(h) if i % 2 else h * 0.5 + 0.25
    return x, h


def not_in_the_interpreter(backend):
    """Triton's interpreter takes seconds of CPU to rewrite and run the one kernel of
    thousands of ops of these graphs (its time, not graphc's); tests/backends/test_triton.py
    generates their programs under the same shallow stack and time limit instead."""
    if backend.name == "triton":
        pytest.skip("a kernel of thousands of ops in Triton's interpreter: "
                    "test_triton.py generates it")


def test_a_10000_node_chain_builds_prints_parses_lints_and_runs(backend):
    not_in_the_interpreter(backend)
    timings = {}
    with shallow_stack():
        with timed("build", timings):
            x, out = chain(N)
        with timed("Graph", timings):
            g = gc.Graph(out)
        assert len(g.nodes) >= N
        with timed("lint", timings):
            g.lint()
        with timed("print", timings):
            text = str(g)
        with timed("parse", timings):
            parsed = ir.parse(text)
        with timed("users", timings):
            users = g.users
        with timed("networkx", timings):
            nxg = g.to_networkx()
        f = backend.compile(out)
        with timed("run", timings):
            value = f(x=np.ones((2, 3), np.float32))
        again = backend.run(parsed.outputs[0], x=np.ones((2, 3), np.float32))
    assert len(parsed.nodes) == len(g.nodes) and str(parsed) == text
    assert [u.op for u in users[x]] == ["mul"] and nxg.number_of_nodes() == len(g.nodes)
    np.testing.assert_array_equal(value, again)
    assert np.isfinite(value).all()
    slow = {k: round(v, 2) for k, v in timings.items() if v > SECONDS}
    assert not slow, f"slow steps on a {N}-node chain: {slow}"


def shared(n):
    """x -> maximum(h, h) * 1.0 -> ...: each node uses the previous one twice, so a naive
    recursive walk would visit 2^n paths."""
    h = gc.input("x", (2,), "float64")
    for _ in range(n):
        h = gc.maximum(h, h) * 1.0
    return h


def test_a_deep_chain_of_shared_values_is_linear_not_exponential(backend):
    not_in_the_interpreter(backend)
    with shallow_stack():
        h = shared(3000)
        start = time.process_time()
        g = gc.Graph(h)
        g.lint()
        assert len(g.users[g.nodes[0]]) == 1
        out = backend.run(h, x=np.array([1.0, -2.0]))
        assert time.process_time() - start < SECONDS
    np.testing.assert_array_equal(out, [1.0, -2.0])


def test_a_deep_graph_is_freed_without_recursion():
    with shallow_stack():
        x, out = chain(N)
        g = gc.Graph(out)
        del g, out, x  # freeing a 10,000-deep chain of nodes must not overflow the stack


def wide(n):
    """x * 0 + x * 1 + ... + x * (n - 1): one value read by n nodes."""
    x = gc.input("x", (4,))
    branches = [x * float(i) for i in range(n)]
    total = branches[0]
    for b in branches[1:]:
        total = total + b
    return x, total


def test_a_wide_graph(backend):
    not_in_the_interpreter(backend)
    x, total = wide(N // 2)
    g = gc.Graph(total)
    assert len(g.users[x]) == N // 2
    out = backend.run(total, x=np.ones(4))
    assert out[0] == pytest.approx(sum(range(N // 2)), rel=1e-5)
