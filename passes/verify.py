"""IR checks the pass manager runs after each pass when asked.

A pass's result must be a well-formed graph (every node after its inputs, so acyclic and
with no input missing from the graph; every recorded type equal to the type its op
infers from its inputs' types) that computes the same interface as the graph it was
given: the same output types, the same update targets with the same value types, and no
input or param that was not already there (the compiled function feeds inputs and reads
params by node object, so a pass may drop a source but never copy one).
"""

from __future__ import annotations

from graphc.errors import GraphcError
from graphc.ir import Graph

from .rewrite import FED_OPS


class VerifyError(GraphcError, AssertionError):
    """A pass produced malformed IR; the message names the pass and the node."""


def check_well_formed(graph: Graph) -> None:
    """Graph.lint's invariants, as a VerifyError, and every output in the graph's order."""
    try:
        graph.lint()
    except AssertionError as e:
        raise VerifyError(str(e)) from None
    except GraphcError as e:  # a type rule refused a node's operands
        raise VerifyError(f"a node's inputs do not type-check: {e}") from None
    position = set(graph.nodes)
    roots = list(graph.outputs) + list(graph.updates.values())
    missing = [r for r in roots if r not in position]
    if missing:
        raise VerifyError(f"output {missing[0]!r} is not in the graph's order")


def check_same_interface(before: Graph, after: Graph) -> None:
    out_before = [o.type for o in before.outputs]
    out_after = [o.type for o in after.outputs]
    if out_before != out_after:
        raise VerifyError(f"output types changed from {out_before} to {out_after}")
    if list(map(id, before.updates)) != list(map(id, after.updates)):  # the same nodes
        raise VerifyError("the updated params changed")
    for param in before.updates:
        if before.updates[param].type != after.updates[param].type:
            raise VerifyError(f"the update of {param.name!r} changed type")
    sources = {id(n) for n in before.nodes if n.op in FED_OPS}
    for node in after.nodes:
        if node.op in FED_OPS and id(node) not in sources:
            raise VerifyError(f"{node!r} is a new {node.op}: passes must keep the source "
                              "nodes they were given")


def verify(before: Graph, after: Graph, pass_name: str) -> None:
    try:
        check_well_formed(after)
        check_same_interface(before, after)
    except VerifyError as e:
        raise VerifyError(f"after pass {pass_name!r}: {e}") from None
