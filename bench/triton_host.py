"""G: the host's share of a triton training step, measured on a CPU with a stub launcher.

The MLP 784-512-512-10 SGD step (bench/training_step.py's model) is built for the triton
backend (in Triton's CPU interpreter where there is no GPU), and every kernel of the
generated module is replaced by a stub that takes the launch's grid and arguments and
does nothing. What remains of a call is what the host does around the kernels: checking
the feeds, turning feeds and params into tensors, zeroing the check buffers, the
launches' Python calls, reading the checks, copying the results back and committing the
updates. Rows: the whole call (as a user makes it), and the generated host function
alone (the launches). On a CPU, torch shares NumPy's memory, so the uploads and
downloads a GPU would pay (about 1.5 MiB of params each way a step) are not in these
numbers: they are the floor of the host's time, not its GPU total.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import time

import numpy as np

from bench.training_step import LR, SIZES, _data, graphc_model

BATCHES = (256, 8192)


class StubKernel:
    """Stands for a @triton.jit kernel: `kernel[grid](*args, **meta)` launches nothing."""

    launches = 0

    def __getitem__(self, grid):
        return self

    def __call__(self, *args, **meta):
        StubKernel.launches += 1


@contextlib.contextmanager
def stub_launcher():
    """Builds made inside load their generated module with every kernel a StubKernel
    (a private copy of the module: the real one, cached by host.load_module, is left
    as it is)."""
    from graphc.backends.triton import host

    real = host.load_module

    def load_stubbed(source):
        name, path = host.write_module(source)
        spec = importlib.util.spec_from_file_location(name + "_stubbed", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for attr in list(vars(module)):
            if attr.startswith("k") and "_" in attr and hasattr(getattr(module, attr), "fn"):
                setattr(module, attr, StubKernel())
        return module

    host.load_module = load_stubbed
    try:
        yield
    finally:
        host.load_module = real


def _time_us(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(max(repeats, 5)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e6


def run(repeats: int) -> None:
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")   # before triton is first imported
    import graphc as gc

    print(f"\n{'batch':>6}  {'kernels':>7}  {'call us':>9}  {'launches us':>11}  "
          f"{'per launch us':>13}")
    for batch in BATCHES:
        rng = np.random.default_rng(0)
        _, _, weights = _data(rng)
        x = rng.standard_normal((batch, SIZES[0])).astype(np.float32)
        y = rng.integers(0, SIZES[-1], batch)
        loss, params = graphc_model(weights)
        with stub_launcher():
            step = gc.compile(loss, updates=gc.optim.sgd(loss, params, lr=LR),
                              backend="triton")
            step(x=x, y=y)     # builds (stubbed), then runs with stub launches
        module = step._executable().module
        kernels = len(step._executable().program.launches)
        real_run, captured = module.run, []
        module.run = lambda *args: captured.append(args) or real_run(*args)
        call = _time_us(lambda: step(x=x, y=y), repeats)
        module.run = real_run
        launches = _time_us(lambda: real_run(*captured[-1]), repeats)
        print(f"{batch:>6}  {kernels:>7}  {call:9.1f}  {launches:11.1f}  "
              f"{launches / kernels:13.2f}")
    print("(stubbed launches: the host's work alone; on a CPU, no host-device copies)")
