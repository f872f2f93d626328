"""overlap: collectives split into a start and a wait, and placed to hide communication.

`overlap(graph)` (the last step of `schedule`) rewrites each `all_reduce(x, op)` as
`all_reduce_wait(all_reduce_start(x, op))`: the start issues the communication and
returns at once (backends/collectives.py), the wait blocks until it has completed. It
then reorders the scheduled nodes with a list scheduler that, among the ready nodes,
runs first
  1. the starts and the nodes that exist only to feed one (its exclusive cone: the
     gradients of a bucket, their reshapes and the concat that packs them), so each
     bucket's all-reduce is issued as soon as its gradients can be computed;
  2. then the other nodes, in the order the memory schedule chose;
  3. and last the waits and everything computed from them (slices of a bucket, the
     optimizer's update), so a wait comes just before the first node that needs it,
     after all the work that does not (the rest of the backward pass).
Among nodes of one class the memory schedule's order decides, so a graph without
collectives keeps its order exactly. Every worker builds the same graph and runs this
same deterministic pass, so all of them issue the same collectives in the same order.
A heap over (class, position): O(n log n), plus one backward walk per start.
"""

from __future__ import annotations

import heapq

from graphc import ops
from graphc.ir import SOURCE_OPS, Graph, Node

from .rewrite import FED_OPS, rebuild

URGENT, NORMAL, DEFERRED = 0, 1, 2


def _split(node: Node) -> Node | None:
    if node.op != "all_reduce":
        return None
    start = Node("all_reduce_start", node.inputs, dict(node.attrs), node.type, loc=node.loc,
                 tags=node.tags, scope=node.scope)
    wait = Node("all_reduce_wait", (start,), {}, node.type, name=node.name, loc=node.loc,
                tags=node.tags, scope=node.scope)
    return wait


def _exclusive_cone(start: Node, graph: Graph, roots: set) -> set:
    """The start and the computed nodes all of whose users lead only to it."""
    cone = {start}
    position = {node: i for i, node in enumerate(graph.nodes)}
    for node in reversed(graph.nodes[:position[start]]):
        users = graph.users[node]
        if (node.op not in SOURCE_OPS and node not in roots and users
                and all(user in cone for user in users)):
            cone.add(node)
    return cone


def _classes(graph: Graph) -> dict:
    roots = set(graph.outputs) | set(graph.updates.values())
    cls = {}
    for node in graph.nodes:
        waits = node.op == "all_reduce_wait" or any(cls.get(i) == DEFERRED
                                                    for i in node.inputs)
        cls[node] = DEFERRED if waits else NORMAL
    for start in (n for n in graph.nodes if n.op == "all_reduce_start"):
        for node in _exclusive_cone(start, graph, roots):
            if cls[node] == NORMAL:
                cls[node] = URGENT
    return cls


def _order(graph: Graph, position: dict) -> list:
    cls = _classes(graph)
    waiting = {node: len(set(node.inputs)) for node in graph.nodes}
    # (class, position, graph index): the index breaks ties, so nodes are never compared
    index = {node: i for i, node in enumerate(graph.nodes)}
    key = lambda n: (cls[n], position[n], index[n], n)  # noqa: E731
    heap = [key(n) for n in graph.nodes if waiting[n] == 0]
    heapq.heapify(heap)
    order = []
    while heap:
        node = heapq.heappop(heap)[-1]
        order.append(node)
        for user in graph.users[node]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(heap, key(user))
    return order


def _split_all(graph: Graph):
    """The graph with every all_reduce split, and each new node's position: that of the
    node it stands for in the given order."""
    new, position = {}, {}
    for i, node in enumerate(graph.nodes):
        current = node if node.op in FED_OPS else rebuild(
            node, tuple(new[inp] for inp in node.inputs))
        replacement = _split(current)
        new[node] = current if replacement is None else replacement
        position[new[node]] = i
        if replacement is not None:
            position[replacement.inputs[0]] = i
    split = Graph([new[o] for o in graph.outputs],
                  {param: new[value] for param, value in graph.updates.items()})
    return split, position


def overlap(graph: Graph) -> Graph:
    """The graph with its collectives split and placed for overlap (see above)."""
    if not any(ops.has(node.op, "collective") for node in graph.nodes):
        return graph
    split, position = _split_all(graph)
    return Graph(split.outputs, split.updates, order=_order(split, position))
