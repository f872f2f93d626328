"""Numbers for pictures: every node's value, run on the reference backend, as short text.

`evaluate(graph, feeds)` runs a graph on the reference interpreter (the oracle) and keeps
every node's value, those of fused kernels' bodies included. `forward_gradients(outputs)`
builds, for a graph with one scalar loss L, dL/dn for each forward node n that depends
on a param: what a picture writes beside n. `value_text(array)` writes a value the way a
label can hold it: small tensors in full, large ones as shape and min/mean/max.
"""

from __future__ import annotations

import numpy as np

from graphc.autodiff import grad
from graphc.backends.reference import run_graph
from graphc.compile import check_feeds
from graphc.ir import Graph
from graphc.types import is_float

FULL_SIZE = 8  # a value with at most this many elements (and at most 2 axes) is written out


# --- running the graph -------------------------------------------------------------------

def evaluate(graph: Graph, feeds: dict, extra=()) -> dict:
    """{node: array} for the nodes of `graph`, of its fused bodies and of `extra` (more
    nodes to compute alongside), given arrays by input name. Feeds that name no input
    of the graph are left out: a graph drawn without its loss needs no labels."""

    whole = Graph(list(graph.outputs) + list(graph.updates.values()) + list(extra))
    wanted = {node.name for node in whole.inputs}
    arrays, dims = check_feeds(whole.inputs, {k: v for k, v in feeds.items() if k in wanted})
    values = run_graph(whole, arrays, dims)
    for node in whole.nodes:
        if node.op == "fused":
            body = node.body
            fed = {b: values[o] for b, o in zip(body.inputs, node.inputs)}
            values.update(run_graph(body, fed, dims))
    return values


def forward_gradients(outputs) -> dict:
    """{forward node: node for dL/d(that node)} for the one scalar float output L of
    `outputs`, over the float nodes on a path from a float param to L (params included);
    {} when there is not exactly one such L (whose gradient would it be?)."""

    losses = [o for o in outputs if o.shape == () and is_float(o.dtype)]
    if len(losses) != 1:
        return {}
    (loss,) = losses
    active = set()
    for node in Graph([loss]).nodes:
        if is_float(node.dtype) and (node.op == "param" or any(i in active for i in node.inputs)):
            active.add(node)
    nodes = [n for n in Graph([loss]).nodes if n in active]
    return dict(zip(nodes, grad(loss, nodes))) if nodes else {}


# --- writing values ----------------------------------------------------------------------

def value_text(value, full_size: int = FULL_SIZE) -> str:
    """A value as lines of text: in full when it has at most `full_size` elements and at
    most 2 axes ("[6, -5]"; a matrix one row a line), else its shape and, on a second
    line, its min, mean and max."""
    array = np.asarray(value)
    if 0 < array.size <= full_size and array.ndim <= 2:
        if array.ndim < 2:
            return _row(array)
        rows = [_row(row) for row in array]
        if len(rows) == 1:
            return f"[{rows[0]}]"
        return "\n".join([f"[{rows[0]},"] + [f" {r}," for r in rows[1:-1]] + [f" {rows[-1]}]"])
    shape = "×".join(map(str, array.shape)) or "scalar"
    if not array.size:
        return f"{shape}, empty"
    numbers = array.astype(np.float64)
    with np.errstate(all="ignore"):  # inf and nan are values here
        low, mean, high = np.min(numbers), np.mean(numbers), np.max(numbers)
    return f"{shape}\nmin {_number(low)}, mean {_number(mean)}, max {_number(high)}"


def _row(array: np.ndarray) -> str:
    if array.ndim == 0:
        return _number(array.item())
    return "[" + ", ".join(_number(v) for v in array.tolist()) + "]"


def _number(v) -> str:
    """4 significant digits, -0 as 0, bools as 0/1 (a mask reads as numbers)."""
    if isinstance(v, (bool, np.bool_, int, np.integer)):
        return str(int(v))
    return f"{float(v) + 0.0:.4g}"
