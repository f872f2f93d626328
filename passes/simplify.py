"""simplify: algebraic identities and numeric stabilisation, as a table of pattern rules.

A rule is (name, pattern, rewrite, when). A pattern is a tree:
    Op("log", Op("sigmoid", "x"))      an op applied to sub-patterns (Op(("add", "mul"),
                                       ...) matches any of several ops)
    "x"                                any node, bound to the name x; a name used twice
                                       must bind the same node both times
    Fill(0)                            a const whose every element is 0
    Const("c")                         any const, bound to c
`Op(..., name="t")` also binds the matched node itself (to read its attrs). Operands of
commutative ops match in either order. `when(b)` is an extra condition on the bindings
`b`; `rewrite(b)` builds the replacement with the DSL (types re-inferred).

The pass walks the graph once in topological order, so a node's inputs are already
simplified when its rules are tried, and re-tries the rules on each replacement. A
rewrite whose result would change the node's type is dropped; one whose result is only
smaller (x + zeros of a larger shape) is broadcast back. Rounds repeat while rules fire
(at most MAX_ROUNDS, each linear), since a rewrite can create nodes other rules reduce.

Rules that change numerics (all in the direction of accuracy or by at most a rounding):
- div-const: x / c -> x * (1/c) rounds 1/c once (exact when c is a power of two).
- sum-of-broadcast: n copies summed -> one product (at least as accurate).
- the log/exp rules replace forms that overflow or lose everything to rounding (log of a
  sigmoid that underflowed to 0) with stable ones; where the old form was finite the two
  agree to rounding.
x - x -> 0 is applied to integers only: for floats it is wrong for inf and nan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from graphc import dsl, nn, ops
from graphc.ir import Graph, Node
from graphc.types import broadcast_shapes, is_float

from .rewrite import inherit, rewrite

MAX_ROUNDS = 8
COMMUTATIVE = ops.with_trait("commutative")


# --- patterns ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Op:
    ops: tuple  # the op names it matches (usually one)
    inputs: tuple
    name: str | None = None

    def __init__(self, op, *inputs, name=None):
        object.__setattr__(self, "ops", (op,) if isinstance(op, str) else tuple(op))
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "name", name)


@dataclass(frozen=True)
class Fill:
    value: float


@dataclass(frozen=True)
class Const:
    name: str


def is_fill(node: Node, value) -> bool:
    return node.op == "const" and node.value.size > 0 and bool(np.all(node.value == value))


def match(pattern, node: Node, b: dict) -> dict | None:
    """Bindings extending `b` under which `pattern` matches `node`, or None."""
    if isinstance(pattern, str):
        if pattern in b:
            return b if b[pattern] is node else None
        return {**b, pattern: node}
    if isinstance(pattern, Fill):
        return b if is_fill(node, pattern.value) else None
    if isinstance(pattern, Const):
        return {**b, pattern.name: node} if node.op == "const" else None
    if node.op not in pattern.ops or len(node.inputs) != len(pattern.inputs):
        return None
    if pattern.name:
        b = {**b, pattern.name: node}
    orders = [node.inputs] + ([node.inputs[::-1]] if node.op in COMMUTATIVE else [])
    for inputs in orders:
        found = b
        for sub, inp in zip(pattern.inputs, inputs):
            found = match(sub, inp, found)
            if found is None:
                break
        else:
            return found
    return None


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: Op
    rewrite: Callable[[dict], Node]
    when: Callable[[dict], bool] = lambda b: True


# --- helpers the rewrites use --------------------------------------------------------------

def _nonnegative(x: Node) -> bool:
    """x >= 0 (or nan) wherever defined, judged by its op alone."""
    return ops.has(x.op, "nonnegative") or (
        x.op == "const" and bool(np.all(x.value >= 0)))


def _may_overflow_exp(b) -> bool:
    """False when x = -(something >= 0): exp(x) <= 1 is already safe, and softplus's
    own stable form log1p(exp(-|x|)) must not be rewritten again."""
    x = b["x"]
    return not (x.op == "neg" and _nonnegative(x.inputs[0]))


def _zeros_like(x: Node) -> Node:
    return dsl.broadcast_to(dsl.const(0, x.dtype), x.shape)


def _compose_perms(b):
    inner, outer = b["t1"].attrs["perm"], b["t2"].attrs["perm"]
    perm = tuple(inner[p] for p in outer)
    return b["x"] if perm == tuple(range(len(perm))) else dsl.transpose(b["x"], perm)


def _reduced_axes_are_broadcast(b) -> bool:
    x, target = b["x"], b["bc"].shape
    padded = (1,) * (len(target) - x.ndim) + x.shape
    return is_float(x.dtype) and all(padded[a] == 1 for a in b["s"].attrs["axes"])


def _sum_of_broadcast(b):
    """sum(broadcast_to(x, S), A) with x of size 1 along A: x times the count of A."""
    x, bc, s = b["x"], b["bc"], b["s"]
    axes, keep = s.attrs["axes"], s.attrs["keepdims"]
    padded = (1,) * (bc.ndim - x.ndim) + x.shape
    kept = tuple(1 if i in axes else d for i, d in enumerate(padded) if keep or i not in axes)
    out = dsl.reshape(x, kept)
    if out.shape != s.shape:
        out = dsl.broadcast_to(out, s.shape)
    counts = [bc.shape[a] for a in axes]
    if all(isinstance(c, int) for c in counts):
        count = dsl.const(int(np.prod(counts, dtype=np.int64)), x.dtype)
    else:  # symbolic: counted at run time (dce then reads the count off a graph input)
        count = dsl.size(bc, axes, x.dtype)
    return out * count


def _reciprocal_ok(b) -> bool:
    c = b["c"].value
    return c.dtype.kind == "f" and bool(np.all(np.isfinite(c) & (c != 0)))


def _times_reciprocal(b):
    c = b["c"]
    return dsl.mul(b["x"], dsl.const(np.reciprocal(c.value), c.dtype))


# Binary elementwise ops broadcast their operands themselves, so an explicit broadcast_to
# feeding one only materialises a bigger array: op(broadcast_to(x), y) -> op(x, y), its
# result broadcast once if it comes out smaller (x's dims are 1 or the target's, so x and
# y always broadcast together).
BROADCASTING = tuple(name for name, d in ops.OPS.items() if d.kind in ("binary", "compare"))


def _without_broadcast(b):
    e = b["e"]
    operands = [b["x"], b["y"]] if e.inputs[0] is b["bc"] else [b["y"], b["x"]]
    return dsl.apply(e.op, *operands)


def _log_softmax(b):
    """log(e / sum(e)) with e = exp(x - max x): (x - max x) - log(sum(e)), reusing both."""
    return dsl.sub(b["shifted"], dsl.log(b["s"]))


def _same_softmax_axes(b) -> bool:
    m, s = b["m"].attrs, b["s"].attrs
    return m["axes"] == s["axes"] and m["keepdims"] and s["keepdims"]


SOFTMAX = Op("div", Op("exp", Op("sub", "x", Op("max", "x", name="m"), name="shifted"),
                       name="e"),
             Op("sum", "e", name="s"))

RULES = [
    # additive and multiplicative identities
    Rule("add-zero", Op("add", "x", Fill(0)), lambda b: b["x"]),
    Rule("sub-zero", Op("sub", "x", Fill(0)), lambda b: b["x"]),
    Rule("zero-sub", Op("sub", Fill(0), "x"), lambda b: dsl.neg(b["x"])),
    Rule("mul-one", Op("mul", "x", Fill(1)), lambda b: b["x"]),
    Rule("sub-self-int", Op("sub", "x", "x"), lambda b: _zeros_like(b["x"]),
         when=lambda b: not is_float(b["x"].dtype)),
    Rule("div-const", Op("div", "x", Const("c")), _times_reciprocal, when=_reciprocal_ok),
    # Gradients are built before optimization, so the marker has done its work.
    Rule("stop-gradient", Op("stop_gradient", "x"), lambda b: b["x"]),
    # negation
    Rule("neg-neg", Op("neg", Op("neg", "x")), lambda b: b["x"]),
    Rule("add-neg", Op("add", "x", Op("neg", "y")), lambda b: dsl.sub(b["x"], b["y"])),
    Rule("sub-neg", Op("sub", "x", Op("neg", "y")), lambda b: dsl.add(b["x"], b["y"])),
    Rule("abs-neg", Op("abs", Op("neg", "x")), lambda b: dsl.abs(b["x"])),
    # layout chains and no-ops
    Rule("transpose-transpose",
         Op("transpose", Op("transpose", "x", name="t1"), name="t2"), _compose_perms),
    Rule("transpose-noop", Op("transpose", "x", name="t"), lambda b: b["x"],
         when=lambda b: b["t"].attrs["perm"] == tuple(range(b["x"].ndim))),
    Rule("reshape-reshape", Op("reshape", Op("reshape", "x"), name="r"),
         lambda b: dsl.reshape(b["x"], b["r"].shape)),
    Rule("reshape-noop", Op("reshape", "x", name="r"), lambda b: b["x"],
         when=lambda b: b["r"].shape == b["x"].shape),
    Rule("broadcast-broadcast", Op("broadcast_to", Op("broadcast_to", "x"), name="bc"),
         lambda b: dsl.broadcast_to(b["x"], b["bc"].shape)),
    Rule("broadcast-noop", Op("broadcast_to", "x", name="bc"), lambda b: b["x"],
         when=lambda b: b["bc"].shape == b["x"].shape),
    Rule("squeeze-expand", Op("squeeze", Op("expand_dims", "x", name="e"), name="s"),
         lambda b: b["x"], when=lambda b: b["s"].attrs["axes"] == (b["e"].attrs["axis"],)),
    Rule("cast-noop", Op("cast", "x", name="c"), lambda b: b["x"],
         when=lambda b: b["c"].dtype == b["x"].dtype),
    Rule("sum-of-broadcast", Op("sum", Op("broadcast_to", "x", name="bc"), name="s"),
         _sum_of_broadcast, when=_reduced_axes_are_broadcast),
    Rule("broadcast-into-elementwise",
         Op(BROADCASTING, Op("broadcast_to", "x", name="bc"), "y", name="e"),
         _without_broadcast),
    Rule("elementwise-of-broadcast",
         Op(BROADCASTING, "y", Op("broadcast_to", "x", name="bc"), name="e"),
         _without_broadcast),
    # exp/log pairs and numeric stabilisation
    Rule("log-exp", Op("log", Op("exp", "x")), lambda b: b["x"]),
    Rule("exp-log", Op("exp", Op("log", "x")), lambda b: b["x"],
         when=lambda b: _nonnegative(b["x"])),
    Rule("log-sigmoid", Op("log", Op("sigmoid", "x")),
         lambda b: dsl.neg(nn.softplus(dsl.neg(b["x"])))),
    Rule("log-one-minus-sigmoid", Op("log", Op("sub", Fill(1), Op("sigmoid", "x"))),
         lambda b: dsl.neg(nn.softplus(b["x"]))),
    Rule("log1p-exp", Op("log1p", Op("exp", "x")), lambda b: nn.softplus(b["x"]),
         when=_may_overflow_exp),
    Rule("log-one-plus-exp", Op("log", Op("add", Fill(1), Op("exp", "x"))),
         lambda b: nn.softplus(b["x"]), when=_may_overflow_exp),
    Rule("log-softmax", Op("log", SOFTMAX), _log_softmax, when=_same_softmax_axes),
]

RULES_BY_OP: dict[str, list] = {}
for _rule in RULES:
    for _op in _rule.pattern.ops:
        RULES_BY_OP.setdefault(_op, []).append(_rule)


# --- the pass ------------------------------------------------------------------------------

def _conform(new: Node, old: Node) -> Node | None:
    """`new` in `old`'s type: as is, broadcast up to it, or None when that is impossible."""
    if new.type == old.type:
        return new
    if new.dtype == old.dtype and broadcast_shapes(new.shape, old.shape) == old.shape:
        return dsl.broadcast_to(new, old.shape)
    return None


def _apply_first(node: Node) -> tuple[Node, str] | None:
    for rule in RULES_BY_OP.get(node.op, ()):
        b = match(rule.pattern, node, {})
        if b is None or not rule.when(b):
            continue
        new = _conform(rule.rewrite(b), node)
        if new is not None:
            return inherit(new, node, b.values()), rule.name
    return None


def _simplify_node(node: Node, fired: list) -> Node | None:
    current = node
    for _ in range(MAX_ROUNDS):  # a replacement may itself simplify (composed perms -> x)
        step = _apply_first(current)
        if step is None:
            break
        current, name = step
        fired.append(name)
    return None if current is node else current


def simplify_traced(graph: Graph) -> tuple[Graph, list]:
    """simplify, also returning the names of the rules that fired, in order."""
    fired = []
    for _ in range(MAX_ROUNDS):
        before = len(fired)
        graph = rewrite(graph, lambda node: _simplify_node(node, fired))
        if len(fired) == before:
            break
    return graph, fired


def simplify(graph: Graph) -> Graph:
    return simplify_traced(graph)[0]
