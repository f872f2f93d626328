"""The Python DSL: sources (input, param, const) and the ops as functions.

Every op function checks its operands through the op table's type rule, so a mistake
is reported where the user made it: the error names the op, the operands' shapes and
the model's file:line. Every op function takes `name=`, a label for the node it returns
(its name in the text IR and in pictures). Nodes are built in graphc/node.py, which also
defines a node's operators (x + y, x @ W, x[1:], x.sum()) on the class; the functions
here are the same ops, for values that need not be nodes yet (gc.exp(2.0)).
"""

from __future__ import annotations

import builtins
import functools

import numpy as np

from graphc import node as nodes
from graphc.node import (  # noqa: F401  (the DSL's own names for the node builders)
    Node, _operands, _to_array, apply, check_name, const, labelled, lift, shape_error,
    user_error)
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


# --- reductions ------------------------------------------------------------------------

@_nameable
def sum(x, axis=None, keepdims=False) -> Node:
    return nodes.reduction("sum", lift(x), axis, keepdims)


@_nameable
def max(x, axis=None, keepdims=False) -> Node:
    return nodes.reduction("max", lift(x), axis, keepdims)


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
    """x[i], x[a:b:c], x[None], x[..., 1], x[idx]: NumPy's indexing (see node.getitem)."""
    return nodes.getitem(x, index)


# --- indexing by data and padding (h-index) ---------------------------------------------

@_nameable
def take(x, idx, axis=None) -> Node:
    """np.take(x, idx, axis): negative indices count from the end; one outside [-n, n)
    raises a GraphcError when the function runs, on every backend."""
    return nodes.take(lift(x), idx, axis)


@_nameable
def take_along_axis(x, idx, axis: int) -> Node:
    """np.take_along_axis(x, idx, axis) (idx and x broadcast off the axis)."""
    return nodes.take_along_axis(lift(x), idx, axis)


@_nameable
def gather(x, axis: int, idx) -> Node:
    """torch.gather(x, axis, idx); negative indices count from the end, as in NumPy."""
    return nodes.gather(lift(x), axis, idx)


@_nameable
def scatter_add(base, axis: int, idx, src) -> Node:
    """torch.scatter_add(base, axis, idx, src): gather's gradient, and the other way round."""
    return nodes.scatter_add(lift(base), axis, idx, lift(src))


PAD_MODES = ("constant", "reflect", "replicate")
_PAD_ALIASES = {"edge": "replicate"}  # np.pad's name for it


@_nameable
def pad(x, pad_width, mode="constant", value=0.0) -> Node:
    """np.pad(x, pad_width, mode): pad_width an int, a (before, after) pair for every
    axis, or one pair per axis; mode constant (`value`), reflect (x[1], x[0] | x | ...,
    without the edge repeated, as np.pad and torch's 'reflect') or replicate (np.pad's
    'edge'). Built from slices, broadcasts and concat, so its gradient is theirs."""
    x = lift(x)
    mode = _PAD_ALIASES.get(mode, mode)
    if mode not in PAD_MODES:
        raise _shape_error(f"pad: mode {mode!r} is not one of {', '.join(PAD_MODES)}")
    for axis, (before, after) in enumerate(_pad_pairs(x, pad_width)):
        if before or after:
            x = _pad_axis(x, axis, before, after, mode, value)
    return x


def _pad_pairs(x: Node, pad_width) -> list:
    """np.pad's pad_width as one (before, after) pair per axis."""
    def is_width(w):
        return isinstance(w, (int, np.integer)) and not isinstance(w, bool) and w >= 0
    try:
        if is_width(pad_width):
            pairs = [(pad_width, pad_width)] * x.ndim
        elif len(pad_width) == 2 and all(map(is_width, pad_width)):
            pairs = [tuple(pad_width)] * x.ndim
        else:
            pairs = [tuple(p) for p in pad_width]
            pairs = pairs * x.ndim if len(pairs) == 1 else pairs
    except TypeError:
        pairs = None
    if pairs is None or len(pairs) != x.ndim or not all(
            len(p) == 2 and all(map(is_width, p)) for p in pairs):
        raise _shape_error(f"pad: pad_width {pad_width!r} must be an int >= 0, a (before, "
                           f"after) pair, or one pair per axis of {x.shape}")
    return [(int(b), int(a)) for b, a in pairs]


def _pad_axis(x: Node, axis: int, before: int, after: int, mode: str, value) -> Node:
    n = x.shape[axis]
    if not isinstance(n, int):
        raise _shape_error(f"pad: axis {axis} of {x.shape} is the symbolic dim {n!r}; graphc "
                           "pads fixed axes only (the result's size must be known)")
    if mode == "reflect" and builtins.max(before, after) >= n:
        raise _shape_error(f"pad: reflect padding ({before}, {after}) must be smaller than "
                           f"axis {axis} of {x.shape} (size {n}), as in torch")
    if mode != "constant" and n == 0:
        raise _shape_error(f"pad: cannot {mode}-pad the empty axis {axis} of {x.shape}")
    parts = [_pad_piece(x, axis, before, mode, value, at_start=True), x,
             _pad_piece(x, axis, after, mode, value, at_start=False)]
    return apply("concat", *[p for p in parts if p is not None], axis=axis)


def _pad_piece(x: Node, axis: int, width: int, mode: str, value, at_start: bool):
    """The `width` entries put before (at_start) or after x along `axis`."""
    if not width:
        return None
    n = x.shape[axis]
    shape = x.shape[:axis] + (width,) + x.shape[axis + 1:]
    if mode == "constant":
        return apply("broadcast_to", lift(value, x).astype(x.dtype), shape=shape)
    if mode == "replicate":
        edge = (0, 1, 1) if at_start else (n - 1, n, 1)
        return apply("broadcast_to", _axis_slice(x, axis, edge), shape=shape)
    # reflect: x[width], ..., x[1] before; x[n-2], ..., x[n-1-width] after
    stop = n - 2 - width
    picked = (width, 0, -1) if at_start else (n - 2, None if stop < 0 else stop, -1)
    return _axis_slice(x, axis, picked)


def _axis_slice(x: Node, axis: int, picked: tuple) -> Node:
    index = tuple(picked if k == axis else (0, None, 1) for k in range(x.ndim))
    return apply("slice", x, index=index)


# --- matmul and friends ----------------------------------------------------------------

@_nameable
def matmul(a, b) -> Node:
    """a @ b with NumPy's rules: batched over leading dims; 1-D operands are vectors."""
    return nodes.matmul(a, b)


@_nameable
def one_hot(labels, depth: int, dtype="float32") -> Node:
    depth = int(depth) if isinstance(depth, (int, np.integer)) else depth  # else: an error
    return apply("one_hot", lift(labels), depth=depth, dtype=canonical_dtype(dtype))


# --- sliding windows (h-conv): convolution and max pooling -------------------------------

def _per_axis(value, nd: int, what: str, op: str) -> tuple:
    """An int or one int per spatial axis, as a tuple of nd ints."""
    values = (value,) * nd if isinstance(value, (int, np.integer)) else tuple(value)
    if len(values) != nd or not all(isinstance(v, (int, np.integer)) for v in values):
        raise shape_error(f"{op}: {what} must be an int or {nd} ints, got {value!r}")
    return tuple(int(v) for v in values)


def _padding(padding, nd: int, kernel: tuple, dilation: tuple, stride: tuple, op: str):
    """Padding as the op's flat (before, after) pairs, from an int, one int per axis,
    one (before, after) pair per axis, "valid" (none) or "same" (the output keeps the
    input's size; the odd one of a split goes after, as torch's)."""
    if padding == "valid":
        return (0,) * (2 * nd)
    if padding == "same":
        if any(s != 1 for s in stride):
            raise shape_error(f"{op}: padding='same' needs stride 1, got stride {stride}")
        total = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple(v for t in total for v in (t // 2, t - t // 2))
    if isinstance(padding, str):
        raise shape_error(f"{op}: padding must be an int, ints, pairs, 'same' or 'valid', "
                          f"got {padding!r}")
    if not isinstance(padding, (int, np.integer)) and all(
            isinstance(p, (tuple, list)) for p in padding):
        pairs = [_per_axis(p, 2, "each padding pair", op) for p in padding]
        if len(pairs) != nd:
            raise shape_error(f"{op}: padding needs {nd} (before, after) pairs, got {padding!r}")
        return tuple(v for p in pairs for v in p)
    return tuple(v for p in _per_axis(padding, nd, "padding (or one (before, after) "
                                      "pair per axis, 'same', 'valid')", op) for v in (p, p))


@_nameable
def conv(x, w, stride=1, padding=0, dilation=1, groups=1) -> Node:
    """Convolution (cross-correlation, as torch's): x (N, C, *spatial), NCL or NCHW;
    w (O, C / groups, *kernel), OIHW. padding: an int, one per axis, (before, after)
    pairs, "same" or "valid". groups = C is a depthwise convolution. Add a bias as
    `out + b.reshape(O, 1, 1)` (gc.nn.conv2d does)."""
    x, w = lift(x), lift(w)
    nd = w.ndim - 2 if w.ndim >= 3 else 1
    stride = _per_axis(stride, nd, "stride", "conv")
    dilation = _per_axis(dilation, nd, "dilation", "conv")
    pad = _padding(padding, nd, w.shape[2:], dilation, stride, "conv")
    return apply("conv", x, w, stride=stride, padding=pad, dilation=dilation,
                 groups=int(groups) if isinstance(groups, (int, np.integer)) else groups)


@_nameable
def max_pool(x, kernel, stride=None, padding=0) -> Node:
    """The max of each window (stride: the kernel's by default; padding at most half the
    kernel, with -inf). Its gradient goes to each window's first max (torch's tie rule)."""
    x = lift(x)
    nd = x.ndim - 2 if x.ndim >= 3 else 1
    kernel = _per_axis(kernel, nd, "kernel", "max_pool")
    stride = kernel if stride is None else _per_axis(stride, nd, "stride", "max_pool")
    pad = _padding(padding, nd, kernel, (1,) * nd, stride, "max_pool")
    return apply("max_pool", x, kernel=kernel, stride=stride, padding=pad)
