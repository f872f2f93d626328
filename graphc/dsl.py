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
def cumsum(x, axis=None) -> Node:
    """Running sums along `axis` (of the flattened x for None), as np.cumsum; bools count
    as int64."""
    x = lift(x)
    return _scan(cast(x, "int64") if x.dtype == "bool" else x, axis, add, 0)


@_nameable
def cumprod(x, axis=None) -> Node:
    """Running products along `axis`, as np.cumprod (its gradient: zeros included)."""
    x = lift(x)
    return _scan(cast(x, "int64") if x.dtype == "bool" else x, axis, mul, 1)


@_nameable
def logcumsumexp(x, axis=None) -> Node:
    """log(cumsum(exp(x))) along `axis` without overflow, as torch.logcumsumexp."""
    return _scan(lift(x), axis, _logaddexp, -np.inf)


def _logaddexp(a: Node, b: Node) -> Node:
    """log(e^a + e^b) = max + log1p(e^-|a - b|); where the max is +-inf, the max itself
    (a - b is nan there: `where` keeps it out of the value and of the gradient)."""
    top = maximum(a, b)
    infinite = isinf(top)
    gap = where(infinite, 0.0, a - b)
    return where(infinite, top, top + log1p(exp(-abs(gap))))


def _scan(x: Node, axis, combine, fill) -> Node:
    """An inclusive scan along `axis` in ceil(log2 n) steps (Hillis and Steele): y_i =
    combine(y_i, y_(i-s)) for s = 1, 2, 4, ..., with combine's identity `fill` before the
    start. Only adds, slices and concats: no 0 * inf, so NaN and inf go as in a loop."""
    if axis is None:
        x, axis = nodes.reshape(x, (-1,)), 0
    axis = int(axis) + x.ndim if int(axis) < 0 else int(axis)
    if not 0 <= axis < x.ndim or not isinstance(x.shape[axis], int):
        raise shape_error(f"scan: axis {axis} of {x.type} must be an axis of fixed size")
    n, step = x.shape[axis], 1
    while step < n:
        head = broadcast_to(const(fill, x.dtype), x.shape[:axis] + (step,) + x.shape[axis + 1:])
        kept = nodes.getitem(x, (slice(None),) * axis + (slice(0, n - step),))
        x = combine(x, concat([head, kept], axis))
        step *= 2
    return x


@_nameable
def stack(xs, axis=0) -> Node:
    """The values, all of one shape, along a new axis (torch.stack, np.stack)."""
    parts = [lift(x) for x in xs]
    if not parts:
        raise shape_error("stack: needs at least one value")
    axis = int(axis) + parts[0].ndim + 1 if int(axis) < 0 else int(axis)
    if builtins.any(p.shape != parts[0].shape for p in parts):   # (dsl's any is the op)
        raise shape_error(f"stack: shapes {' and '.join(str(p.type) for p in parts)} differ")
    return concat([nodes.expand_dims(p, axis) for p in parts], axis)


@_nameable
def flip(x, axis=None) -> Node:
    """x with the order of its elements reversed along `axis` (an int, a tuple, or None:
    every axis), as np.flip and torch.flip: a slice with step -1 a flipped axis, so a view
    (index arithmetic in a kernel) with a view's gradient. A symbolic axis is refused by
    the slice, naming it."""
    x = lift(x)
    axes = range(x.ndim) if axis is None else (axis,) if isinstance(axis, int) else axis
    flipped = set()
    for a in axes:
        if not isinstance(a, (int, np.integer)) or not -x.ndim <= a < x.ndim:
            raise shape_error(f"flip: axis {a!r} is not an axis of {x.type}")
        flipped.add(int(a) % x.ndim)
    return getitem(x, tuple(slice(None, None, -1) if a in flipped else slice(None)
                            for a in range(x.ndim)))


@_nameable
def einsum(subscripts: str, *operands) -> Node:
    """np.einsum / torch.einsum for explicit or implicit output subscripts, built of sums,
    transposes, reshapes and matmuls when the graph is built: an index only one operand
    has and the output lacks is summed first; two operands are one (batched) matmul.
    More than two go pairwise, left to right. An index repeated within one operand (a
    diagonal) and "..." are refused by name."""
    inputs, output = _einsum_subscripts(subscripts, len(operands))
    xs = [lift(x) for x in operands]
    for letters, x in zip(inputs, xs):
        if len(letters) != x.ndim:
            raise shape_error(f"einsum: subscripts {letters!r} for an operand of {x.type}")
    value, letters = xs[0], inputs[0]
    for k in range(1, len(xs)):
        later = set(output).union(*inputs[k + 1:])
        value, letters = _einsum_pair(value, letters, xs[k], inputs[k], later)
    value, letters = _sum_letters(value, letters, set(output))
    return nodes.transpose(value, tuple(letters.index(c) for c in output)) if output else value


def _einsum_subscripts(subscripts: str, count: int):
    spec = subscripts.replace(" ", "")
    left, arrow, output = spec.partition("->")
    inputs = left.split(",")
    if "." in spec or not builtins.all(c.isalpha() for c in "".join(inputs) + output):
        raise shape_error(f"einsum: {subscripts!r}: only letters, commas and '->' ('...' is "
                          "not supported)")
    if len(inputs) != count:
        raise shape_error(f"einsum: {subscripts!r} names {len(inputs)} operands, got {count}")
    for letters in inputs:
        if len(set(letters)) != len(letters):
            raise shape_error(f"einsum: {letters!r} repeats an index (a diagonal or trace is "
                              "not supported)")
    if not arrow:   # implicit: the indices seen once, in alphabetical order (NumPy's rule)
        counts = "".join(inputs)
        output = "".join(sorted(c for c in set(counts) if counts.count(c) == 1))
    if len(set(output)) != len(output) or not set(output) <= set("".join(inputs)):
        raise shape_error(f"einsum: output {output!r} repeats an index or names one no "
                          "operand has")
    return inputs, output


def _sum_letters(x: Node, letters: str, keep: set):
    """x summed over the indices not in `keep`."""
    axes = tuple(k for k, c in enumerate(letters) if c not in keep)
    if not axes:
        return x, letters
    return nodes.reduction("sum", x, axes), "".join(c for c in letters if c in keep)


def _einsum_pair(a: Node, la: str, b: Node, lb: str, later: set):
    """a (indices la) times b (lb), summed over the shared indices no later use needs:
    one matmul of (batch..., free of a, shared) by (batch..., shared, free of b)."""
    a, la = _sum_letters(a, la, later | set(lb))
    b, lb = _sum_letters(b, lb, later | set(la))
    batch = [c for c in la if c in lb and c in later]
    shared = [c for c in la if c in lb and c not in later]
    free_a = [c for c in la if c not in lb]
    free_b = [c for c in lb if c not in la]
    for c in batch + shared:
        if a.shape[la.index(c)] != b.shape[lb.index(c)]:
            raise shape_error(f"einsum: index {c!r} is {a.shape[la.index(c)]} in {a.type} and "
                              f"{b.shape[lb.index(c)]} in {b.type}")
    size = {**dict(zip(la, a.shape)), **dict(zip(lb, b.shape))}
    a = _grouped(a, la, batch, free_a, shared)
    b = _grouped(b, lb, batch, shared, free_b)
    product = nodes.matmul(a, b)
    letters = batch + free_a + free_b
    return nodes.reshape(product, tuple(size[c] for c in letters)), "".join(letters)


def _grouped(x: Node, letters: str, batch: list, rows: list, cols: list) -> Node:
    """x with its axes in the order batch, rows, cols, the rows and the cols each merged
    into one axis (of size 1 when there are none): a matmul operand."""
    x = nodes.transpose(x, tuple(letters.index(c) for c in batch + rows + cols))
    sizes = dict(zip(batch + rows + cols, x.shape))
    return nodes.reshape(x, tuple(sizes[c] for c in batch) + (
        _merged([sizes[c] for c in rows]), _merged([sizes[c] for c in cols])))


def _merged(dims: list):
    if len(dims) == 1:
        return dims[0]
    if not builtins.all(isinstance(d, int) for d in dims):
        raise shape_error(f"einsum: cannot merge the symbolic dims {dims} into one axis")
    return int(np.prod(dims, dtype=np.int64))


@_nameable
def size(x, axis=None, dtype="float32") -> Node:
    """The number of elements along `axis` as a scalar; works for symbolic dims."""
    return nodes.size(lift(x), axis, dtype)


@_nameable
def mean(x, axis=None, keepdims=False) -> Node:
    return nodes.mean(lift(x), axis, keepdims)


# --- collectives ------------------------------------------------------------------------

@_nameable
def all_reduce(x, op="sum") -> Node:
    """x combined over the workers of a data-parallel run (graphc/parallel.py), every
    worker getting the result: op="sum" adds the workers' values, op="mean" averages
    them. In one process (no process group) it is x itself."""
    return apply("all_reduce", lift(x), op=op)


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
        elif len(pad_width) == 2 and builtins.all(map(is_width, pad_width)):
            pairs = [tuple(pad_width)] * x.ndim
        else:
            pairs = [tuple(p) for p in pad_width]
            pairs = pairs * x.ndim if len(pairs) == 1 else pairs
    except TypeError:
        pairs = None
    if pairs is None or len(pairs) != x.ndim or not builtins.all(
            len(p) == 2 and builtins.all(map(is_width, p)) for p in pairs):
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
    if len(values) != nd or not builtins.all(isinstance(v, (int, np.integer)) for v in values):
        raise shape_error(f"{op}: {what} must be an int or {nd} ints, got {value!r}")
    return tuple(int(v) for v in values)


def _padding(padding, nd: int, kernel: tuple, dilation: tuple, stride: tuple, op: str):
    """Padding as the op's flat (before, after) pairs, from an int, one int per axis,
    one (before, after) pair per axis, "valid" (none) or "same" (the output keeps the
    input's size; the odd one of a split goes after, as torch's)."""
    if padding == "valid":
        return (0,) * (2 * nd)
    if padding == "same":
        if builtins.any(s != 1 for s in stride):
            raise shape_error(f"{op}: padding='same' needs stride 1, got stride {stride}")
        total = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple(v for t in total for v in (t // 2, t - t // 2))
    if isinstance(padding, str):
        raise shape_error(f"{op}: padding must be an int, ints, pairs, 'same' or 'valid', "
                          f"got {padding!r}")
    if not isinstance(padding, (int, np.integer)) and builtins.all(
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
