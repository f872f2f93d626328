"""cse: common subexpression elimination, by structure only.

Two nodes merge when they apply the same op with the same attrs and type to the very same
input nodes (operands of commutative ops in either order), or when both are consts
holding identical arrays (same dtype, shape and bytes). Equal VALUES never merge two
nodes otherwise: two inputs or params are always distinct, however alike, and so are two
random draws (the "random" trait: each draw is its own, even from one key). The walk is
topological, so inputs are already merged when a node's key is formed: one pass, linear.
The first node of a class in the graph's order is kept, with its name, loc and tags.
"""

from __future__ import annotations

from graphc import ops
from graphc.ir import Graph, Node

from .rewrite import rewrite
from .simplify import COMMUTATIVE


def structural_key(node: Node):
    """A hashable key equal for interchangeable nodes; None for nodes that never merge."""
    if node.op in ("input", "param") or ops.has(node.op, "random"):
        return None
    if node.op == "const":
        return ("const", node.type, node.value.tobytes())
    inputs = tuple(id(i) for i in node.inputs)
    if node.op in COMMUTATIVE:
        inputs = tuple(sorted(inputs))
    key = (node.op, inputs, node.attrs_key(), node.type, id(node.body))
    try:
        hash(key)
    except TypeError:  # an attribute that cannot be hashed: leave the node alone
        return None
    return key


def cse(graph: Graph) -> Graph:
    kept = {}

    def visit(node: Node) -> Node | None:
        key = structural_key(node)
        if key is None:
            return None
        first = kept.setdefault(key, node)
        return None if first is node else first

    return rewrite(graph, visit)
