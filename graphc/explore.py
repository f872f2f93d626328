"""The explorer: one self-contained HTML page for a graph too large for one picture.

    gc.explore(outputs, "out.html", backward=True, stage="fused", values=feeds)

The page holds Graphviz's SVG of the graph (drawn as gc.render draws it, every scope or
kernel a cluster), a JSON description of every drawn node, and a little JavaScript
(graphc/explore.html): drag to pan, wheel to zoom, a cluster's name (or the scope tree
beside the picture) collapses it to one filled box, and a click on a node shows its IR
line, type, source line, scope, its value and gradient when values were given, and at
the "fused" stage the source the numpy backend generated for the kernel that computes
it. Nothing is fetched: no server, no network, no CDN.

Collapsing happens in the page, over the one layout: a collapsed cluster keeps its size
and hides what is inside, so the picture does not jump. `collapse` (as for render: scope
names or a depth) says which clusters start collapsed.
"""

from __future__ import annotations

import html
import json
import os
from importlib import resources

from graphc import backends
from graphc.errors import GraphcError
from graphc.ir import SOURCE_OPS, Node, format_node, node_names
from graphc.placement import Placement, fold
from graphc.scopes import ROOT
from graphc.values import value_text
from graphc.viz import GraphvizMissing, INSTALL_HINT, Picture, draw_placed, picture, stage_of

DETAIL_SIZE = 64      # the panel writes values of up to this many elements in full
EXAMPLE_DIM = 8       # a symbolic dim's size for kernel sources when no values are given


def explore(outputs, path, backward=False, fused=False, *, stage=None, values=None,
            collapse=None, title=None) -> str:
    """Write the explorer page for `outputs` to `path`; return the path. The options are
    render's (graphc.viz.render); `title` heads the page."""
    stage = stage_of(stage, fused)
    pic = picture(outputs, backward, stage, values)
    page = page_html(pic, collapse, title or f"graphc explorer: {stage} graph")
    path = os.fspath(path)
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path


def page_html(pic: Picture, collapse=None, title="graphc explorer") -> str:
    placement = Placement(pic.graph, None, scopes=pic.stage != "fused")
    dot = draw_placed(placement, pic.captions, pic.values, pic.grads)
    data = page_data(pic, placement, collapse)
    template = resources.files("graphc").joinpath("explore.html").read_text(encoding="utf-8")
    # </script> inside the JSON would end the script element: JSON may escape any "/".
    blob = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return (template.replace("{{TITLE}}", html.escape(title))
            .replace("{{SVG}}", _svg(dot)).replace("{{DATA}}", blob))


def _svg(dot) -> str:
    """The picture as an inline <svg> element (no XML prolog or DOCTYPE)."""
    import graphviz

    try:
        text = dot.pipe(format="svg").decode("utf-8")
    except graphviz.ExecutableNotFound:
        raise GraphvizMissing(INSTALL_HINT.format(fmt="the explorer's SVG")) from None
    return text[text.index("<svg"):]


# --- what the page knows about each node --------------------------------------------------

def page_data(pic: Picture, placement: Placement, collapse) -> dict:
    kernels, kernel_of, dims = _kernels(pic) if pic.stage == "fused" else ([], {}, "")
    clusters, order = _clusters(placement)
    enclosing = {}  # DOT id -> its clusters, outermost first
    for cluster in order:
        for member in clusters[cluster]["members"]:
            enclosing.setdefault(member, []).append(cluster)
    nodes = {}
    for dot_id, node, names in _drawn(placement):
        info = _node_info(node, names, pic, kernel_of.get(node))
        info["clusters"] = enclosing.get(dot_id, [])
        nodes[dot_id] = info
    for info in clusters.values():
        info["size"] = len(info.pop("members"))
    return {"nodes": nodes, "clusters": clusters, "cluster_order": order,
            "cluster_kind": "kernels" if pic.stage == "fused" else "scopes",
            "collapsed": _initially_collapsed(placement, collapse), "kernels": kernels,
            "dims": dims}


def _drawn(placement: Placement):
    """(DOT id, node, the names its IR line uses) for every node drawn as itself."""
    graph_names = placement.names
    for node, dot_id in placement.drawn_as.items():
        if node.op != "fused" and node not in placement.folded:
            yield dot_id, node, graph_names
    for fused, ids in placement.body_ids.items():
        body_names = node_names(fused.body.nodes)
        for node, dot_id in ids.items():
            if node.op != "input":
                yield dot_id, node, body_names
    for dot_id, const in placement.copies.items():
        yield dot_id, const, graph_names


def _node_info(node: Node, names: dict, pic: Picture, kernel) -> dict:
    ir = format_node(node, names).split("\n")[0]  # a fused node's body is drawn apart
    info = {"title": names[node] if node.op in SOURCE_OPS else f"%{names[node]} ({node.op})",
            "ir": ir, "type": str(node.type), "loc": node.loc or "",
            "scope": str(node.scope)}
    if node in pic.values:
        info["value"] = value_text(pic.values[node], DETAIL_SIZE)
    if node in pic.grads:
        info["grad"] = value_text(pic.grads[node], DETAIL_SIZE)
    if kernel is not None:
        info["kernel"] = kernel
    return info


def _clusters(placement: Placement):
    """{cluster id: label, members (DOT ids inside, nested ones too), parents, grad} and
    the cluster ids outermost first."""
    clusters, order = {}, []

    def visit(scope, parents):
        for child in placement.children[scope]:
            cid = placement.cluster_ids[child]
            order.append(cid)
            clusters[cid] = {"label": child.name, "members": [], "parents": parents,
                             "grad": False}
            visit(child, parents + [cid])

    visit(ROOT, [])
    by_scope = placement.cluster_ids
    for dot_id, node, _ in _drawn(placement):
        home = placement.home(_outer(placement, node))
        while home in by_scope:
            clusters[by_scope[home]]["members"].append(dot_id)
            home = home.parent
    for scope, cid in by_scope.items():
        members = placement.members(scope)
        ops = [n for n in members if n.op not in SOURCE_OPS]
        clusters[cid]["grad"] = bool(ops) and all("grad" in n.tags for n in ops)
    for fused, kernel in placement.kernels.items():
        cid = f"cluster_{kernel}"
        parents = _parents(placement, fused, by_scope)
        order.append(cid)
        clusters[cid] = {"label": f"{fused.attrs['kind']} kernel {kernel}",
                         "members": [i for n, i in placement.body_ids[fused].items()
                                     if n.op != "input"],
                         "parents": parents, "grad": "grad" in fused.tags}
    return clusters, order


def _outer(placement: Placement, node: Node) -> Node:
    """The top-level node a drawn node belongs to (a body node: its fused node)."""
    for fused, ids in placement.body_ids.items():
        if node in ids:
            return fused
    return node


def _parents(placement, fused, by_scope) -> list:
    parents, home = [], placement.home(fused)
    while home in by_scope:
        parents.insert(0, by_scope[home])
        home = home.parent
    return parents


def _initially_collapsed(placement: Placement, collapse) -> list:
    if collapse is None:
        return []
    if not placement.scopes:
        raise GraphcError("collapse= names scopes, which the 'fused' stage does not draw")
    scopes = set(fold(placement.graph.nodes, collapse).values())
    return [placement.cluster_ids[s] for s in scopes if s in placement.cluster_ids]


# --- kernels (stage "fused") ---------------------------------------------------------------

def _kernels(pic: Picture):
    """([{name, kind, source, c_source}], {node: kernel index}, "dims" text) from the
    numpy backend built for the values' shapes (or EXAMPLE_DIM for each symbolic dim)."""

    graph = pic.graph
    if pic.values:
        dims = {d: pic.values[n].shape[k] for n in graph.inputs
                for k, d in enumerate(n.shape) if isinstance(d, str)}
    else:
        dims = {d: EXAMPLE_DIM for n in graph.nodes for d in n.shape if isinstance(d, str)}
    executable = backends.load("numpy").build(graph, dims)
    kernels, kernel_of = [], {}
    for k, info in enumerate(executable.kernels):
        kernels.append({"name": info.name, "kind": info.kind, "source": info.source,
                        "c_source": info.extra["c_source"]})
        node = info.extra["node"]
        kernel_of[node] = k
        if node.op == "fused":
            for body_node in node.body.nodes:
                kernel_of[body_node] = k
    text = ", ".join(f"{d}={n}" for d, n in dims.items()) or "its fixed shapes"
    return kernels, kernel_of, text
