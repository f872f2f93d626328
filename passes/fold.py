"""fold: constant folding.

A node whose inputs are all consts is evaluated now (with the reference semantics) and
replaced by a const, and `size` of a value whose counted dims are fixed becomes a const
whatever its input is (it reads only the shape). A result larger than MAX_FOLD_BYTES is
left to run time, so folding never bloats the graph: broadcast_to(const 0, (4096, 4096))
stays a cheap node instead of a 64 MiB embedded array. An evaluation that raises (a bad
one_hot label) is also left to run time, where it reports against the user's line.
"""

from __future__ import annotations

import numpy as np

from graphc import ops
from graphc.errors import GraphcError
from graphc.ir import Graph, Node

from .rewrite import rewrite

MAX_FOLD_BYTES = 1 << 16


def _foldable(node: Node) -> bool:
    if node.op not in ops.OPS or not node.type.is_static or ops.has(node.op, "collective"):
        return False  # (a collective's value is known only when the workers run it)
    if ops.has(node.op, "random"):
        return False  # a draw is computed when the step runs, never baked into the graph
    if node.type.nbytes() > MAX_FOLD_BYTES:
        return False
    if node.op == "size":
        x = node.inputs[0]
        return all(isinstance(x.shape[a], int) for a in node.attrs["axes"])
    return all(i.op == "const" for i in node.inputs)


def _evaluate(node: Node) -> np.ndarray:
    if node.op == "size":  # needs the shape only: a stand-in of the input's shape does
        x, axes = node.inputs[0], node.attrs["axes"]
        shape = tuple(d if i in axes else 1 for i, d in enumerate(x.shape))
        args = [np.broadcast_to(np.zeros((), np.float32), shape)]
    else:
        args = [i.value for i in node.inputs]
    with np.errstate(all="ignore"):  # inf/nan are values, as in the reference backend
        return ops.evaluate(node.op, args, node.attrs, node.type, {})


def _fold(node: Node) -> Node | None:
    if not _foldable(node):
        return None
    try:
        value = np.array(_evaluate(node))
    except GraphcError:
        return None
    value.flags.writeable = False
    return Node("const", (), {}, node.type, loc=node.loc, tags=node.tags, value=value,
                scope=node.scope)


def fold(graph: Graph) -> Graph:
    return rewrite(graph, _fold)
