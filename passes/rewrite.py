"""The one graph walk every rewriting pass shares.

`rewrite(graph, visit)` visits the nodes in topological order. Each node is first rebuilt
on its inputs' replacements (kept as the same object when none of them changed), then
`visit(node)` may return a replacement, or None to keep it. Outputs and update values are
remapped; update keys (params) stay. Inputs and params are never visited nor rebuilt, so
the compiled function can still feed inputs and read params by node (a const may be
replaced, e.g. by an identical one). The walk is a loop over a list: linear in the
number of nodes, no recursion.

`inherit(new, old, stop)` gives the nodes a rewrite created the loc, tags and scope of the
node they replace, so errors and the forward/backward drawing still point at the user's
model.
"""

from __future__ import annotations

from typing import Callable

from graphc import ops
from graphc.ir import Graph, Node

FED_OPS = ("input", "param")  # sources the compiled function binds by node object


def rebuild(node: Node, inputs: tuple) -> Node:
    """`node` on new inputs: same op, attrs, name, loc, tags and scope; type re-inferred."""
    if all(a is b for a, b in zip(inputs, node.inputs)):
        return node
    known = node.op in ops.OPS  # an op outside the table keeps its recorded type
    type = (ops.infer_type(node.op, [i.type for i in inputs], node.attrs, node.body)
            if known else node.type)
    return Node(node.op, inputs, node.attrs, type, name=node.name, loc=node.loc,
                tags=node.tags, value=node.value, body=node.body, scope=node.scope)


def rewrite(graph: Graph, visit: Callable[[Node], Node | None]) -> Graph:
    new = {}
    for node in graph.nodes:
        if node.op in FED_OPS:
            new[node] = node
            continue
        current = rebuild(node, tuple(new[i] for i in node.inputs))
        replacement = visit(current)
        new[node] = current if replacement is None else replacement
    return Graph([new[o] for o in graph.outputs],
                 {param: new[value] for param, value in graph.updates.items()})


def inherit(new: Node, old: Node, stop) -> Node:
    """Give `old`'s loc, tags and scope to every node of `new`'s subgraph above the nodes in
    `stop` (the pre-existing nodes the rewrite built on); return `new`."""
    stop_ids = {id(n) for n in stop} | {id(old)}
    stack, seen = [new], set()
    while stack:
        node = stack.pop()
        if id(node) in stop_ids or id(node) in seen or node.op in FED_OPS:
            continue
        seen.add(id(node))
        node.loc, node.tags, node.scope = old.loc, old.tags, old.scope
        stack.extend(node.inputs)
    return new
