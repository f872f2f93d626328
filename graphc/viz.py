"""Drawing graphs with graphviz: `gc.render(outputs, backward=..., fused=..., path=...)`.

Every node gets a role (input, param, const, op, grad-op) and its look comes from the
ROLE_STYLES table; edges carry the shape of the value that flows along them. With
`backward=True` the gradient of each scalar output with respect to the graph's params
is added, and those nodes (tagged "grad" by gc.grad) are coloured apart. With
`fused=True` the graph is first optimized at O2, and each `fused` node is drawn as a
cluster of the ops in its body, labelled with the kernel kind and those op names.

Building the `graphviz.Digraph` (DOT text) needs no binary. Writing SVG/PNG/PDF needs
Graphviz's `dot`; a path ending in .dot or .gv gets the DOT text itself.
"""

from __future__ import annotations

import os
import textwrap
from collections import Counter

import graphviz

from graphc.ops import body_input_index
from graphc.errors import GraphcError
from graphc.ir import SOURCE_OPS, Graph, Node, node_names
from graphc.types import DTYPES, is_float

# role -> graphviz node attributes. "fused" styles a kernel's cluster, not a node.
ROLE_STYLES = {
    "input": {"shape": "box", "style": "rounded,filled", "fillcolor": "#cfe2f3",
              "color": "#3d85c6"},
    "param": {"shape": "box", "style": "filled", "fillcolor": "#fff2cc", "color": "#bf9000"},
    "const": {"shape": "box", "style": "filled,dashed", "fillcolor": "#eeeeee",
              "color": "#999999", "fontsize": "10"},
    "op": {"shape": "ellipse", "style": "filled", "fillcolor": "#ffffff", "color": "#444444"},
    "grad-op": {"shape": "ellipse", "style": "filled", "fillcolor": "#f4cccc",
                "color": "#cc0000"},
    "fused": {"style": "rounded,filled", "fillcolor": "#e6f4e6", "color": "#38761d",
              "fontcolor": "#38761d"},
}
# Graph outputs are drawn with a double border on top of their role's style.
OUTPUT_STYLE = {"peripheries": "2"}
GRAPH_STYLE = {"rankdir": "TB", "fontname": "Helvetica", "fontsize": "11"}
NODE_STYLE = {"fontname": "Helvetica", "fontsize": "11"}
EDGE_STYLE = {"fontname": "Helvetica", "fontsize": "9", "fontcolor": "#555555",
              "color": "#777777"}

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


def render(outputs, backward=False, fused=False, path=None, format="svg") -> graphviz.Digraph:
    """Draw the graph of `outputs` (a node or a list); return a `graphviz.Digraph`.

    backward: also draw the gradients of the scalar outputs with respect to the params.
    fused:    draw the O2-optimized graph, each fused kernel a labelled cluster.
    path:     also write the picture there. A path suffix naming a Graphviz format
              (.svg, .png, .pdf, ...) chooses it; a path without one gets `format`
              added. .dot/.gv write the DOT text and need no Graphviz binary.
    """
    outputs = [outputs] if isinstance(outputs, Node) else list(outputs)
    grads = gradients(outputs) if backward else {}
    graph = Graph(outputs + list(grads))
    if fused:
        from graphc.passes import optimize

        graph = optimize(graph, "O2")
    # Passes keep the outputs' order, so a caption follows its output by position.
    captions = {graph.outputs[len(outputs) + i]: text for i, text in enumerate(grads.values())}
    dot = draw(graph, captions)
    if path is not None:
        write(dot, path, format)
    return dot


def gradients(outputs: list) -> dict:
    """{gradient node: caption such as "dL/dW1"} for each scalar float output L and each
    float param it depends on (integer params have no gradient)."""
    from graphc.autodiff import grad

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

def draw(graph: Graph, captions=None) -> graphviz.Digraph:
    """The Digraph of an IR graph: one DOT node per IR node, fused nodes as clusters.
    `captions` ({node: text}) adds a first line to some nodes' labels (gradient names)."""
    captions = captions or {}
    dot = graphviz.Digraph("graphc", graph_attr=GRAPH_STYLE, node_attr=NODE_STYLE,
                           edge_attr=EDGE_STYLE)
    names = node_names(graph.nodes)
    outputs = set(graph.outputs)
    # A fused node has no DOT node of its own: its value is drawn as its body's output.
    drawn_as = {}
    kernel = 0
    for node in graph.nodes:
        if node.op == "fused":
            drawn_as[node] = _draw_kernel(dot, node, f"k{kernel}", drawn_as, outputs,
                                          captions.get(node))
            kernel += 1
            continue
        dot.node(names[node], _label(node, captions.get(node)), **_style(node, node in outputs))
        drawn_as[node] = names[node]
        for inp in node.inputs:
            dot.edge(drawn_as[inp], names[node], label=shape_label(inp))
    return dot


def _draw_kernel(dot, fused: Node, kernel_id: str, drawn_as: dict, outputs: set,
                 caption) -> str:
    """Draw a fused node's body inside a cluster; return the DOT id of its result."""
    body = fused.attrs["body"]
    ops = [n for n in body.nodes if n.op not in SOURCE_OPS]
    # Body inputs in0, in1, ... stand for the fused node's inputs, in order.
    outer = {n: drawn_as[fused.inputs[body_input_index(n)]] for n in body.inputs}
    # "k0.3": printed names are \w+, so the dot keeps these apart from top-level names.
    names = {n: f"{kernel_id}.{name}" for n, name in node_names(body.nodes).items()}
    label = kernel_label(fused.attrs["kind"], kernel_id, [n.op for n in ops])
    with dot.subgraph(name=f"cluster_{kernel_id}") as cluster:
        cluster.attr(label=label, **ROLE_STYLES["fused"])
        for node in body.nodes:
            if node.op != "input":
                is_result = node is body.outputs[0]
                cluster.node(names[node], _label(node, caption if is_result else None),
                             **_style(node, is_result and fused in outputs))
    # Edges after the cluster, so that its nodes are declared inside it first.
    for node in body.nodes:
        for inp in node.inputs:
            dot.edge(outer.get(inp) or names[inp], names[node], label=shape_label(inp))
    return names[body.outputs[0]]


def kernel_label(kind: str, kernel_id: str, op_names: list) -> str:
    """"pointwise kernel k3: mul×2, add, exp": each op name once, with its count, wrapped
    so that a big kernel's label stays about as wide as its cluster."""
    counts = Counter(op_names)
    names = ", ".join(op if n == 1 else f"{op}×{n}" for op, n in counts.items())
    return NEWLINE.join(textwrap.wrap(f"{kind} kernel {kernel_id}: {names}", LABEL_WIDTH))


def _label(node: Node, caption) -> str:
    return f"{caption}{NEWLINE}{node_label(node)}" if caption else node_label(node)


def role(node: Node) -> str:
    if node.op in SOURCE_OPS:
        return node.op
    return "grad-op" if "grad" in node.tags else "op"


def _style(node: Node, is_output: bool) -> dict:
    style = dict(ROLE_STYLES[role(node)])
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
