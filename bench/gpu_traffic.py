"""D: a model of GPU memory traffic for one SGD step of the MLP 784-512-512-10 (batch 256,
float32), fused kernels (the triton backend on the O2 graph) against the unfused graph
(the O1 graph: the same ops after cleanup, one kernel per op) and against the minimum:
the inputs and params read once, the updated params and the loss written once.
A split-K matmul's shares go through its float32 workspace: its first kernel writes
them, its second reads them.

The model counts compulsory DRAM traffic: each kernel reads every operand buffer it
loads from once and writes its output once (a broadcast operand such as a bias is read
at its own size; a matmul's re-reads of operand tiles by different programs are assumed
to hit in L2). Views (transposes, slices, broadcasts, reshapes: kernels read the buffers
they view) move no data. Nothing is timed and no GPU or triton is needed: the kernels
are generated, not run.
"""

from __future__ import annotations

import numpy as np

import graphc as gc
from bench.training_step import BATCH, SIZES  # the step that benchmark A times
from graphc.backends.triton import program as programs
from graphc.ir import Graph
from graphc.passes import optimize


def training_step_graph() -> Graph:
    rng = np.random.default_rng(0)
    x = gc.input("x", ("batch", SIZES[0]))
    y = gc.input("y", ("batch",), dtype="int64")
    out, params = gc.nn.mlp(x, SIZES, rng=rng)
    loss = gc.nn.softmax_cross_entropy(out, y)
    return Graph([loss], gc.optim.sgd(loss, params, lr=0.01))


def kernel_traffic(graph: Graph, dims: dict) -> list:
    """[(kernel name, kind, bytes read, bytes written)] for the program of `graph`."""
    program = programs.generate(graph, dims)
    rows = []
    for launch in program.launches:
        k = launch.kernel
        read = dict.fromkeys(launch.operands[i] for i in k.loaded)   # an operand twice: once
        shares = 4 * k.workspace
        written = shares if k.split > 1 else launch.node.type.nbytes(dims)
        rows.append((k.name, k.kind, sum(o.type.nbytes(dims) for o in read)
                     + (shares if k.split < 0 else 0), written))
    return rows


def minimum_traffic(graph: Graph, dims: dict) -> int:
    """Bytes a step cannot avoid: every input and param read once, every updated param
    and every output written once."""
    sources = graph.inputs + graph.params
    return (sum(n.type.nbytes(dims) for n in sources)
            + sum(p.type.nbytes(dims) for p in graph.updates)
            + sum(o.type.nbytes(dims) for o in graph.outputs))


def run(repeats: int = 0) -> None:
    dims = {"batch": BATCH}
    source = training_step_graph()
    fused = kernel_traffic(optimize(source, "O2"), dims)
    unfused = kernel_traffic(optimize(source, "O1"), dims)
    mb = 1 / 2**20
    print(f"\nper fused kernel (MiB), batch {BATCH}")
    width = max(len(name) for name, *_ in fused)
    print(f"  {'kernel':<{width}}  {'kind':<9}  {'read':>8}  {'write':>8}")
    for name, kind, read, write in fused:
        print(f"  {name:<{width}}  {kind:<9}  {read * mb:8.3f}  {write * mb:8.3f}")
    print("\ntotals")
    print(f"  {'graph':<26}  {'kernels':>7}  {'read MiB':>9}  {'write MiB':>9}  {'total MiB':>9}")
    rows = {"fused (O2, triton kernels)": fused, "unfused (O1, one per op)": unfused}
    for label, rows_ in rows.items():
        read, write = sum(r[2] for r in rows_), sum(r[3] for r in rows_)
        print(f"  {label:<26}  {len(rows_):>7}  {read * mb:9.2f}  {write * mb:9.2f}  "
              f"{(read + write) * mb:9.2f}")
    total = {label: sum(r[2] + r[3] for r in rows_) for label, rows_ in rows.items()}
    fused_total, unfused_total = total.values()
    least = minimum_traffic(source, dims)
    print(f"  {'minimum':<26}  {'':>7}  {'':>9}  {'':>9}  {least * mb:9.2f}")
    print(f"  fused / unfused traffic: {fused_total / unfused_total:.2f}; "
          f"kernels: {len(fused)} vs {len(unfused)}; fused / minimum: "
          f"{fused_total / least:.2f}")


if __name__ == "__main__":
    run()
