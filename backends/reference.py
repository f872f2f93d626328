"""The reference backend: interprets the graph node by node with NumPy. The oracle.

It favours being obviously right over being fast: every node gets a fresh array, and
`ops.evaluate` returns results in exactly the declared dtype. A fused kernel runs its
body the same way, so every backend is checked against the same definition of a kernel.
"""

from __future__ import annotations

import numpy as np

from graphc import ops
from graphc.backends.base import Backend, NoOptions
from graphc.backends.collectives import Collectives, symbolic_dims_of_collectives
from graphc.errors import GraphcError
from graphc.ir import Graph, Node
from graphc.types import format_shape


def build(graph: Graph, dims: dict, options=None) -> "ReferenceExecutable":
    return ReferenceExecutable(graph, dict(dims))


def fixed_dims(graph: Graph):
    """Interpreting is generic over every symbolic dim but a collective's (its runtime
    issues zeros of that shape for a failed step): each call binds them from its feeds."""
    collective = symbolic_dims_of_collectives(graph)
    return lambda dims: {d: size for d, size in dims.items() if d in collective}


def run_graph(graph: Graph, feeds: dict, dims: dict, collectives=None) -> dict:
    """Evaluate every node of `graph`; return {node: array}. Fed nodes take their feed.
    Collectives run through `collectives` (a Collectives of this graph; by default one
    made here, for a graph run once)."""
    collectives = collectives or Collectives(graph, dims)
    values = {}
    for node in graph.nodes:
        if node in feeds:
            values[node] = feeds[node]
        elif node.op == "input":
            raise GraphcError(f"input {node.name!r} was not fed")
        elif node.op in ("param", "const"):
            values[node] = node.value
        elif ops.has(node.op, "collective"):
            values[node] = run_collective(collectives, node,
                                          [values[i] for i in node.inputs])
        else:
            values[node] = evaluate_node(node, [values[i] for i in node.inputs], dims)
    return values


def run_collective(collectives: Collectives, node: Node, args: list) -> np.ndarray:
    """A collective's value, into a fresh array (its operand is left as it was): the
    Collectives method of its op's name."""
    out = np.empty_like(args[0])
    return getattr(collectives, node.op)(args[0], out, **node.attrs)


def run_body(node: Node, args: list, dims: dict) -> np.ndarray:
    """A fused kernel's value: its body run on the operands, bound by position. Symbolic
    dims in the body are bound by the operands' and the result's actual sizes (a body
    built by hand may name them apart from the graph)."""
    body = node.body
    bound = dict(dims)
    pairs = [(p.type.shape, a.shape) for p, a in zip(body.inputs, args)]
    for symbolic, actual in pairs + [(body.outputs[0].type.shape, node.type.concrete_shape(dims))]:
        bound.update((d, size) for d, size in zip(symbolic, actual) if isinstance(d, str))
    return run_graph(body, dict(zip(body.inputs, args)), bound)[body.outputs[0]]


def evaluate_node(node: Node, args: list, dims: dict) -> np.ndarray:
    try:
        with np.errstate(all="ignore"):  # inf/nan are values here, not errors
            result = (run_body(node, args, dims) if node.body is not None else
                      ops.evaluate(node.op, args, node.attrs, node.type, dims))
    except GraphcError as e:
        raise type(e)(f"{e}\n  in node {node.op} at {node.loc}") from None
    except (ValueError, IndexError, TypeError) as e:
        shapes = " and ".join(format_shape(a.shape) for a in args)
        raise GraphcError(f"{node.op} failed on operands of shapes {shapes} (made at "
                          f"{node.loc}): {e}") from None
    # The oracle also checks the op table against itself: type rule versus NumPy's result.
    if result.shape != node.type.concrete_shape(dims):
        raise GraphcError(f"{node.op} (made at {node.loc}) computed shape {result.shape}, but "
                          f"its type is {node.type} with {dims}: its type rule is wrong")
    return result


class ReferenceExecutable:
    def __init__(self, graph: Graph, dims: dict):
        self.graph = graph
        self.dims = dims
        self.source = str(graph)  # nothing is generated: the IR is what runs
        self.kernels = []
        self.stats = {"nodes": len(graph.nodes)}
        self.plan_text, self.libraries = "", ()   # no buffers, nothing compiled
        self.collectives = Collectives(graph, dims)

    def __call__(self, feeds: dict, begin_commit=None) -> list:
        dims = dict(self.dims)
        for node in self.graph.inputs:  # this call's sizes (the feeds were checked)
            dims.update((d, n) for d, n in zip(node.shape, feeds[node].shape)
                        if isinstance(d, str))
        values = run_graph(self.graph, feeds, dims, self.collectives)
        results = list(self.graph.outputs) + list(self.graph.updates.values())
        return [np.array(values[node]) for node in results]


BACKEND = Backend("reference", NoOptions, build, fixed_dims=fixed_dims)
