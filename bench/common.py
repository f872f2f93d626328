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


def load_note() -> str:
    """The machine's load: timings from a busy machine are noisy (a BLAS thread that loses
    its core stalls the others), which the min column shows apart from the median."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    busy = "  (busy: other processes share the cores)" if load > 0.5 * cores else ""
    return f"load average {load:.2f} on {cores} cores{busy}"


def time_side_by_side(rows: dict, repeats: int, rounds: int = 5) -> dict:
    """{name: fn} -> {name: (median seconds, min seconds)}. The rows take turns, a block of
    calls each per round, so that a slow phase of the machine hits every row alike; blocks
    rather than single calls, so one library's idle spinning threads (OpenBLAS, OpenMP)
    do not sit on the cores while the next row runs."""
    per_block = max(1, repeats // rounds)
    times = {name: [] for name in rows}
    for _ in range(rounds):
        for name, fn in rows.items():
            fn()  # warm the caches (and this library's threads) for the block
            for _ in range(per_block):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: (float(np.median(t)), min(t)) for name, t in times.items()}


def print_table(title: str, timings: dict, base: str, note: str = ""):
    """One line a row: median and min ms, and the ratios of `base` to them (<1: base is
    faster)."""
    print(f"\n{title}")
    if note:
        print(f"  {note}")
    width = max(len(name) for name in timings)
    print(f"  {'row':<{width}}  {'median':>10}  {'min':>10}  {base + ' / row':>15}"
          f"  {'(of mins)':>9}")
    base_median, base_min = timings[base]
    for name, (median, least) in timings.items():
        print(f"  {name:<{width}}  {median * 1e3:7.3f} ms  {least * 1e3:7.3f} ms  "
              f"{base_median / median:15.3f}  {base_min / least:9.3f}")


def ratio(timings: dict, a: str, b: str) -> tuple:
    """(median ratio, min ratio) of row a to row b."""
    return timings[a][0] / timings[b][0], timings[a][1] / timings[b][1]


def megabytes(nbytes: int) -> str:
    return f"{nbytes / 2**20:.2f} MiB"
