"""First-call time of long elementwise chains: the C compiler on very large graphs.

`python -m bench first_call` prints, for chains of 2,000 and 10,000 pointwise ops on a
(64, 64) input, the first call's time (optimize, build, C compiler, one run) with an
empty compile cache: at O0 (every op its own C kernel: thousands of small functions)
and at O2 (the chain fused into one kernel: one long function), beside the same first
call with C kernels off (NumPy kernels). Each row runs once, in a fresh cache folder
(a first call is once per cache, so `--repeats` does not apply).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np

import graphc as gc

LENGTHS = (2000, 10000)
SHAPE = (64, 64)
# The chain's ops, in turn, each with a constant of its own (t, small and distinct), so
# that no two kernels are the same function (which would be compiled once).
STEPS = (lambda y, t: y * (1 - t), lambda y, t: y + t,
         lambda y, t: gc.maximum(y, -1 - t), lambda y, t: gc.minimum(y, 1 + t))


def chain(ops: int):
    x = gc.input("x", SHAPE)
    y = x
    for i in range(ops):
        y = STEPS[i % len(STEPS)](y, 1e-6 * (i + 1))
    return x, y


def first_call(ops: int, opt: str, c_kernels: bool) -> tuple:
    """(seconds, the Function) of compiling the chain and calling it once."""
    x, y = chain(ops)
    feed = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    start = time.perf_counter()
    f = gc.compile(y, backend="numpy", opt=opt, options={"c_kernels": c_kernels})
    f(x=feed)
    return time.perf_counter() - start, f


def c_lines(f) -> tuple:
    """(C kernels, lines of C) of a Function."""
    sources = [k.extra.get("c_source") for k in f.kernels if k.extra.get("c_source")]
    return len(sources), sum(s.count("\n") + 1 for s in sources)


def run(repeats: int) -> None:
    print(f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
    print(f"{'ops':>6} {'opt':>3} {'kernels':>7} {'C kernels':>9} {'C lines':>8} "
          f"{'first call':>10} {'NumPy only':>10}")
    saved = os.environ.get("XDG_CACHE_HOME")
    try:
        for ops in LENGTHS:
            for opt in ("O0", "O2"):
                with tempfile.TemporaryDirectory(prefix="graphc-bench-") as cache:
                    os.environ["XDG_CACHE_HOME"] = cache  # an empty compile cache
                    seconds, f = first_call(ops, opt, c_kernels=True)
                numpy_seconds, _ = first_call(ops, opt, c_kernels=False)
                kernels, lines = c_lines(f)
                print(f"{ops:>6} {opt:>3} {len(f.kernels):>7} {kernels:>9} {lines:>8} "
                      f"{seconds:>9.2f}s {numpy_seconds:>9.2f}s", flush=True)
    finally:
        if saved is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = saved


if __name__ == "__main__":
    run(1)
    sys.exit(0)
