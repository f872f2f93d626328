"""A: one SGD step of an MLP 784-512-512-10 (ReLU, softmax cross-entropy, batch 256,
float32); B: the same forward pass (to the loss) alone.

Rows, timed side by side in one process with the same BLAS:
  graphc         gc.compile(..., backend="numpy", opt="O2"), called as a user would
  numpy          hand-written forward plus textbook backprop (W -= lr * gW)
  torch          PyTorch eager on the CPU, torch.set_num_threads(our BLAS threads)
  matmul floor   the step's matmuls alone in NumPy, into preallocated outputs
Also: the buffer plan's peak against the naive plan, kernels per step, and the time of
the first call (optimize + build + run) of the step.
"""

from __future__ import annotations

import time

import numpy as np

import graphc as gc
from bench.common import blas_threads, megabytes, print_table, ratio, time_side_by_side

SIZES = (784, 512, 512, 10)
BATCH = 256
LR = 0.01


def _data(rng):
    x = rng.standard_normal((BATCH, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], BATCH)
    weights = []
    for n_in, n_out in zip(SIZES[:-1], SIZES[1:]):
        weights.append((rng.standard_normal((n_in, n_out)) * np.sqrt(2 / n_in)).astype(np.float32))
        weights.append(np.zeros(n_out, np.float32))
    return x, y, weights


# --- graphc ----------------------------------------------------------------------------

def graphc_model(weights):
    x = gc.input("x", ("batch", SIZES[0]))
    y = gc.input("y", ("batch",), dtype="int64")
    params = [gc.param(f"{'Wb'[i % 2]}{i // 2 + 1}", w) for i, w in enumerate(weights)]
    h = x
    for i in range(0, len(params), 2):
        h = h @ params[i] + params[i + 1]
        h = gc.relu(h) if i + 2 < len(params) else h
    return gc.nn.softmax_cross_entropy(h, y), params


def graphc_step(weights):
    """(step function, perf_counter() before the graph was built): the caller times its
    first call (optimize, build and run) from there."""
    start = time.perf_counter()
    loss, params = graphc_model(weights)
    step = gc.compile(loss, updates=gc.optim.sgd(loss, params, lr=LR))
    return step, start


# --- hand-written NumPy ----------------------------------------------------------------

def numpy_forward(x, y, w):
    W1, b1, W2, b2, W3, b3 = w
    h1 = np.maximum(x @ W1 + b1, 0)
    h2 = np.maximum(h1 @ W2 + b2, 0)
    z = h2 @ W3 + b3
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(len(y)), y]).mean()
    return loss, (h1, h2, p)


def numpy_step(x, y, w):
    W1, b1, W2, b2, W3, b3 = w
    loss, (h1, h2, p) = numpy_forward(x, y, w)
    dz = p
    dz[np.arange(len(y)), y] -= 1
    dz /= len(y)
    gW3, gb3 = h2.T @ dz, dz.sum(axis=0)
    d2 = (dz @ W3.T) * (h2 > 0)
    gW2, gb2 = h1.T @ d2, d2.sum(axis=0)
    d1 = (d2 @ W2.T) * (h1 > 0)
    gW1, gb1 = x.T @ d1, d1.sum(axis=0)
    for param, g in zip(w, (gW1, gb1, gW2, gb2, gW3, gb3)):
        param -= LR * g
    return loss


def matmul_floor(x, w, forward_only=False):
    W1, _, W2, _, W3, _ = w
    h1, h2, z = (np.empty((BATCH, n), np.float32) for n in SIZES[1:])
    g1, g2, g3 = np.empty_like(W1), np.empty_like(W2), np.empty_like(W3)
    d2, d1 = np.empty_like(h2), np.empty_like(h1)

    def forward():
        np.matmul(x, W1, out=h1)
        np.matmul(h1, W2, out=h2)
        np.matmul(h2, W3, out=z)

    def step():
        forward()
        np.matmul(h2.T, z, out=g3)
        np.matmul(z, W3.T, out=d2)
        np.matmul(h1.T, d2, out=g2)
        np.matmul(d2, W2.T, out=d1)
        np.matmul(x.T, d1, out=g1)

    return forward if forward_only else step


# --- torch eager -----------------------------------------------------------------------

def torch_rows(x, y, weights):
    import torch

    torch.set_num_threads(blas_threads())
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    tw = [torch.tensor(w, requires_grad=True) for w in weights]

    def forward():
        h = tx
        for i in range(0, len(tw), 2):
            h = h @ tw[i] + tw[i + 1]
            h = torch.relu(h) if i + 2 < len(tw) else h
        return torch.nn.functional.cross_entropy(h, ty)

    def step():
        loss = forward()
        loss.backward()
        with torch.no_grad():
            for p in tw:
                p -= LR * p.grad
                p.grad = None

    def forward_only():
        with torch.no_grad():
            forward()

    return step, forward_only


# --- the benchmark ---------------------------------------------------------------------

def run(repeats: int) -> None:
    x, y, weights = _data(np.random.default_rng(0))
    feeds = {"x": x, "y": y}

    step, start = graphc_step([w.copy() for w in weights])
    step(**feeds)
    first_call = time.perf_counter() - start

    loss, _ = graphc_model([w.copy() for w in weights])
    forward = gc.compile(loss)
    forward(**feeds)

    np_w = [w.copy() for w in weights]
    torch_step, torch_forward = torch_rows(x, y, weights)
    medians = time_side_by_side({
        "graphc": lambda: step(**feeds),
        "numpy": lambda: numpy_step(x, y, np_w),
        "torch": torch_step,
        "matmul floor": matmul_floor(x, np_w),
    }, repeats)
    print_table("A: SGD training step", medians, "graphc",
                f"batch {BATCH}, float32; ratios < 1 mean graphc is faster than the row")
    _report_graphc(step, first_call, medians)

    medians = time_side_by_side({
        "graphc": lambda: forward(**feeds),
        "numpy": lambda: numpy_forward(x, y, np_w),
        "torch": torch_forward,
        "matmul floor": matmul_floor(x, np_w, forward_only=True),
    }, repeats)
    print_table("B: forward pass to the loss", medians, "graphc")
    print(f"  graphc: {forward.stats['kernels']} kernels per forward")


def _report_graphc(step, first_call, medians):
    stats = step.stats
    print(f"  graphc: {stats['kernels']} kernels per step; buffer plan peak "
          f"{megabytes(stats['peak_bytes'])} vs naive {megabytes(stats['naive_bytes'])} "
          f"(ratio {stats['peak_bytes'] / stats['naive_bytes']:.2f}); scratch "
          f"{megabytes(stats['scratch_bytes'])}")
    floor, floor_of_mins = ratio(medians, "graphc", "matmul floor")
    print(f"  graphc / matmul floor = {floor:.3f} of medians, {floor_of_mins:.3f} of mins "
          f"(target <= 1.10: {'met' if floor <= 1.10 else 'NOT met'} on medians)")
    print(f"  first call (optimize, build, run): {first_call:.3f} s (target < 0.5 s: "
          f"{'met' if first_call < 0.5 else 'NOT met'})")
