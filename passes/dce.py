"""dce: dead code elimination.

Two kinds of value are dead here:
- unreachable ones, that no output or update value depends on. A Graph holds exactly the
  nodes its roots reach, so re-rooting the graph after the rewrites drops them (and a
  schedule's fixed order with them: the result is in plain depth-first order);
- values computed in full only for their shape. `size(x, axes)` reads nothing but the
  dims of x, yet keeps all of x computed and alive. dce points such a size at a graph
  input with the same dims on the counted axes (inputs are fed, not computed), so x
  dies when nothing else reads it. Fixed dims need no input: fold makes them consts.
One walk over the nodes, plus one search of the inputs per distinct tuple of counted
dims (memoised), not one per size node.
"""

from __future__ import annotations

from graphc.ir import SOURCE_OPS, Graph, Node

from .rewrite import rewrite


def _positions(shape: tuple, dims: list) -> tuple | None:
    """Distinct axes of `shape` holding `dims` (as a multiset), or None."""
    free = list(range(len(shape)))
    found = []
    for d in dims:
        axis = next((a for a in free if shape[a] == d), None)
        if axis is None:
            return None
        free.remove(axis)
        found.append(axis)
    return tuple(sorted(found))


def _shape_source(graph: Graph):
    """dims -> (an input carrying them, its axes), memoised per distinct dims."""
    inputs, found = graph.inputs, {}

    def lookup(dims: tuple):
        if dims not in found:
            found[dims] = next(((x, axes) for x in inputs
                                if (axes := _positions(x.shape, list(dims))) is not None),
                               None)
        return found[dims]

    return lookup


def dce(graph: Graph) -> Graph:
    lookup = _shape_source(graph)

    def visit(node: Node) -> Node | None:
        if node.op != "size" or node.inputs[0].op in SOURCE_OPS:
            return None
        x = node.inputs[0]
        source = lookup(tuple(x.shape[a] for a in node.attrs["axes"]))
        if source is None:
            return None
        inp, axes = source
        return Node("size", (inp,), {"axes": axes, "dtype": node.attrs["dtype"]}, node.type,
                    name=node.name, loc=node.loc, tags=node.tags, scope=node.scope)

    return rewrite(graph, visit)
