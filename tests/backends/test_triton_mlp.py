"""A full MLP training step (forward, gradients, SGD update) as Triton kernels in the CPU
interpreter matches the numpy backend step for step for 20 steps: through gc.compile,
and on the graph the fusion pass produces (matmul epilogues, softmax cross-entropy as
reduction kernels, the ReLU-backward mask in the backward matmul)."""

import numpy as np

import graphc as gc
from graphc.backends import triton as triton_backend
from graphc.ir import Graph
from graphc.passes import optimize
from graphc.passes.fusion import fuse

SIZES, BATCH, STEPS = (16, 33, 10), 7, 20


def mlp_step_graph():
    """(loss, updates, params) of a fresh ReLU MLP with the same initial weights each time."""
    x = gc.input("x", ("batch", SIZES[0]))
    y = gc.input("y", ("batch",), dtype="int64")
    out, params = gc.nn.mlp(x, SIZES, rng=np.random.default_rng(3))
    loss = gc.nn.softmax_cross_entropy(out, y)
    return loss, gc.optim.sgd(loss, params, lr=0.1), params


def batches():
    rng = np.random.default_rng(4)
    for _ in range(STEPS):
        yield (rng.standard_normal((BATCH, SIZES[0])).astype(np.float32),
               rng.integers(0, SIZES[-1], BATCH))


def numpy_trajectory():
    loss, updates, params = mlp_step_graph()
    step = gc.compile(loss, updates=updates, backend="numpy")
    for X, Y in batches():
        yield float(step(x=X, y=Y)), [p.value.copy() for p in params]


def assert_same_trajectory(triton_steps):
    for k, ((loss, params), (want_loss, want_params)) in enumerate(
            zip(triton_steps, numpy_trajectory())):
        np.testing.assert_allclose(loss, want_loss, rtol=1e-5, err_msg=f"loss at step {k}")
        for p, want in zip(params, want_params):
            np.testing.assert_allclose(p, want, rtol=1e-4, atol=1e-6, err_msg=f"step {k}")


def test_mlp_training_through_compile_matches_numpy():
    loss, updates, params = mlp_step_graph()
    step = gc.compile(loss, updates=updates, backend="triton")

    def steps():
        for X, Y in batches():
            yield float(step(x=X, y=Y)), [p.value.copy() for p in params]

    assert_same_trajectory(steps())
    assert step.stats["kernels"] == len(step.kernels) > 0


def test_fused_mlp_training_matches_numpy():
    loss, updates, params = mlp_step_graph()
    graph = fuse(optimize(Graph([loss], updates), "O1"))
    executable = triton_backend.build(graph, {"batch": BATCH})
    kinds = [k.kind for k in executable.kernels]
    assert {"matmul", "reduction", "pointwise"} <= set(kinds)
    assert any(len(k.nodes) > 1 for k in executable.kernels if k.kind == "matmul")
    x, y = sorted(graph.inputs, key=lambda n: n.name)

    def steps():
        for X, Y in batches():
            loss_value, *new = executable({x: X, y: Y})
            for param, value in zip(graph.updates, new):
                np.copyto(param.value, value)
            yield float(loss_value), [p.value.copy() for p in params]

    assert_same_trajectory(steps())
