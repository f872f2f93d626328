"""schedule and the buffer plan: valid orders, a plan whose shared buffers never hold two
live values, in-place and view rules, and the memory it saves on an MLP training graph."""

import bisect

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc import ops
from graphc.ir import Graph, parse
from graphc.passes import optimize
from graphc.passes.schedule import _FreeList, format_plan, plan_buffers, schedule
from tests.identity import same
from tests.passes.irtools import assert_same_values
from tests.passes.test_manager import mlp_training_graph
from tests.strategies import graphs

VIEW_OPS = ("reshape", "transpose", "expand_dims", "squeeze", "broadcast_to")


def views(node):
    """What a NumPy backend could do: layout ops as views of their input."""
    return node.inputs[0] if node.op in VIEW_OPS else None


def assert_valid_order(graph: Graph):
    position = {node: i for i, node in enumerate(graph.nodes)}
    for node in graph.nodes:
        for inp in node.inputs:
            assert position[inp] < position[node], f"{node!r} runs before its input {inp!r}"


def assert_sound_plan(plan, graph, dims, alias_of=lambda n: None):
    """No buffer holds two values live at once; sizes fit; roots are never overwritten."""
    order, end = plan.order, len(plan.order)
    index = {node: i for i, node in enumerate(order)}
    base = {}
    for node in order:
        a = alias_of(node) if node.op not in ("input", "param", "const") else None
        base[node] = node if a is None else base[a]
    live_until = {}
    for node in order:
        live_until[base[node]] = max(live_until.get(base[node], -1), plan.last_use[node])
    by_buffer = {}
    for node, b in plan.buffer.items():
        assert base[node] is node, f"view {node!r} got a buffer of its own"
        assert plan.sizes[b] >= node.type.nbytes(dims)
        by_buffer.setdefault(b, []).append(node)
    for b, values in by_buffer.items():
        values.sort(key=index.__getitem__)
        for first, second in zip(values, values[1:]):
            dies, born = live_until[first], index[second]
            assert dies < end, f"{first!r} is a root but its buffer is reused"
            assert dies < born or (dies == born and plan.in_place.get(second) is first), (
                f"buffer {b}: {first!r} is still live when {second!r} is written")
    for node, inp in plan.in_place.items():
        assert ops.OPS[node.op].kind in ops.ELEMENTWISE_KINDS or (
            node.op == "fused" and node.attrs["kind"] == "pointwise")
        assert any(inp is i for i in node.inputs)
        assert inp.type.concrete_shape(dims) == node.type.concrete_shape(dims)
    for node in graph.outputs:
        assert plan.last_use[node] == end
    assert plan.peak_bytes == sum(plan.sizes) <= plan.naive_bytes


@settings(max_examples=30)
@given(graphs(dtype="float32", max_ops=12))
def test_schedule_is_a_valid_order_of_the_same_nodes(case):
    outputs, _ = case
    graph = Graph(outputs)
    scheduled = schedule(graph)
    assert set(scheduled.nodes) == set(graph.nodes) and len(scheduled.nodes) == len(graph.nodes)
    assert same(scheduled.outputs, graph.outputs)
    assert_valid_order(scheduled)
    assert_same_values(graph, scheduled)
    assert plan_buffers(scheduled, {}).peak_bytes <= plan_buffers(graph, {}).peak_bytes


@settings(max_examples=30)
@given(graphs(dtype="float64", max_ops=12))
def test_plans_are_sound_with_and_without_views_and_kernels(case):
    outputs, _ = case
    for graph in (schedule(Graph(outputs)), optimize(Graph(outputs), "O2")):
        for alias_of in (lambda n: None, views):
            assert_sound_plan(plan_buffers(graph, {}, alias_of), graph, {}, alias_of)


def test_mlp_training_plan_is_well_under_the_naive_plan():
    dims = {"batch": 256}
    graph = mlp_training_graph(layers=3, width=64)
    scheduled = schedule(graph)
    plan = plan_buffers(scheduled, dims)
    depth_first = plan_buffers(graph, dims)
    assert_sound_plan(plan, scheduled, dims)
    ratio = plan.peak_bytes / plan.naive_bytes
    print(f"\nMLP 3 layers, batch 256, training graph ({len(graph.nodes)} nodes): scheduled "
          f"peak {plan.peak_bytes} B, depth-first order {depth_first.peak_bytes} B, naive "
          f"{plan.naive_bytes} B, ratio {ratio:.3f}")
    assert ratio < 0.5
    assert plan.peak_bytes <= depth_first.peak_bytes
    with_views = plan_buffers(scheduled, dims, views)
    assert_sound_plan(with_views, scheduled, dims, views)
    assert with_views.peak_bytes <= plan.peak_bytes


def test_schedule_runs_a_big_temporary_before_a_small_held_value():
    # depth-first runs exp(x) first and holds it while the 64x bigger temporary is made
    x = gc.input("x", (256,))
    held = gc.exp(x)
    reduced = gc.sum(gc.broadcast_to(x, (64, 256)) * 2.0)
    graph = Graph([held + reduced])
    depth_first, scheduled = plan_buffers(graph, {}), plan_buffers(schedule(graph), {})
    assert scheduled.peak_bytes < depth_first.peak_bytes


def test_in_place_rules():
    x = gc.input("x", (4, 8))
    W = gc.param("W", np.ones((8, 8)))
    h = x @ W                 # dies at relu: relu may write over it
    r = gc.relu(h)
    kept = r * 2.0            # r is an output: never overwritten
    plan = plan_buffers(schedule(Graph([r, kept])), {})
    assert same(plan.in_place, {r: h})
    s = gc.exp(h)             # h is used again after exp: exp may not overwrite it
    plan = plan_buffers(Graph([s + h]), {})
    assert s not in plan.in_place
    assert plan.in_place[plan.order[-1]] in {s, h}


def test_a_view_keeps_its_base_alive():
    x = gc.input("x", (4, 8))
    e = gc.exp(x)
    t = gc.transpose(e)       # a view of e, used last
    f = gc.tanh(x)            # would reuse e's buffer if the view did not keep it alive
    out = gc.matmul(f, t)
    graph = Graph([out])
    plan = plan_buffers(graph, {}, views)
    assert t not in plan.buffer and plan.buffer[f] != plan.buffer[e]
    assert_sound_plan(plan, graph, {}, views)


def test_format_plan_reports_buffers_and_the_ratio():
    x = gc.input("x", ("batch", 8))
    graph = schedule(Graph([gc.sum(gc.tanh(gc.exp(x)))]))
    text = format_plan(plan_buffers(graph, {"batch": 2}))
    assert "in place of" in text and "peak" in text and "naive" in text and "ratio" in text


def test_long_chains_schedule_without_recursion():
    x = gc.input("x", (2,))
    y = x
    for _ in range(10000):
        y = gc.tanh(y)
    graph = schedule(Graph([y]))
    plan = plan_buffers(graph, {})
    assert len(plan.sizes) == 1


FUSED = """
%x = input() : f32[4,4]
%y = input() : f32[4,4]
%0 = exp(%x) : f32[4,4]
%1 = fused(%0, %y, kind='pointwise') : f32[4,4] {
    %in0 = input() : f32[4,4]
    %in1 = input() : f32[4,4]
    %0 = {first} : f32[4,4]
    %1 = mul(%0, %in1) : f32[4,4]
    return %1
}
return %1
"""


def test_a_pointwise_kernel_overwrites_an_operand_read_elementwise():
    graph = parse(FUSED.replace("{first}", "tanh(%in0)"))
    plan = plan_buffers(graph, {})
    kernel = graph.outputs[0]
    assert same(plan.in_place, {kernel: kernel.inputs[0]})
    assert_sound_plan(plan, graph, {})


def test_a_pointwise_kernel_that_transposes_an_operand_does_not():
    graph = parse(FUSED.replace("{first}", "transpose(%in0, perm=(1, 0))"))
    assert plan_buffers(graph, {}).in_place == {}


def test_a_pointwise_kernel_that_transposes_after_an_elementwise_op_does_not():
    """exp(in0) is elementwise, but the transpose after it reads element (j, i) for
    (i, j): overwritten in place, a parallel kernel would read elements already written."""
    body = FUSED.replace("{first}", "tanh(%in0)").replace(
        "    %1 = mul(%0, %in1) : f32[4,4]\n    return %1",
        "    %1 = mul(%0, %in1) : f32[4,4]\n    %2 = transpose(%1, perm=(1, 0)) : f32[4,4]\n"
        "    return %2")
    graph = parse(body)
    assert plan_buffers(graph, {}).in_place == {}


def test_scheduling_twice_changes_nothing():
    graph = mlp_training_graph(layers=2)
    once = schedule(graph)
    assert same(schedule(once).nodes, once.nodes)


def test_an_update_target_the_outputs_never_read_is_scheduled():
    # A target-network copy: W_target is only written, so only the update reaches it.
    x = gc.input("x", (3,))
    W, W_target = gc.param("W", np.ones(3)), gc.param("W_target", np.zeros(3))
    graph = Graph([gc.sum(x * W)], {W_target: W})
    scheduled = schedule(graph)
    assert set(scheduled.nodes) == set(graph.nodes) and len(scheduled.nodes) == len(graph.nodes)
    assert_valid_order(scheduled)


class SortedFreeList:
    """The free list as a sorted list of (size, index) (O(n) an insert): the oracle."""

    def __init__(self):
        self.items = []

    def add(self, size, index):
        bisect.insort(self.items, (size, index))

    def take(self, need):
        if not self.items:
            return None
        k = bisect.bisect_left(self.items, (need, -1))
        return self.items.pop(min(k, len(self.items) - 1))[1]


SIZES = [0, 4, 8, 12, 64, 96]


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from(["take", "free new", "free taken"]),
                          st.sampled_from(SIZES)), max_size=80))
def test_the_free_list_takes_what_a_sorted_list_would(steps):
    free, oracle, held = _FreeList(SIZES), SortedFreeList(), {}  # held: index -> size
    made = 0
    for step, size in steps:
        if step == "take":
            taken = free.take(size)
            assert taken == oracle.take(size)
            if taken is not None:
                held[taken] = size
            continue
        if step == "free taken" and held:  # back with its size grown, as plan_buffers does
            index = next(iter(held))
            size = max(size, held.pop(index))
        else:
            index, made = made, made + 1
        free.add(size, index)
        oracle.add(size, index)
    assert [free.take(96) for _ in oracle.items[:]] == [oracle.take(96) for _ in oracle.items[:]]


def test_many_sizes_dying_at_one_wide_node_plan_soundly():
    # 3000 values of 3000 sizes die at one concat, then best fit reuses them one by one.
    x = gc.input("x", (1,))
    parts = [gc.broadcast_to(gc.exp(x), (k,)) for k in range(1, 3001)]
    joined = gc.concat(parts, axis=0)
    graph = Graph([gc.exp(gc.tanh(p)) for p in parts[::-1]] + [joined])
    plan = plan_buffers(graph, {})
    assert_sound_plan(plan, graph, {})
    assert plan.peak_bytes < plan.naive_bytes
