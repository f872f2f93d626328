"""E: data-parallel SGD steps of the MLP 784-512-512-10 (bench/training_step.py's model,
batch 256 per worker, float32) on 1 and 2 processes of this machine, gloo over loopback.

Rows, per number of workers (each worker a process started as torchrun starts it, one
BLAS/torch thread each so that two workers fit two cores):
  graphc 25 MiB   gc.parallel.data_parallel with DDP's bucket size: one bucket here
  graphc 1 MiB    buckets of 1 MiB (DDP's first bucket): several, issued during backward
  torch DDP       torch.nn.parallel.DistributedDataParallel on the same model, gloo
Overlap (graphc rows, from the Collectives' timings of each step): `blocked` is the
time the step spent waiting for its all-reduces, `alone` the time the same all-reduces
take issued one after the other with nothing to overlap, `hidden` = 1 - blocked /
alone, the share of the communication the backward pass hid.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import graphc as gc
from bench.training_step import BATCH, LR, SIZES, _data, graphc_model

WORKER_COUNTS = (1, 2)
BUCKETS = {"graphc 25 MiB": gc.parallel.BUCKET_BYTES, "graphc 1 MiB": 2 ** 20}


def run(repeats: int) -> None:
    rows = []
    for world in WORKER_COUNTS:
        for name, result in _launch(world, repeats).items():
            rows.append([str(world), name, f"{result['median'] * 1e3:.2f}",
                         f"{result['min'] * 1e3:.2f}", result.get("buckets", ""),
                         _ms(result, "blocked"), _ms(result, "alone"),
                         f"{result['hidden']:.0%}" if "hidden" in result else ""])
    _table(["workers", "row", "median ms", "min ms", "buckets", "blocked ms",
            "alone ms", "hidden"], rows)


def _table(header: list, rows: list) -> None:
    widths = [max(len(str(r[k])) for r in [header] + rows) for k in range(len(header))]
    for row in [header] + rows:
        print("  " + "  ".join(str(v).rjust(w) for v, w in zip(row, widths)))


def _ms(result, key):
    return f"{result[key] * 1e3:.2f}" if key in result else ""


def _launch(world: int, repeats: int) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    procs = []
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1",
                   OPENBLAS_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, "-m", "bench.data_parallel",
                                       str(repeats)], cwd=root, env=env,
                                      stdout=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(f"a worker of {world} failed: {outputs}")
    return json.loads(outputs[0].strip().splitlines()[-1])


# --- in each worker ------------------------------------------------------------------------

def _timed(step, repeats: int) -> list:
    step()  # build and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def _graphc(weights, x, y, bucket_bytes, repeats) -> dict:
    loss, params = graphc_model(weights)
    grads = gc.parallel.data_parallel(loss, params, bucket_bytes=bucket_bytes)
    f = gc.compile(loss, updates=gc.optim.sgd(loss, params, lr=LR, grads=grads))
    blocked = []

    def step():
        f(x=x, y=y)
        blocked.append(sum(done - waited for _, waited, done in f.collectives.timings))

    times = _timed(step, repeats)
    sizes = [shape for shape, _, _ in f.collectives.sequence]
    return {**_summary(times), "buckets": len(sizes),
            "blocked": float(np.median(blocked[1:])), "alone": _alone(sizes, repeats)}


def _alone(shapes, repeats) -> float:
    """The all-reduces of these bucket shapes, one after the other, nothing to overlap."""
    buffers = [torch.zeros(shape) for shape in shapes]
    times = []
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        for b in buffers:
            dist.all_reduce(b)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _ddp(weights, x, y, repeats) -> dict:
    layers = []
    for i in range(0, len(weights), 2):
        linear = torch.nn.Linear(*weights[i].shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(weights[i].T))
            linear.bias.copy_(torch.from_numpy(weights[i + 1]))
        layers += [linear, torch.nn.ReLU()]
    model = DistributedDataParallel(torch.nn.Sequential(*layers[:-1]))
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    X, Y = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        optimizer.zero_grad(set_to_none=False)
        torch.nn.functional.cross_entropy(model(X), Y).backward()
        optimizer.step()

    return _summary(_timed(step, repeats))


def _summary(times) -> dict:
    return {"median": float(np.median(times)), "min": float(min(times))}


def worker(repeats: int) -> None:
    torch.set_num_threads(1)
    rank, world = gc.parallel.init(timeout=300)
    x, y, weights = _data(np.random.default_rng(rank))
    assert x.shape[0] == BATCH and weights[0].shape[0] == SIZES[0]
    results = {name: _graphc(weights, x, y, size, repeats) for name, size in BUCKETS.items()}
    results["torch DDP"] = _ddp(weights, x, y, repeats)
    for result in results.values():
        if "blocked" in result:
            result["hidden"] = max(0.0, 1 - result["blocked"] / result["alone"]) if (
                world > 1 and result["alone"] > 0) else 0.0
    print(json.dumps(results), flush=True)
    gc.parallel.shutdown()


if __name__ == "__main__":
    worker(int(sys.argv[1]))
