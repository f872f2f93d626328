"""C: y = sigmoid(tanh(x*a + b) * exp(-x*x)) + relu(x) on 4M float32 values, the value
and its gradient dy/dx (the gradient of sum(y)).

Rows, timed side by side:
  graphc         gc.compile([y, dy/dx]) on the numpy backend (fused, in place)
  numpy          the expression and its textbook derivative written in plain NumPy,
                 one temporary per operation (unfused evaluation)
  torch          PyTorch eager, y.sum().backward()
Target: graphc at least 1.3x faster than the plain NumPy evaluation.
"""

from __future__ import annotations

import numpy as np

import graphc as gc
from bench.common import blas_threads, megabytes, print_table, ratio, time_side_by_side

N = 4 * 2**20
A, B = 0.5, -0.25


def graphc_function():
    x = gc.input("x", ("n",))
    y = gc.sigmoid(gc.tanh(x * A + B) * gc.exp(-x * x)) + gc.relu(x)
    (dx,) = gc.grad(gc.sum(y), [x])
    return gc.compile([y, dx])


def numpy_value_and_grad(x):
    t = np.tanh(x * A + B)
    e = np.exp(-x * x)
    p = t * e
    s = 1 / (1 + np.exp(-p))
    y = s + np.maximum(x, 0)
    dp = s * (1 - s)
    dx = dp * e * (1 - t * t) * A + dp * t * e * (-2 * x) + (x > 0)
    return y, dx


def torch_value_and_grad(x):
    import torch

    torch.set_num_threads(blas_threads())
    tx = torch.from_numpy(x).requires_grad_(True)

    def run():
        tx.grad = None
        y = torch.sigmoid(torch.tanh(tx * A + B) * torch.exp(-tx * tx)) + torch.relu(tx)
        y.sum().backward()
        return y.detach(), tx.grad

    return run


def run(repeats: int) -> None:
    x = np.random.default_rng(0).standard_normal(N).astype(np.float32)
    fn = graphc_function()
    y, dx = fn(x=x)
    y_ref, dx_ref = numpy_value_and_grad(x)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-5)
    medians = time_side_by_side({
        "graphc": lambda: fn(x=x),
        "numpy": lambda: numpy_value_and_grad(x),
        "torch": torch_value_and_grad(x),
    }, max(5, repeats // 5))
    print_table("C: value and gradient of the expression", medians, "graphc",
                f"{N} float32 values; ratios < 1 mean graphc is faster than the row")
    stats = fn.stats
    speedup, speedup_of_mins = ratio(medians, "numpy", "graphc")
    print(f"  graphc: {stats['kernels']} kernels; buffers {megabytes(stats['peak_bytes'])} "
          f"(naive {megabytes(stats['naive_bytes'])}), scratch "
          f"{megabytes(stats['scratch_bytes'])}")
    print(f"  speedup over plain NumPy: {speedup:.2f}x of medians, {speedup_of_mins:.2f}x of "
          f"mins (target >= 1.3x: {'met' if speedup >= 1.3 else 'NOT met'} on medians)")
