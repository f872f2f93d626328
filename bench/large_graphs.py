"""Very large graphs: time and peak memory of O2 and of the first call, 10k to 300k nodes.

`python -m bench large_graphs` (or `python -m bench.large_graphs [--sizes ...]`) builds,
for each shape and size, a graph of about that many nodes and measures
  O2          gc.compile(outputs) on the numpy backend: the O2 pipeline;
  first call  the first call: the backend's build (schedule, buffer plan, code) and run;
each in a fresh process, so one row's garbage and caches do not reach the next: once
timed (CPU seconds of the process, which other processes on the machine do not add to),
once for memory: the step's peak resident memory above what the process held when it
began (Linux: the kernel's high-water mark, reset before each step through
/proc/self/clear_refs; elsewhere tracemalloc's peak, which slows a 100k-node row ~15x).
Between sizes it prints the growth exponent k of value ~ n^k; n log n grows as
k = 1 + log(log n2 / log n1) / log(n2 / n1) (about 1.1 here), a quadratic step as k = 2.

The shapes:
  chain    x -> *0.5 -> +0.25 -> tanh -> ...: one line of dependencies (it fuses into
           one pointwise kernel of every op);
  fan-out  h = tanh(x) read by n/3 branches exp(h * c_i), each an output: one value with
           n/3 users, each in a kernel of its own (h is stored, and the fuse pass gives
           the reason once per kernel).
The first call runs with C kernels off: one C library for a 300k-op kernel is the
compiler's time, not graphc's (the issue's item 6 bounds it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
import tracemalloc

import numpy as np

import graphc as gc

SIZES = (10_000, 100_000, 300_000)
OPTIONS = {"c_kernels": False}
BATCH = 4
CLEAR_REFS = "/proc/self/clear_refs"


def chain(n: int):
    """About n nodes in one line of dependencies; (input, outputs)."""
    x = gc.input("x", ("batch", 3))
    h = x
    for i in range(n * 2 // 5):  # 5 nodes per 2 steps
        h = gc.tanh(h) if i % 2 else h * 0.5 + 0.25
    return x, [h]


def fan_out(n: int):
    """One computed value read by about n/3 branches, each an output; (input, outputs)."""
    x = gc.input("x", ("batch", 3))
    h = gc.tanh(x)
    return x, [gc.exp(h * float(i + 2)) for i in range(n // 3)]


SHAPES = {"chain": chain, "fan-out": fan_out}


def measure(shape: str, n: int, memory: bool) -> dict:
    """{nodes, o2, first_call}: seconds, or with `memory` peak traced bytes, of each step."""
    x, outputs = SHAPES[shape](n)
    feed = np.linspace(-1, 1, BATCH * 3, dtype=np.float32).reshape(BATCH, 3)
    compiled = []
    steps = (("o2", lambda: compiled.append(gc.compile(outputs, options=OPTIONS))),
             ("first_call", lambda: compiled[0](x=feed)))
    result = {"nodes": len(gc.Graph(outputs).nodes)}
    for name, step in steps:
        result[name] = _peak_bytes(step) if memory else _seconds(step)
    return result


def _seconds(step) -> float:
    start = time.process_time()  # CPU time: what other processes run does not count
    step()
    return time.process_time() - start


def _peak_bytes(step) -> int:
    if not os.path.exists(CLEAR_REFS):
        return _traced_peak_bytes(step)
    with open(CLEAR_REFS, "w") as f:
        f.write("5")  # the high-water mark restarts at the current resident size
    start = _status_kib("VmRSS")
    step()
    return (_status_kib("VmHWM") - start) * 1024


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))


def _traced_peak_bytes(step) -> int:
    tracemalloc.start()
    try:
        step()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measure_apart(shape: str, n: int, memory: bool) -> dict:
    """measure() in a fresh Python process."""
    argv = [sys.executable, "-m", "bench.large_graphs", "--one", shape, str(n)]
    done = subprocess.run(argv + (["--memory"] if memory else []), capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def exponent(n1: int, v1: float, n2: int, v2: float) -> float:
    """k such that v grows as n^k from (n1, v1) to (n2, v2); nan without growth to
    measure (a small step's peak can stay inside memory the process already held)."""
    if v1 <= 0 or v2 <= 0:
        return math.nan
    return math.log(v2 / v1) / math.log(n2 / n1)


def n_log_n_exponent(n1: int, n2: int) -> float:
    return exponent(n1, n1 * math.log(n1), n2, n2 * math.log(n2))


COLUMNS = (("o2", "O2 s"), ("first_call", "1st call s"), ("o2_mem", "O2 MiB"),
           ("first_call_mem", "1st MiB"))


HEADER = f"{'shape':<8} {'nodes':>7} " + " ".join(f"{t:>11}" for _, t in COLUMNS)


def format_rows(shape: str, rows: list) -> list:
    """Table lines for one shape: one row per size, each after the first followed by the
    exponents from the size before."""
    lines = []
    for k, row in enumerate(rows):
        cells = [row[c] if c in ("o2", "first_call") else row[c] / 2**20 for c, _ in COLUMNS]
        lines.append(f"{shape:<8} {row['nodes']:>7} " + " ".join(f"{v:>11.3f}" for v in cells))
        if k:
            prev = rows[k - 1]
            ks = [exponent(prev["nodes"], prev[c], row["nodes"], row[c]) for c, _ in COLUMNS]
            ref = n_log_n_exponent(prev["nodes"], row["nodes"])
            lines.append(f"{'  n^k':<8} {'k':>7} " + " ".join(f"{v:>11.2f}" for v in ks)
                         + f"   (n log n: k = {ref:.2f})")
    return lines


def measure_row(shape: str, n: int, measure_one=measure_apart) -> dict:
    timed, peaks = measure_one(shape, n, False), measure_one(shape, n, True)
    return {**timed, "o2_mem": peaks["o2"], "first_call_mem": peaks["first_call"]}


def run(repeats: int, sizes=SIZES) -> None:
    del repeats  # one run per row: a row at 300k nodes is long enough to time alone
    print("O2 = gc.compile(..., backend='numpy'); 1st call = build + run, C kernels off;"
          " s = CPU seconds; MiB = peak memory of the step")
    print(HEADER)
    for shape in SHAPES:
        rows = []
        for n in sizes:
            rows.append(measure_row(shape, n))
            print("\n".join(format_rows(shape, rows)[-2 if len(rows) > 1 else -1:]),
                  flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.large_graphs",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--one", nargs=2, metavar=("SHAPE", "N"),
                        help="measure one row in this process and print it as JSON")
    parser.add_argument("--memory", action="store_true", help="with --one: peak bytes")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.memory)))
    else:
        run(1, args.sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
