"""What every benchmark shares: side-by-side timing, the BLAS in use, table printing."""

from __future__ import annotations

import os
import time

import numpy as np

# These force OpenBLAS's older AVX2 kernels on the machines graphc is developed on
# (about 1.7x slower matmuls); a user's machine has neither, so the runner unsets them.
BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def blas_description() -> str:
    """Which BLAS library and kernel set NumPy runs, and with how many threads."""
    from threadpoolctl import threadpool_info

    parts = []
    for pool in threadpool_info():
        if pool["user_api"] == "blas":
            parts.append(f"{pool['internal_api']} {pool.get('version') or ''} "
                         f"kernel={pool.get('architecture') or '?'} "
                         f"threads={pool['num_threads']}".replace("  ", " "))
    overrides = {k: os.environ[k] for k in BLAS_OVERRIDES if k in os.environ}
    return "; ".join(parts or ["no BLAS found by threadpoolctl"]) + (
        f"; overrides set: {overrides}" if overrides else "; no OpenBLAS overrides")


def blas_threads() -> int:
    from threadpoolctl import threadpool_info

    counts = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    return max(counts, default=1)


def time_side_by_side(rows: dict, repeats: int, rounds: int = 5) -> dict:
    """{name: fn} -> {name: median seconds}. The rows take turns, a block of calls each
    per round, so that a slow phase of the machine hits every row alike; blocks rather
    than single calls, so one library's idle spinning threads (OpenBLAS, OpenMP) do not
    sit on the cores while the next row runs."""
    per_block = max(1, repeats // rounds)
    times = {name: [] for name in rows}
    for _ in range(rounds):
        for name, fn in rows.items():
            fn()  # warm the caches (and this library's threads) for the block
            for _ in range(per_block):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def print_table(title: str, medians: dict, base: str, note: str = ""):
    """One line a row: median ms and the ratio of `base` to it (<1: base is faster)."""
    print(f"\n{title}")
    if note:
        print(f"  {note}")
    width = max(len(name) for name in medians)
    print(f"  {'row':<{width}}  {'median':>10}  {base + ' / row':>16}")
    for name, seconds in medians.items():
        ratio = medians[base] / seconds
        print(f"  {name:<{width}}  {seconds * 1e3:8.3f} ms  {ratio:16.3f}")


def megabytes(nbytes: int) -> str:
    return f"{nbytes / 2**20:.2f} MiB"
