"""The Python DSL: sources (input, param, const), op functions, and node operators.

Every op function checks its operands through the op table's type rule, so a mistake
is reported where the user made it: the error names the op, the operands' shapes and
the model's file:line. Every op function takes `name=`, a label for the node it returns
(its name in the text IR and in pictures).
"""

from __future__ import annotations

import builtins
import functools

import numpy as np

from graphc import ops
from graphc.errors import DtypeError, ShapeError
from graphc.ir import Node, user_location
from graphc.types import (
    TensorType, canonical_dtype, canonical_shape, format_shape, host_data, is_float, numpy_dtype)


# --- sources ---------------------------------------------------------------------------

def input(name: str, shape, dtype="float32") -> Node:
    """A value fed at each call, by `name`. Dims may be ints, names ("batch") or None."""
    _check_name(name)
    return Node("input", (), {}, TensorType(canonical_shape(shape), canonical_dtype(dtype)),
                name=name)


def param(name: str, value, dtype=None) -> Node:
    """A persistent value (a weight); float32 unless dtype= says. Training updates .value
    in place; assigning `.value = v` later checks v and copies it (see Node.value)."""
    _check_name(name)
    # Weights written as ints ([[2, -1], [4, 5]]) are still weights: float32 by default.
    dtype = canonical_dtype(dtype) if dtype else "float32"
    array = _to_array(value, numpy_dtype(dtype), f"param {name!r}")  # private, writable
    return Node("param", (), {}, TensorType(array.shape, dtype), name=name, value=array)


def const(value, dtype=None) -> Node:
    """An array embedded in the graph; float32 unless dtype= says (or value is int/bool)."""
    given = _to_array(value, None, "const")
    dtype = canonical_dtype(dtype) if dtype else (
        "float32" if given.dtype.kind in "fc" else canonical_dtype(given.dtype))
    array = np.array(given, dtype=numpy_dtype(dtype))
    if given.dtype.kind in "iu" and array.dtype.kind == "i" and (array != given).any():
        raise DtypeError(f"const: integers from {given.min()} to {given.max()} do not fit in "
                         f"{dtype}\n  at {user_location()}")
    array.flags.writeable = False
    return Node("const", (), {}, TensorType(array.shape, dtype), value=array)


def _to_array(value, dtype, what: str) -> np.ndarray:
    """A copy of `value` as an array; a value that is not numeric data says so plainly."""
    try:
        return np.array(host_data(value), dtype=dtype)
    except (ValueError, TypeError) as e:  # ragged lists, strings, None ...
        raise DtypeError(f"{what}: the value is not a numeric array: {e}") from None


def _check_name(name):
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a name must be an identifier, got {name!r}")


def _nameable(fn):
    """fn(..., name=None): the node fn returns is labelled `name` (fn makes a new node)."""
    @functools.wraps(fn)
    def with_name(*args, name=None, **kwargs):
        node = fn(*args, **kwargs)
        if name is not None:
            _check_name(name)
            node.name = name
        return node
    return with_name


# --- applying an op --------------------------------------------------------------------

def _describe(node: Node) -> str:
    label = node.name or node.op
    return f"{label} : {node.type}" + (f" (from {node.loc})" if node.loc else "")


def user_error(error_type, message: str, operands=()):
    """An error the user made: the message, each (label, node) operand it names (its name,
    type and the line that made it), and the user's line."""
    where = user_location()
    lines = [message] + [f"  {label}: {_describe(node)}" for label, node in operands]
    lines.append(f"  at {where}" if where else "")
    return error_type("\n".join(line for line in lines if line))


def apply(op: str, *inputs: Node, tags=frozenset(), **attrs) -> Node:
    """Make a node of `op`, its type inferred; a bad operand raises at the user's line."""
    try:
        type = ops.infer_type(op, [i.type for i in inputs], attrs)
    except (ShapeError, DtypeError) as e:
        operands = [(f"operand {k}", i) for k, i in enumerate(inputs)]
        raise user_error(builtins.type(e), str(e), operands) from None
    return Node(op, inputs, attrs, type, tags=tags)


def _shape_error(message: str) -> ShapeError:
    """A shape mistake the DSL finds itself (no op's type rule did): add the user's line."""
    return user_error(ShapeError, message)


def lift(value, like: Node | None = None) -> Node:
    """A node for `value`: nodes pass through; numbers and arrays become consts whose
    dtype follows `like` (a float tensor keeps its precision beside Python numbers)."""
    if isinstance(value, Node):
        return value
    array = np.asarray(value)
    if like is not None and is_float(like.dtype) and array.dtype.kind in "biuf":
        return const(array, like.dtype)
    if like is not None and array.dtype.kind in "iu" and like.dtype in ("int32", "int64"):
        return const(array, like.dtype)
    return const(array)


def _operands(a, b):
    if not isinstance(a, Node):
        b = lift(b)
        return lift(a, b), b
    return a, lift(b, a)


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
    return apply("cast", lift(x), dtype=canonical_dtype(dtype))


@_nameable
def where(cond, a, b) -> Node:
    """Elementwise choice: a where cond is true, else b."""
    cond = lift(cond)
    a, b = _operands(a, b)
    return apply("where", cond, a, b)


# --- reductions ------------------------------------------------------------------------

def _axes(x: Node, axis) -> tuple:
    if axis is None:
        return tuple(range(x.ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    return tuple(sorted(int(a) + x.ndim if a < 0 else int(a) for a in axes))


@_nameable
def sum(x, axis=None, keepdims=False) -> Node:
    x = lift(x)
    return apply("sum", x, axes=_axes(x, axis), keepdims=bool(keepdims))


@_nameable
def max(x, axis=None, keepdims=False) -> Node:
    x = lift(x)
    return apply("max", x, axes=_axes(x, axis), keepdims=bool(keepdims))


@_nameable
def size(x, axis=None, dtype="float32") -> Node:
    """The number of elements along `axis` as a scalar; works for symbolic dims."""
    x = lift(x)
    return apply("size", x, axes=_axes(x, axis), dtype=canonical_dtype(dtype))


@_nameable
def mean(x, axis=None, keepdims=False) -> Node:
    x = lift(x)
    if not is_float(x.dtype):  # the mean of flags or counts is a fraction (accuracy)
        x = cast(x, "float32")
    return sum(x, axis, keepdims) / size(x, axis, x.dtype)


# --- layout ----------------------------------------------------------------------------

@_nameable
def reshape(x, shape) -> Node:
    """Reshape; one -1 stands for what is left (fixed dims only, or one symbol)."""
    x = lift(x)
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    shape = tuple(int(d) if isinstance(d, np.integer) else d for d in shape)  # np.int64(3)
    if shape.count(-1) > 1:
        raise _shape_error(f"reshape: at most one -1 in {shape}")
    if -1 in shape:
        shape = _fill_minus_one(x, shape)
    return apply("reshape", x, shape=canonical_shape(shape))


def _fill_minus_one(x, shape):
    fixed, syms = ops._split_size(x.shape)
    known_fixed, known_syms = ops._split_size([d for d in shape if d != -1])
    rest = list(syms)
    for s in known_syms:
        if s in rest:
            rest.remove(s)
    if known_fixed == 0 or fixed % known_fixed or len(rest) > 1 or (rest and fixed != known_fixed):
        raise _shape_error(f"reshape: cannot infer -1 reshaping {format_shape(x.shape)} to {shape}")
    fill = rest[0] if rest else fixed // known_fixed
    return tuple(fill if d == -1 else d for d in shape)


@_nameable
def transpose(x, perm=None) -> Node:
    x = lift(x)
    perm = tuple(reversed(range(x.ndim))) if perm is None else tuple(int(p) for p in perm)
    return apply("transpose", x, perm=perm)


@_nameable
def broadcast_to(x, shape) -> Node:
    return apply("broadcast_to", lift(x), shape=canonical_shape(shape))


@_nameable
def expand_dims(x, axis: int) -> Node:
    x = lift(x)
    axis = int(axis)  # a Python int: attributes print as text and read back
    return apply("expand_dims", x, axis=axis + x.ndim + 1 if axis < 0 else axis)


@_nameable
def squeeze(x, axis=None) -> Node:
    x = lift(x)
    axes = tuple(i for i, d in enumerate(x.shape) if d == 1) if axis is None else _axes(x, axis)
    return apply("squeeze", x, axes=axes)


@_nameable
def concat(xs, axis=0) -> Node:
    nodes = [lift(x) for x in xs]
    if not nodes:
        raise _shape_error("concat: needs at least one value")
    axis = int(axis)
    return apply("concat", *nodes, axis=axis + nodes[0].ndim if axis < 0 else axis)


@_nameable
def getitem(x: Node, index) -> Node:
    """x[i], x[a:b:c], x[:, 1]: ints drop their axis, slices keep it (positive steps)."""
    index = index if isinstance(index, tuple) else (index,)
    if len(index) > x.ndim:
        raise _shape_error(f"index {index} has more entries than {format_shape(x.shape)} has axes")
    ranges, drop = [], []
    for axis, item in enumerate(index + (slice(None),) * (x.ndim - len(index))):
        if isinstance(item, (int, np.integer)):
            dim = x.shape[axis]
            i = int(item) + dim if item < 0 and isinstance(dim, int) else int(item)
            if isinstance(dim, int) and not 0 <= i < dim:
                raise _shape_error(f"index {item} is out of range for axis {axis} of shape "
                                   f"{format_shape(x.shape)}")
            ranges.append((i, i + 1, 1))
            drop.append(axis)
        elif isinstance(item, slice):
            step = 1 if item.step is None else item.step
            start = 0 if item.start is None else item.start
            if isinstance(x.shape[axis], int):
                start, stop, step = slice(item.start, item.stop, step).indices(x.shape[axis])
                full = (start, stop, step) == (0, x.shape[axis], 1)
                ranges.append((0, None, 1) if full else (start, stop, step))
            else:
                ranges.append((start, item.stop, step))
        else:
            raise _shape_error(f"index {item!r}: graphc takes ints and slices")
    out = apply("slice", x, index=tuple(ranges))
    return apply("squeeze", out, axes=tuple(drop)) if drop else out


# --- matmul and friends ----------------------------------------------------------------

@_nameable
def matmul(a, b) -> Node:
    """a @ b with NumPy's rules: batched over leading dims; 1-D operands are vectors."""
    a, b = _operands(a, b)
    if a.ndim == 1 and b.ndim == 1:  # through matmul, so a length mismatch names matmul
        return squeeze(matmul(expand_dims(a, 0), expand_dims(b, -1)), (-2, -1))
    if a.ndim == 1:
        return squeeze(matmul(expand_dims(a, 0), b), -2)
    if b.ndim == 1:
        return squeeze(matmul(a, expand_dims(b, -1)), -1)
    return apply("matmul", a, b)


@_nameable
def one_hot(labels, depth: int, dtype="float32") -> Node:
    depth = int(depth) if isinstance(depth, (int, np.integer)) else depth  # else: an error
    return apply("one_hot", lift(labels), depth=depth, dtype=canonical_dtype(dtype))


# --- node operators and methods --------------------------------------------------------

def _swap(f):
    return lambda self, other: f(other, self)


def _reshape_method(self, *shape):
    """x.reshape(2, 3) or x.reshape((2, 3)), as in NumPy."""
    return reshape(self, shape[0] if len(shape) == 1 else shape)


def _transpose_method(self, *perm):
    """x.transpose(), x.transpose(1, 0) or x.transpose((1, 0)), as in NumPy."""
    return transpose(self, perm[0] if len(perm) == 1 else (perm or None))


_NODE_METHODS = {
    "__add__": add, "__radd__": _swap(add), "__sub__": sub, "__rsub__": _swap(sub),
    "__mul__": mul, "__rmul__": _swap(mul), "__truediv__": div, "__rtruediv__": _swap(div),
    "__pow__": pow, "__rpow__": _swap(pow), "__matmul__": matmul, "__rmatmul__": _swap(matmul),
    "__neg__": neg, "__abs__": abs, "__gt__": gt, "__ge__": ge, "__lt__": lt, "__le__": le,
    # Elementwise, as in NumPy and torch (x == 0 is a mask); Node keeps identity hashing,
    # so nodes stay dict keys. Compare nodes themselves with `is`.
    "__eq__": eq, "__ne__": ne,
    "__getitem__": getitem, "sum": sum, "mean": mean, "max": max, "reshape": _reshape_method,
    "transpose": _transpose_method, "astype": cast, "T": property(transpose),
    "__array_ufunc__": None,  # np.float64(2) * node must call node.__rmul__, not NumPy
}
for _name, _fn in _NODE_METHODS.items():
    setattr(Node, _name, _fn)
