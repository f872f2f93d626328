"""Node, the IR's one node type, and the building of nodes (the core of the DSL).

A `Node` is an op applied to input nodes, with attributes and a `TensorType`. What a
node computes (op, inputs, attrs, type, body) is immutable. A node is identified by the
object itself: it hashes by identity (dicts and sets of nodes), and code that asks
whether two nodes are the same one uses `is`, since `x == y` builds an elementwise
comparison, as in NumPy and torch. A parameter's `value` changes as training updates
it; a node's labels (name, loc, tags, scope) may be set by the passes that build it.

Nodes are built by `apply(op, *inputs, **attrs)`, which infers the result's type with
the op table's rule (graphc/ops.py) and turns a mistake into an error at the user's
line. The operators and methods of a node (x + y, x @ W, x[1:], x.sum(axis)) are
defined on the class and build their nodes here; graphc/dsl.py gives the same ops as
functions (gc.exp, gc.sum, ...), with `name=`.
"""

from __future__ import annotations

import builtins
import itertools
import os
import sys
from types import MappingProxyType

import numpy as np

from graphc import ops, scopes
from graphc.errors import DtypeError, ShapeError
from graphc.types import (
    TensorType, canonical_dtype, canonical_shape, format_shape, host_data, is_float,
    numpy_dtype, to_dtype)

_ids = itertools.count()

SOURCE_OPS = ("input", "param", "const")
_FROZEN = ("op", "inputs", "attrs", "type", "body", "id")


def _binary_methods(op):
    """The method and its reflected form for a binary op (x - 1 and 1 - x)."""
    def method(self, other):
        return apply(op, *_operands(self, other))

    def reflected(self, other):
        return apply(op, *_operands(other, self))
    method.__name__, reflected.__name__ = f"__{op}__", f"__r{op}__"
    return method, reflected


class Node:
    """An op applied to inputs. Build nodes with the DSL (graphc.dsl), not by hand."""

    __slots__ = ("op", "inputs", "attrs", "type", "body", "name", "loc", "tags", "scope",
                 "_value", "id", "__weakref__")

    def __init__(self, op: str, inputs=(), attrs=None, type: TensorType = None, name=None,
                 loc=None, tags=frozenset(), value=None, scope=None, body=None):
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = MappingProxyType(dict(attrs or {}))  # read-only: nodes are shared
        self.type = type
        # A kernel's (a fused node's) body: a Graph whose inputs, in its order, stand for
        # the operands by position (passes/fusion.py); None for every other op.
        self.body = body
        self.name = name
        self.loc = loc if loc is not None else user_location()
        self.tags = frozenset(tags)
        self.scope = scope if scope is not None else scopes.current()  # as loc: where made
        self.value = value
        self.id = next(_ids)

    def __setattr__(self, field, value):
        # What a node computes (op, inputs, attrs, type) never changes once made, so
        # graphs and passes can share nodes; name, loc, tags, scope and a param's value may.
        if field in _FROZEN and hasattr(self, "id"):
            raise AttributeError(f"a graphc node is immutable: cannot set {field!r} of "
                                 f"{self!r}; build a new node instead")
        object.__setattr__(self, field, value)

    @property
    def value(self):
        """A const's embedded array (read-only, C-contiguous); a param's current value;
        None for other ops.

        A param holds an array of its own, C-contiguous, writable and of exactly its
        type, which training updates in place. Assigning `param.value = v` checks `v`
        at once and copies it: a wrong shape raises ShapeError, data that is not numeric
        (a string, a ragged list) or a cast that would lose information (float -> int,
        int -> bool) DtypeError, each naming the param; a value of the same kind
        (float64 into a float32 param, a list of numbers) is converted. So the array
        the caller assigned (read-only, memory-mapped, strided, or simply theirs) is
        never written by a training step."""
        return self._value

    @value.setter
    def value(self, value):
        if self.op == "param":
            value = _own_param_value(self, value)
        elif self.op == "const":
            value = _contiguous_const(value)
        object.__setattr__(self, "_value", value)

    @property
    def shape(self) -> tuple:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def ndim(self) -> int:
        return self.type.ndim

    def __reduce__(self):
        # Pickled by what it is made of: its attrs are a read-only mappingproxy, which
        # does not pickle, and its id is this process's. Its inputs are pickled first, so
        # a node alone pickles its whole graph recursively (deep chains: pickle a
        # gc.Graph, which saves its nodes in order, each after its inputs, iteratively).
        return (_unpickled_node, (self.op, self.inputs, dict(self.attrs), self.type,
                                  self.name, self.loc, self.tags, self._value, self.scope,
                                  self.body))

    def attrs_key(self) -> tuple:
        """The attributes as a hashable, order-independent tuple (for CSE and lookups)."""
        return tuple(sorted(self.attrs.items()))

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"<Node {self.op}{label} : {self.type}>"

    # Identity, whatever __eq__ does: graphc.dsl makes == and != elementwise ops, and
    # nodes stay usable as dict keys and set members (a dict or set tries `is` before ==).
    # A list's `in` and .index() and a weakref.WeakKeyDictionary call == on other nodes,
    # so they raise (bool of an eq node): use a set, a dict or `any(n is x for n in xs)`.
    __hash__ = object.__hash__

    def __bool__(self):
        label = f"{self.op} {self.name!r}" if self.name else self.op
        made = f", made at {self.loc}" if self.loc else ""
        raise TypeError(
            f"a graphc node ({label} : {self.type}{made}) has no truth value: it is a "
            "symbolic value, known only when the compiled function runs. Use "
            "gc.where(cond, a, b) for a data-dependent choice; == and != on nodes are "
            "elementwise (gc.eq, gc.ne), so test whether two nodes are the same with `is`")

    # --- operators and methods: x + y, x == y, x @ W, x[1:], x.sum(axis) ----------------
    # Each builds a new node through the op table's type rule (see `apply` below); ==
    # and != are elementwise, as in NumPy and torch (x == 0 is a mask).

    __add__, __radd__ = _binary_methods("add")
    __sub__, __rsub__ = _binary_methods("sub")
    __mul__, __rmul__ = _binary_methods("mul")
    __truediv__, __rtruediv__ = _binary_methods("div")
    __pow__, __rpow__ = _binary_methods("pow")
    __gt__, _ = _binary_methods("gt")
    __ge__, _ = _binary_methods("ge")
    __lt__, _ = _binary_methods("lt")
    __le__, _ = _binary_methods("le")
    __eq__, _ = _binary_methods("eq")
    __ne__, _ = _binary_methods("ne")
    del _
    __array_ufunc__ = None  # np.float64(2) * node must call node.__rmul__, not NumPy

    def __neg__(self):
        return apply("neg", self)

    def __abs__(self):
        return apply("abs", self)

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(other, self)

    def __getitem__(self, index):
        return getitem(self, index)

    def sum(self, axis=None, keepdims=False, name=None):
        return labelled(reduction("sum", self, axis, keepdims), name)

    def max(self, axis=None, keepdims=False, name=None):
        return labelled(reduction("max", self, axis, keepdims), name)

    def min(self, axis=None, keepdims=False, name=None):
        return labelled(reduction("min", self, axis, keepdims), name)

    def prod(self, axis=None, keepdims=False, name=None):
        return labelled(reduction("prod", self, axis, keepdims), name)

    def mean(self, axis=None, keepdims=False, name=None):
        return labelled(mean(self, axis, keepdims), name)

    def reshape(self, *shape, name=None):
        """x.reshape(2, 3) or x.reshape((2, 3)), as in NumPy."""
        return labelled(reshape(self, shape[0] if len(shape) == 1 else shape), name)

    def transpose(self, *perm, name=None):
        """x.transpose(), x.transpose(1, 0) or x.transpose((1, 0)), as in NumPy."""
        return labelled(transpose(self, perm[0] if len(perm) == 1 else (perm or None)), name)

    @property
    def T(self):
        return transpose(self)

    def astype(self, dtype, name=None):
        return labelled(apply("cast", self, dtype=canonical_dtype(dtype)), name)


def _unpickled_node(op, inputs, attrs, type, name, loc, tags, value, scope, body) -> Node:
    return Node(op, inputs, attrs, type, name=name, loc=loc, tags=tags, value=value,
                scope=scope, body=body)


def _own_param_value(param: Node, value) -> np.ndarray:
    what = f"param {param.name!r}"
    array = to_dtype(value, param.dtype, what, copy=True)
    if array.shape != param.type.concrete_shape():
        raise ShapeError(f"{what} has shape {format_shape(param.shape)}; a value of shape "
                         f"{format_shape(array.shape)} cannot be assigned to it (param made "
                         f"at {param.loc})")
    return array


def _contiguous_const(value):
    # Backends hand a const's memory to kernels as it is (the numpy backend's C kernels
    # by address), so every const is C-contiguous, whichever pass or user array made it.
    if isinstance(value, np.ndarray) and not value.flags.c_contiguous:
        value = np.array(value, order="C")
        value.flags.writeable = False
    return value


# --- where the user created a node --------------------------------------------------

# graphc's own code: the package, and passes/ and backends/ beside it in a source checkout
# (installed, they live inside the package directory).
_HERE = os.path.dirname(os.path.abspath(__file__))
_OWN_DIRS = tuple(os.path.normpath(os.path.join(_HERE, d)) + os.sep
                  for d in (".", "../passes", "../backends"))


def _is_own_file(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_OWN_DIRS)


def user_location() -> str | None:
    """file:line of the innermost frame outside graphc: the model line that made a node."""
    frame = sys._getframe(1)
    while frame is not None and _is_own_file(frame.f_code.co_filename):
        frame = frame.f_back
    if frame is None:
        return None
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"


# --- building nodes -----------------------------------------------------------------------

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


def check_name(name):
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a name must be an identifier, got {name!r}")


def labelled(node: Node, name: str | None) -> Node:
    """`node`, named `name` when one is given (a node just made: its label is free)."""
    if name is not None:
        check_name(name)
        node.name = name
    return node


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


def shape_error(message: str) -> ShapeError:
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



# --- the ops the methods stand for (graphc.dsl's functions call these too) ----------------

def _axes(x: Node, axis) -> tuple:
    if axis is None:
        return tuple(range(x.ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    return tuple(sorted(int(a) + x.ndim if a < 0 else int(a) for a in axes))



def reduction(op: str, x: Node, axis=None, keepdims=False) -> Node:
    """sum or max over `axis` (None: all; negative counts from the end)."""
    return apply(op, x, axes=_axes(x, axis), keepdims=bool(keepdims))


def size(x: Node, axis=None, dtype="float32") -> Node:
    return apply("size", x, axes=_axes(x, axis), dtype=canonical_dtype(dtype))


def mean(x: Node, axis=None, keepdims=False) -> Node:
    if not is_float(x.dtype):  # the mean of flags or counts is a fraction (accuracy)
        x = apply("cast", x, dtype="float32")
    return reduction("sum", x, axis, keepdims) / size(x, axis, x.dtype)


def reshape(x: Node, shape) -> Node:
    """Reshape; one -1 stands for what is left (fixed dims only, or one symbol)."""
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    shape = tuple(int(d) if isinstance(d, np.integer) else d for d in shape)  # np.int64(3)
    if shape.count(-1) > 1:
        raise shape_error(f"reshape: at most one -1 in {shape}")
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
        raise shape_error(f"reshape: cannot infer -1 reshaping {format_shape(x.shape)} to {shape}")
    fill = rest[0] if rest else fixed // known_fixed
    return tuple(fill if d == -1 else d for d in shape)



def transpose(x: Node, perm=None) -> Node:
    perm = tuple(reversed(range(x.ndim))) if perm is None else tuple(int(p) for p in perm)
    return apply("transpose", x, perm=perm)


def expand_dims(x: Node, axis: int) -> Node:
    axis = int(axis)  # a Python int: attributes print as text and read back
    return apply("expand_dims", x, axis=axis + x.ndim + 1 if axis < 0 else axis)


def squeeze(x: Node, axis=None) -> Node:
    axes = tuple(i for i, d in enumerate(x.shape) if d == 1) if axis is None else _axes(x, axis)
    return apply("squeeze", x, axes=axes)


def getitem(x: Node, index) -> Node:
    """x[i], x[a:b:c], x[:, 1], x[None], x[..., 0], x[idx]: NumPy's basic indexing (ints
    drop their axis, slices keep it, any step; None adds an axis of 1, ... stands for the
    axes not named) and integer-array indexing of the first axis by an int node or array
    (`take`). A bool mask's result has a data-dependent shape: refused (gc.where)."""
    index = index if isinstance(index, tuple) else (index,)
    arrays = [item for item in index if _is_array_index(item)]
    if arrays:
        return _array_index(x, index, arrays)
    items = _expand_ellipsis(x, index)
    ranges, drop, new_axes, kept = [], [], [], 0
    for item in items:
        if item is None:
            new_axes.append(kept + len(new_axes))
            continue
        axis = len(ranges)
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            ranges.append(_int_range(x, axis, int(item)))
            drop.append(axis)
        elif isinstance(item, slice):
            ranges.append(_slice_range(x, axis, item))
            kept += 1
        else:
            raise shape_error(f"index {item!r}: graphc takes ints, slices, None, ..., and int "
                              "nodes or arrays")
    out = apply("slice", x, index=tuple(ranges))
    out = apply("squeeze", out, axes=tuple(drop)) if drop else out
    for axis in new_axes:
        out = apply("expand_dims", out, axis=axis)
    return out


def _is_array_index(item) -> bool:
    """An index node, a list or a NumPy array of ints or bools (not a 0-d one: an int)."""
    if isinstance(item, Node):
        return True
    return isinstance(item, (list, np.ndarray)) and np.ndim(item) > 0


def _array_index(x: Node, index: tuple, arrays: list) -> Node:
    """x[idx] with idx an int node or array: take along axis 0; a bool mask is refused."""
    for item in arrays:
        dtype = item.dtype if isinstance(item, Node) else np.asarray(item).dtype.name
        if dtype in ("bool", "bool_"):
            raise shape_error(
                "index: a bool mask selects a data-dependent number of elements, which a "
                "graph cannot hold (shapes are known when it is built); use "
                "gc.where(mask, x, 0) (or a masked sum/mean) instead of x[mask]")
    if len(index) != 1:
        raise shape_error("index: integer-array indexing takes one index array on the first "
                          "axis (x[idx]); for other axes use gc.take(x, idx, axis) or "
                          "gc.take_along_axis")
    return take(x, index[0], 0)


def _expand_ellipsis(x: Node, index: tuple) -> tuple:
    """The index with ... replaced by full slices and missing trailing axes filled."""
    if builtins.sum(item is Ellipsis for item in index) > 1:
        raise shape_error(f"index {index}: at most one ... (Ellipsis)")
    named = builtins.sum(item is not None and item is not Ellipsis for item in index)
    if named > x.ndim:
        raise shape_error(f"index {index} has more entries than {format_shape(x.shape)} has "
                          "axes")
    fill = (slice(None),) * (x.ndim - named)
    if Ellipsis not in index:
        return index + fill
    at = next(k for k, item in enumerate(index) if item is Ellipsis)
    return index[:at] + fill + index[at + 1:]


def _int_range(x: Node, axis: int, i: int) -> tuple:
    dim = x.shape[axis]
    if not isinstance(dim, int):
        raise shape_error(f"index {i} on axis {axis} of shape {format_shape(x.shape)}: the "
                          f"symbolic dim {dim!r} has no size until the call, so graphc cannot "
                          "check or wrap the index; slice a fixed axis instead")
    j = i + dim if i < 0 else i
    if not 0 <= j < dim:
        raise shape_error(f"index {i} is out of range for axis {axis} of shape "
                          f"{format_shape(x.shape)}")
    return (j, j + 1, 1)


def _slice_range(x: Node, axis: int, item: slice) -> tuple:
    """The slice as the slice op's (start, stop, step) on this axis, as NumPy reads it:
    stop None where a negative step runs to the axis' start."""
    for part in (item.start, item.stop, item.step):
        if part is not None and not isinstance(part, (int, np.integer)):
            raise shape_error(f"index {item!r}: slice bounds must be ints or None")
    step = 1 if item.step is None else int(item.step)
    if step == 0:
        raise shape_error(f"index {item!r}: slice step cannot be zero")
    dim = x.shape[axis]
    if not isinstance(dim, int):
        if (item.start in (None, 0), item.stop, step) != (True, None, 1):
            raise shape_error(
                f"index {item!r} on axis {axis} of shape {format_shape(x.shape)}: slicing "
                f"the symbolic dim {dim!r} would give a size known only at the call; graphc "
                "slices symbolic dims only whole (x[:]): slice a fixed axis, or bind the dim "
                "to a fixed size")
        return (0, None, 1)
    start, stop, step = item.indices(dim)
    if (start, stop, step) == (0, dim, 1):
        return (0, None, 1)
    return (start, None if stop < 0 else stop, step)


# --- indexing by data: built on the gather and scatter_add ops ----------------------------

def index_node(idx) -> Node:
    """An index operand: an int node as it is; ints, lists and arrays as an int64 const."""
    if isinstance(idx, Node):
        return idx
    array = np.asarray(host_data(idx))
    if array.dtype.kind not in "iu" or array.dtype == np.uint64:
        raise user_error(DtypeError, f"index: indices must be ints, got {array.dtype} values")
    return const(array, "int64")


def _axis_of(x: Node, axis, op: str) -> int:
    axis = int(axis)
    if not -x.ndim <= axis < x.ndim:
        raise shape_error(f"{op}: axis {axis} out of range for {format_shape(x.shape)}")
    return axis + x.ndim if axis < 0 else axis


def take(x: Node, idx, axis=None) -> Node:
    """np.take: the elements of x at `idx` along `axis` (None: of x flattened); the result
    is x.shape[:axis] + idx.shape + x.shape[axis + 1:]. Negative indices count from the
    end; one outside [-n, n) raises when the function runs."""
    idx = index_node(idx)
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    axis = _axis_of(x, axis, "take")
    if idx.ndim == 0:
        return squeeze(take(x, reshape(idx, (1,)), axis), axis)
    before, after = x.shape[:axis], x.shape[axis + 1:]
    # x read at the same place for every index but the last axis of idx: x's extra axes
    # are 1s (the gather reads position 0 there), so no copy of x is broadcast.
    for _ in range(idx.ndim - 1):
        x = apply("expand_dims", x, axis=axis)
    spread = reshape(idx, (1,) * len(before) + idx.shape + (1,) * len(after))
    spread = apply("broadcast_to", spread, shape=before + idx.shape + after)
    return apply("gather", x, spread, axis=axis + idx.ndim - 1)


def take_along_axis(x: Node, idx, axis: int) -> Node:
    """np.take_along_axis: x and idx broadcast against each other off `axis`."""
    idx = index_node(idx)
    axis = _axis_of(x, axis, "take_along_axis")
    if idx.ndim != x.ndim:
        raise shape_error(f"take_along_axis: indices of shape {format_shape(idx.shape)} need "
                          f"the rank of {format_shape(x.shape)}")
    return apply("gather", x, _broadcast_off_axis(idx, x, axis, "take_along_axis"), axis=axis)


def _broadcast_off_axis(idx: Node, x: Node, axis: int, op: str) -> Node:
    """idx broadcast to x's shape on every axis but `axis` (where idx keeps its size)."""
    shape = []
    for k, (a, b) in enumerate(zip(idx.shape, x.shape)):
        if k == axis or a == b or b == 1:
            shape.append(a)
        elif a == 1:
            shape.append(b)
        else:
            raise shape_error(f"{op}: indices of shape {format_shape(idx.shape)} do not "
                              f"broadcast with {format_shape(x.shape)} off axis {axis}")
    shape = tuple(shape)
    return idx if shape == idx.shape else apply("broadcast_to", idx, shape=shape)


def gather(x: Node, axis: int, idx) -> Node:
    """torch.gather(x, axis, idx): out[i][j] = x[i][idx[i][j]] (axis 1); idx may be
    smaller than x off `axis` (x is read only over idx's extent there)."""
    idx = index_node(idx)
    axis = _axis_of(x, axis, "gather")
    if idx.ndim != x.ndim:
        raise shape_error(f"gather: indices of shape {format_shape(idx.shape)} need the rank "
                          f"of {format_shape(x.shape)}")
    ranges = []
    for k, (a, b) in enumerate(zip(idx.shape, x.shape)):
        fits = k == axis or a == b or (isinstance(a, int) and isinstance(b, int) and a <= b)
        if not fits:
            raise shape_error(f"gather: indices of shape {format_shape(idx.shape)} exceed "
                              f"{format_shape(x.shape)} on axis {k}")
        ranges.append((0, None, 1) if k == axis or a == b else (0, a, 1))
    if any(r != (0, None, 1) for r in ranges):
        x = apply("slice", x, index=tuple(ranges))
    return apply("gather", x, idx, axis=axis)


def scatter_add(base: Node, axis: int, idx, src: Node) -> Node:
    """torch.scatter_add(base, axis, idx, src) with idx of src's shape and of base's off
    `axis`: base plus each src element added at its index along `axis` (repeated indices
    accumulate)."""
    idx = index_node(idx)
    axis = _axis_of(base, axis, "scatter_add")
    return apply("scatter_add", base, idx, src, axis=axis)


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
