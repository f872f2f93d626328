"""One worker of the data-parallel tests (tests/graphc/test_parallel.py), started as
torchrun would (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT in the environment):

    python -m tests.graphc.parallel_worker SCENARIO OUT_DIR

Each scenario writes what it saw to OUT_DIR/rank{RANK}.npz (arrays) and .json (facts).
The model and the batches are the same functions the test's single-process runs use.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import numpy as np

import graphc as gc

BATCH = 5           # rows per worker and step (odd)
STEPS = 4
TIMEOUT = 6.0       # seconds: the process group's timeout in the failure scenarios
SIZES = (7, 9, 3)   # the MLP's layer widths (odd)

# (dtype, optimizer, bucket_bytes, backend): every gradient its own bucket (1 byte),
# buckets of a few gradients, and one bucket for all (DDP's 25 MiB)
TRAIN_CONFIGS = [
    ("float64", "sgd", 1, "numpy"),
    ("float64", "adam", 700, "numpy"),
    ("float32", "sgd", gc.parallel.BUCKET_BYTES, "numpy"),
    ("float32", "adam", 1, "numpy"),
    ("float64", "sgd", 200, "reference"),
    # Triton's CPU interpreter on CPU tensors (no GPU here): the same host calls that
    # run NCCL on CUDA tensors
    ("float32", "adam", 200, "triton"),
]


def model(dtype: str, seed: int):
    """A 2-layer tanh MLP with a softmax cross-entropy loss; params drawn from seed."""
    rng = np.random.default_rng(seed)
    x = gc.input("x", ("batch", SIZES[0]), dtype=dtype)
    y = gc.input("y", ("batch",), dtype="int64")
    params = [gc.param("W1", rng.normal(size=SIZES[:2]) * 0.5, dtype),
              gc.param("b1", rng.normal(size=SIZES[1]) * 0.1, dtype),
              gc.param("W2", rng.normal(size=SIZES[1:]) * 0.5, dtype),
              gc.param("b2", rng.normal(size=SIZES[2]) * 0.1, dtype)]
    W1, b1, W2, b2 = params
    loss = gc.nn.softmax_cross_entropy(gc.tanh(x @ W1 + b1) @ W2 + b2, y)
    return loss, params


def global_batch(step: int, world: int, dtype: str):
    """The step's batch over all workers: world * BATCH rows, the same on every worker."""
    rng = np.random.default_rng(1000 + step)
    X = rng.normal(size=(world * BATCH, SIZES[0])).astype(dtype)
    Y = rng.integers(0, SIZES[2], world * BATCH)
    return X, Y


def optimizer(name: str, loss, params, grads=None):
    if name == "sgd":
        return gc.optim.sgd(loss, params, lr=0.3, momentum=0.5, grads=grads)
    return gc.optim.adam(loss, params, lr=0.02, grads=grads)


def data_parallel_step(config, seed: int):
    dtype, opt, bucket_bytes, backend = config
    loss, params = model(dtype, seed)
    grads = gc.parallel.data_parallel(loss, params, bucket_bytes=bucket_bytes)
    step = gc.compile(loss, updates=optimizer(opt, loss, params, grads), backend=backend)
    return step, params


def values(params) -> dict:
    return {p.name: p.value.copy() for p in params}


def train(rank, world, arrays, facts):
    for config in TRAIN_CONFIGS:
        step, params = data_parallel_step(config, seed=rank)  # broadcast: rank 0's values
        key = "/".join(map(str, config))
        for k in range(STEPS):
            X, Y = gc.parallel.shard(*global_batch(k, world, config[0]))
            step(x=X, y=Y)
        arrays.update({f"{key}/{name}": v for name, v in values(params).items()})
        facts[key] = {"buckets": sum(n.op == "all_reduce_start" for n in step.graph.nodes)}


def gradient(rank, world, arrays, facts):
    """d loss_r / d W through an all_reduce, beside the formula of the module docstring
    of graphc/autodiff.py: x_r * all_reduce(cotangent of y)."""
    for op in ("sum", "mean"):
        x = gc.input("x", (3,), dtype="float64")
        c = gc.input("c", (), dtype="float64")
        W = gc.param("W", np.array([0.5, -1.0, 2.0]), "float64")
        y = gc.all_reduce(x * W, op=op)
        loss = (y * y * c).sum()
        f = gc.compile(gc.grad(loss, [W]), backend="numpy")
        xs = [np.arange(3.0) + q for q in range(world)]
        cs = [1.0 + q for q in range(world)]
        (got,) = f(x=xs[rank], c=cs[rank])
        scale = 1.0 if op == "sum" else 1.0 / world
        y_value = scale * sum(xq * W.value for xq in xs)
        expected = xs[rank] * scale * sum(2 * y_value * cq for cq in cs)
        arrays[f"{op}/got"], arrays[f"{op}/expected"] = got, expected


def _failing_run(rank, world, arrays, facts, fail):
    """Two good steps around a step in which worker 1 fails in the way `fail` says."""
    step, params = data_parallel_step(("float64", "sgd", 200, "numpy"), seed=rank)
    X, Y = gc.parallel.shard(*global_batch(0, world, "float64"))
    step(x=X, y=Y)
    before = values(params)
    X, Y = gc.parallel.shard(*global_batch(1, world, "float64"))
    began = time.perf_counter()
    try:
        if rank == 1:
            Y = fail(Y)
        step(x=X, y=Y)
        facts["error"] = None
    except gc.GraphcError as e:
        facts["error"], facts["message"] = type(e).__name__, str(e)
    facts["seconds"] = time.perf_counter() - began
    facts["unchanged"] = all(np.array_equal(before[n], v) for n, v in values(params).items())
    return step, params


def bad_label(rank, world, arrays, facts):
    step, params = _failing_run(rank, world, arrays, facts, lambda Y: Y + SIZES[2])
    X, Y = gc.parallel.shard(*global_batch(2, world, "float64"))
    step(x=X, y=Y)  # the group is still in step: training goes on
    arrays.update(values(params))


def _kill(Y):
    os.kill(os.getpid(), signal.SIGKILL)


def _hang(Y):
    time.sleep(10 * TIMEOUT)


def killed(rank, world, arrays, facts):
    _failing_run(rank, world, arrays, facts, _kill)


def hung(rank, world, arrays, facts):
    _failing_run(rank, world, arrays, facts, _hang)


SCENARIOS = {"train": train, "gradient": gradient, "bad_label": bad_label,
             "killed": killed, "hung": hung}
FAILURE_SCENARIOS = ("killed", "hung")


def main(scenario: str, out_dir: str) -> None:
    timeout = TIMEOUT if scenario in FAILURE_SCENARIOS else 120.0
    rank, world = gc.parallel.init(timeout=timeout)
    arrays, facts = {}, {"world": world}
    SCENARIOS[scenario](rank, world, arrays, facts)
    np.savez(os.path.join(out_dir, f"rank{rank}.npz"), **arrays)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(facts, f)
    sys.stdout.flush()
    # A group whose peer died cannot be shut down cleanly: leave without its destructor.
    os._exit(0)


if __name__ == "__main__":
    main(*sys.argv[1:3])
