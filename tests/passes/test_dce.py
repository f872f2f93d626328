"""dce: unreachable nodes go; a value computed only for its shape (read by size) dies."""

import graphc as gc
from graphc.ir import Graph, parse
from graphc.passes import optimize
from graphc.passes.dce import dce
from graphc.passes.schedule import schedule
from tests.identity import same
from tests.passes.irtools import assert_same_values, run_text, strip


def test_unreachable_lines_are_dropped():
    _, after = run_text(dce, """
        %x = input() : f32[3]
        %0 = exp(%x) : f32[3]
        %1 = log(%0) : f32[3]
        %2 = neg(%x) : f32[3]
        return %2""")
    assert strip(str(after)) == strip("""
        %x = input() : f32[3]
        %0 = neg(%x) : f32[3]
        return %0""")


def test_update_values_are_roots():
    after = dce(parse("""
        %W = param() : f32[3]
        %0 = neg(%W) : f32[3]
        %1 = exp(%W) : f32[3]
        return %0
        update %W = %1"""))
    assert [n.op for n in after.nodes] == ["param", "neg", "exp"]


def test_a_value_read_only_for_its_shape_dies():
    _, after = run_text(dce, """
        %x = input() : f32[batch,3]
        %y = input() : f32[4,batch]
        %0 = exp(%y) : f32[4,batch]
        %1 = transpose(%0, perm=(1, 0)) : f32[batch,4]
        %2 = size(%1, axes=(0,), dtype='float32') : f32[]
        %3 = size(%1, axes=(0, 1), dtype='float32') : f32[]
        %4 = sum(%x, axes=(0, 1), keepdims=False) : f32[]
        %5 = div(%4, %2) : f32[]
        return %5, %3""")
    assert strip(str(after)) == strip("""
        %x = input() : f32[batch,3]
        %0 = sum(%x, axes=(0, 1), keepdims=False) : f32[]
        %1 = size(%x, axes=(0,), dtype='float32') : f32[]
        %2 = div(%0, %1) : f32[]
        %y = input() : f32[4,batch]
        %3 = size(%y, axes=(0, 1), dtype='float32') : f32[]
        return %2, %3""")


def test_the_symbolic_count_of_sum_of_broadcast_no_longer_needs_the_broadcast():
    x = gc.input("x", ("batch", 3))
    b = gc.input("b", (3,))
    before = Graph([gc.sum(gc.broadcast_to(b, x.shape), axis=0) + gc.sum(x, axis=0)])
    after = optimize(before, "O1", verify=True)
    assert "broadcast_to" not in {n.op for n in after.nodes}
    assert_same_values(before, after)


def test_a_fixed_order_is_replaced_by_the_depth_first_one():
    x = gc.input("x", (3,))
    outputs = [gc.exp(x), gc.neg(x) * 2.0]
    scheduled = schedule(Graph(outputs))
    assert same(dce(scheduled).nodes, Graph(outputs).nodes)
