"""One build for every batch size: what a new batch size costs a training step.

`python -m bench batch_sizes` compiles an SGD step of a 64-256-10 MLP (numpy backend)
in an empty C compile cache and prints:
  - the first call at batch 64 (optimize, build, compile C, one step);
  - the first call at each of 20 batch sizes not seen before (median and worst), and a
    steady call at one of them (median of `--repeats`);
  - an epoch of 1000 samples in batches of 64, the last one ragged (40), by a freshly
    compiled step: its whole cost, first call included, with the cache empty and warm;
  - the executables the step keeps and the compile requests (ccompile.stats).
The module runs on its own too (`python bench/batch_sizes.py`), so the same rows can be
measured on another checkout of graphc (its `stats` row is then "n/a" where ccompile
has no stats).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

import numpy as np

import graphc as gc
from graphc.backends import ccompile

WIDTHS = (64, 256, 10)
FIRST, NEW_SIZES, SAMPLES, BATCH = 64, tuple(range(70, 200, 7))[:20], 1000, 64


def mlp_step():
    x, y = gc.input("x", ("batch", WIDTHS[0])), gc.input("y", ("batch",), dtype="int64")
    init = np.random.default_rng(0)
    params = [gc.param("W1", init.standard_normal(WIDTHS[:2]) * 0.1),
              gc.param("b1", np.zeros(WIDTHS[1])),
              gc.param("W2", init.standard_normal(WIDTHS[1:]) * 0.1),
              gc.param("b2", np.zeros(WIDTHS[2]))]
    W1, b1, W2, b2 = params
    loss = gc.nn.softmax_cross_entropy(gc.relu(x @ W1 + b1) @ W2 + b2, y)
    return gc.compile(loss, updates=gc.optim.sgd(loss, params, lr=0.01))


def data(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((n, WIDTHS[0])).astype(np.float32),
            "y": rng.integers(0, WIDTHS[2], n)}


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def epoch(step) -> float:
    """Seconds of one pass over SAMPLES in batches of BATCH (the last one ragged)."""
    feeds = data(SAMPLES, seed=1)
    starts = range(0, SAMPLES, BATCH)
    return timed(lambda: [step(x=feeds["x"][i:i + BATCH], y=feeds["y"][i:i + BATCH])
                          for i in starts])


def _requests() -> str:
    stats = getattr(ccompile, "stats", None)  # (absent before issue 16)
    return "n/a" if stats is None else str(stats.requests)


def rows(repeats: int) -> list:
    """(what, value) rows, measured in the current compile cache."""
    step = mlp_step()
    feeds = data(FIRST)
    first = timed(lambda: step(**feeds))
    batches = [data(n) for n in NEW_SIZES]
    new = [timed(lambda f=f: step(**f)) for f in batches]
    feeds = batches[-1]
    steady = statistics.median(timed(lambda: step(**feeds)) for _ in range(max(repeats, 1)))
    out = [("first call, batch 64 (the build)", f"{first * 1e3:9.1f} ms"),
           (f"first call at a new batch size ({len(NEW_SIZES)} sizes): median",
            f"{statistics.median(new) * 1e3:9.2f} ms"),
           ("  worst", f"{max(new) * 1e3:9.2f} ms"),
           ("steady call at one of those sizes: median", f"{steady * 1e3:9.2f} ms"),
           ("executables kept", f"{len(step._executables):9d}"),
           ("C compile requests (the compiler's probe included)", f"{_requests():>9}")]
    return out


def run(repeats: int) -> None:
    print(f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} (others may be "
          "loading the machine)")
    saved = os.environ.get("XDG_CACHE_HOME")
    try:
        with tempfile.TemporaryDirectory(prefix="graphc-bench-") as cache:
            os.environ["XDG_CACHE_HOME"] = cache  # an empty compile cache
            table = rows(repeats)
        with tempfile.TemporaryDirectory(prefix="graphc-bench-") as cache:
            os.environ["XDG_CACHE_HOME"] = cache
            cold = epoch(mlp_step())
            warm = epoch(mlp_step())  # a fresh step, its C in the cache now
            again = mlp_step()
            epoch(again)
            steady = epoch(again)
        table += [(f"epoch of {SAMPLES} in batches of {BATCH} (last {SAMPLES % BATCH}), "
                   "fresh step, empty cache", f"{cold * 1e3:9.1f} ms"),
                  ("  the same, C in the cache", f"{warm * 1e3:9.1f} ms"),
                  ("  a second epoch of one step", f"{steady * 1e3:9.1f} ms")]
    finally:
        if saved is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = saved
    width = max(len(what) for what, _ in table)
    for what, value in table:
        print(f"{what:<{width}}  {value}", flush=True)


if __name__ == "__main__":  # on its own (another checkout's graphc): BLAS on one thread,
    # as `python -m bench batch_sizes --threads 1` (on a loaded machine a second BLAS
    # thread waits for a core: tens of ms a call)
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1, user_api="blas"):
        run(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
    sys.exit(0)
