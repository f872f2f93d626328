"""Symbolic reverse-mode differentiation: gradients built as ordinary IR nodes.

`grad(y, wrt)` walks the nodes between `wrt` and `y` once, in reverse topological order
(seed 003's backprop algorithm): each node's cotangent ("error signal", v-bar) is the sum
over its users of the user's cotangent times the user's local derivative (the
multivariate chain rule), reduced back over the axes that broadcasting added. The
derivative rules live in one table, RULES, one entry per primitive. Every node built here
carries the tag "grad" so a renderer can draw the backward graph apart, and every node is
an ordinary differentiable op, so a gradient can be differentiated again (Hessian-vector
products). The nodes built for a forward node in scope S (graphc/scopes.py) go in scope
grad/S (grad/layer1/dense for layer1/dense; grad itself for a node in no scope), so the
backward graph groups as the forward one does; `grad` opens inside the scope open at
the call.

Which inputs get a gradient: only float nodes on a path from some `wrt` to `y` ("active"
nodes). Integer and bool values stop the gradient (labels, masks, comparisons), and
branches of the graph that `y` needs but that do not depend on `wrt` are never visited.

Choices where the derivative is not defined:
- relu, step, abs, sign at 0: the derivative at 0 is taken as 0 (as in PyTorch).
- max and min (reductions) ties: the cotangent is split equally among the tied maxima,
  as torch.amax and torch.amin do. prod: each factor gets the product of the others
  (zeros included, as torch.prod). maximum/minimum ties: each operand gets half, as torch.maximum does.
- pow at a zero base: d/da is 0 where b = 0, and d/db is 0 where a = 0 and b >= 0
  (PyTorch's choice; for b < 0 it is a^b log a = -inf or +inf).
- step, sign, comparisons, one_hot and size have zero gradient; so have the rounding
  ops (floor, ceil, round, trunc), also at their steps, as in PyTorch.
- max_pool: a window's cotangent goes to its first max (row-major within the window) on a
  tie, as torch's; max_pool_grad has no derivative in its cotangent (a GradError).

Collectives: all_reduce(x, op) on each worker is differentiated as part of the objective
that is the sum over the workers of each worker's y (what data-parallel training
optimizes), so its gradient is the same all_reduce of the cotangent (JAX's psum
transpose: d/dx_r of sum_q y_q(s), s = sum_p x_p, is the sum over workers of the
cotangents; a mean divides it by the worker count).
"""

from __future__ import annotations

import numpy as np

from graphc import dsl, ops
from graphc import scopes
from graphc.arguments import describe as _describe, node_list
from graphc.errors import GradError, ShapeError
from graphc.ir import Node, topological_order
from graphc.types import (
    TensorType, broadcast_shapes, format_shape, is_float, numpy_dtype, to_dtype)

GRAD_TAGS = frozenset({"grad"})


# --- public entry points ---------------------------------------------------------------

def grad(y: Node, wrt, seed=None, allow_disconnected=False):
    """d y / d wrt as new graph nodes: one node if `wrt` is a node, a list if a list.

    y must be a scalar unless `seed` (the cotangent of y: a node or array that
    broadcasts to y's shape) is given; then the result is the vector-Jacobian product.
    A `wrt` that y does not depend on raises GradError unless allow_disconnected=True,
    which gives zeros instead. A `wrt` that y reaches only through ops with zero
    gradient (comparisons, step, sign) gets zeros: y depends on it, with derivative 0.
    """
    if not isinstance(y, Node):
        raise GradError(f"gc.grad: y must be a graph node (the value to differentiate), "
                        f"got {_describe(y)}")
    single = isinstance(wrt, Node)
    targets = node_list(wrt, "gc.grad: wrt", GradError)
    for node in targets:
        _check_wrt(node)
    if not is_float(y.dtype):
        raise GradError(f"gc.grad: y must be a float value, got {_describe(y)}")
    mirror = scopes.Mirror(scopes.Scope("grad", scopes.current()))
    with scopes.within(mirror.of(y.scope)):
        seed_node = _default_seed(y) if seed is None else _seed(y, seed)
    grads = _backprop(y, seed_node, targets, allow_disconnected, mirror)
    return grads[0] if single else grads


def vjp(y: Node, wrt, seed, allow_disconnected=False):
    """The vector-Jacobian product seed^T (d y / d wrt); `seed` has y's shape."""
    return grad(y, wrt, seed=seed, allow_disconnected=allow_disconnected)


def _check_wrt(node):
    if not is_float(node.dtype):
        raise GradError(f"gc.grad: cannot differentiate with respect to {_describe(node)}: "
                        "only float values have gradients")


def _default_seed(y: Node) -> Node:
    if y.shape != ():
        raise GradError(f"gc.grad: y must be a scalar, got {_describe(y)}; reduce it "
                        "(e.g. .sum() or .mean()) or give a cotangent with seed=")
    return _const(1.0, y.dtype)


def _seed(y: Node, seed) -> Node:
    node = seed if isinstance(seed, Node) else _const(
        to_dtype(seed, y.dtype, "gc.grad: seed", GradError), y.dtype)
    if broadcast_shapes(node.shape, y.shape) != y.shape:
        raise GradError(f"gc.grad: seed of shape {format_shape(node.shape)} does not match "
                        f"y, {_describe(y)}")
    if node.shape != y.shape:
        node = _op("broadcast_to", node, shape=y.shape)
    return node if node.dtype == y.dtype else _op("cast", node, dtype=y.dtype)


# --- the sweep -------------------------------------------------------------------------

def _backprop(y: Node, seed: Node, targets: list, allow_disconnected: bool,
              mirror: scopes.Mirror) -> list:
    order = topological_order([y])
    wanted = set(targets)
    # Active: a float node that depends on some target. Only these receive cotangents.
    active = set()
    for node in order:
        if is_float(node.dtype) and (node in wanted or any(i in active for i in node.inputs)):
            active.add(node)

    pending = {y: [seed]} if y in active else {}  # node -> cotangent contributions
    found = {}
    for node in reversed(order):
        contributions = pending.pop(node, None)
        if contributions is None:
            continue
        with scopes.within(mirror.of(node.scope)):
            cotangent = _sum_all(contributions)
            if node in wanted:
                found[node] = cotangent
            for i, inp in enumerate(node.inputs):
                if inp in active:
                    local = _rule(node)(node, cotangent, i)
                    if local is not None:
                        pending.setdefault(inp, []).append(_fit(local, inp))

    reachable = set(order)
    results = []
    for node in targets:
        with scopes.within(mirror.of(node.scope)):
            results.append(_result(node, found, reachable, allow_disconnected, y))
    return results


def _result(node, found, reachable, allow_disconnected, y):
    if node in found:
        return found[node]
    if node not in reachable and not allow_disconnected:
        raise GradError(f"gc.grad: y ({_describe(y)}) does not depend on {_describe(node)}; "
                        "pass allow_disconnected=True to get a zero gradient")
    # Disconnected, or connected only through ops with zero gradient (step, comparisons).
    return _zeros(node.type)


def _rule(node: Node):
    rule = RULES.get(node.op)
    if rule is None:
        raise GradError(f"gc.grad: no derivative rule for op {node.op!r} ({_describe(node)}); "
                        "differentiate the graph before passes rewrite it")
    return rule


def _sum_all(nodes: list) -> Node:
    """Fan-out: the contributions are summed once, when the node's users are all done."""
    total = nodes[0]
    for node in nodes[1:]:
        total = _op("add", total, node)
    return total


def _fit(g: Node, like: Node) -> Node:
    """Bring a contribution to `like`'s shape (undo broadcasting) and dtype."""
    if g.shape != like.shape:
        g = _unbroadcast(g, like.shape)
    return g if g.dtype == like.dtype else _op("cast", g, dtype=like.dtype)


def _unbroadcast(g: Node, shape: tuple) -> Node:
    """Sum g over the axes broadcasting added to `shape`: the leading extra axes, and the
    axes where `shape` has 1 and g does not. Equal dims, symbolic ones included, stay."""
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + k for k, d in enumerate(shape) if d == 1 and g.shape[lead + k] != 1)
    if axes:
        g = _op("sum", g, axes=axes, keepdims=True)
    if lead:
        g = _op("squeeze", g, axes=tuple(range(lead)))
    if g.shape != shape:
        raise ShapeError(f"gc.grad: cannot reduce a gradient of shape {format_shape(g.shape)} "
                         f"to {format_shape(shape)}")
    return g


# --- node builders (every gradient node is tagged) -------------------------------------

def _op(op: str, /, *inputs: Node, **attrs) -> Node:
    return dsl.apply(op, *inputs, tags=GRAD_TAGS, **attrs)


def _const(value, dtype: str) -> Node:
    array = np.array(value, dtype=numpy_dtype(dtype))
    array.flags.writeable = False
    return Node("const", (), {}, TensorType(array.shape, dtype), tags=GRAD_TAGS, value=array)


def _zeros(type: TensorType) -> Node:
    zero = _const(0.0, type.dtype)
    return _op("broadcast_to", zero, shape=type.shape) if type.shape else zero


def _scalar(value, like: Node) -> Node:
    return _const(value, like.dtype)


def _mul(a, b):
    return _op("mul", a, b)


def _div(a, b):
    return _op("div", a, b)


def _one_minus(x):
    return _op("sub", _scalar(1.0, x), x)


def _float_mask(cond: Node, like: Node) -> Node:
    return _op("cast", cond, dtype=like.dtype)


def _broadcast_back(g: Node, node: Node) -> Node:
    """A reduction's cotangent spread back over the reduced input's shape."""
    x = node.inputs[0]
    if not node.attrs["keepdims"]:
        for axis in node.attrs["axes"]:  # ascending, so each lands where it was reduced
            g = _op("expand_dims", g, axis=axis)
    return _op("broadcast_to", g, shape=x.shape)


def _swap_last(x: Node) -> Node:
    return _op("transpose", x, perm=ops.swap_last_two(x.ndim))


# --- derivative rules: (node, cotangent of node, input index) -> cotangent of input -----
# A rule may return a value of the node's (broadcast) shape; _fit reduces it.

def _unary(f):
    """A rule for a one-input op from f(node, x, g)."""
    return lambda node, g, i: f(node, node.inputs[0], g)


def _zero(node, g, i):
    return None


def _identity(node, g, i):
    return g


def _sub(node, g, i):
    return g if i == 0 else _op("neg", g)


def _mul_rule(node, g, i):
    return _mul(g, node.inputs[1 - i])


def _div_rule(node, g, i):
    a, b = node.inputs
    return _div(g, b) if i == 0 else _op("neg", _div(_mul(g, node), b))


def _pow(node, g, i):
    a, b = node.inputs
    if i == 0:  # b a^(b-1), and 0 where b = 0 (not 0 * 0^-1 = nan at a = 0), as in PyTorch
        local = _mul(g, _mul(b, _op("pow", a, _op("sub", b, _scalar(1.0, b)))))
        return _op("where", _op("eq", b, _scalar(0.0, b)), _scalar(0.0, local), local)
    # a^b log a, and 0 where a = 0 and b >= 0 (a^b is 0 or 1 there), as in PyTorch, not
    # 0 * log 0 = nan; log reads 1 there, so a second derivative is not nan either. Where
    # a = 0 and b < 0 (or nan) it stays a^b log a: inf * -inf = -inf (+inf for a = -0
    # and an odd b), as in PyTorch.
    zero_term = _op("where", _op("ge", b, _scalar(0.0, b)), _op("eq", a, _scalar(0.0, a)),
                    _const(False, "bool"))
    safe = _op("where", zero_term, _scalar(1.0, a), a)
    local = _mul(g, _mul(node, _op("log", safe)))
    return _op("where", zero_term, _scalar(0.0, local), local)


# Masks select with `where`, not multiply by 0/1: an inf cotangent must not become
# 0 * inf = nan in the entries that do not get it (as in PyTorch).

def _extremum(win_op):
    """maximum/minimum: the winning operand gets the cotangent; a tie splits it in half."""
    def rule(node, g, i):
        mine, other = node.inputs[i], node.inputs[1 - i]
        tie = _op("where", _op("eq", mine, other), _mul(g, _scalar(0.5, g)), _scalar(0.0, g))
        return _op("where", _op(win_op, mine, other), g, tie)
    return rule


def _relu(node, g, i):
    # relu(x) > 0 exactly where x > 0; testing the output rather than x lets the forward
    # matmul+bias+relu stay one kernel, as x is then not needed by the backward pass.
    return _op("where", _op("gt", node, _scalar(0.0, node)), g, _scalar(0.0, g))


def _where(node, g, i):
    if i == 0:
        return None
    zero = _scalar(0.0, g)
    cond = node.inputs[0]
    return _op("where", cond, g, zero) if i == 1 else _op("where", cond, zero, g)


def _extremum_reduce(node, g, i):
    """max or min: the winners (the elements equal to the result) share the cotangent."""
    x = node.inputs[0]
    winners = _float_mask(_op("eq", x, _broadcast_back(node, node)), x)
    count = _op("sum", winners, axes=node.attrs["axes"], keepdims=True)
    return _mul(_broadcast_back(g, node), _div(winners, count))


def _prod_reduce(node, g, i):
    """The product of the others, as torch: result / x where no factor is 0; where one
    is, that factor gets the product of the rest and the others 0; where two are, all 0.
    (No division by a zero in what is selected, so no nan from 0 / 0.)"""
    x, axes = node.inputs[0], node.attrs["axes"]
    zero = _op("eq", x, _scalar(0.0, x))
    zeros = _op("sum", _float_mask(zero, x), axes=axes, keepdims=True)
    rest = _op("prod", _op("where", zero, _scalar(1.0, x), x), axes=axes, keepdims=True)
    one_zero = _op("logical_and", zero, _op("eq", zeros, _scalar(1.0, zeros)))
    others = _op("where", one_zero, rest, _scalar(0.0, x))
    local = _op("where", _op("eq", zeros, _scalar(0.0, zeros)),
                _div(_broadcast_back(node, node), x), others)
    return _mul(_broadcast_back(g, node), local)


def _transpose(node, g, i):
    inverse = tuple(int(k) for k in np.argsort(node.attrs["perm"]))
    return _op("transpose", g, perm=inverse)


def _slice(node, g, i):
    """Scatter g back into zeros of the input's shape, one sliced axis at a time."""
    x = node.inputs[0]
    for axis, (start, stop, step) in enumerate(node.attrs["index"]):
        if (start, stop, step) != (0, None, 1):
            g = _unslice_axis(g, axis, x.shape[axis], range(*slice(start, stop, step)
                                                             .indices(x.shape[axis])))
    return g


def _unslice_axis(g: Node, axis: int, n: int, picked: range) -> Node:
    """g holds the entries `picked` of an axis of length n; put them back, zeros elsewhere.

    Built from concat and reshape only (no scatter op, and no 0 * g products, so an inf
    in g cannot leak into the zeros): interleave step-1 zero rows after each entry,
    reshape, then pad with zeros before and after."""
    if len(picked) == 0:
        return _pad(g, axis, n)
    if picked.step < 0:  # a reversing slice: g reversed holds the entries in rising order
        g = _flip(g, axis, len(picked))
        picked = picked[::-1]
    step = picked.step
    if step > 1:
        m = len(picked)
        rows = _op("expand_dims", g, axis=axis + 1)
        spread = _op("concat", rows, _pad(rows, axis + 1, step - 1), axis=axis + 1)
        flat = _op("reshape", spread, shape=g.shape[:axis] + (m * step,) + g.shape[axis + 1:])
        g = _take(flat, axis, 0, (m - 1) * step + 1)
    before, after = picked[0], n - (picked[-1] + 1)
    parts = [_pad(g, axis, before)] if before else []
    parts.append(g)
    parts += [_pad(g, axis, after)] if after else []
    return _op("concat", *parts, axis=axis) if len(parts) > 1 else g


def _flip(g: Node, axis: int, length: int) -> Node:
    if length == 1:
        return g
    index = tuple((length - 1, None, -1) if k == axis else (0, None, 1) for k in range(g.ndim))
    return _op("slice", g, index=index)


def _pad(g: Node, axis: int, size: int) -> Node:
    """Zeros shaped like g except `size` along `axis`."""
    return _zeros(TensorType(g.shape[:axis] + (size,) + g.shape[axis + 1:], g.dtype))


def _take(g: Node, axis: int, start: int, stop: int) -> Node:
    index = tuple((start, stop, 1) if k == axis else (0, None, 1) for k in range(g.ndim))
    return _op("slice", g, index=index)


def _concat(node, g, i):
    if len(node.inputs) == 1:
        return g
    axis = node.attrs["axis"]
    start = sum(inp.shape[axis] for inp in node.inputs[:i])
    return _take(g, axis, start, start + node.inputs[i].shape[axis])


# --- indexing by data: each one's gradient is the other -------------------------------

def _gather(node, g, i):
    """x's gradient: g added into zeros of x's shape at the indices (repeats add up)."""
    x, idx = node.inputs
    return _op("scatter_add", _zeros(x.type), idx, g, axis=node.attrs["axis"])


def _scatter_add(node, g, i):
    """base's gradient is g; the values' is g read back at their indices (where base has
    a size-1 axis, every position added into its one element: gather reads g at 0 there).
    Indices are ints: active only if float, so never asked."""
    if i == 0:
        return g
    return _op("gather", g, node.inputs[1], axis=node.attrs["axis"])


def _matmul(node, g, i):
    a, b = node.inputs
    return _op("matmul", g, _swap_last(b)) if i == 0 else _op("matmul", _swap_last(a), g)


def _quotient(exact: bool):
    """mod and fmod: a - q b, with q the quotient rounded (floor for mod, trunc for
    fmod), so d/da = 1 and d/db = -q, as torch: mod's q is read off the result,
    round((a - node) / b), exact where a / b would round across an integer and nan where
    a is +-inf (torch's floor division); fmod's is trunc(a / b) (torch's trunc
    division: +-inf where a is)."""
    def rule(node, g, i):
        a, b = node.inputs
        if i == 0:
            return g
        q = _op("round", _div(_op("sub", a, node), b)) if exact else _op("trunc", _div(a, b))
        return _op("neg", _mul(g, q))
    return rule


# --- sliding windows (h-conv): conv and its two gradients are bilinear, and each one's
# derivative in an operand is one of the other two (graphc/windows.py), so gradients of
# gradients stay in these three ops.

def _conv_attrs(node) -> dict:
    return {k: node.attrs[k] for k in ("stride", "padding", "dilation", "groups")}


def _conv(node, g, i):
    x, w = node.inputs
    if i == 0:
        return _op("conv_input_grad", g, w, size=x.shape[2:], **_conv_attrs(node))
    return _op("conv_weight_grad", x, g, kernel=w.shape[2:], **_conv_attrs(node))


def _conv_input_grad(node, g, i):
    """node = A_w^T c (c: the conv's cotangent): d/dc is conv(g, w); d/dw pairs g with c
    as a conv's input with its cotangent."""
    c, w = node.inputs
    if i == 0:
        return _op("conv", g, w, **_conv_attrs(node))
    return _op("conv_weight_grad", g, c, kernel=w.shape[2:], **_conv_attrs(node))


def _conv_weight_grad(node, g, i):
    """node = correlation of x with c: d/dx is conv_input_grad(c, g); d/dc is conv(x, g)."""
    x, c = node.inputs
    if i == 0:
        return _op("conv_input_grad", c, g, size=x.shape[2:], **_conv_attrs(node))
    return _op("conv", x, g, **_conv_attrs(node))


def _max_pool(node, g, i):
    return _op("max_pool_grad", node.inputs[0], g, **node.attrs)


def _max_pool_grad(node, g, i):
    if i == 0:
        return None  # piecewise constant in x: which entry is the max
    raise GradError(f"gc.grad: no derivative rule for max_pool_grad in its cotangent "
                    f"({_describe(node)}): a second derivative of max_pool is not supported")


RULES = {
    # elementwise unary
    "neg": _unary(lambda n, x, g: _op("neg", g)),
    "exp": _unary(lambda n, x, g: _mul(g, n)),
    "log": _unary(lambda n, x, g: _div(g, x)),
    "log1p": _unary(lambda n, x, g: _div(g, _op("add", _scalar(1.0, x), x))),
    "sqrt": _unary(lambda n, x, g: _div(g, _mul(_scalar(2.0, n), n))),
    "abs": _unary(lambda n, x, g: _mul(g, _op("sign", x))),
    "tanh": _unary(lambda n, x, g: _mul(g, _one_minus(_mul(n, n)))),
    "sigmoid": _unary(lambda n, x, g: _mul(g, _mul(n, _one_minus(n)))),
    "relu": _relu,
    "cast": _identity,  # _fit casts back to the input's (float) dtype
    "step": _zero, "sign": _zero, "stop_gradient": _zero,
    # elementwise binary
    "add": _identity, "sub": _sub, "mul": _mul_rule, "div": _div_rule, "pow": _pow,
    "maximum": _extremum("gt"), "minimum": _extremum("lt"),
    "gt": _zero, "ge": _zero, "lt": _zero, "le": _zero, "eq": _zero, "ne": _zero,
    "where": _where,
    # reductions
    "sum": lambda n, g, i: _broadcast_back(g, n),
    "max": _extremum_reduce,
    "min": _extremum_reduce,   # the same rule: ties split the cotangent equally (torch.amin)
    "prod": _prod_reduce,
    "size": _zero,
    # layout
    "reshape": lambda n, g, i: _op("reshape", g, shape=n.inputs[0].shape),
    "transpose": _transpose,
    "broadcast_to": _identity,  # _fit sums over the broadcast axes
    "expand_dims": lambda n, g, i: _op("squeeze", g, axes=(n.attrs["axis"],)),
    "squeeze": lambda n, g, i: _op("reshape", g, shape=n.inputs[0].shape),
    "slice": _slice,
    "concat": _concat,
    # matmul (batch dims broadcast; _fit sums a broadcast operand's batch axes)
    "matmul": _matmul,
    "one_hot": _zero,
    "philox": _zero,   # a random draw: a function of its key's integer bits only
    # collectives: their own transpose (see the module docstring)
    "all_reduce": lambda n, g, i: _op("all_reduce", g, op=n.attrs["op"]),
    # indexing by data (h-index)
    "gather": _gather,
    "scatter_add": _scatter_add,
    # --- issue 14's elementwise ops (h-elem) ---
    "sin": _unary(lambda n, x, g: _mul(g, _op("cos", x))),
    "cos": _unary(lambda n, x, g: _mul(g, _op("neg", _op("sin", x)))),
    # d erf(x) = 2 / sqrt(pi) e^(-x^2)
    "erf": _unary(lambda n, x, g: _mul(g, _mul(_scalar(2 / np.sqrt(np.pi), x),
                                                _op("exp", _op("neg", _mul(x, x)))))),
    "floor": _zero,   # piecewise constant: 0, also at the steps (as in PyTorch)
    "ceil": _zero, "round": _zero, "trunc": _zero,
    "tan": _unary(lambda n, x, g: _mul(g, _op("add", _scalar(1.0, n), _mul(n, n)))),
    "reciprocal": _unary(lambda n, x, g: _op("neg", _mul(g, _mul(n, n)))),
    "rsqrt": _unary(lambda n, x, g: _mul(g, _mul(_scalar(-0.5, n), _mul(n, _mul(n, n))))),
    "square": _unary(lambda n, x, g: _mul(g, _mul(_scalar(2.0, x), x))),
    "mod": _quotient(exact=True), "fmod": _quotient(exact=False),
    "isnan": _zero, "isinf": _zero, "isfinite": _zero, "logical_not": _zero,
    "logical_and": _zero, "logical_or": _zero, "logical_xor": _zero,


    # sliding windows (h-conv)
    "conv": _conv,
    "conv_input_grad": _conv_input_grad,
    "conv_weight_grad": _conv_weight_grad,
    "max_pool": _max_pool,
    "max_pool_grad": _max_pool_grad,
}
