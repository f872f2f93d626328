"""Data-parallel training on torch.distributed: every worker runs the same step on its
own shard of the batch, and the gradients are averaged over the workers before the
update, so every worker applies the same step and the params stay identical.

    rank, world = gc.parallel.init()              # from torchrun's environment
    grads = gc.parallel.data_parallel(loss, params)  # averaged over the workers
    step = gc.compile(loss, updates=gc.optim.sgd(loss, params, lr=0.1, grads=grads))
    X_mine, Y_mine = gc.parallel.shard(X_batch, Y_batch)
    step(x=X_mine, y=Y_mine)

launched as `torchrun --nproc-per-node 2 train.py` (one machine) or, on each of two
machines, `torchrun --nnodes 2 --nproc-per-node 2 --rdzv-backend c10d --rdzv-endpoint
HOST:PORT train.py`. One process started without torchrun needs no setup: a world of
one, where every collective is its operand.

- `init(timeout=60)` joins the process group torchrun describes (RANK, WORLD_SIZE,
  MASTER_ADDR, MASTER_PORT): gloo for CPU tensors (the numpy backend), plus NCCL for
  CUDA ones (the triton backend on a GPU). Every collective then fails, with a
  CollectiveError naming it, if a peer dies or does not answer within `timeout`
  seconds: a dead or hung worker never leaves the others waiting forever.
- `data_parallel(loss, params, bucket_bytes=25 MiB)` broadcasts the params from worker
  0 (so every worker starts from the same values) and returns the gradients of `loss`
  averaged over the workers. The gradients are packed into buckets of at most
  `bucket_bytes` (torch DDP's default size), in reverse order of `params` (the last
  layer's gradients are ready first in the backward pass), each bucket one
  `all_reduce(op="mean")` in the graph; the schedule issues each bucket's all-reduce as
  soon as its gradients are computed and waits for it just before the update that
  reads it (passes/overlap.py), so communication overlaps the rest of the backward pass.
- A step with collectives is agreed on by every worker before any param is written
  (backends/collectives.py): a step that fails on one worker changes no param on any.
- `shard(*arrays)` gives this worker its equal part of each array (rows), so the
  workers' parts, concatenated in rank order, are the first rows of the batch.

torch is imported by `init` only, so the NumPy path never needs it; without torch,
init says which extra to install.
"""

from __future__ import annotations

import importlib
import os
from datetime import timedelta

import numpy as np

from graphc import dsl, scopes
from graphc.arguments import node_list
from graphc.autodiff import grad
from graphc.backends.collectives import as_tensor, process_group, world
from graphc.errors import GraphcError, UsageError
from graphc.optim import checked_params

BUCKET_BYTES = 25 * 2 ** 20   # torch DDP's bucket_cap_mb
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
INSTALL_HINT = "pip install -e '.[parallel]'"


def init(timeout: float = 60.0, backend: str | None = None) -> tuple:
    """Join the run torchrun started; returns (rank, world size). Without torchrun's
    environment, one process: (0, 1), nothing set up. `timeout` (seconds) bounds every
    collective: a peer that died or hangs makes it fail with a CollectiveError.
    backend: torch.distributed's ("gloo" by default; with CUDA, "cpu:gloo,cuda:nccl")."""
    if "WORLD_SIZE" not in os.environ:
        return world()
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise GraphcError(f"gc.parallel.init: WORLD_SIZE is set but {', '.join(missing)} "
                          "is not; start the workers with torchrun, which sets them all")
    dist = _torch_distributed()
    if not dist.is_initialized():
        cuda = importlib.import_module("torch").cuda.is_available()
        dist.init_process_group(backend or ("cpu:gloo,cuda:nccl" if cuda else "gloo"),
                                timeout=timedelta(seconds=timeout))
    return world()


def _torch_distributed():
    try:
        return importlib.import_module("torch.distributed")
    except ImportError:
        raise GraphcError(
            f"gc.parallel.init: worker {os.environ.get('RANK')} of "
            f"{os.environ.get('WORLD_SIZE')}: data-parallel runs need torch.distributed "
            f"and torch is not installed; install it with `{INSTALL_HINT}`") from None


def rank() -> int:
    return world()[0]


def world_size() -> int:
    return world()[1]


def shutdown() -> None:
    """Leave the process group (at the end of a run; nothing to do in one process)."""
    dist = process_group()
    if dist is not None:
        dist.destroy_process_group()


def broadcast_params(params) -> None:
    """Every worker's params take worker 0's values (in place), one param at a time."""
    params = node_list(params, "gc.parallel.broadcast_params: params", UsageError)
    dist = process_group()
    if dist is None:
        return
    for p in params:
        dist.broadcast(as_tensor(p.value), src=0)


def data_parallel(loss, params, bucket_bytes: int = BUCKET_BYTES, broadcast=True) -> list:
    """The gradients of `loss` with respect to `params`, each averaged over the workers
    (nodes, in the order of params), for gc.optim's `grads=`. broadcast: first give
    every worker worker 0's param values (see the module docstring)."""
    params = checked_params(params, "gc.parallel.data_parallel")
    if not isinstance(bucket_bytes, int) or bucket_bytes < 1:
        raise UsageError(f"gc.parallel.data_parallel: bucket_bytes must be a positive "
                         f"int, got {bucket_bytes!r}")
    if broadcast:
        broadcast_params(params)
    grads = grad(loss, params)
    averaged = [None] * len(grads)
    with scopes.scope("data_parallel"):
        for k, bucket in enumerate(buckets(grads, bucket_bytes)):
            with scopes.scope(f"bucket{k}"):
                for i, g in zip(bucket, _average([grads[i] for i in bucket])):
                    averaged[i] = g
    return averaged


def buckets(values: list, bucket_bytes: int) -> list:
    """Indices of `values` grouped into buckets: in reverse order, a bucket filled until
    the next value would take it past bucket_bytes (a bigger value has one of its own),
    one dtype a bucket (they are concatenated)."""
    groups, current, size = [], [], 0
    for i in reversed(range(len(values))):
        nbytes = values[i].type.nbytes()
        if current and (size + nbytes > bucket_bytes
                        or values[i].dtype != values[current[0]].dtype):
            groups.append(current)
            current, size = [], 0
        current.append(i)
        size += nbytes
    return groups + [current] if current else groups


def _average(grads: list) -> list:
    """The mean over the workers of each of `grads`: one all_reduce of them packed."""
    if len(grads) == 1:
        return [dsl.all_reduce(grads[0], op="mean")]
    sizes = [int(np.prod(g.shape, dtype=np.int64)) for g in grads]
    packed = dsl.concat([dsl.reshape(g, (n,)) for g, n in zip(grads, sizes)])
    reduced = dsl.all_reduce(packed, op="mean")
    ends = np.cumsum(sizes)
    return [dsl.reshape(reduced[end - n:end], g.shape) for g, n, end in zip(grads, sizes, ends)]


def shard(*arrays, rank: int | None = None, world: int | None = None):
    """This worker's rows of each array: the rank-th of `world` equal blocks (the last
    len % world rows are left out, so every worker gets as many); one array, or a tuple."""
    mine, size = world_of(rank, world)
    parts = []
    for array in arrays:
        array = np.asarray(array)
        rows = len(array) // size
        if rows == 0:
            raise UsageError(f"gc.parallel.shard: {len(array)} rows cannot be shared by "
                             f"{size} workers")
        parts.append(array[mine * rows:(mine + 1) * rows])
    return parts[0] if len(parts) == 1 else tuple(parts)


def world_of(rank: int | None, size: int | None) -> tuple:
    """(rank, world size): the given ones, else this process's."""
    here = world()
    return (here[0] if rank is None else rank), (here[1] if size is None else size)
