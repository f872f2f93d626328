"""gc.render: DOT structure (roles, colours, clusters, shape labels) and file output."""

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import graphc as gc
from graphc import viz
from graphc.errors import GraphcError
from graphc.ir import Graph

_ATTR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^\s\]]+)')


def parse_dot(dot):
    """(nodes {id: attrs}, edges [(src, dst, attrs)], clusters {name: attrs}) of a Digraph
    as the graphviz package writes it: one statement a line. A cluster's "members" are
    the nodes declared directly in it, its "parent" the cluster around it (or None)."""
    nodes, edges, clusters, open_clusters = {}, [], {}, []
    for line in dot.source.splitlines():
        line = line.strip()
        cluster = open_clusters[-1] if open_clusters else None
        if m := re.match(r"subgraph (cluster_[\w.]+) \{", line):
            parent = None if cluster is None else cluster["name"]
            open_clusters.append(clusters.setdefault(
                m.group(1), {"name": m.group(1), "members": [], "parent": parent}))
        elif line == "}":
            if open_clusters:
                open_clusters.pop()
        elif cluster is not None and re.match(r"(label|style|fillcolor|color)=", line):
            cluster.update(_attrs(line))
        elif m := re.match(r'("[^"]*"|\S+) -> ("[^"]*"|\S+) \[(.*)\]$', line):
            edges.append((_unquote(m.group(1)), _unquote(m.group(2)), _attrs(m.group(3))))
        elif m := re.match(r'("[^"]*"|\S+) \[(.*)\]$', line):
            if m.group(1) in ("graph", "node", "edge"):
                continue
            nodes[_unquote(m.group(1))] = _attrs(m.group(2))
            if cluster is not None:
                cluster["members"].append(_unquote(m.group(1)))
    for cluster in clusters.values():
        del cluster["name"]
    return nodes, edges, clusters


def _attrs(text):
    return {k: _unquote(v) for k, v in _ATTR.findall(text)}


def _unquote(text):
    return text[1:-1].replace('\\"', '"') if text.startswith('"') else text


def by_label(nodes, label):
    found = [n for n, a in nodes.items() if a.get("label") == label]
    assert len(found) == 1, (label, found)
    return nodes[found[0]]


def mlp3():
    """A 3-layer MLP with a softmax cross-entropy loss: (x, y, loss, logits, params)."""
    x = gc.input("x", ("batch", 4))
    y = gc.input("y", ("batch",), dtype="int64")
    logits, params = gc.nn.mlp(x, [4, 8, 8, 3])
    return x, y, gc.nn.softmax_cross_entropy(logits, y), logits, params


def fill(role):
    return viz.LOOKS[role]["fillcolor"]


def test_sources_and_ops_are_styled_by_role():
    x = gc.input("x", ("batch", 2))
    W = gc.param("W", np.ones((2, 3)))
    out = gc.relu(x @ W) * 2.0
    nodes, _, clusters = parse_dot(gc.render(out))
    assert clusters == {}
    assert by_label(nodes, "x")["fillcolor"] == fill("input")
    assert by_label(nodes, "W")["fillcolor"] == fill("param")
    assert by_label(nodes, "2")["fillcolor"] == fill("const")
    relu, mul = by_label(nodes, "relu"), by_label(nodes, "mul")
    assert relu["fillcolor"] == mul["fillcolor"] == fill("op")
    # The output gets a double border; other ops do not.
    assert mul.get("peripheries") == "2" and "peripheries" not in relu
    assert len({fill(r) for r in ("input", "param", "const", "op", "grad-op")}) == 5


def test_edges_carry_shapes_and_non_float_dtypes():
    x, y, loss, _, _ = mlp3()
    nodes, edges, _ = parse_dot(gc.render(loss))
    labels = {(nodes[s]["label"], nodes[d]["label"].split(viz.NEWLINE)[0]): a.get("label")
              for s, d, a in edges}
    assert labels[("x", "matmul")] == "batch×4"
    assert labels[("layer1_W", "matmul")] == "4×8"
    assert labels[("y", "one_hot")] == "i64 batch"
    assert "scalar" in {a["label"] for _, _, a in edges}
    # Every edge is labelled, and joins nodes that exist.
    assert all("label" in a and s in nodes and d in nodes for s, d, a in edges)


def test_forward_graph_has_one_node_per_ir_node_and_no_gradients():
    _, _, loss, _, _ = mlp3()
    nodes, edges, _ = parse_dot(gc.render(loss))
    graph = Graph([loss])
    assert len(nodes) == len(graph.nodes)
    assert len(edges) == sum(len(n.inputs) for n in graph.nodes)
    assert fill("grad-op") not in {a["fillcolor"] for a in nodes.values()}


def test_backward_adds_gradient_nodes_coloured_apart_and_named():
    _, _, loss, _, params = mlp3()
    forward, _, _ = parse_dot(gc.render(loss))
    nodes, _, _ = parse_dot(gc.render(loss, backward=True))
    grad_nodes = {n: a for n, a in nodes.items() if a["fillcolor"] == fill("grad-op")}
    assert grad_nodes and len(nodes) > len(forward)
    # Forward nodes keep their forward colour; each param's gradient is a captioned output.
    assert all(nodes[n]["fillcolor"] == a["fillcolor"] for n, a in forward.items())
    captions = {a["label"].split(viz.NEWLINE)[0] for a in grad_nodes.values() if "peripheries" in a}
    assert captions == {f"dL/d{p.name}" for p in params}


def test_gradient_tags_decide_the_colour():
    x = gc.input("x", (3,))
    tagged = gc.dsl.apply("exp", x, tags={"grad"})
    nodes, _, _ = parse_dot(gc.render([tagged, gc.exp(x)]))
    assert sorted(a["fillcolor"] for a in nodes.values() if a["label"] == "exp") == sorted(
        [fill("grad-op"), fill("op")])


def test_backward_needs_a_scalar_loss_with_params():
    x = gc.input("x", ("batch", 2))
    W = gc.param("W", np.ones((2, 2)))
    with pytest.raises(GraphcError, match="scalar float outputs"):
        gc.render(x @ W, backward=True)
    with pytest.raises(GraphcError, match="depends on no float param"):
        gc.render(gc.sum(x), backward=True)
    steps = gc.param("steps", np.array(3), dtype="int64")  # integer: no gradient
    nodes, _, _ = parse_dot(gc.render(gc.sum(x @ W) * gc.cast(steps, "float32"),
                                      backward=True))
    captions = {a["label"].split(viz.NEWLINE)[0] for a in nodes.values() if "peripheries" in a}
    assert "dL/dW" in captions and "dL/dsteps" not in captions


def test_labels_stay_short_for_a_3_layer_mlp_with_gradients():
    _, _, loss, _, _ = mlp3()
    nodes, _, _ = parse_dot(gc.render(loss, backward=True))
    for attrs in nodes.values():
        lines = attrs["label"].split(viz.NEWLINE)
        assert len(lines) <= 3 and max(map(len, lines)) <= 32, attrs["label"]


def hand_fused():
    """relu(x @ W + b) with the add and relu in a pointwise kernel built by hand."""
    from graphc.passes.fusion import make_fused

    x = gc.input("x", ("batch", 2))
    W = gc.param("W", np.ones((2, 3)))
    b = gc.param("b", np.zeros(3))
    return make_fused("pointwise", [x @ W, b], lambda mm, bias: gc.relu(mm + bias))


def test_fused_kernel_is_a_labelled_cluster_of_its_body_ops():
    out = gc.sum(hand_fused())
    nodes, edges, clusters = parse_dot(viz.draw(Graph([out])))
    (cluster,) = clusters.values()
    assert cluster["label"] == "pointwise kernel k0: add, relu"
    assert cluster["fillcolor"] == viz.LOOKS["fused"]["fillcolor"]
    assert sorted(nodes[m]["label"] for m in cluster["members"]) == ["add", "relu"]
    # The body's inputs are wired to the fused node's inputs; its result feeds the sum.
    pairs = {(nodes[s]["label"], nodes[d]["label"]) for s, d, _ in edges}
    summed = f"sum{viz.NEWLINE}axes=0,1"
    assert {("matmul", "add"), ("b", "add"), ("add", "relu"), ("relu", summed)} <= pairs
    assert not any(a["label"].startswith("fused") for a in nodes.values())


def test_render_fused_draws_one_cluster_per_kernel_of_the_optimized_graph():
    from graphc.passes import optimize

    _, _, loss, _, _ = mlp3()
    graph = optimize(Graph([loss, *viz.gradients([loss])]), "O2")
    kernels = [n for n in graph.nodes if n.op == "fused"]
    _, _, clusters = parse_dot(gc.render(loss, backward=True, fused=True))
    assert kernels and len(clusters) == len(kernels)


def test_kernels_of_the_fuse_pass_are_clusters_of_their_bodies():
    from graphc.passes.fusion import fuse

    _, _, loss, _, _ = mlp3()
    graph = fuse(Graph([loss, *viz.gradients([loss])]))
    kernels = [n for n in graph.nodes if n.op == "fused"]
    nodes, edges, clusters = parse_dot(viz.draw(graph))
    assert kernels and len(clusters) == len(kernels)
    kinds = {a["label"].split(" kernel")[0] for a in clusters.values()}
    assert kinds == {k.attrs["kind"] for k in kernels}
    for kernel, cluster in zip(kernels, clusters.values()):
        body_ops = [n for n in kernel.body.nodes if n.op != "input"]
        assert len(cluster["members"]) == len(body_ops)
    # Nothing dangles: every edge joins drawn nodes, and every drawn op has its inputs.
    assert all(s in nodes and d in nodes for s, d, _ in edges)
    fan_in = {d: 0 for d in nodes}
    for _, d, _ in edges:
        fan_in[d] += 1
    drawn = [n for n in graph.nodes if n.op != "fused"] + [
        b for k in kernels for b in k.body.nodes if b.op != "input"]
    assert sum(fan_in.values()) == sum(len(n.inputs) for n in drawn)


def test_kernel_labels_count_repeated_ops_and_wrap():
    label = viz.kernel_label("pointwise", "k5", ["mul", "add", "mul"] + ["exp"] * 30)
    assert label.split(viz.NEWLINE)[0] == "pointwise kernel k5: mul×2, add, exp×30"
    long = viz.kernel_label("pointwise", "k1", [f"op{i}" for i in range(30)])
    assert all(len(line) <= viz.LABEL_WIDTH for line in long.split(viz.NEWLINE))


def test_svg_and_png_are_written_with_dot(tmp_path):
    _, _, loss, _, _ = mlp3()
    gc.render(loss, backward=True, path=tmp_path / "mlp.svg")
    root = ET.parse(tmp_path / "mlp.svg").getroot()
    assert root.tag.endswith("svg")
    texts = {t.text for t in root.iter() if t.tag.endswith("text")}
    assert {"layer1_W", "batch×4", "dL/dlayer1_W"} <= texts
    gc.render(loss, path=tmp_path / "mlp.png")
    assert (tmp_path / "mlp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_path_suffix_picks_the_format(tmp_path):
    _, _, loss, _, _ = mlp3()
    dot = gc.render(loss, path=tmp_path / "plain", format="svg")
    assert ET.parse(tmp_path / "plain.svg").getroot().tag.endswith("svg")
    gc.render(loss, path=tmp_path / "mlp.dot")
    assert (tmp_path / "mlp.dot").read_text() == dot.source


def test_missing_dot_binary_gives_an_install_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` on it
    _, _, loss, _, _ = mlp3()
    dot = gc.render(loss)  # DOT text needs no binary
    assert dot.source.startswith("digraph")
    with pytest.raises(viz.GraphvizMissing, match="apt-get install graphviz") as info:
        gc.render(loss, path=tmp_path / "mlp.svg")
    assert isinstance(info.value, GraphcError)
    assert not (tmp_path / "mlp.svg").exists()
    gc.render(loss, path=tmp_path / "mlp.dot")  # still fine without the binary
    assert (tmp_path / "mlp.dot").exists()


def test_ten_thousand_node_chain_renders():
    x = gc.input("x", (2,))
    out = x
    for _ in range(10_000):
        out = gc.tanh(out)
    nodes, edges, _ = parse_dot(gc.render(out))
    assert len(nodes) == 10_001 and len(edges) == 10_000


# --- values on the picture -----------------------------------------------------------

def label_lines(nodes, header):
    """The label lines of the one node whose label's first op line is `header`."""
    found = [a["label"].split(viz.NEWLINE) for a in nodes.values()
             if header in a["label"].split(viz.NEWLINE)[:2]]
    assert len(found) == 1, (header, found)
    return found[0]


def test_values_write_each_nodes_value_small_in_full_large_as_statistics():
    x = gc.input("x", ("batch", 2))
    W = gc.param("W", [[1.0, -2.0], [3.0, 0.5]])
    h = gc.relu(x @ W, name="h")
    out = gc.sum(h)
    feeds = {"x": np.array([[1.0, 1.0]], np.float32)}
    nodes, _, _ = parse_dot(gc.render(out, values=feeds))
    assert label_lines(nodes, "W")[1:] == ["value [[1, -2],", " [3, 0.5]]"]
    assert label_lines(nodes, "h: relu")[1:] == ["value [[4, 0]]"]
    assert label_lines(nodes, "sum")[-1] == "value 4"
    big = {"x": np.arange(20, dtype=np.float32).reshape(10, 2)}
    lines = label_lines(parse_dot(gc.render(out, values=big))[0], "x")
    assert lines[1:] == ["value 10×2", "min 0, mean 9.5, max 19"]


def test_backward_values_put_each_gradient_beside_its_forward_node():
    x = gc.input("x", ("batch", 2))
    W = gc.param("W", [[1.0, -2.0], [3.0, 0.5]])
    z = gc.matmul(x, W, name="z")
    loss = gc.sum(gc.relu(z) * 3.0)
    feeds = {"x": np.array([[1.0, 1.0]], np.float32)}
    nodes, _, _ = parse_dot(gc.render(loss, backward=True, values=feeds))
    # z = [4, -1.5]; dL/dz = 3 where z > 0; dL/dW = x^T dL/dz.
    assert label_lines(nodes, "z: matmul")[1:] == ["value [[4, -1.5]]", "grad [[3, 0]]"]
    assert label_lines(nodes, "W")[-2:] == ["grad [[3, 0],", " [3, 0]]"]
    assert label_lines(nodes, "sum")[-1] == "grad 1"  # dL/dL
    # The gradient nodes carry values too: dL/dW's node shows what the param shows.
    dW = [a["label"] for a in nodes.values() if a["label"].startswith("dL/dW")]
    assert dW and dW[0].endswith(f"value [[3, 0],{viz.NEWLINE} [3, 0]]")


def test_values_agree_with_compiled_gradients_on_the_mlp():
    _, _, loss, _, params = mlp3()
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((5, 4)).astype(np.float32),
             "y": rng.integers(0, 3, 5)}
    pic = viz.picture([loss], backward=True, values=feeds)
    expected = gc.compile(gc.grad(loss, params), backend="reference")(**feeds)
    for param, value in zip(params, expected):
        np.testing.assert_allclose(pic.grads[param], value, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(pic.values[loss], gc.compile(loss, backend="reference")(**feeds))


def test_values_need_every_input_the_graph_reads_and_ignore_others():
    x = gc.input("x", (2,))
    out = gc.exp(x)
    nodes, _, _ = parse_dot(gc.render(out, values={"x": [0.0, 0.0], "unused": 1.0}))
    assert label_lines(nodes, "exp")[-1] == "value [1, 1]"
    with pytest.raises(gc.FeedError, match="missing input 'x'"):
        gc.render(out, values={"X": [0.0, 0.0]})
    with pytest.raises(GraphcError, match="dict of arrays by input name"):
        gc.render(out, values=[0.0, 0.0])


def test_fused_stage_values_reach_the_kernel_bodies():
    _, _, loss, _, _ = mlp3()
    feeds = {"x": np.ones((2, 4), np.float32), "y": np.array([0, 2])}
    nodes, _, clusters = parse_dot(gc.render(loss, backward=True, stage="fused", values=feeds))
    members = [m for c in clusters.values() for m in c["members"]]
    ops = [m for m in members if nodes[m]["fillcolor"] != fill("const")]
    assert ops and all("value " in nodes[m]["label"] for m in ops)


# --- stages ----------------------------------------------------------------------------

def test_stages_draw_the_graph_as_built_simplified_or_fused():
    _, _, loss, _, _ = mlp3()
    source, _, _ = parse_dot(gc.render(loss, backward=True))
    simplified, _, clusters = parse_dot(gc.render(loss, backward=True, stage="simplified"))
    assert len(simplified) < len(source)
    assert not any(name.startswith("cluster_k") for name in clusters)
    fused = gc.render(loss, backward=True, stage="fused").source
    assert fused == gc.render(loss, backward=True, fused=True).source
    assert "cluster_k0" in fused and "cluster_s" not in fused  # kernels, not scopes
    with pytest.raises(GraphcError, match="unknown stage 'optimized'"):
        gc.render(loss, stage="optimized")
    with pytest.raises(GraphcError, match="fused=True draws the stage 'fused'"):
        gc.render(loss, fused=True, stage="source")


def test_simplified_backward_keeps_forward_gradients_where_the_passes_kept_the_node():
    x = gc.input("x", ("batch", 2))
    W = gc.param("W", [[1.0, -2.0], [3.0, 0.5]])
    z = gc.matmul(x, W, name="z")
    loss = gc.mean(gc.nn.softplus(z))
    feeds = {"x": np.array([[1.0, 1.0]], np.float32)}
    nodes, _, _ = parse_dot(gc.render(loss, backward=True, stage="simplified", values=feeds))
    # d mean(softplus(z)) / dz = sigmoid(z) / 2
    expected = 1 / (1 + np.exp(-np.array([4.0, -1.5]))) / 2
    assert label_lines(nodes, "z: matmul")[-1] == "grad " + viz.value_text([expected])


# --- scopes and collapsing ---------------------------------------------------------------

def test_scopes_are_nested_clusters_named_after_them():
    _, _, loss, _, _ = mlp3()
    nodes, _, clusters = parse_dot(gc.render(loss, backward=True))
    by_label = {}
    for name, c in clusters.items():
        parent = clusters[c["parent"]]["label"] if c["parent"] else None
        by_label.setdefault(c["label"], []).append(parent)
    assert by_label["layer1"] == [None, "grad"]  # forward, and its gradients under grad
    assert by_label["logsumexp"] == ["softmax_cross_entropy"] * 2
    layer1 = next(c for c in clusters.values() if c["label"] == "layer1" and not c["parent"])
    assert {"layer1_W", "layer1_b"} <= set(layer1["members"])  # the layer's params in it
    grad_root = next(c for c in clusters.values() if c["label"] == "grad")
    assert grad_root["color"] == viz.LOOKS["grad-scope"]["color"]
    assert layer1["color"] == viz.LOOKS["scope"]["color"]


def test_collapse_by_name_reads_as_layers_and_a_loss():
    _, _, loss, _, params = mlp3()
    names = ["layer1", "layer2", "layer3", "softmax_cross_entropy"]
    nodes, edges, clusters = parse_dot(gc.render(loss, backward=True, collapse=names))
    boxes = {a["label"].split(viz.NEWLINE)[0]: n for n, a in nodes.items()
             if a.get("shape") == "box3d"}
    assert set(boxes) == set(names) | {f"grad/{n}" for n in names}
    assert [c["label"] for c in clusters.values()] == ["grad"]
    assert {n: nodes[n]["label"] for n in ("x", "y")} == {"x": "x", "y": "y"}
    # The gradient captions move onto the boxes that hold them.
    assert "dL/dlayer1_W" in nodes[boxes["grad/layer1"]]["label"]
    # Edges join boxes; none loops from a box to itself.
    pairs = {(s, d) for s, d, _ in edges}
    assert ("x", boxes["layer1"]) in pairs and (boxes["layer1"], boxes["layer2"]) in pairs
    assert all(s != d for s, d in pairs)


def test_collapse_by_depth_and_its_errors():
    _, _, loss, _, _ = mlp3()
    nodes, _, clusters = parse_dot(gc.render(loss, backward=True, collapse=1))
    boxes = sorted(a["label"].split(viz.NEWLINE)[0] for a in nodes.values()
                   if a.get("shape") == "box3d")
    assert boxes == ["grad", "layer1", "layer2", "layer3", "softmax_cross_entropy"]
    assert clusters == {}
    nodes, _, clusters = parse_dot(gc.render(loss, backward=True, collapse=2))
    boxes = sorted(a["label"].split(viz.NEWLINE)[0] for a in nodes.values()
                   if a.get("shape") == "box3d")
    assert boxes == ["grad/layer1", "grad/layer2", "grad/layer3", "grad/softmax_cross_entropy",
                     "softmax_cross_entropy/logsumexp"]
    assert sorted(c["label"] for c in clusters.values()) == [
        "grad", "layer1", "layer2", "layer3", "softmax_cross_entropy"]
    with pytest.raises(GraphcError, match="no scope named 'layer9'.*layer1"):
        gc.render(loss, collapse=["layer9"])
    with pytest.raises(GraphcError, match="depth counts from 1"):
        gc.render(loss, collapse=0)
    with pytest.raises(GraphcError, match="does not draw"):
        gc.render(loss, stage="fused", collapse=1)


def test_shared_constants_are_drawn_beside_each_user():
    x = gc.input("x", (3,))
    zero = gc.const(0.0)
    out = gc.maximum(x, zero) + gc.minimum(x, zero)
    nodes, edges, _ = parse_dot(gc.render(out))
    copies = [n for n, a in nodes.items() if a["label"] == "0"]
    assert len(copies) == 2
    assert sorted(len([e for e in edges if e[0] == c]) for c in copies) == [1, 1]
