"""simplify: every rule fires on its case (exact text out, same values) and leaves a
near miss alone; plus the engine: broadcasting back, chains, tags/locs, scale."""

# rule name -> (input that fires it, expected output, a near miss the rule must not touch)
CASES = {
    'add-zero': (
        '%x = input() : f32[3]\n'
        '%c = const(fill=0.0) : f32[]\n'
        '%0 = add(%c, %x) : f32[3]\n'
        'return %0\n',
        '%x = input() : f32[3]\n'
        'return %x\n',
        '%x = input() : f32[3]\n'
        '%c = const(value=[0.0, 1.0, 0.0]) : f32[3]\n'
        '%0 = add(%x, %c) : f32[3]\n'
        'return %0\n'),
    'sub-zero': (
        '%x = input() : f32[3]\n'
        '%c = const(fill=0.0) : f32[]\n'
        '%0 = sub(%x, %c) : f32[3]\n'
        'return %0\n',
        '%x = input() : f32[3]\n'
        'return %x\n',
        '%x = input() : i32[3]\n'
        '%c = const(fill=0.0) : f32[]\n'
        '%0 = sub(%x, %c) : f32[3]\n'
        'return %0\n'),
    'zero-sub': (
        '%x = input() : f32[3]\n'
        '%c = const(fill=0.0) : f32[]\n'
        '%0 = sub(%c, %x) : f32[3]\n'
        'return %0\n',
        '%x = input() : f32[3]\n'
        '%0 = neg(%x) : f32[3]\n'
        'return %0\n',
        '%x = input() : f32[3]\n'
        '%c = const(fill=1.0) : f32[]\n'
        '%0 = sub(%c, %x) : f32[3]\n'
        'return %0\n'),
    'mul-one': (
        '%x = input() : f32[3]\n'
        '%c = const(fill=1.0) : f32[]\n'
        '%0 = mul(%x, %c) : f32[3]\n'
        'return %0\n',
        '%x = input() : f32[3]\n'
        'return %x\n',
        '%x = input() : i32[3]\n'
        '%c = const(fill=1.0) : f32[]\n'
        '%0 = mul(%x, %c) : f32[3]\n'
        'return %0\n'),
    'sub-self-int': (
        '%x = input() : i32[3]\n'
        '%0 = sub(%x, %x) : i32[3]\n'
        'return %0\n',
        '%0 = const(fill=0) : i32[]\n'
        '%1 = broadcast_to(%0, shape=(3,)) : i32[3]\n'
        'return %1\n',
        '%x = input() : f32[3]\n'
        '%0 = sub(%x, %x) : f32[3]\n'
        'return %0\n'),
    'div-const': (
        '%x = input() : f32[3]\n'
        '%c = const(fill=4.0) : f32[]\n'
        '%0 = div(%x, %c) : f32[3]\n'
        'return %0\n',
        '%x = input() : f32[3]\n'
        '%0 = const(fill=0.25) : f32[]\n'
        '%1 = mul(%x, %0) : f32[3]\n'
        'return %1\n',
        '%x = input() : f32[3]\n'
        '%c = const(value=[1.0, 0.0, 2.0]) : f32[3]\n'
        '%0 = div(%x, %c) : f32[3]\n'
        'return %0\n'),
    'stop-gradient': (
        '%x = input() : f32[3]\n'
        '%0 = stop_gradient(%x) : f32[3]\n'
        '%1 = exp(%0) : f32[3]\n'
        'return %1\n',
        '%x = input() : f32[3]\n'
        '%0 = exp(%x) : f32[3]\n'
        'return %0\n',
        '%x = input() : f32[3]\n'
        '%0 = step(%x) : f32[3]\n'
        '%1 = exp(%0) : f32[3]\n'
        'return %1\n'),
    'neg-neg': (
        '%x = input() : f32[3]\n'
        '%0 = neg(%x) : f32[3]\n'
        '%1 = neg(%0) : f32[3]\n'
        'return %1\n',
        '%x = input() : f32[3]\n'
        'return %x\n',
        '%x = input() : f32[3]\n'
        '%0 = neg(%x) : f32[3]\n'
        '%1 = tanh(%0) : f32[3]\n'
        '%2 = neg(%1) : f32[3]\n'
        'return %2\n'),
    'add-neg': (
        '%x = input() : f32[3]\n'
        '%y = input() : f32[2,3]\n'
        '%0 = neg(%y) : f32[2,3]\n'
        '%1 = add(%0, %x) : f32[2,3]\n'
        'return %1\n',
        '%x = input() : f32[3]\n'
        '%y = input() : f32[2,3]\n'
        '%0 = sub(%x, %y) : f32[2,3]\n'
        'return %0\n',
        '%x = input() : f32[3]\n'
        '%y = input() : f32[2,3]\n'
        '%0 = tanh(%y) : f32[2,3]\n'
        '%1 = add(%0, %x) : f32[2,3]\n'
        'return %1\n'),
    'sub-neg': (
        '%x = input() : f32[3]\n'
        '%y = input() : f32[3]\n'
        '%0 = neg(%y) : f32[3]\n'
        '%1 = sub(%x, %0) : f32[3]\n'
        'return %1\n',
        '%x = input() : f32[3]\n'
        '%y = input() : f32[3]\n'
        '%0 = add(%x, %y) : f32[3]\n'
        'return %0\n',
        '%x = input() : f32[3]\n'
        '%y = input() : f32[3]\n'
        '%0 = neg(%x) : f32[3]\n'
        '%1 = sub(%0, %y) : f32[3]\n'
        'return %1\n'),
    'abs-neg': (
        '%x = input() : f32[3]\n'
        '%0 = neg(%x) : f32[3]\n'
        '%1 = abs(%0) : f32[3]\n'
        'return %1\n',
        '%x = input() : f32[3]\n'
        '%0 = abs(%x) : f32[3]\n'
        'return %0\n',
        '%x = input() : f32[3]\n'
        '%0 = abs(%x) : f32[3]\n'
        '%1 = neg(%0) : f32[3]\n'
        'return %1\n'),
    'transpose-transpose': (
        '%x = input() : f32[2,3,4]\n'
        '%0 = transpose(%x, perm=(1, 0, 2)) : f32[3,2,4]\n'
        '%1 = transpose(%0, perm=(0, 2, 1)) : f32[3,4,2]\n'
        'return %1\n',
        '%x = input() : f32[2,3,4]\n'
        '%0 = transpose(%x, perm=(1, 2, 0)) : f32[3,4,2]\n'
        'return %0\n',
        '%x = input() : f32[2,3,4]\n'
        '%0 = transpose(%x, perm=(1, 0, 2)) : f32[3,2,4]\n'
        '%1 = relu(%0) : f32[3,2,4]\n'
        '%2 = transpose(%1, perm=(1, 0, 2)) : f32[2,3,4]\n'
        'return %2\n'),
    'transpose-noop': (
        '%x = input() : f32[2,3]\n'
        '%0 = transpose(%x, perm=(0, 1)) : f32[2,3]\n'
        'return %0\n',
        '%x = input() : f32[2,3]\n'
        'return %x\n',
        '%x = input() : f32[3,3]\n'
        '%0 = transpose(%x, perm=(1, 0)) : f32[3,3]\n'
        'return %0\n'),
    'reshape-reshape': (
        '%x = input() : f32[2,3]\n'
        '%0 = reshape(%x, shape=(6,)) : f32[6]\n'
        '%1 = reshape(%0, shape=(3, 2)) : f32[3,2]\n'
        'return %1\n',
        '%x = input() : f32[2,3]\n'
        '%0 = reshape(%x, shape=(3, 2)) : f32[3,2]\n'
        'return %0\n',
        '%x = input() : f32[2,3]\n'
        '%0 = reshape(%x, shape=(6,)) : f32[6]\n'
        '%1 = neg(%0) : f32[6]\n'
        '%2 = reshape(%1, shape=(3, 2)) : f32[3,2]\n'
        'return %2\n'),
    'reshape-noop': (
        '%x = input() : f32[batch,3]\n'
        "%0 = reshape(%x, shape=('batch', 3)) : f32[batch,3]\n"
        'return %0\n',
        '%x = input() : f32[batch,3]\n'
        'return %x\n',
        '%x = input() : f32[2,3]\n'
        '%0 = reshape(%x, shape=(3, 2)) : f32[3,2]\n'
        'return %0\n'),
    'broadcast-broadcast': (
        '%x = input() : f32[3]\n'
        '%0 = broadcast_to(%x, shape=(2, 3)) : f32[2,3]\n'
        '%1 = broadcast_to(%0, shape=(4, 2, 3)) : f32[4,2,3]\n'
        'return %1\n',
        '%x = input() : f32[3]\n'
        '%0 = broadcast_to(%x, shape=(4, 2, 3)) : f32[4,2,3]\n'
        'return %0\n',
        '%x = input() : f32[3]\n'
        '%0 = broadcast_to(%x, shape=(2, 3)) : f32[2,3]\n'
        '%1 = exp(%0) : f32[2,3]\n'
        '%2 = broadcast_to(%1, shape=(4, 2, 3)) : f32[4,2,3]\n'
        'return %2\n'),
    'broadcast-noop': (
        '%x = input() : f32[3]\n'
        '%0 = broadcast_to(%x, shape=(3,)) : f32[3]\n'
        'return %0\n',
        '%x = input() : f32[3]\n'
        'return %x\n',
        '%x = input() : f32[3]\n'
        '%0 = broadcast_to(%x, shape=(1, 3)) : f32[1,3]\n'
        'return %0\n'),
    'squeeze-expand': (
        '%x = input() : f32[3]\n'
        '%0 = expand_dims(%x, axis=1) : f32[3,1]\n'
        '%1 = squeeze(%0, axes=(1,)) : f32[3]\n'
        'return %1\n',
        '%x = input() : f32[3]\n'
        'return %x\n',
        '%x = input() : f32[1,3]\n'
        '%0 = expand_dims(%x, axis=0) : f32[1,1,3]\n'
        '%1 = squeeze(%0, axes=(1,)) : f32[1,3]\n'
        'return %1\n'),
    'cast-noop': (
        '%x = input() : f32[3]\n'
        "%0 = cast(%x, dtype='float32') : f32[3]\n"
        'return %0\n',
        '%x = input() : f32[3]\n'
        'return %x\n',
        '%x = input() : f32[3]\n'
        "%0 = cast(%x, dtype='float64') : f64[3]\n"
        'return %0\n'),
    'sum-of-broadcast': (
        '%x = input() : f32[3]\n'
        '%0 = broadcast_to(%x, shape=(4, 3)) : f32[4,3]\n'
        '%1 = sum(%0, axes=(0,), keepdims=False) : f32[3]\n'
        'return %1\n',
        '%x = input() : f32[3]\n'
        '%0 = const(fill=4.0) : f32[]\n'
        '%1 = mul(%x, %0) : f32[3]\n'
        'return %1\n',
        '%x = input() : f32[3]\n'
        '%0 = broadcast_to(%x, shape=(4, 3)) : f32[4,3]\n'
        '%1 = sum(%0, axes=(1,), keepdims=False) : f32[4]\n'
        'return %1\n'),
    'broadcast-into-elementwise': (
        '%x = input() : f32[3]\n'
        '%c = const(fill=2.0) : f32[]\n'
        '%0 = broadcast_to(%x, shape=(2, 3)) : f32[2,3]\n'
        '%1 = mul(%0, %c) : f32[2,3]\n'
        'return %1\n',
        '%x = input() : f32[3]\n'
        '%0 = const(fill=2.0) : f32[]\n'
        '%1 = mul(%x, %0) : f32[3]\n'
        '%2 = broadcast_to(%1, shape=(2, 3)) : f32[2,3]\n'
        'return %2\n',
        '%x = input() : f32[3,3]\n'
        '%y = input() : f32[3,3]\n'
        '%0 = broadcast_to(%x, shape=(2, 3, 3)) : f32[2,3,3]\n'
        '%1 = matmul(%0, %y) : f32[2,3,3]\n'
        'return %1\n'),
    'elementwise-of-broadcast': (
        '%x = input() : f32[3]\n'
        '%y = input() : f32[2,3]\n'
        '%0 = broadcast_to(%x, shape=(2, 3)) : f32[2,3]\n'
        '%1 = sub(%y, %0) : f32[2,3]\n'
        'return %1\n',
        '%y = input() : f32[2,3]\n'
        '%x = input() : f32[3]\n'
        '%0 = sub(%y, %x) : f32[2,3]\n'
        'return %0\n',
        '%x = input() : f32[3]\n'
        '%y = input() : f32[2,3]\n'
        '%0 = broadcast_to(%x, shape=(2, 3)) : f32[2,3]\n'
        '%1 = concat(%y, %0, axis=0) : f32[4,3]\n'
        'return %1\n'),
    'log-exp': (
        '%x = input() : f32[3]\n'
        '%0 = exp(%x) : f32[3]\n'
        '%1 = log(%0) : f32[3]\n'
        'return %1\n',
        '%x = input() : f32[3]\n'
        'return %x\n',
        '%x = input() : f32[3]\n'
        '%0 = exp(%x) : f32[3]\n'
        '%1 = sqrt(%0) : f32[3]\n'
        '%2 = log(%1) : f32[3]\n'
        'return %2\n'),
    'exp-log': (
        '%x = input() : f32[3]\n'
        '%0 = abs(%x) : f32[3]\n'
        '%1 = log(%0) : f32[3]\n'
        '%2 = exp(%1) : f32[3]\n'
        'return %2\n',
        '%x = input() : f32[3]\n'
        '%0 = abs(%x) : f32[3]\n'
        'return %0\n',
        '%x = input() : f32[3]\n'
        '%0 = log(%x) : f32[3]\n'
        '%1 = exp(%0) : f32[3]\n'
        'return %1\n'),
    'log-sigmoid': (
        '%x = input() : f32[3]\n'
        '%0 = sigmoid(%x) : f32[3]\n'
        '%1 = log(%0) : f32[3]\n'
        'return %1\n',
        '%x = input() : f32[3]\n'
        '%0 = neg(%x) : f32[3]\n'
        '%1 = const(fill=0.0) : f32[]\n'
        '%2 = maximum(%0, %1) : f32[3]\n'
        '%3 = abs(%x) : f32[3]\n'
        '%4 = neg(%3) : f32[3]\n'
        '%5 = exp(%4) : f32[3]\n'
        '%6 = log1p(%5) : f32[3]\n'
        '%7 = add(%2, %6) : f32[3]\n'
        '%8 = neg(%7) : f32[3]\n'
        'return %8\n',
        '%x = input() : f32[3]\n'
        '%0 = tanh(%x) : f32[3]\n'
        '%1 = log(%0) : f32[3]\n'
        'return %1\n'),
    'log-one-minus-sigmoid': (
        '%x = input() : f32[3]\n'
        '%c = const(fill=1.0) : f32[]\n'
        '%0 = sigmoid(%x) : f32[3]\n'
        '%1 = sub(%c, %0) : f32[3]\n'
        '%2 = log(%1) : f32[3]\n'
        'return %2\n',
        '%x = input() : f32[3]\n'
        '%0 = const(fill=0.0) : f32[]\n'
        '%1 = maximum(%x, %0) : f32[3]\n'
        '%2 = abs(%x) : f32[3]\n'
        '%3 = neg(%2) : f32[3]\n'
        '%4 = exp(%3) : f32[3]\n'
        '%5 = log1p(%4) : f32[3]\n'
        '%6 = add(%1, %5) : f32[3]\n'
        '%7 = neg(%6) : f32[3]\n'
        'return %7\n',
        '%x = input() : f32[3]\n'
        '%c = const(fill=2.0) : f32[]\n'
        '%0 = sigmoid(%x) : f32[3]\n'
        '%1 = sub(%c, %0) : f32[3]\n'
        '%2 = log(%1) : f32[3]\n'
        'return %2\n'),
    'log1p-exp': (
        '%x = input() : f32[3]\n'
        '%0 = exp(%x) : f32[3]\n'
        '%1 = log1p(%0) : f32[3]\n'
        'return %1\n',
        '%x = input() : f32[3]\n'
        '%0 = const(fill=0.0) : f32[]\n'
        '%1 = maximum(%x, %0) : f32[3]\n'
        '%2 = abs(%x) : f32[3]\n'
        '%3 = neg(%2) : f32[3]\n'
        '%4 = exp(%3) : f32[3]\n'
        '%5 = log1p(%4) : f32[3]\n'
        '%6 = add(%1, %5) : f32[3]\n'
        'return %6\n',
        '%x = input() : f32[3]\n'
        '%0 = abs(%x) : f32[3]\n'
        '%1 = neg(%0) : f32[3]\n'
        '%2 = exp(%1) : f32[3]\n'
        '%3 = log1p(%2) : f32[3]\n'
        'return %3\n'),
    'log-one-plus-exp': (
        '%x = input() : f32[3]\n'
        '%c = const(fill=1.0) : f32[]\n'
        '%0 = exp(%x) : f32[3]\n'
        '%1 = add(%0, %c) : f32[3]\n'
        '%2 = log(%1) : f32[3]\n'
        'return %2\n',
        '%x = input() : f32[3]\n'
        '%0 = const(fill=0.0) : f32[]\n'
        '%1 = maximum(%x, %0) : f32[3]\n'
        '%2 = abs(%x) : f32[3]\n'
        '%3 = neg(%2) : f32[3]\n'
        '%4 = exp(%3) : f32[3]\n'
        '%5 = log1p(%4) : f32[3]\n'
        '%6 = add(%1, %5) : f32[3]\n'
        'return %6\n',
        '%x = input() : f32[3]\n'
        '%c = const(fill=2.0) : f32[]\n'
        '%0 = exp(%x) : f32[3]\n'
        '%1 = add(%0, %c) : f32[3]\n'
        '%2 = log(%1) : f32[3]\n'
        'return %2\n'),
    'log-softmax': (
        '%x = input() : f32[batch,4]\n'
        '%m = max(%x, axes=(1,), keepdims=True) : f32[batch,1]\n'
        '%d = sub(%x, %m) : f32[batch,4]\n'
        '%e = exp(%d) : f32[batch,4]\n'
        '%s = sum(%e, axes=(1,), keepdims=True) : f32[batch,1]\n'
        '%p = div(%e, %s) : f32[batch,4]\n'
        '%l = log(%p) : f32[batch,4]\n'
        'return %l\n',
        '%x = input() : f32[batch,4]\n'
        '%m = max(%x, axes=(1,), keepdims=True) : f32[batch,1]\n'
        '%d = sub(%x, %m) : f32[batch,4]\n'
        '%e = exp(%d) : f32[batch,4]\n'
        '%s = sum(%e, axes=(1,), keepdims=True) : f32[batch,1]\n'
        '%0 = log(%s) : f32[batch,1]\n'
        '%1 = sub(%d, %0) : f32[batch,4]\n'
        'return %1\n',
        '%x = input() : f32[batch,4]\n'
        '%m = max(%x, axes=(1,), keepdims=True) : f32[batch,1]\n'
        '%d = sub(%x, %m) : f32[batch,4]\n'
        '%e = exp(%d) : f32[batch,4]\n'
        '%s = sum(%e, axes=(0, 1), keepdims=True) : f32[1,1]\n'
        '%p = div(%e, %s) : f32[batch,4]\n'
        '%l = log(%p) : f32[batch,4]\n'
        'return %l\n'),
}


import numpy as np
import pytest

import graphc as gc
from graphc.ir import Graph, parse
from graphc.passes.simplify import RULES, simplify, simplify_traced
from tests.identity import same
from tests.passes.irtools import assert_same_values, evaluate, strip


def test_every_rule_has_a_case():
    assert sorted(CASES) == sorted(rule.name for rule in RULES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_fires(name):
    before = parse(CASES[name][0])
    after, fired = simplify_traced(before)
    assert fired[0] == name
    assert strip(str(after)) == strip(CASES[name][1])
    assert_same_values(before, after)


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_leaves_near_miss_alone(name):
    before = parse(CASES[name][2])
    after, fired = simplify_traced(before)
    assert name not in fired
    # the same nodes (a pass hands back its graph in depth-first order; parse keeps the
    # order as written)
    assert strip(str(after)) == strip(str(Graph(before.outputs, before.updates)))


def test_smaller_result_is_broadcast_back_to_the_nodes_type():
    before = parse("%x = input() : f32[3]\n%c = const(fill=0.0) : f32[2,3]\n"
                   "%0 = add(%x, %c) : f32[2,3]\nreturn %0")
    after = simplify(before)
    assert strip(str(after)) == strip(
        "%x = input() : f32[3]\n%0 = broadcast_to(%x, shape=(2, 3)) : f32[2,3]\nreturn %0")
    assert_same_values(before, after)


def test_sum_of_broadcast_with_symbolic_count():
    before = parse("%x = input() : f32[3]\n%0 = broadcast_to(%x, shape=('batch', 3)) : "
                   "f32[batch,3]\n%1 = sum(%0, axes=(0,), keepdims=True) : f32[1,3]\nreturn %1")
    after = simplify(before)
    assert strip(str(after)) == strip(
        "%x = input() : f32[3]\n"
        "%0 = reshape(%x, shape=(1, 3)) : f32[1,3]\n"
        "%1 = broadcast_to(%x, shape=('batch', 3)) : f32[batch,3]\n"
        "%2 = size(%1, axes=(0,), dtype='float32') : f32[]\n"
        "%3 = mul(%0, %2) : f32[1,3]\n"
        "return %3")
    assert_same_values(before, after)


def test_chains_collapse_in_one_call():
    x = gc.input("x", (2, 3))
    y = -(-(-(-x)))
    z = y.T.T.reshape((6,)).reshape((3, 2)).reshape((2, 3))
    after = simplify(Graph([z]))
    assert same(after.outputs, [x])


def test_rewritten_nodes_keep_the_loc_and_tags_of_the_node_they_replace():
    x = gc.input("x", (3,))
    out = gc.log(gc.sigmoid(x))
    out.tags, out.loc = frozenset({"grad"}), "model.py:7"
    after = simplify(Graph([out]))
    new_nodes = [n for n in after.nodes if n.op != "input"]
    assert new_nodes and all(n.tags == {"grad"} and n.loc == "model.py:7" for n in new_nodes)


def test_log_sigmoid_is_stable_where_the_naive_form_is_not():
    x = gc.input("x", (3,))
    before = Graph([gc.log(gc.sigmoid(x))])
    after = simplify(before)
    feeds = {x: np.array([-200.0, 0.0, 200.0], np.float32)}
    naive, stable = evaluate(before, feeds)[0], evaluate(after, feeds)[0]
    assert np.isneginf(naive[0])
    np.testing.assert_allclose(stable, [-200.0, -np.log(2), 0.0], rtol=1e-6, atol=1e-6)


def test_log_of_nn_softmax_becomes_log_softmax():
    x = gc.input("x", ("batch", 5))
    before = Graph([gc.log(gc.nn.softmax(x))])
    after, fired = simplify_traced(before)
    assert "log-softmax" in fired
    assert "div" not in {n.op for n in after.nodes}
    assert_same_values(before, after)


def test_sources_are_kept_by_identity():
    x = gc.input("x", (3,))
    W = gc.param("W", np.ones((3,)))
    after = simplify(Graph([-(-(x * W)) + 0.0], {W: W - 1.0}))
    assert x in set(after.nodes) and W in set(after.nodes)
    assert same(list(after.updates), [W])


def test_deep_chain_is_iterative():
    x = gc.input("x", (2,))
    y = x
    for _ in range(5000):
        y = gc.tanh(-(-y))
    after = simplify(Graph([y]))
    assert len(after.nodes) == 5001
