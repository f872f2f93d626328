"""The fuse pass: text IR in, text IR out for each kernel kind, legality and the reasons
it gives, and meaning preserved (reference interpreter before vs after fusing)."""

import textwrap
import time

import numpy as np
from hypothesis import given, settings

import graphc as gc
from graphc import ir
from graphc.backends.reference import run_graph
from graphc.passes import PIPELINES, optimize
from graphc.passes.fusion import check_kernel, explain_fusion, fuse, plan_fusion
from tests.identity import same
from tests.strategies import assert_close, graphs


def strip_locations(text):
    return "\n".join(line.split("  #")[0] for line in text.strip().splitlines())


def assert_fuses(before, after):
    graph = ir.parse(textwrap.dedent(before))
    fused = fuse(graph)
    fused.lint()
    assert strip_locations(str(fused)) == strip_locations(textwrap.dedent(after))
    return graph, fused


def kernels(graph):
    return [n for n in graph.nodes if n.op == "fused"]


def launches(graph):
    """What runs as a kernel: fused nodes and the plain ops left between them."""
    return [n for n in graph.nodes if n.op not in ir.SOURCE_OPS]


# --- one kernel of each kind -----------------------------------------------------------

def test_pointwise_chain_with_a_broadcast_bias_is_one_kernel():
    assert_fuses("""
        %x = input() : f32[batch,8]
        %b = param() : f32[8]
        %0 = add(%x, %b) : f32[batch,8]
        %1 = tanh(%0) : f32[batch,8]
        %2 = mul(%1, %x) : f32[batch,8]
        return %2
    """, """
        %x = input() : f32[batch,8]
        %b = param() : f32[8]
        %0 = fused(%x, %b, kind='pointwise') : f32[batch,8] {
            %in0 = input() : f32[batch,8]
            %in1 = input() : f32[8]
            %0 = add(%in0, %in1) : f32[batch,8]
            %1 = tanh(%0) : f32[batch,8]
            %2 = mul(%1, %in0) : f32[batch,8]
            return %2
        }
        return %0
    """)


def test_transposes_and_reshapes_of_inputs_are_index_arithmetic_in_the_kernel():
    _, fused = assert_fuses("""
        %x = input() : f32[4,6]
        %y = input() : f32[6,4]
        %0 = transpose(%y, perm=(1, 0)) : f32[4,6]
        %1 = add(%x, %0) : f32[4,6]
        %2 = reshape(%1, shape=(24,)) : f32[24]
        %3 = exp(%2) : f32[24]
        return %3
    """, """
        %x = input() : f32[4,6]
        %y = input() : f32[6,4]
        %0 = fused(%x, %y, kind='pointwise') : f32[24] {
            %in0 = input() : f32[4,6]
            %in1 = input() : f32[6,4]
            %0 = transpose(%in1, perm=(1, 0)) : f32[4,6]
            %1 = add(%in0, %0) : f32[4,6]
            %2 = reshape(%1, shape=(24,)) : f32[24]
            %3 = exp(%2) : f32[24]
            return %3
        }
        return %0
    """)


def test_softmax_is_one_reduction_kernel():
    assert_fuses("""
        %x = input() : f32[batch,10]
        %0 = max(%x, axes=(1,), keepdims=True) : f32[batch,1]
        %1 = sub(%x, %0) : f32[batch,10]
        %2 = exp(%1) : f32[batch,10]
        %3 = sum(%2, axes=(1,), keepdims=True) : f32[batch,1]
        %4 = div(%2, %3) : f32[batch,10]
        return %4
    """, """
        %x = input() : f32[batch,10]
        %0 = fused(%x, kind='reduction') : f32[batch,10] {
            %in0 = input() : f32[batch,10]
            %0 = max(%in0, axes=(1,), keepdims=True) : f32[batch,1]
            %1 = sub(%in0, %0) : f32[batch,10]
            %2 = exp(%1) : f32[batch,10]
            %3 = sum(%2, axes=(1,), keepdims=True) : f32[batch,1]
            %4 = div(%2, %3) : f32[batch,10]
            return %4
        }
        return %0
    """)


LOGSUMEXP_BODY = """
    %0 = max(%in0, axes=(1,), keepdims=True) : f32[batch,1]
    %1 = abs(%0) : f32[batch,1]
    %2 = const(fill=inf) : f32[]
    %3 = lt(%1, %2) : bool[batch,1]
    %4 = const(fill=0.0) : f32[]
    %5 = where(%3, %0, %4) : f32[batch,1]
    %6 = sub(%in0, %5) : f32[batch,10]
    %7 = exp(%6) : f32[batch,10]
    %8 = sum(%7, axes=(1,), keepdims=True) : f32[batch,1]
    %9 = log(%8) : f32[batch,1]
    %10 = add(%9, %5) : f32[batch,1]"""


def _unfused(body, last):
    return "%x = input() : f32[batch,10]" + (body + last).replace("%in0", "%x") + "\nreturn %11"


def _fused(body, last, type):
    inner = ["%in0 = input() : f32[batch,10]"] + (body + last).split("\n")[1:] + ["return %11"]
    return (f"%x = input() : f32[batch,10]\n%0 = fused(%x, kind='reduction') : {type} {{\n"
            + "\n".join("    " + line.strip() for line in inner) + "\n}\nreturn %0")


def test_log_softmax_is_one_reduction_kernel():
    last = "\n    %11 = sub(%in0, %10) : f32[batch,10]"
    assert_fuses(_unfused(LOGSUMEXP_BODY, last), _fused(LOGSUMEXP_BODY, last, "f32[batch,10]"))


def test_logsumexp_is_one_reduction_kernel():
    last = "\n    %11 = squeeze(%10, axes=(1,)) : f32[batch]"
    assert_fuses(_unfused(LOGSUMEXP_BODY, last), _fused(LOGSUMEXP_BODY, last, "f32[batch]"))


def test_the_nn_composites_each_fuse_to_exactly_one_kernel():
    x = gc.input("x", ("batch", 10))
    for composite in (gc.nn.softmax, gc.nn.log_softmax, gc.nn.logsumexp):
        fused = fuse(gc.Graph([composite(x)]))
        assert [n.attrs["kind"] for n in launches(fused)] == ["reduction"], composite


def test_matmul_bias_relu_is_one_matmul_kernel():
    assert_fuses("""
        %x = input() : f32[batch,8]
        %W = param() : f32[8,4]
        %b = param() : f32[4]
        %0 = matmul(%x, %W) : f32[batch,4]
        %1 = add(%0, %b) : f32[batch,4]
        %2 = relu(%1) : f32[batch,4]
        return %2
    """, """
        %x = input() : f32[batch,8]
        %W = param() : f32[8,4]
        %b = param() : f32[4]
        %0 = fused(%x, %W, %b, kind='matmul') : f32[batch,4] {
            %in0 = input() : f32[batch,8]
            %in1 = input() : f32[8,4]
            %0 = matmul(%in0, %in1) : f32[batch,4]
            %in2 = input() : f32[4]
            %1 = add(%0, %in2) : f32[batch,4]
            %2 = relu(%1) : f32[batch,4]
            return %2
        }
        return %0
    """)


def test_relu_backward_mask_joins_the_gradient_matmul_epilogue():
    # what gc.grad makes for dL/dz of h = relu(z), z = ..., out = h @ W: (g @ W.T) * step(z)
    assert_fuses("""
        %g = input() : f32[batch,4]
        %W = param() : f32[3,4]
        %z = input() : f32[batch,3]
        %0 = transpose(%W, perm=(1, 0)) : f32[4,3]
        %1 = matmul(%g, %0) : f32[batch,3]
        %2 = step(%z) : f32[batch,3]
        %3 = mul(%1, %2) : f32[batch,3]
        return %3
    """, """
        %g = input() : f32[batch,4]
        %W = param() : f32[3,4]
        %z = input() : f32[batch,3]
        %0 = fused(%g, %W, %z, kind='matmul') : f32[batch,3] {
            %in0 = input() : f32[batch,4]
            %in1 = input() : f32[3,4]
            %0 = transpose(%in1, perm=(1, 0)) : f32[4,3]
            %1 = matmul(%in0, %0) : f32[batch,3]
            %in2 = input() : f32[batch,3]
            %2 = step(%in2) : f32[batch,3]
            %3 = mul(%1, %2) : f32[batch,3]
            return %3
        }
        return %0
    """)


# --- an MLP training graph -------------------------------------------------------------

def mlp_training_graph(sizes=(784, 512, 512, 10)):
    rng = np.random.default_rng(0)
    x = gc.input("x", ("batch", sizes[0]))
    y = gc.input("y", ("batch",), dtype="int64")
    out, params = gc.nn.mlp(x, list(sizes), rng=rng)
    loss = gc.nn.softmax_cross_entropy(out, y)
    return gc.Graph([loss] + list(gc.grad(loss, params))), x, y


def test_mlp_training_graph_fuses_mask_into_each_backward_matmul_and_keeps_meaning():
    graph, x, y = mlp_training_graph((12, 16, 16, 5))
    cleaned = optimize(graph, "O1")
    fused = fuse(cleaned)
    fused.lint()
    bodies = [n.body for n in kernels(fused) if n.attrs["kind"] == "matmul"]
    masked = [b for b in bodies if {"matmul", "gt", "where"} <= {n.op for n in b.nodes}]
    assert len(masked) == 2  # dL/dz of both hidden layers: where(z > 0, g @ W.T, 0)
    assert len(bodies) == 8  # every matmul (3 forward, 2 dL/dh, 3 dL/dW) is in a kernel
    assert not [n for n in launches(fused) if n.op in ("matmul", "transpose")]
    assert len(launches(fused)) < len(launches(cleaned)) // 2
    rng = np.random.default_rng(1)
    feeds = {x: rng.standard_normal((6, 12)).astype(np.float32), y: rng.integers(0, 5, 6)}
    before = run_graph(cleaned, feeds, {"batch": 6})
    after = run_graph(fused, feeds, {"batch": 6})
    for old, new in zip(cleaned.outputs, fused.outputs):
        assert_close(after[new], before[old])
    assert set(fused.inputs) == {x, y}  # the same source nodes (nodes hash by identity)
    assert set(fused.params) == set(cleaned.params)


def test_mlp_kernel_count_drops_to_under_two_fifths():
    graph, _, _ = mlp_training_graph()  # 784-512-512-10, softmax cross-entropy, 6 grads
    cleaned = optimize(graph, "O1")
    assert len(launches(fuse(cleaned))) <= 0.4 * len(launches(cleaned))  # 69 -> 24 today


def test_fuse_runs_in_o2_before_schedule():
    o2 = PIPELINES["O2"]
    assert o2.index("fuse") == o2.index("schedule") - 1


# --- legality: cycles, values used outside ---------------------------------------------

def test_a_fusion_that_would_create_a_cycle_is_refused_with_its_reason():
    text = """
        %x = input() : f32[4,4]
        %0 = exp(%x) : f32[4,4]
        %1 = slice(%0, index=((0, 4, 1), (0, 4, 1))) : f32[4,4]
        %2 = add(%0, %1) : f32[4,4]
        %3 = neg(%2) : f32[4,4]
        return %3
    """
    graph, _ = assert_fuses(text, """
        %x = input() : f32[4,4]
        %0 = exp(%x) : f32[4,4]
        %1 = slice(%0, index=((0, 4, 1), (0, 4, 1))) : f32[4,4]
        %2 = fused(%0, %1, kind='pointwise') : f32[4,4] {
            %in0 = input() : f32[4,4]
            %in1 = input() : f32[4,4]
            %0 = add(%in0, %in1) : f32[4,4]
            %1 = neg(%0) : f32[4,4]
            return %1
        }
        return %2
    """)
    assert "%0 exp -> %2 add: would create a cycle through %1" in explain_fusion(graph)


def test_a_value_used_by_two_kernels_is_stored_when_not_cheap():
    graph, fused = assert_fuses("""
        %x = input() : f32[4,8]
        %0 = exp(%x) : f32[4,8]
        %1 = sum(%0, axes=(1,), keepdims=False) : f32[4]
        %2 = tanh(%0) : f32[4,8]
        %3 = neg(%2) : f32[4,8]
        return %1, %3
    """, """
        %x = input() : f32[4,8]
        %0 = exp(%x) : f32[4,8]
        %1 = sum(%0, axes=(1,), keepdims=False) : f32[4]
        %2 = fused(%0, kind='pointwise') : f32[4,8] {
            %in0 = input() : f32[4,8]
            %0 = tanh(%in0) : f32[4,8]
            %1 = neg(%0) : f32[4,8]
            return %1
        }
        return %1, %2
    """)
    assert explain_fusion(graph) == [
        "%0 exp -> %1 sum: %0 is used by 2 kernels and exp is not cheap to recompute",
        "%0 exp -> %2 tanh: %0 is used by 2 kernels and exp is not cheap to recompute"]


def test_a_cheap_value_used_by_two_kernels_is_recomputed_in_each():
    graph, fused = assert_fuses("""
        %x = input() : f32[4,8]
        %b = param() : f32[8]
        %0 = add(%x, %b) : f32[4,8]
        %1 = exp(%0) : f32[4,8]
        %2 = sum(%1, axes=(1,), keepdims=False) : f32[4]
        %3 = tanh(%0) : f32[4,8]
        %4 = neg(%3) : f32[4,8]
        return %2, %4
    """, """
        %x = input() : f32[4,8]
        %b = param() : f32[8]
        %0 = fused(%x, %b, kind='reduction') : f32[4] {
            %in0 = input() : f32[4,8]
            %in1 = input() : f32[8]
            %0 = add(%in0, %in1) : f32[4,8]
            %1 = exp(%0) : f32[4,8]
            %2 = sum(%1, axes=(1,), keepdims=False) : f32[4]
            return %2
        }
        %1 = fused(%x, %b, kind='pointwise') : f32[4,8] {
            %in0 = input() : f32[4,8]
            %in1 = input() : f32[8]
            %0 = add(%in0, %in1) : f32[4,8]
            %1 = tanh(%0) : f32[4,8]
            %2 = neg(%1) : f32[4,8]
            return %2
        }
        return %0, %1
    """)
    assert explain_fusion(graph) == []


def test_a_graph_output_is_stored_even_when_a_kernel_could_hold_it():
    graph = ir.parse(textwrap.dedent("""
        %x = input() : f32[4,8]
        %0 = exp(%x) : f32[4,8]
        %1 = neg(%0) : f32[4,8]
        %2 = mul(%1, %x) : f32[4,8]
        return %1, %2
    """))
    fused = fuse(graph)
    assert [n.op for n in launches(fused)] == ["fused", "mul"]
    assert explain_fusion(graph) == [
        "%1 neg -> %2 mul: %1 is a graph output, so it is stored anyway"]


def test_reductions_over_different_axes_do_not_share_a_kernel():
    graph = ir.parse(textwrap.dedent("""
        %x = input() : f32[batch,8]
        %0 = mul(%x, %x) : f32[batch,8]
        %1 = sum(%0, axes=(0,), keepdims=True) : f32[1,8]
        %2 = sub(%x, %1) : f32[batch,8]
        %3 = sum(%2, axes=(1,), keepdims=False) : f32[batch]
        return %3
    """))
    fused = fuse(graph)
    assert [n.attrs["kind"] for n in kernels(fused)] == ["reduction", "reduction"]
    assert explain_fusion(graph) == [
        "%1 sum -> %2 sub: sum reduces axes (0,) of (batch, 8) but the kernel reduces "
        "axes (1,) of (batch, 8)"]


def test_a_matmul_operand_is_a_kernel_input_never_a_prologue():
    graph = ir.parse(textwrap.dedent("""
        %x = input() : f32[batch,8]
        %W = param() : f32[8,4]
        %0 = tanh(%x) : f32[batch,8]
        %1 = matmul(%0, %W) : f32[batch,4]
        %2 = relu(%1) : f32[batch,4]
        return %2
    """))
    assert explain_fusion(graph) == [
        "%0 tanh -> %1 matmul: matmul operands are kernel inputs; tanh would be a prologue"]


def test_every_kernel_passes_the_capability_check_it_was_built_by():
    graph, _, _ = mlp_training_graph((6, 5, 4, 3))
    for node in kernels(fuse(optimize(graph, "O1"))):
        assert check_kernel(node.attrs["kind"], node.body) is None


# --- meaning preserved, size and sharing -----------------------------------------------

@settings(max_examples=60)
@given(graphs(max_ops=14))
def test_fusing_random_graphs_preserves_their_values(case):
    outputs, feeds = case
    graph = gc.Graph(outputs)
    fused = fuse(graph)
    fused.lint()
    by_node = {node: feeds[node.name] for node in graph.inputs}
    before, after = run_graph(graph, by_node, {}), run_graph(fused, by_node, {})
    for old, new in zip(graph.outputs, fused.outputs):
        assert_close(after[new], before[old], what=str(graph))


def test_a_10000_node_graph_fuses_in_linear_time():
    x = gc.input("x", ("batch", 8))
    node, rows = x, []
    for i in range(2500):  # a long chain with a row reduction every few ops
        node = gc.tanh(node * 0.5 + x)
        if i % 5 == 0:
            node = node - gc.max(node, axis=1, keepdims=True)
    graph = gc.Graph([node])
    assert len(graph.nodes) > 10_000
    start = time.perf_counter()
    plan = plan_fusion(graph)
    fused = fuse(graph)
    assert time.perf_counter() - start < 30  # quadratic would take minutes
    assert plan.kernels and len(launches(fused)) < len(launches(graph)) // 5
    fused.lint()


def test_a_value_read_by_5000_kernels_is_decided_without_pairwise_scans():
    x = gc.input("x", (4, 8))
    shared = gc.exp(x)
    graph = gc.Graph([gc.tanh(shared * float(i)) for i in range(5000)] + [shared[:, 0:4]])
    start = time.perf_counter()
    lines = explain_fusion(graph)
    fused = fuse(graph)
    assert time.perf_counter() - start < 30
    assert len(kernels(fused)) == 5000 and len(lines) == 5001
    assert lines[1].endswith("is also used by %15001 outside the kernel, so it is stored anyway")


def test_fusing_keeps_sources_outputs_and_updates():
    x = gc.input("x", ("batch", 3))
    W = gc.param("W", np.ones((3, 2)))
    h = gc.relu(x @ W)
    loss = gc.mean(h * h)
    graph = gc.Graph([loss, h], updates={W: W - 0.1 * W})
    fused = fuse(graph)
    assert same(fused.inputs, [x]) and same(list(fused.updates), [W])
    assert fused.outputs[1].op == "fused" and fused.outputs[1].loc == h.loc


@settings(max_examples=40)
@given(graphs(dtype="float64", max_ops=10))
def test_fusing_random_gradient_graphs_preserves_their_values(case):
    outputs, feeds = case
    inputs = gc.Graph(outputs).inputs
    loss = sum(gc.sum(gc.tanh(o)) for o in outputs)
    graph = gc.Graph([loss] + list(gc.grad(loss, inputs)))
    fused = fuse(graph)
    fused.lint()
    by_node = {node: feeds[node.name] for node in inputs}
    before, after = run_graph(graph, by_node, {}), run_graph(fused, by_node, {})
    for old, new in zip(graph.outputs, fused.outputs):
        assert_close(after[new], before[old], dtype="float64", what=str(graph))
