"""Drawing graphs with graphviz: `gc.render(outputs, backward=..., stage=..., values=...)`.

Every node is drawn as what it is (input, param, const, op, grad-op, collective), its look
taken from the LOOKS table (collectives, communication with the other workers of a
data-parallel run, are orange hexagons, and a start's edge to its wait is dashed, "in
flight"); edges carry the shape of the value that flows along them. With
`backward=True` the gradient of each scalar output with respect to the graph's params
is added, and those nodes (tagged "grad" by gc.grad) are coloured apart.

Stages (STAGES): "source" draws the graph as built; "simplified" after the cleanup passes
(O1: simplify, fold, cse, dce); "fused" after O2, each `fused` node a cluster of the ops
in its body, labelled with the kernel kind and those op names (`fused=True` is this
stage). At the first two, each scope (graphc/scopes.py: a layer, an nn composite, and the
grad/... scopes gc.grad puts gradients in) is a cluster, and `collapse` folds scopes into
one box each: by name (["softmax_cross_entropy"]: every scope of that name or path) or
by depth (1: every top-level scope).

`values={input name: array}` runs the drawn graph on the reference backend
(graphc/values.py) and writes each node's value in its label; with backward=True, each
forward node's label also gets its gradient, dL/d(node), beside its value (at the later
stages, on the forward nodes the passes kept as they were).

Building the `graphviz.Digraph` (DOT text) needs no binary. Writing SVG/PNG/PDF needs
Graphviz's `dot`; a path ending in .dot or .gv gets the DOT text itself.
"""

from __future__ import annotations

import os
import textwrap
from collections import Counter
from dataclasses import dataclass, field

import graphviz

from graphc import ops
from graphc.autodiff import grad
from graphc.errors import GraphcError
from graphc.ir import SOURCE_OPS, Graph, Node
from graphc.passes import optimize
from graphc.placement import Placement
from graphc.scopes import ROOT, Scope
from graphc.types import DTYPES, is_float
from graphc.values import evaluate, forward_gradients, value_text

# look -> graphviz node attributes. "fused" styles a kernel's cluster, "scope" and
# "grad-scope" a scope's cluster, "box" and "grad-box" a collapsed scope's box.
LOOKS = {
    "input": {"shape": "box", "style": "rounded,filled", "fillcolor": "#cfe2f3",
              "color": "#3d85c6"},
    "param": {"shape": "box", "style": "filled", "fillcolor": "#fff2cc", "color": "#bf9000"},
    "const": {"shape": "box", "style": "filled,dashed", "fillcolor": "#eeeeee",
              "color": "#999999", "fontsize": "10"},
    "op": {"shape": "ellipse", "style": "filled", "fillcolor": "#ffffff", "color": "#444444"},
    "grad-op": {"shape": "ellipse", "style": "filled", "fillcolor": "#f4cccc",
                "color": "#cc0000"},
    # collectives (all_reduce and its start and wait): across the workers, drawn apart
    "collective": {"shape": "hexagon", "style": "filled,bold", "fillcolor": "#fce5cd",
                   "color": "#e69138", "fontcolor": "#783f04"},
    "fused": {"style": "rounded,filled", "fillcolor": "#e6f4e6", "color": "#38761d",
              "fontcolor": "#38761d"},
    "scope": {"style": "rounded,dashed", "color": "#674ea7", "fontcolor": "#674ea7"},
    "grad-scope": {"style": "rounded,dashed", "color": "#cc0000", "fontcolor": "#cc0000"},
    "box": {"shape": "box3d", "style": "filled", "fillcolor": "#d9d2e9", "color": "#674ea7"},
    "grad-box": {"shape": "box3d", "style": "filled", "fillcolor": "#f4cccc",
                 "color": "#cc0000"},
}
IN_FLIGHT_EDGE = {"style": "dashed", "color": "#e69138", "penwidth": "2"}
# Graph outputs are drawn with a double border on top of their look.
OUTPUT_STYLE = {"peripheries": "2"}
GRAPH_STYLE = {"rankdir": "TB", "fontname": "Helvetica", "fontsize": "11"}
NODE_STYLE = {"fontname": "Helvetica", "fontsize": "11"}
EDGE_STYLE = {"fontname": "Helvetica", "fontsize": "9", "fontcolor": "#555555",
              "color": "#777777"}
# stage -> the optimization level (graphc.passes.PIPELINES) its graph is drawn after
STAGES = {"source": "O0", "simplified": "O1", "fused": "O2"}

# DOT's escape for a line break inside a label: a label stays one line of DOT text.
NEWLINE = "\\n"
LABEL_WIDTH = 48  # characters a line of a cluster label
# Formats whose output is the DOT text itself, written without the `dot` binary.
SOURCE_FORMATS = ("dot", "gv")
INSTALL_HINT = ("Graphviz's `dot` program is needed to write {fmt} files; install it "
                "(Debian/Ubuntu: `apt-get install graphviz`, macOS: `brew install graphviz`, "
                "conda: `conda install graphviz`), or write DOT text with a .dot path")


class GraphvizMissing(GraphcError, RuntimeError):
    """Writing an image needs Graphviz's `dot` binary, which is not on PATH."""


def render(outputs, backward=False, fused=False, path=None, format="svg", *, stage=None,
           values=None, collapse=None) -> graphviz.Digraph:
    """Draw the graph of `outputs` (a node or a list); return a `graphviz.Digraph`.

    backward: also draw the gradients of the scalar outputs with respect to the params.
    stage:    "source" (default), "simplified" or "fused" (see the module docstring);
              fused=True is stage="fused".
    values:   {input name: array}: write each node's value (and, with backward=True,
              each forward node's gradient) in its label.
    collapse: scope names, or a depth, to draw as one box each.
    path:     also write the picture there. A path suffix naming a Graphviz format
              (.svg, .png, .pdf, ...) chooses it; a path without one gets `format`
              added. .dot/.gv write the DOT text and need no Graphviz binary.
    """
    pic = picture(outputs, backward, stage_of(stage, fused), values)
    dot = draw_picture(pic, collapse)
    if path is not None:
        write(dot, path, format)
    return dot


@dataclass
class Picture:
    """What a drawing shows: the graph at a stage, captions ("dL/dW1" on the gradient
    outputs) and, when values were given, each node's value and forward node's gradient."""
    graph: Graph
    stage: str
    captions: dict
    values: dict = field(default_factory=dict)  # node -> array
    grads: dict = field(default_factory=dict)   # forward node -> the array dL/d(node)


def picture(outputs, backward=False, stage="source", values=None) -> Picture:
    """The graph of `outputs` (with gradients when `backward`) at `stage`, and its values
    for the feeds `values` ({input name: array}) run on the reference backend."""

    if stage not in STAGES:
        raise GraphcError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    outputs = [outputs] if isinstance(outputs, Node) else list(outputs)
    grads = gradients(outputs) if backward else {}
    graph = optimize(Graph(outputs + list(grads)), STAGES[stage])
    # Passes keep the outputs' order, so a caption follows its output by position.
    captions = {graph.outputs[len(outputs) + i]: text for i, text in enumerate(grads.values())}
    if values is None:
        return Picture(graph, stage, captions)
    if not isinstance(values, dict):
        raise GraphcError(f"values= takes the feeds, a dict of arrays by input name; got "
                          f"{type(values).__name__}")
    beside = forward_gradients(outputs) if backward else {}
    computed = evaluate(graph, values, beside.values())
    # A pass that rewrites a node makes a new one: gradients go beside the nodes it kept.
    drawn = set(graph.nodes)
    return Picture(graph, stage, captions, computed,
                   {node: computed[g] for node, g in beside.items() if node in drawn})


def stage_of(stage, fused: bool) -> str:
    """The stage that `stage=` and the older `fused=` flag ask for together."""
    if stage is None:
        return "fused" if fused else "source"
    if fused and stage != "fused":
        raise GraphcError(f"fused=True draws the stage 'fused', but stage={stage!r} was given")
    return stage


def gradients(outputs: list) -> dict:
    """{gradient node: caption such as "dL/dW1"} for each scalar float output L and each
    float param it depends on (integer params have no gradient)."""

    losses = [o for o in outputs if o.shape == () and is_float(o.dtype)]
    if not losses:
        shapes = ", ".join(str(o.type) for o in outputs)
        raise GraphcError(f"render(backward=True) differentiates scalar float outputs (a "
                          f"loss), but the outputs are {shapes}")
    captions = {}
    for k, loss in enumerate(losses):
        params = [p for p in Graph([loss]).params if is_float(p.dtype)]
        if not params:
            raise GraphcError(f"render(backward=True): the output {loss!r} depends on no "
                              "float param, so it has no gradient to draw")
        name = loss.name or ("L" if len(losses) == 1 else f"L{k}")
        for param, g in zip(params, grad(loss, params)):
            captions[g] = f"d{name}/d{param.name}"
    return captions


# --- building the Digraph --------------------------------------------------------------

def draw_picture(pic: Picture, collapse=None) -> graphviz.Digraph:
    return draw(pic.graph, pic.captions, values=pic.values, grads=pic.grads,
                collapse=collapse, scopes=pic.stage != "fused")


def draw(graph: Graph, captions=None, *, values=None, grads=None, collapse=None,
         scopes=None) -> graphviz.Digraph:
    """The Digraph of an IR graph: one DOT node per IR node, fused nodes as clusters.

    captions: {node: text} adds a first line to some nodes' labels (gradient names).
    values, grads: {node: array} write a value (and a gradient) in nodes' labels.
    scopes: draw each scope as a cluster (default: unless the graph has fused kernels,
    which are its clusters then); collapse: the scopes to fold into one box."""
    if scopes is None:
        scopes = not any(node.op == "fused" for node in graph.nodes)
    return draw_placed(Placement(graph, collapse, scopes), captions, values, grads)


def draw_placed(placement: Placement, captions=None, values=None, grads=None):
    """draw(), given where every node goes (graphc.explore finds nodes by these ids)."""
    return _Drawing(placement, captions or {}, values or {}, grads or {}).digraph()


class _Drawing:
    """Writes a Placement as DOT: labels, styles, clusters and edges."""

    def __init__(self, placement: Placement, captions, values, grads):
        self.placement = placement
        self.captions, self.values, self.grads = captions, values, grads
        self.outputs = set(placement.graph.outputs)

    def digraph(self) -> graphviz.Digraph:
        dot = graphviz.Digraph("graphc", graph_attr=GRAPH_STYLE, node_attr=NODE_STYLE,
                               edge_attr=EDGE_STYLE)
        self._emit(dot, ROOT)
        # Edges after every node, at the top: an edge inside a cluster would pull both
        # its ends into that cluster.
        for src, dst, inp in self.placement.edges:
            # a start's edge to its wait: the communication in flight while the nodes
            # scheduled between them run
            flight = inp.op == "all_reduce_start"
            dot.edge(src, dst, label=("in flight: " if flight else "") + shape_label(inp),
                     **(IN_FLIGHT_EDGE if flight else {}))
        return dot

    def _emit(self, container, scope: Scope):
        """Draw the items of `scope` into `container`, then its nested clusters."""
        place = self.placement
        for item in place.items[scope]:
            if isinstance(item, Scope):
                self._box(container, item)
            elif isinstance(item, str):  # a copy of a shared const
                const = place.copies[item]
                container.node(item, node_label(const), **_style(const, False))
            elif item.op == "fused":
                self._kernel(container, item)
            else:
                container.node(place.drawn_as[item], self.label(item),
                               **_style(item, item in self.outputs))
        for child in place.children[scope]:
            with container.subgraph(name=place.cluster_ids[child]) as cluster:
                look = "grad-scope" if _all_grad(place.members(child)) else "scope"
                cluster.attr(label=child.name, **LOOKS[look])
                self._emit(cluster, child)

    def label(self, node: Node, caption=None) -> str:
        caption = caption or self.captions.get(node)
        lines = ([caption] if caption else []) + [node_label(node)]
        if node.op != "const":  # a const's label is its value already
            if node in self.values:
                lines.append("value " + value_text(self.values[node]))
            if node in self.grads:
                lines.append("grad " + value_text(self.grads[node]))
        return NEWLINE.join(lines).replace("\n", NEWLINE)

    def _box(self, container, scope: Scope):
        members = self.placement.members(scope)
        ops = [n.op for n in members if n.op not in SOURCE_OPS]
        lines = [str(scope)] + textwrap.wrap(_op_counts(ops), LABEL_WIDTH // 2)
        lines += [self.captions[n] for n in members if n in self.captions]
        style = dict(LOOKS["grad-box" if _all_grad(members) else "box"])
        if any(n in self.outputs for n in members):
            style.update(OUTPUT_STYLE)
        container.node(self.placement.box_ids[scope], NEWLINE.join(lines), **style)

    def _kernel(self, container, fused: Node):
        """Draw a fused node's body inside a cluster of `container`."""
        body = fused.body
        kernel_id = self.placement.kernels[fused]
        ids = self.placement.body_ids[fused]
        ops = [n.op for n in body.nodes if n.op not in SOURCE_OPS]
        with container.subgraph(name=f"cluster_{kernel_id}") as cluster:
            cluster.attr(label=kernel_label(fused.attrs["kind"], kernel_id, ops),
                         **LOOKS["fused"])
            for node in body.nodes:
                if node.op != "input":
                    is_result = node is body.outputs[0]
                    caption = self.captions.get(fused) if is_result else None
                    cluster.node(ids[node], self.label(node, caption),
                                 **_style(node, is_result and fused in self.outputs))


def _all_grad(nodes) -> bool:
    ops = [n for n in nodes if n.op not in SOURCE_OPS]
    return bool(ops) and all("grad" in n.tags for n in ops)


def _op_counts(op_names: list) -> str:
    """"mul×2, add, exp": each op name once, with its count."""
    counts = Counter(op_names)
    return ", ".join(op if n == 1 else f"{op}×{n}" for op, n in counts.items())


def kernel_label(kind: str, kernel_id: str, op_names: list) -> str:
    """"pointwise kernel k3: mul×2, add, exp": each op name once, with its count, wrapped
    so that a big kernel's label stays about as wide as its cluster."""
    return NEWLINE.join(textwrap.wrap(f"{kind} kernel {kernel_id}: {_op_counts(op_names)}",
                                      LABEL_WIDTH))


def look(node: Node) -> str:
    if node.op in SOURCE_OPS:
        return node.op
    if ops.has(node.op, "collective"):
        return "collective"
    return "grad-op" if "grad" in node.tags else "op"


def _style(node: Node, is_output: bool) -> dict:
    style = dict(LOOKS[look(node)])
    if is_output:
        style.update(OUTPUT_STYLE)
    return style


def node_label(node: Node) -> str:
    """A short label: a source's name (a const's value when it is one number), an op's
    name with its attributes (False flags such as keepdims=False left out: they are the
    usual case and only add noise)."""
    if node.op in ("input", "param"):
        return node.name
    if node.op == "const":
        if node.value.size == 1:
            return f"{node.value.item():.4g}"
        return f"const {shape_label(node)}"
    head = f"{node.name}: {node.op}" if node.name else node.op
    attrs = ", ".join(_attr_text(k, v) for k, v in sorted(node.attrs.items()) if v is not False)
    return f"{head}{NEWLINE}{attrs}" if attrs else head


def _attr_text(key: str, value) -> str:
    """axes=1 for axes=(1,); a True flag as its bare name; dtypes in short form."""
    if value is True:
        return key
    if isinstance(value, tuple):
        return f"{key}={','.join(_value_text(v) for v in value)}"
    return f"{key}={_value_text(value)}"


def _value_text(value) -> str:
    if isinstance(value, str) and value in DTYPES:
        return DTYPES[value][0]
    return str(value)


def shape_label(node: Node) -> str:
    """batch×8 for a float32 value, i64 batch for others, scalar for shape ()."""
    dims = "×".join(str(d) for d in node.shape) or "scalar"
    return dims if node.dtype == "float32" else f"{DTYPES[node.dtype][0]} {dims}"


# --- writing files ---------------------------------------------------------------------

def write(dot: graphviz.Digraph, path, format="svg") -> str:
    """Write `dot` to `path` as the format its suffix names (else `format`); return the
    path written. A missing `dot` binary raises GraphvizMissing with an install hint."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lstrip(".").lower()
    if suffix in graphviz.FORMATS or suffix in SOURCE_FORMATS:
        fmt = suffix
    else:
        fmt, path = format, f"{path}.{format}"
    if fmt in SOURCE_FORMATS:
        data = dot.source.encode()
    else:
        try:
            data = dot.pipe(format=fmt)
        except graphviz.ExecutableNotFound:
            raise GraphvizMissing(INSTALL_HINT.format(fmt=fmt.upper())) from None
    with open(path, "wb") as f:
        f.write(data)
    return path
