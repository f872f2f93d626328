"""The all_reduce op in one process (no process group: a world of one, where it is its
operand): type rule, text IR, gradient, every backend, the schedule's split and overlap,
the drawing, and the NumPy path without torch. Runs across processes are in
test_parallel.py."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import graphc as gc
from graphc import ops
from graphc.backends.collectives import Collectives
from graphc.ir import parse
from graphc.passes import optimize
from graphc.passes.overlap import overlap
from tests.graphc import parallel_worker as worker

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_type_rule_keeps_the_type_and_refuses_what_cannot_be_reduced():
    x = gc.input("x", ("batch", 3), dtype="float64")
    assert gc.all_reduce(x, op="mean").type == x.type
    n = gc.input("n", (4,), dtype="int32")
    assert gc.all_reduce(n).type == n.type
    with pytest.raises(gc.DtypeError, match="op='mean' needs a float operand, got int32"):
        gc.all_reduce(n, op="mean")
    with pytest.raises(gc.DtypeError, match="all_reduce: does not take bool"):
        gc.all_reduce(x > 0)
    with pytest.raises(gc.ShapeError, match="op must be one of sum, mean, got 'max'"):
        gc.all_reduce(x, op="max")


def test_text_ir_reads_back_before_and_after_the_split():
    loss, params = worker.model("float32", seed=0)
    grads = gc.parallel.data_parallel(loss, params, bucket_bytes=200)
    for graph in (gc.Graph(grads), optimize(gc.Graph(grads), "O2")):
        text = str(graph)
        assert str(parse(text)) == text
    assert "all_reduce(%" in str(gc.Graph(grads))
    assert "op='mean'" in text and "all_reduce_start(" in text and "all_reduce_wait(" in text


def test_gradient_is_the_all_reduce_of_the_cotangent():
    x = gc.input("x", (7,), dtype="float64")
    W = gc.param("W", np.linspace(-1, 1, 7), "float64")
    loss = (gc.all_reduce(x * W, op="mean") ** 2).sum()
    gW = gc.grad(loss, W)
    reduced = [n for n in gc.Graph([gW]).nodes if n.op == "all_reduce" and "grad" in n.tags]
    assert len(reduced) == 1 and reduced[0].attrs == {"op": "mean"}
    # one worker: the all_reduce is the identity, and so is its gradient
    gc.testing.check_grads([loss], {"x": np.linspace(0.5, 2, 7)})


@pytest.mark.parametrize("shape", [(1,), (7,), (129, 3), (0, 5)])
def test_one_worker_all_reduce_is_its_operand_on_every_backend(backend, shape):
    x = gc.input("x", shape, dtype="float32")
    X = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) - 3
    if X.size:
        X.flat[0], X.flat[-1] = np.nan, np.inf
    for op in ("sum", "mean"):
        got = backend.run(gc.all_reduce(x * 2, op=op), x=X)
        np.testing.assert_array_equal(got, X * 2)


VIEWS = {"transpose": gc.transpose, "slice": lambda v: v[1:6:2, 1:],
         "broadcast": lambda v: gc.broadcast_to(v[:1], (4, 7, 3))}


@pytest.mark.parametrize("view", VIEWS)
def test_all_reduce_of_a_view_on_every_backend(backend, view):
    """A view of a computed value and of an input (the triton backend has no tensor for
    a view: its values are copied into the collective's buffer first)."""
    x = gc.input("x", (7, 3), dtype="float32")
    X = np.arange(21, dtype=np.float32).reshape(7, 3) - 3
    make = VIEWS[view]
    got = backend.run([gc.all_reduce(make(x * 2), op="mean"), gc.all_reduce(make(x))], x=X)
    for value, scale in zip(got, (2, 1)):
        np.testing.assert_array_equal(value, ops_view(view, X * scale))


def ops_view(view, X):
    return {"transpose": X.T, "slice": X[1:6:2, 1:],
            "broadcast": np.broadcast_to(X[:1], (4, 7, 3))}[view]


def test_every_collective_is_a_method_of_the_runtime():
    """A backend runs a collective node as the Collectives method of its op's name."""
    for op in ops.with_trait("collective"):
        assert callable(getattr(Collectives, op)), op


def test_all_reduce_of_an_input_leaves_the_input_as_it_was(backend):
    x = gc.input("x", (5,), dtype="float64")
    X = np.arange(5.0)
    np.testing.assert_array_equal(backend.run(gc.all_reduce(x, op="mean") + 1, x=X), X + 1)
    np.testing.assert_array_equal(X, np.arange(5.0))


def test_fold_leaves_a_collective_of_consts_to_run_time():
    graph = optimize(gc.Graph([gc.all_reduce(gc.const([1.0, 2.0]))]), "O2")
    assert [n.op for n in graph.nodes if n.op != "const"] == [
        "all_reduce_start", "all_reduce_wait"]


def _positions(graph):
    return {id(n): i for i, n in enumerate(graph.nodes)}


def test_schedule_issues_each_bucket_when_its_gradients_are_ready_and_waits_last():
    loss, params = worker.model("float64", seed=0)
    grads = gc.parallel.data_parallel(loss, params, bucket_bytes=1)  # one per gradient
    f = gc.compile(loss, updates=gc.optim.sgd(loss, params, lr=0.1, grads=grads))
    nodes = f.graph.nodes
    starts = [i for i, n in enumerate(nodes) if n.op == "all_reduce_start"]
    waits = [i for i, n in enumerate(nodes) if n.op == "all_reduce_wait"]
    assert len(starts) == len(waits) == 4
    # the last layer's buckets are issued before the first layer's gradients are
    # computed: backward work runs while they are in flight
    between = [n for n in nodes[starts[0] + 1:starts[-1]]
               if n.op == "fused" and n.attrs["kind"] == "matmul"]
    assert between, [n.op for n in nodes]
    assert starts[-1] < waits[0]
    # each start comes as soon as its gradient is computed: only other gradients that
    # feed a start, and starts, run in between
    index = {id(n): i for i, n in enumerate(nodes)}
    feeding = {id(nodes[i].inputs[0]) for i in starts}
    for i in starts:
        for k in range(index[id(nodes[i].inputs[0])] + 1, i):
            assert id(nodes[k]) in feeding or nodes[k].op == "all_reduce_start"


def test_schedule_keeps_a_graph_without_collectives_as_it_was():
    loss, params = worker.model("float64", seed=0)
    plain = optimize(gc.Graph(gc.grad(loss, params)), "O2")
    assert overlap(plain) is plain


def test_numpy_backend_reduces_the_buffers_in_place():
    """A bucket's start and wait name the buffer its gradient (or concat) wrote: the
    collective runs on a torch tensor sharing that memory, no copy."""
    loss, params = worker.model("float32", seed=0)
    grads = gc.parallel.data_parallel(loss, params, bucket_bytes=200)
    f = gc.compile(grads)
    f(**dict(zip(("x", "y"), worker.global_batch(0, 1, "float32"))))
    calls = [line.split("#")[0].strip() for line in f.source.splitlines()
             if line.strip().startswith("_collectives.")]
    assert len(calls) == 4
    for call in calls:
        args = call[call.index("(") + 1:call.rindex(")")].split(", ")
        assert args[0] == args[1], call
    # the bucket of several gradients is packed once (a kernel of its own, C or NumPy),
    # into the buffer its start reduces
    packs = [k for k in f.kernels if any(n.startswith("concat@") for n in k.nodes)]
    starts = [k for k in f.kernels if k.nodes[0].startswith("all_reduce_start@")]
    assert len(packs) == 1 and packs[0].name in [k.name for k in starts]
    assert {k.strategy for k in f.kernels if k.nodes[0].startswith("all_reduce")} == {
        "collective"}


def test_drawing_shows_collectives_apart_and_the_overlap():
    loss, params = worker.model("float32", seed=0)
    grads = gc.parallel.data_parallel(loss, params, bucket_bytes=200)
    dot = gc.render(grads, stage="fused").source
    assert dot.count("hexagon") >= 4 and "in flight" in dot
    assert "all_reduce_start" in dot and "op=mean" in dot


def test_the_numpy_path_needs_no_torch(tmp_path):
    code = (
        "import sys; sys.modules['torch'] = None\n"  # import torch fails from here on
        "import numpy as np, graphc as gc\n"
        "x = gc.input('x', (3,), dtype='float64')\n"
        "print(gc.compile(gc.all_reduce(x, op='mean'))(x=np.arange(3.0)))\n"
        "assert gc.parallel.init() == (0, 1)\n"
        "import os; os.environ.update(WORLD_SIZE='2', RANK='1', MASTER_ADDR='h', MASTER_PORT='1')\n"
        "try:\n    gc.parallel.init()\nexcept gc.GraphcError as e:\n    print(e)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "[0. 1. 2.]" in result.stdout
    assert "worker 1 of 2" in result.stdout and "pip install -e '.[parallel]'" in result.stdout


def test_optimizers_check_given_grads():
    loss, params = worker.model("float64", seed=0)
    with pytest.raises(gc.UsageError, match="3 grads for 4 params"):
        gc.optim.sgd(loss, params, lr=0.1, grads=gc.grad(loss, params)[:3])
    with pytest.raises(gc.UsageError, match="gradient of param 'W1'"):
        gc.optim.adam(loss, params, grads=gc.grad(loss, params)[::-1])
    with pytest.raises(gc.UsageError, match="bucket_bytes must be a positive int"):
        gc.parallel.data_parallel(loss, params, bucket_bytes=0)


def test_shard_gives_each_worker_an_equal_block_in_rank_order():
    X = np.arange(11)
    parts = [gc.parallel.shard(X, rank=r, world=3) for r in range(3)]
    np.testing.assert_array_equal(np.concatenate(parts), X[:9])
    a, b = gc.parallel.shard(X, X * 2, rank=1, world=2)
    np.testing.assert_array_equal(b, a * 2)
    with pytest.raises(gc.UsageError, match="2 rows cannot be shared by 3 workers"):
        gc.parallel.shard(X[:2], rank=0, world=3)
