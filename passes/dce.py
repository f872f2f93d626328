"""dce: dead code elimination.

A Graph holds exactly the nodes reachable from its outputs and update values, so dead
code is whatever a pass's rewrites left unreachable: re-rooting the graph drops it. What
dce adds as a pass is that this happens at a named point of a pipeline, and that a fixed
order (a schedule's) is dropped with the nodes it listed, the new order being the plain
topological one of the live nodes.
"""

from __future__ import annotations

from graphc.ir import Graph


def dce(graph: Graph) -> Graph:
    return Graph(graph.outputs, graph.updates)
