"""Data-parallel training across processes (graphc/parallel.py) on torch.distributed's
gloo, 2 and 3 workers on this machine (loopback only), each run bounded in time.

The workers (tests/graphc/parallel_worker.py) are started as torchrun starts them: one
process per rank, RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT in the environment.
The oracle is a single process training on the concatenated batch.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import graphc as gc
from tests.graphc import parallel_worker as worker

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RUN_SECONDS = 240  # a run that takes longer is a hang: the test fails, never waits


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(scenario: str, world: int, out_dir, keep_going=()) -> list:
    """Run `world` workers of a scenario; return each rank's (arrays, facts). Ranks in
    keep_going may be still running (hung) when the others are done: they are killed."""
    port = _free_port()
    procs = []
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                   LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tests.graphc.parallel_worker", scenario, str(out_dir)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = {}
    try:
        for rank, proc in enumerate(procs):
            if rank not in keep_going:
                logs[rank] = proc.communicate(timeout=RUN_SECONDS)[0]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    results = []
    for rank in range(world):
        path = os.path.join(out_dir, f"rank{rank}")
        if not os.path.exists(path + ".json"):
            results.append(None)
            assert rank in keep_going, f"worker {rank} wrote nothing:\n{logs.get(rank)}"
            continue
        with open(path + ".json") as f:
            facts = json.load(f)
        results.append((dict(np.load(path + ".npz")), facts))
    return results


def single_process(config, world: int, steps) -> dict:
    """The oracle: one process, worker 0's initial params, the concatenated batches."""
    dtype, opt, _, backend = config
    loss, params = worker.model(dtype, seed=0)
    step = gc.compile(loss, updates=worker.optimizer(opt, loss, params), backend=backend)
    for k in steps:
        X, Y = worker.global_batch(k, world, dtype)
        step(x=X, y=Y)
    return worker.values(params)


@pytest.fixture(scope="module", params=[2, 3], ids=lambda w: f"{w}workers")
def trained(request, tmp_path_factory):
    world = request.param
    return world, launch("train", world, tmp_path_factory.mktemp(f"train{world}"))


TOLERANCE = {"float64": 1e-12, "float32": 1e-6}


@pytest.mark.parametrize("config", worker.TRAIN_CONFIGS, ids=lambda c: "/".join(map(str, c)))
def test_workers_end_equal_to_each_other_and_to_one_process_on_the_whole_batch(
        trained, config):
    world, results = trained
    key = "/".join(map(str, config))
    oracle = single_process(config, world, range(worker.STEPS))
    first = results[0][0]
    for name, expected in oracle.items():
        for arrays, _ in results[1:]:  # every worker applies the very same step
            np.testing.assert_array_equal(arrays[f"{key}/{name}"], first[f"{key}/{name}"])
        np.testing.assert_allclose(first[f"{key}/{name}"], expected, rtol=0,
                                   atol=TOLERANCE[config[0]], err_msg=f"{key} {name}")
        # the params moved: a step that averaged nothing would not match anyway
        assert not np.allclose(first[f"{key}/{name}"], worker.model(config[0], 0)[1][
            ["W1", "b1", "W2", "b2"].index(name)].value)


def test_buckets_follow_bucket_bytes(trained):
    _, results = trained
    facts = results[0][1]
    assert facts["float64/sgd/1/numpy"]["buckets"] == 4     # one per gradient
    assert facts["float32/sgd/26214400/numpy"]["buckets"] == 1
    assert 1 < facts["float64/adam/700/numpy"]["buckets"] < 4


def test_runs_are_deterministic(trained, tmp_path):
    world, results = trained
    if world != 2:
        pytest.skip("one repeat is enough")
    again = launch("train", world, tmp_path)
    for (arrays, _), (repeat, _) in zip(results, again):
        assert arrays.keys() == repeat.keys()
        for key in arrays:
            np.testing.assert_array_equal(arrays[key], repeat[key])


def test_gradient_of_all_reduce_is_the_all_reduce_of_the_cotangent(tmp_path):
    for arrays, _ in launch("gradient", 3, tmp_path):
        for op in ("sum", "mean"):
            np.testing.assert_allclose(arrays[f"{op}/got"], arrays[f"{op}/expected"],
                                       rtol=1e-12)


def test_a_failed_step_changes_no_param_on_any_worker(tmp_path):
    (zero, facts0), (one, facts1) = launch("bad_label", 2, tmp_path)
    assert facts1["error"] == "GraphcError" and "one_hot: label" in facts1["message"]
    assert facts0["error"] == "CollectiveError"
    assert "the step failed on worker 1 of 2" in facts0["message"]
    assert "no param was changed on any worker" in facts0["message"]
    assert facts0["unchanged"] and facts1["unchanged"]
    # the workers stay in step: the next step trains as a run without the failed one
    expected = single_process(("float64", "sgd", 200, "numpy"), 2, [0, 2])
    for name, value in expected.items():
        np.testing.assert_array_equal(zero[name], one[name])
        np.testing.assert_allclose(zero[name], value, rtol=0, atol=1e-12)


@pytest.mark.parametrize("scenario", ["killed", "hung"])
def test_a_dead_or_hung_worker_makes_the_others_fail_clearly_within_the_timeout(
        tmp_path, scenario):
    results = launch(scenario, 2, tmp_path, keep_going={1})
    _, facts = results[0]
    assert facts["error"] == "CollectiveError", facts
    assert "failed on worker 0 of 2" in facts["message"]
    assert "made at" in facts["message"] and "timeout" in facts["message"]
    assert facts["seconds"] < worker.TIMEOUT + 10
    assert facts["unchanged"]


def test_one_process_needs_no_setup(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert gc.parallel.init() == (0, 1)
    loss, params = worker.model("float64", seed=0)
    grads = gc.parallel.data_parallel(loss, params, bucket_bytes=200)
    X, Y = worker.global_batch(0, 1, "float64")
    got = gc.compile(grads)(x=X, y=Y)
    expected = gc.compile(gc.grad(loss, params), backend="reference")(x=X, y=Y)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-14)
