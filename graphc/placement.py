"""Where each node of a picture goes: its DOT id, the cluster that holds it, the edges.

graphc.viz draws from a Placement, and graphc.explore uses the same ids to find a
clicked node. The rules:
- a node in a collapsed scope is drawn as that scope's box ("scope.0", "scope.1", ...);
- a fused node is drawn as the cluster of its body ("cluster_k3", its nodes "k3.<name>");
  the fused node's own id is its body's result;
- a const used by several nodes is drawn once beside each user ("<const>.<user id>"):
  one shared constant would pull long edges across the picture;
- every other node is its printed name (ir.node_names), in its scope's cluster
  ("cluster_s0", ...) when scopes are drawn.
Printed names are \\w+, so the dots keep the other ids apart from them.
"""

from __future__ import annotations

from graphc.errors import GraphcError
from graphc.ir import Graph, Node, node_names
from graphc.scopes import ROOT, Scope


class Placement:
    """ids, clusters and edges of a picture of `graph` (see the module docstring).

    items[scope]: what its cluster draws, in order: nodes, box scopes, and const copies
    (their ids, in `copies`); children[scope]: its nested clusters. edges: (src id,
    dst id, the node whose value flows), each once."""

    def __init__(self, graph: Graph, collapse=None, scopes=True):
        if collapse is not None and not scopes:
            raise GraphcError("collapse= folds scopes, which the 'fused' stage does not draw "
                              "(its clusters are kernels)")
        self.graph = graph
        self.scopes = scopes
        self.names = node_names(graph.nodes)
        self.folded = fold(graph.nodes, collapse) if scopes else {}  # node -> box's scope
        self.shared = {n for n in graph.nodes if n.op == "const" and len(graph.users[n]) > 1}
        self.drawn_as = {}    # node -> DOT id
        self.box_ids = {}     # collapsed scope -> DOT id
        self.kernels = {}     # fused node -> "k0", "k1", ...
        self.body_ids = {}    # fused node -> {body node: DOT id}
        self.copies = {}      # DOT id of a const's copy -> the const
        self.items = {ROOT: []}
        self.children = {ROOT: []}
        self.cluster_ids = {}  # scope -> "cluster_s0", ...
        self.edges = []
        self._seen_edges = set()
        for node in graph.nodes:
            self._place(node)

    def home(self, node: Node) -> Scope:
        return node.scope if self.scopes else ROOT

    def _place(self, node: Node):
        if node in self.shared:
            return  # drawn beside each user, by _wire
        box = self.folded.get(node)
        if box is not None:
            if box not in self.box_ids:
                self.box_ids[box] = f"scope.{len(self.box_ids)}"
                self._add(box, box.parent)
            self.drawn_as[node] = self.box_ids[box]
            for inp in node.inputs:
                if inp not in self.shared:  # a box's constants are noise
                    self._edge(self.drawn_as[inp], self.drawn_as[node], inp)
            return
        self._add(node, self.home(node))
        if node.op == "fused":
            self._place_kernel(node)
            return
        self.drawn_as[node] = self.names[node]
        for inp in node.inputs:
            self._wire(inp, self.drawn_as[node], self.home(node))

    def _place_kernel(self, fused: Node):
        body = fused.body
        kernel = self.kernels[fused] = f"k{len(self.kernels)}"
        ids = self.body_ids[fused] = {n: f"{kernel}.{name}"
                                      for n, name in node_names(body.nodes).items()}
        self.drawn_as[fused] = ids[body.outputs[0]]
        outer = dict(zip(body.inputs, fused.inputs))  # operands by position
        for node in body.nodes:
            for inp in node.inputs:
                if inp in outer:
                    self._wire(outer[inp], ids[node], self.home(fused))
                else:
                    self._edge(ids[inp], ids[node], inp)

    def _wire(self, inp: Node, dst: str, home: Scope):
        """The edge carrying `inp` into `dst`; a shared const gets a copy beside dst."""
        if inp in self.shared:
            src = f"{self.names[inp]}.{dst}"
            if src not in self.copies:
                self.copies[src] = inp
                self._add(src, home)
        else:
            src = self.drawn_as[inp]
        self._edge(src, dst, inp)

    def _edge(self, src: str, dst: str, inp: Node):
        if src != dst and (src, dst, inp) not in self._seen_edges:
            self._seen_edges.add((src, dst, inp))
            self.edges.append((src, dst, inp))

    def _add(self, item, scope: Scope):
        """Put `item` in `scope`'s cluster, opening the clusters on the way there."""
        self._open(scope)
        self.items[scope].append(item)

    def _open(self, scope: Scope):
        if scope in self.items:
            return
        self._open(scope.parent)
        self.items[scope], self.children[scope] = [], []
        self.cluster_ids[scope] = f"cluster_s{len(self.cluster_ids)}"
        self.children[scope.parent].append(scope)

    def members(self, scope: Scope) -> list:
        """The nodes inside `scope`'s box, or its cluster (nested scopes included)."""
        if scope in self.box_ids:
            return [n for n in self.graph.nodes if self.folded.get(n) is scope]
        return [n for n in self.graph.nodes if scope in chain(n.scope)]


def fold(nodes, collapse) -> dict:
    """{node: the outermost scope around it that `collapse` names}: `collapse` is a list
    of scope names or paths ("softmax_cross_entropy", "grad/layer1"), or a depth (1:
    the top-level scopes)."""
    if collapse is None:
        return {}
    matches = _matcher(collapse, nodes)
    folded = {}
    for node in nodes:
        for scope in reversed(chain(node.scope)):  # outermost first
            if matches(scope):
                folded[node] = scope
                break
    return folded


def chain(scope: Scope) -> list:
    """scope, its parent, ... up to (not including) ROOT."""
    scopes = []
    while scope is not ROOT:
        scopes.append(scope)
        scope = scope.parent
    return scopes


def _matcher(collapse, nodes):
    if isinstance(collapse, bool) or not isinstance(collapse, (int, str, list, tuple, set)):
        raise GraphcError(f"collapse= takes scope names or a depth (an int >= 1), got "
                          f"{collapse!r}")
    if isinstance(collapse, int):
        if collapse < 1:
            raise GraphcError(f"collapse={collapse}: a depth counts from 1 (the top-level "
                              "scopes)")
        return lambda scope: len(scope.path) == collapse
    wanted = {collapse} if isinstance(collapse, str) else set(collapse)
    scopes = {s for node in nodes for s in chain(node.scope)}
    unknown = sorted(wanted - {text for s in scopes for text in (s.name, str(s))})
    if unknown:
        names = ", ".join(sorted({s.name for s in scopes})) or "none"
        raise GraphcError(f"collapse: no scope named {unknown[0]!r} in the graph; its scopes "
                          f"are {names}")
    return lambda scope: scope.name in wanted or str(scope) in wanted
