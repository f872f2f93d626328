"""F: the check to run when a CUDA GPU is lent (`python -m bench gpu --quick`, under 5
minutes): the test suite's triton tests on the GPU (TRITON_INTERPRET unset: real
kernels), then the MLP 784-512-512-10 SGD step at batch 256 and 8192 on graphc's triton
backend against the same model and step under torch.compile (inductor) on the same GPU,
as a ratio. Without a CUDA device it says so and does nothing (exit status 0).

The graphc row is a call as a user makes it (feeds from NumPy, results and updated
params back in NumPy), the torch row a compiled step on tensors that stay on the GPU:
the ratio includes graphc's host round trips.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

from bench.training_step import LR, SIZES, _data, graphc_model

BATCHES = (256, 8192)
TEST_FILES = ("tests/backends/test_triton.py", "tests/backends/test_triton_matmul.py",
              "tests/backends/test_triton_errors.py", "tests/backends/test_triton_mlp.py")
TEST_TIMEOUT_S = 150


def run(repeats: int) -> None:
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device here: nothing run (this check needs a GPU)")
        return
    print(f"device: {torch.cuda.get_device_name(0)}")
    _run_tests()
    print(f"\n{'batch':>6}  {'graphc ms':>10}  {'inductor ms':>11}  {'graphc / inductor':>17}")
    for batch in BATCHES:
        ours, theirs = _graphc_step_ms(batch, repeats), _inductor_step_ms(batch, repeats)
        print(f"{batch:>6}  {ours:10.3f}  {theirs:11.3f}  {ours / theirs:17.2f}")


def _run_tests():
    """The triton tests on the GPU, in a child without TRITON_INTERPRET (tests/conftest.py
    sets it only where there is no CUDA device)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-m", "not slow", *TEST_FILES]
    print("$ " + " ".join(command[2:]), flush=True)
    try:
        done = subprocess.run(command, cwd=root, env=env, timeout=TEST_TIMEOUT_S,
                              capture_output=True, text=True)
        print("\n".join(done.stdout.strip().splitlines()[-15:]))
    except subprocess.TimeoutExpired:
        print(f"the triton tests did not finish in {TEST_TIMEOUT_S} s; going on")


def _median_ms(step, repeats: int, sync) -> float:
    for _ in range(3):      # warm up: build, compile, autotune
        step()
    sync()
    times = []
    for _ in range(max(repeats, 5)):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def _feeds(batch: int):
    rng = np.random.default_rng(0)
    x, _, weights = _data(rng)
    x = rng.standard_normal((batch, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], batch)
    return x, y, weights


def _graphc_step_ms(batch: int, repeats: int) -> float:
    import graphc as gc
    import torch

    x, y, weights = _feeds(batch)
    loss, params = graphc_model(weights)
    step = gc.compile(loss, updates=gc.optim.sgd(loss, params, lr=LR), backend="triton")
    return _median_ms(lambda: step(x=x, y=y), repeats, torch.cuda.synchronize)


def _inductor_step_ms(batch: int, repeats: int) -> float:
    import torch

    x, y, weights = _feeds(batch)
    x, y = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()
    params = [torch.from_numpy(w).cuda().requires_grad_() for w in weights]

    def step():
        h = x
        for i in range(0, len(params), 2):
            h = h @ params[i] + params[i + 1]
            h = torch.relu(h) if i + 2 < len(params) else h
        loss = torch.nn.functional.cross_entropy(h, y)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= LR * g
        return loss

    compiled = torch.compile(step, backend="inductor")
    return _median_ms(compiled, repeats, torch.cuda.synchronize)
