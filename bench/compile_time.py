"""Compile time: the O2 pipeline on MLP training graphs of 2..200 layers.

`python -m bench.compile_time [--repeats N]` prints, per depth, the graph's nodes, the
best pipeline time over N runs and the time per node, then each pass's share at the
largest depth. Time per node that stays flat from the smallest to the largest graph
means the pipeline scales linearly; a quadratic pass would make it grow ~100x here.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import graphc as gc
from graphc.ir import Graph
from graphc.passes import PASSES, PIPELINES, optimize

DEPTHS = (2, 5, 10, 20, 50, 100, 200)
WIDTH = 32


def training_graph(layers: int) -> Graph:
    """Loss and every parameter gradient of an MLP with `layers` dense layers."""
    x = gc.input("x", ("batch", WIDTH))
    y = gc.input("y", ("batch",), dtype="int64")
    out, params = gc.nn.mlp(x, [WIDTH] * layers + [10], rng=np.random.default_rng(0))
    loss = gc.nn.softmax_cross_entropy(out, y)
    return Graph([loss, *gc.grad(loss, params)])


def best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def pass_times(graph: Graph, repeats: int) -> list:
    """(pass name, best seconds) along the O2 pipeline, each pass on its real input."""
    rows = []
    for name in PIPELINES["O2"]:
        rows.append((name, best_time(lambda: PASSES[name](graph), repeats)))
        graph = PASSES[name](graph)
    return rows


def run(repeats: int) -> None:
    repeats = max(1, min(repeats, 5))  # a pipeline run is long enough to time alone
    print(f"{'layers':>6} {'nodes':>6} {'seconds':>9} {'us/node':>8}")
    per_node = []
    for layers in DEPTHS:
        graph = training_graph(layers)
        seconds = best_time(lambda: optimize(graph, "O2"), repeats)
        per_node.append(seconds / len(graph.nodes) * 1e6)
        print(f"{layers:>6} {len(graph.nodes):>6} {seconds:>9.4f} {per_node[-1]:>8.1f}")
    print(f"us/node at {DEPTHS[-1]} layers / at {DEPTHS[0]} layers: "
          f"{per_node[-1] / per_node[0]:.2f}x (1x = linear)")
    print(f"\nper pass at {DEPTHS[-1]} layers:")
    for name, seconds in pass_times(training_graph(DEPTHS[-1]), repeats):
        print(f"  {name:<10} {seconds:>8.4f} s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compile_time",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row (max 5)")
    run(parser.parse_args(argv).repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
