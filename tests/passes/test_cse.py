"""cse: merges by structure (op, the same inputs, attrs, type; identical consts), never by
value: equal inputs or params stay apart."""

import numpy as np

import graphc as gc
from graphc.ir import Graph
from graphc.passes.cse import cse
from tests.passes.irtools import run_text, strip


def test_merges_structurally_equal_nodes():
    _, after = run_text(cse, """
        %x = input() : f32[3]
        %y = input() : f32[3]
        %0 = exp(%x) : f32[3]
        %1 = exp(%x) : f32[3]
        %2 = add(%0, %y) : f32[3]
        %3 = add(%y, %1) : f32[3]
        %4 = sub(%0, %y) : f32[3]
        %5 = sub(%y, %1) : f32[3]
        %a = const(fill=2.0) : f32[]
        %b = const(fill=2.0) : f32[]
        %c = const(fill=2.0) : f64[]
        %6 = mul(%2, %a) : f32[3]
        %7 = mul(%3, %b) : f32[3]
        %8 = mul(%4, %c) : f64[3]
        return %6, %7, %5, %8""")
    # add commutes (merged); sub does not; the f64 const stays apart from the f32 ones
    assert strip(str(after)) == strip("""
        %x = input() : f32[3]
        %0 = exp(%x) : f32[3]
        %y = input() : f32[3]
        %1 = add(%0, %y) : f32[3]
        %2 = const(fill=2.0) : f32[]
        %3 = mul(%1, %2) : f32[3]
        %4 = sub(%y, %0) : f32[3]
        %5 = sub(%0, %y) : f32[3]
        %6 = const(fill=2.0) : f64[]
        %7 = mul(%5, %6) : f64[3]
        return %3, %3, %4, %7""")


def test_different_attrs_do_not_merge():
    _, after = run_text(cse, """
        %x = input() : f32[2,3]
        %0 = sum(%x, axes=(0,), keepdims=True) : f32[1,3]
        %1 = sum(%x, axes=(0,), keepdims=False) : f32[3]
        %2 = sum(%x, axes=(0,), keepdims=True) : f32[1,3]
        return %0, %1, %2""")
    sums = [n for n in after.nodes if n.op == "sum"]
    assert len(sums) == 2 and after.outputs[0] is after.outputs[2]


def test_equal_values_never_merge_sources():
    a = gc.param("a", np.ones(3))
    b = gc.param("b", np.ones(3))
    x = gc.input("x", (3,))
    y = gc.input("y", (3,))
    after = cse(Graph([gc.exp(a) + gc.exp(b), gc.exp(x) + gc.exp(y)]))
    assert len([n for n in after.nodes if n.op == "exp"]) == 4
    assert {a, b, x, y} <= set(after.nodes)


def test_different_consts_of_equal_fill_but_other_shape_stay_apart():
    x = gc.input("x", (2,))
    c1, c2 = gc.const(np.zeros(2)), gc.const(np.zeros(1))
    after = cse(Graph([x + c1, x + c2]))
    assert len([n for n in after.nodes if n.op == "const"]) == 2
