"""The Python DSL: sources (input, param, const) and the ops as functions.

Every op function checks its operands through the op table's type rule, so a mistake
is reported where the user made it: the error names the op, the operands' shapes and
the model's file:line. Every op function takes `name=`, a label for the node it returns
(its name in the text IR and in pictures). Nodes are built in graphc/node.py, which also
defines a node's operators (x + y, x @ W, x[1:], x.sum()) on the class; the functions
here are the same ops, for values that need not be nodes yet (gc.exp(2.0)).
"""

from __future__ import annotations

import functools

import numpy as np

from graphc import node as nodes
from graphc.node import (  # noqa: F401  (the DSL's own names for the node builders)
    Node, _operands, _to_array, apply, check_name, const, labelled, lift, shape_error,
    user_error)
from graphc.errors import UsageError
from graphc.types import TensorType, canonical_dtype, canonical_shape, numpy_dtype

_shape_error = shape_error


# --- sources ---------------------------------------------------------------------------

def input(name: str, shape, dtype="float32") -> Node:
    """A value fed at each call, by `name`. Dims may be ints, names ("batch") or None."""
    check_name(name)
    return Node("input", (), {}, TensorType(canonical_shape(shape), canonical_dtype(dtype)),
                name=name)


def param(name: str, value, dtype=None) -> Node:
    """A persistent value (a weight); float32 unless dtype= says. Training updates .value
    in place; assigning `.value = v` later checks v and copies it (see Node.value)."""
    check_name(name)
    # Weights written as ints ([[2, -1], [4, 5]]) are still weights: float32 by default.
    dtype = canonical_dtype(dtype) if dtype else "float32"
    array = _to_array(value, numpy_dtype(dtype), f"param {name!r}")  # private, writable
    return Node("param", (), {}, TensorType(array.shape, dtype), name=name, value=array)


def _nameable(fn):
    """fn(..., name=None): the node fn returns is labelled `name` (fn makes a new node)."""
    @functools.wraps(fn)
    def with_name(*args, name=None, **kwargs):
        return labelled(fn(*args, **kwargs), name)
    return with_name


# --- elementwise -------------------------------------------------------------------------

def _unary(op):
    @_nameable
    def fn(x):
        return apply(op, lift(x))
    fn.__name__ = op
    fn.__doc__ = f"Elementwise {op}."
    return fn


def _binary(op):
    @_nameable
    def fn(a, b):
        return apply(op, *_operands(a, b))
    fn.__name__ = op
    fn.__doc__ = f"Elementwise {op}, with NumPy broadcasting."
    return fn


neg, exp, log, log1p, sqrt, abs, sign, tanh, sigmoid, relu, step, stop_gradient = map(
    _unary, ["neg", "exp", "log", "log1p", "sqrt", "abs", "sign", "tanh", "sigmoid", "relu",
             "step", "stop_gradient"])
# issue 14's elementwise ops (h-elem)
(sin, cos, tan, erf, floor, ceil, round, trunc, reciprocal, rsqrt, square, isnan, isinf,
 isfinite, logical_not) = map(_unary, [
    "sin", "cos", "tan", "erf", "floor", "ceil", "round", "trunc", "reciprocal", "rsqrt",
    "square", "isnan", "isinf", "isfinite", "logical_not"])
mod, fmod, logical_and, logical_or, logical_xor = map(
    _binary, ["mod", "fmod", "logical_and", "logical_or", "logical_xor"])
add, sub, mul, div, pow, maximum, minimum, gt, ge, lt, le, eq, ne = map(
    _binary, ["add", "sub", "mul", "div", "pow", "maximum", "minimum", "gt", "ge", "lt",
              "le", "eq", "ne"])


@_nameable
def cast(x, dtype) -> Node:
    return lift(x).astype(dtype)


@_nameable
def where(cond, a, b) -> Node:
    """Elementwise choice: a where cond is true, else b."""
    cond = lift(cond)
    a, b = _operands(a, b)
    return apply("where", cond, a, b)


@_nameable
def clip(x, min=None, max=None) -> Node:
    """x limited to [min, max] (numbers or nodes, broadcast; None: no bound), as
    torch.clamp: min(max(x, min), max), so max wins where min > max; nan in x or in a
    bound gives nan; the gradient goes to x where min <= x <= max, else to the bound
    that was taken (no halves at ties, unlike maximum and minimum), and nowhere where x
    is nan."""
    if min is None and max is None:
        raise user_error(UsageError, "clip: give min=, max= or both")
    x = lift(x)
    if x.dtype.startswith("float"):
        x = apply("where", isnan(x), stop_gradient(x), x)
    if min is not None:
        x = _bounded(x, min, lt)
    if max is not None:
        x = _bounded(x, max, gt)
    return x


def _bounded(x: Node, bound, beyond) -> Node:
    """where(x beyond bound, bound, x), and the bound where it is nan."""
    x, bound = _operands(x, bound)
    taken = beyond(x, bound)
    if bound.dtype.startswith("float"):
        taken = logical_or(taken, isnan(bound))
    return apply("where", taken, bound, x)


# --- reductions ------------------------------------------------------------------------

@_nameable
def sum(x, axis=None, keepdims=False) -> Node:
    return nodes.reduction("sum", lift(x), axis, keepdims)


@_nameable
def max(x, axis=None, keepdims=False) -> Node:
    return nodes.reduction("max", lift(x), axis, keepdims)


@_nameable
def min(x, axis=None, keepdims=False) -> Node:
    return nodes.reduction("min", lift(x), axis, keepdims)


@_nameable
def prod(x, axis=None, keepdims=False) -> Node:
    """The product over `axis` (1 over an empty one); of bools, an int64 count as NumPy."""
    return nodes.reduction("prod", lift(x), axis, keepdims)


# --- composites of issue 14 (h-elem): built from the ops above, differentiated as such ---

@_nameable
def any(x, axis=None, keepdims=False) -> Node:
    """Whether some element along `axis` is true (nonzero; nan is); False over an empty
    axis. A count of the true ones is > 0 (counted in float32: exact as to > 0)."""
    truth = cast(cast(lift(x), "bool"), "float32")
    return gt(nodes.reduction("sum", truth, axis, keepdims), 0.0)


@_nameable
def all(x, axis=None, keepdims=False) -> Node:
    """Whether every element along `axis` is true; True over an empty axis."""
    return logical_not(any(logical_not(lift(x)), axis, keepdims))


@_nameable
def argmax(x, axis=None, keepdims=False) -> Node:
    """The index of the first maximum along `axis` (of the flattened x for None), int64, as
    NumPy: nan counts as the maximum (the first nan's index)."""
    return _first_index("max", lift(x), axis, keepdims)


@_nameable
def argmin(x, axis=None, keepdims=False) -> Node:
    """The index of the first minimum; nan counts as the minimum, as in NumPy."""
    return _first_index("min", lift(x), axis, keepdims)


def _first_index(op: str, x: Node, axis, keepdims: bool) -> Node:
    """min over `axis` of where(x is the extremum, its index, n): the first such index."""
    shape = x.shape
    if axis is None:
        x, axis = nodes.reshape(x, (-1,)), 0
    axis = int(axis) + x.ndim if int(axis) < 0 else int(axis)
    if not 0 <= axis < x.ndim or not isinstance(x.shape[axis], int) or x.shape[axis] == 0:
        raise shape_error(f"arg{op}: axis {axis} of {x.type} must be an axis of fixed size >= 1")
    n = x.shape[axis]
    extremum = nodes.reduction(op, x, (axis,), True)
    hit = eq(x, extremum)
    if x.dtype.startswith("float"):     # nan is the extremum wherever there is one
        hit = logical_or(hit, isnan(x))
    index = const(np.arange(n, dtype=np.float64).reshape((n,) + (1,) * (x.ndim - axis - 1)))
    first = cast(nodes.reduction("min", where(hit, index, float(n)), (axis,), keepdims), "int64")
    if keepdims and len(shape) != first.ndim:   # axis None: a 1 for each axis of x
        first = nodes.reshape(first, (1,) * len(shape))
    return first


@_nameable
def var(x, axis=None, correction=1, keepdims=False) -> Node:
    """The variance along `axis` as torch.var: the sum of squared deviations from the mean
    over max(0, n - correction) (nan or inf where that is 0)."""
    x = lift(x)
    deviation = x - nodes.mean(x, axis, True)
    total = nodes.reduction("sum", deviation * deviation, axis, keepdims)
    count = nodes.size(x, axis, x.dtype)
    return total / maximum(count - float(correction), 0.0)


@_nameable
def std(x, axis=None, correction=1, keepdims=False) -> Node:
    """The standard deviation: sqrt(var(x, axis, correction, keepdims)), as torch.std,
    whose gradient is 0 where the deviation is (not 0 / 0: sqrt is not read there)."""
    variance = var(x, axis, correction, keepdims)
    flat = eq(variance, 0.0)
    return where(flat, 0.0, sqrt(where(flat, 1.0, variance)))


@_nameable
def size(x, axis=None, dtype="float32") -> Node:
    """The number of elements along `axis` as a scalar; works for symbolic dims."""
    return nodes.size(lift(x), axis, dtype)


@_nameable
def mean(x, axis=None, keepdims=False) -> Node:
    return nodes.mean(lift(x), axis, keepdims)


# --- layout ----------------------------------------------------------------------------

@_nameable
def reshape(x, shape) -> Node:
    """Reshape; one -1 stands for what is left (fixed dims only, or one symbol)."""
    return nodes.reshape(lift(x), shape)


@_nameable
def transpose(x, perm=None) -> Node:
    return nodes.transpose(lift(x), perm)


@_nameable
def broadcast_to(x, shape) -> Node:
    return apply("broadcast_to", lift(x), shape=canonical_shape(shape))


@_nameable
def expand_dims(x, axis: int) -> Node:
    return nodes.expand_dims(lift(x), axis)


@_nameable
def squeeze(x, axis=None) -> Node:
    return nodes.squeeze(lift(x), axis)


@_nameable
def concat(xs, axis=0) -> Node:
    parts = [lift(x) for x in xs]
    if not parts:
        raise shape_error("concat: needs at least one value")
    axis = int(axis)
    return apply("concat", *parts, axis=axis + parts[0].ndim if axis < 0 else axis)


@_nameable
def getitem(x: Node, index) -> Node:
    """x[i], x[a:b:c], x[:, 1]: ints drop their axis, slices keep it (positive steps)."""
    return nodes.getitem(x, index)


# --- matmul and friends ----------------------------------------------------------------

@_nameable
def matmul(a, b) -> Node:
    """a @ b with NumPy's rules: batched over leading dims; 1-D operands are vectors."""
    return nodes.matmul(a, b)


@_nameable
def one_hot(labels, depth: int, dtype="float32") -> Node:
    depth = int(depth) if isinstance(depth, (int, np.integer)) else depth  # else: an error
    return apply("one_hot", lift(labels), depth=depth, dtype=canonical_dtype(dtype))
