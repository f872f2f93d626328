"""dce: a graph holds what its roots reach; dce re-roots it after rewrites."""

import graphc as gc
from graphc.ir import Graph, parse
from graphc.passes.dce import dce
from graphc.passes.schedule import schedule
from tests.passes.irtools import run_text, strip


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


def test_a_fixed_order_is_replaced_by_the_depth_first_one():
    x = gc.input("x", (3,))
    outputs = [gc.exp(x), gc.neg(x) * 2.0]
    scheduled = schedule(Graph(outputs))
    assert dce(scheduled).nodes == Graph(outputs).nodes
