"""The primitive ops: one table, one row an op.

Each row gives the op's kind (which passes and backends group ops by), its attributes
and the kind of value each takes (ATTR_KINDS: checked wherever a node is made or read
from text), a type rule (input types and attrs -> output type, raising ShapeError /
DtypeError that name the op and the shapes), its NumPy reference semantics, and its
traits: the facts passes and backends decide by (TRAITS says what each means).
Everything else in graphc (the DSL, autodiff, passes, backends) looks ops up here; a
set of op names anywhere else is derived from this table (`with_trait`,
`is_elementwise`).
"""

from __future__ import annotations

import math
import reprlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from graphc import philox, windows
from graphc.errors import DtypeError, GraphcError, ShapeError
from graphc.types import (
    DTYPES, TensorType, broadcast_shapes, canonical_dtype, format_shape, is_float,
    numpy_dtype, promote)


@dataclass(frozen=True)
class OpDef:
    name: str
    kind: str            # unary | binary | compare | where | reduce | layout | matmul | other
                         # | fused (a kernel: passes/fusion.py)
                         # (a collective, an op with the "collective" trait, is "other")
    arity: int | None    # number of inputs; None for any number (concat)
    attrs: dict          # the attributes it takes: name -> kind (a key of ATTR_KINDS)
    infer: Callable      # (types: list[TensorType], attrs: dict) -> TensorType
    impl: Callable       # (args: list[ndarray], attrs: dict, shape: tuple) -> ndarray
    traits: frozenset = frozenset()   # names from TRAITS
    raises: Callable | None = None    # (input shapes, attrs) -> whether it may raise


ELEMENTWISE_KINDS = ("unary", "binary", "compare", "where")

TRAITS = {
    "commutative": "op(a, b) is op(b, a): rewrite patterns match either operand order",
    "cheap": "costs about what loading its value would: fusion recomputes it in each "
             "kernel that reads it rather than store it",
    "transcendental": "exp, log and the like: NumPy's SIMD loops beat a scalar libm call "
                      "a element on large arrays",
    "nonnegative": "its result is >= 0 (or nan) whatever its operands",
    "view": "its value is its operand's elements, moved or repeated, never computed: a "
            "NumPy view, index arithmetic in a kernel",
    "order_keeping": "a view that keeps its operand's elements in their row-major order "
                     "(of a contiguous operand, the same bytes)",
    "reorders": "a view that moves elements to other positions (a transpose)",
    "partial": "a view of part of its operand (a slice)",
    "collective": "communicates with the other workers of a data-parallel run "
                  "(graphc/parallel.py): every worker must run it, in the same order, so it "
                  "is never folded at build time; backends run it through "
                  "backends/collectives.py (no NumPy impl here)",
    "random": "draws from a counter-based generator (graphc/philox.py): a pure function of "
              "its key, yet each draw is its own: never merged with another (cse), folded "
              "at build time (fold) or computed in more than one kernel (fusion holds it "
              "in none: its kind is other)",
    "in_place": "element k of its result depends on element k of its operand only: it may "
                "take its operand's buffer when the operand dies there (an elementwise op "
                "may anyway)",
}

# The reductions a collective combines the workers' values by ("mean" is the sum divided
# by the number of workers).
COLLECTIVE_REDUCTIONS = ("sum", "mean")


# --- attribute kinds ------------------------------------------------------------------

def _is_int(value) -> bool:
    """A Python int (not a bool, not a NumPy int: attributes print as text and read
    back) that fits in int64, as the backends hold sizes and axes."""
    return isinstance(value, int) and not isinstance(value, bool) and -2**63 <= value < 2**63


def _is_ints(value) -> bool:
    return isinstance(value, tuple) and all(map(_is_int, value))


def _is_shape(value) -> bool:
    return isinstance(value, tuple) and all(
        (_is_int(d) and d >= 0) or (isinstance(d, str) and d.isidentifier()) for d in value)


def _is_ranges(value) -> bool:
    return isinstance(value, tuple) and all(
        isinstance(r, tuple) and len(r) == 3 and _is_int(r[0]) and _is_int(r[2])
        and (r[1] is None or _is_int(r[1])) for r in value)


# kind -> (what a value of the kind is, for errors; the test of a value)
ATTR_KINDS = {
    "int": ("an int", _is_int),
    "positive": ("a fixed size >= 1", lambda v: _is_int(v) and v >= 1),
    "bool": ("True or False", lambda v: isinstance(v, bool)),
    "ints": ("a tuple of ints, e.g. (0, 1)", _is_ints),
    "shape": ("a shape: a tuple of sizes >= 0 and dim names, e.g. ('batch', 3)", _is_shape),
    "dtype": (f"a dtype name: {', '.join(DTYPES)}", lambda v: isinstance(v, str) and v in DTYPES),
    "ranges": ("a tuple of (start, stop, step) int ranges, one per axis (stop may be None)",
               _is_ranges),
    "name": ("a name, e.g. 'pointwise'", lambda v: isinstance(v, str) and v.isidentifier()),
    "reduction": (f"one of {', '.join(COLLECTIVE_REDUCTIONS)}",
                  lambda v: isinstance(v, str) and v in COLLECTIVE_REDUCTIONS),
}


def fits_kind(op: str, name: str, value) -> bool:
    """Whether `value` is of the kind attribute `name` of `op` takes (False if it takes none)."""
    kind = OPS[op].attrs.get(name)
    return kind is not None and ATTR_KINDS[kind][1](value)


# --- type rules ------------------------------------------------------------------------

def _shapes(types) -> str:
    return " and ".join(format_shape(t.shape) for t in types)


def _broadcast(op, types) -> tuple:
    shape = broadcast_shapes(*(t.shape for t in types))
    if shape is None:
        raise ShapeError(f"{op}: shapes {_shapes(types)} do not broadcast")
    return shape


def _no_bool(op, types):
    for t in types:
        if t.dtype == "bool":
            raise DtypeError(f"{op}: does not take bool operands; cast to a number first")


def _unary_any(op):
    def infer(types, attrs):
        _no_bool(op, types)
        return types[0]
    return infer


def _unary_float(op):
    def infer(types, attrs):
        if not is_float(types[0].dtype):
            raise DtypeError(f"{op}: needs a float operand, got {types[0].dtype}; "
                             "cast it first (gc.cast(x, 'float32'))")
        return types[0]
    return infer


def _binary(op, need_float=False):
    def infer(types, attrs):
        _no_bool(op, types)
        dtype = promote(*(t.dtype for t in types))
        if need_float and not is_float(dtype):
            raise DtypeError(f"{op}: needs a float operand, got {_dtypes(types)}; cast first")
        return TensorType(_broadcast(op, types), dtype)
    return infer


def _dtypes(types) -> str:
    return " and ".join(t.dtype for t in types)


def _compare(op):
    def infer(types, attrs):
        return TensorType(_broadcast(op, types), "bool")
    return infer


def _infer_where(types, attrs):
    if types[0].dtype != "bool":
        raise DtypeError(f"where: condition must be bool, got {types[0].dtype}")
    return TensorType(_broadcast("where", types), promote(types[1].dtype, types[2].dtype))


def _predicate(op):
    """A test of each element (isnan, logical_not): any operand, a bool result."""
    def infer(types, attrs):
        return TensorType(types[0].shape, "bool")
    return infer


def _infer_cast(types, attrs):
    return TensorType(types[0].shape, canonical_dtype(attrs["dtype"]))


def _check_axes(op, axes, ndim, shape):
    if len(set(axes)) != len(axes) or any(not 0 <= a < ndim for a in axes):
        raise ShapeError(f"{op}: axes {axes} are not distinct axes of shape {format_shape(shape)}")


def _reduce(op):
    def infer(types, attrs):
        (t,) = types
        axes, keep = attrs["axes"], attrs["keepdims"]
        _check_axes(op, axes, t.ndim, t.shape)
        shape = tuple(1 if i in axes else d for i, d in enumerate(t.shape) if keep or i not in axes)
        dtype = "int64" if (op in ("sum", "prod") and t.dtype == "bool") else t.dtype
        return TensorType(shape, dtype)
    return infer


def _infer_size(types, attrs):
    _check_axes("size", attrs["axes"], types[0].ndim, types[0].shape)
    return TensorType((), canonical_dtype(attrs["dtype"]))


def _split_size(shape):
    """(product of the fixed dims, sorted symbolic dims): equal for equal element counts."""
    fixed = math.prod(d for d in shape if isinstance(d, int))  # exact: no int64 wrap
    return fixed, sorted(d for d in shape if isinstance(d, str))


def _infer_reshape(types, attrs):
    (t,), shape = types, attrs["shape"]
    if _split_size(t.shape) != _split_size(shape):
        raise ShapeError(f"reshape: cannot reshape {format_shape(t.shape)} to "
                         f"{format_shape(shape)}: element counts differ")
    return TensorType(shape, t.dtype)


def _infer_transpose(types, attrs):
    (t,), perm = types, attrs["perm"]
    if sorted(perm) != list(range(t.ndim)):
        raise ShapeError(f"transpose: perm {perm} is not a permutation of the axes of "
                         f"{format_shape(t.shape)}")
    return TensorType(tuple(t.shape[p] for p in perm), t.dtype)


def _infer_broadcast_to(types, attrs):
    (t,), shape = types, attrs["shape"]
    if len(shape) < t.ndim or broadcast_shapes(t.shape, shape) != tuple(shape):
        raise ShapeError(f"broadcast_to: cannot broadcast {format_shape(t.shape)} to "
                         f"{format_shape(shape)}")
    return TensorType(shape, t.dtype)


def _infer_expand_dims(types, attrs):
    (t,), axis = types, attrs["axis"]
    if not 0 <= axis <= t.ndim:
        raise ShapeError(f"expand_dims: axis {axis} out of range for {format_shape(t.shape)}")
    return TensorType(t.shape[:axis] + (1,) + t.shape[axis:], t.dtype)


def _infer_squeeze(types, attrs):
    (t,), axes = types, attrs["axes"]
    _check_axes("squeeze", axes, t.ndim, t.shape)
    if any(t.shape[a] != 1 for a in axes):
        raise ShapeError(f"squeeze: axes {axes} of {format_shape(t.shape)} are not all 1")
    return TensorType(tuple(d for i, d in enumerate(t.shape) if i not in axes), t.dtype)


def _slice_dim(dim, start, stop, step):
    if (start, stop, step) == (0, None, 1):
        return dim
    if not isinstance(dim, int):
        raise ShapeError(f"slice: cannot slice symbolic dim {dim!r} (only a full slice)")
    if step == 0:
        raise ShapeError("slice: step cannot be zero")
    return len(range(*slice(start, stop, step).indices(dim)))


def _infer_slice(types, attrs):
    (t,), index = types, attrs["index"]
    if len(index) != t.ndim:
        raise ShapeError(f"slice: {len(index)} ranges for shape {format_shape(t.shape)}")
    return TensorType(tuple(_slice_dim(d, *r) for d, r in zip(t.shape, index)), t.dtype)


def _infer_concat(types, attrs):
    axis, first = attrs["axis"], types[0]
    if not 0 <= axis < first.ndim:
        raise ShapeError(f"concat: axis {axis} out of range for {format_shape(first.shape)}")
    for t in types[1:]:
        if t.ndim != first.ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, first.shape))
                                       if i != axis):
            raise ShapeError(f"concat: shapes {_shapes(types)} differ off axis {axis}")
    parts = [t.shape[axis] for t in types]
    if len(parts) > 1 and not all(isinstance(p, int) for p in parts):
        raise ShapeError(f"concat: axis {axis} must have fixed sizes, got {parts}")
    size = sum(parts) if len(parts) > 1 else parts[0]
    return TensorType(first.shape[:axis] + (size,) + first.shape[axis + 1:],
                      promote(*(t.dtype for t in types)))


def _infer_matmul(types, attrs):
    a, b = types
    _no_bool("matmul", types)
    if a.ndim < 2 or b.ndim < 2:
        raise ShapeError(f"matmul: operands need 2 or more dims, got {_shapes(types)}")
    if a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"matmul: shapes {_shapes(types)} do not fit: inner dims "
                         f"{a.shape[-1]} and {b.shape[-2]} differ")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    if batch is None:
        raise ShapeError(f"matmul: batch dims of {_shapes(types)} do not broadcast")
    return TensorType(batch + (a.shape[-2], b.shape[-1]), promote(a.dtype, b.dtype))


def _infer_fused(types, attrs, body):
    """A kernel's type is its body's output type; the body's inputs, in the body's order,
    stand for the operands by position and must have their types (see passes/fusion.py)."""
    if body is None:
        raise ShapeError("fused: a kernel needs a body")
    if len(body.outputs) != 1:
        raise ShapeError(f"fused: the body must have one output, has {len(body.outputs)}")
    params = body.inputs
    if len(params) != len(types):
        raise ShapeError(f"fused: the body reads {len(params)} inputs for {len(types)} "
                         "operands (each operand is read, in order)")
    for k, (node, type) in enumerate(zip(params, types)):
        if node.type != type:
            raise ShapeError(f"fused: body input {node.name or k} is {node.type}, "
                             f"operand {k} is {type}")
    return body.outputs[0].type


def _infer_one_hot(types, attrs):
    (t,) = types
    if t.dtype not in ("int32", "int64"):
        raise DtypeError(f"one_hot: labels must be int32 or int64, got {t.dtype}")
    return TensorType(t.shape + (attrs["depth"],), canonical_dtype(attrs["dtype"]))


def _infer_all_reduce(op):
    def infer(types, attrs):
        (t,), how = types, attrs["op"]  # (one of COLLECTIVE_REDUCTIONS: its attr kind)
        _no_bool(op, types)
        if how == "mean" and not is_float(t.dtype):
            raise DtypeError(f"{op}: op='mean' needs a float operand, got {t.dtype}; cast "
                             "it first, or use op='sum'")
        return t
    return infer
# --- indexing by data: gather and scatter_add (graphc/node.py: take, embedding, x[idx]) ---

def _check_index_dtype(op, t):
    if t.dtype not in ("int32", "int64"):
        raise DtypeError(f"{op}: indices must be int32 or int64, got {t.dtype}")


def _check_along(op, axis, x, idx, what):
    """idx has x's rank, and off `axis` its sizes, where x's are not 1 (x is read at 0
    there: a broadcast operand, as take and embedding use it)."""
    if not 0 <= axis < x.ndim:
        raise ShapeError(f"{op}: axis {axis} out of range for {format_shape(x.shape)}")
    if idx.ndim != x.ndim or any(a != b and b != 1 for k, (a, b)
                                 in enumerate(zip(idx.shape, x.shape)) if k != axis):
        raise ShapeError(f"{op}: indices of shape {format_shape(idx.shape)} must match the "
                         f"{what} of shape {format_shape(x.shape)} on every axis but {axis} "
                         "(or the {what} has size 1 there)".replace("{what}", what))


def _infer_gather(types, attrs):
    x, idx = types
    _check_index_dtype("gather", idx)
    _check_along("gather", attrs["axis"], x, idx, "operand")
    return TensorType(idx.shape, x.dtype)


def _infer_scatter_add(types, attrs):
    base, idx, src = types
    _check_index_dtype("scatter_add", idx)
    _check_along("scatter_add", attrs["axis"], base, idx, "base")
    if src.shape != idx.shape:
        raise ShapeError(f"scatter_add: values of shape {format_shape(src.shape)} must have "
                         f"the indices' shape {format_shape(idx.shape)}")
    _no_bool("scatter_add", [base, src])
    if base.dtype != src.dtype:
        raise DtypeError(f"scatter_add: base is {base.dtype} but values are {src.dtype}; "
                         "cast one to the other")
    return base


def checked_indices(op: str, idx, dim: int, loc=None):
    """idx with negative entries counted from the end (as NumPy does), after checking each
    lies in [-dim, dim): an index outside raises, naming the first (every backend calls
    this, or raises its message, before it reads anything at an index)."""
    idx = np.asarray(idx)
    bad = (idx < -dim) | (idx >= dim)
    if bad.any():
        made = f" (made at {loc})" if loc else ""
        raise GraphcError(f"{op}: index {idx[bad].flat[0]} is out of range for an axis of "
                          f"size {dim} (valid: -{dim} to {dim - 1}){made}")
    return np.where(idx < 0, idx + dim, idx)


def along_axis_index(idx, axis: int, shape: tuple) -> tuple:
    """The NumPy advanced index that reads or writes, for each position of idx, the element
    of an array of `shape` at idx along `axis` and at the same position on the other axes
    (position 0 on an axis where the array has size 1)."""
    grids = np.ogrid[tuple(slice(d) for d in idx.shape)]
    return tuple(idx if k == axis else (g if shape[k] != 1 else 0)
                 for k, g in enumerate(grids))


def _gather_impl(args, attrs, shape):
    x, idx = args
    idx = checked_indices("gather", idx, x.shape[attrs["axis"]])
    return x[along_axis_index(idx, attrs["axis"], x.shape)]


def _scatter_add_impl(args, attrs, shape):
    base, idx, src = args
    idx = checked_indices("scatter_add", idx, base.shape[attrs["axis"]])
    out = np.array(base)
    np.add.at(out, along_axis_index(idx, attrs["axis"], base.shape), src)
    return out


def _index_raises(shapes, attrs) -> bool:
    """An index out of range raises; indices of no elements cannot be out of range."""
    return 0 not in shapes[1]


# --- randomness (graphc/random.py): the Philox draw -------------------------------------

def _infer_philox(types, attrs):
    (key,), dtype = types, canonical_dtype(attrs["dtype"])
    if key.dtype != "int64" or key.shape != (2,):
        raise ShapeError(f"philox: the key must be int64[2] (seed, stream), got {key}; make "
                         "one with gc.random.key(seed, name=...)")
    if dtype not in philox.CONVERT:
        raise DtypeError(f"philox: draws {', '.join(philox.CONVERT)}, not {dtype}")
    return TensorType(attrs["shape"], dtype)


# --- reference semantics ---------------------------------------------------------------

def _sigmoid(x):
    return np.exp(-np.logaddexp(0, -x))  # no overflow for large |x|


def _one_hot(labels, depth, dtype):
    bad = (labels < 0) | (labels >= depth)
    if bad.any():
        raise GraphcError(f"one_hot: label {labels[bad].flat[0]} is outside [0, {depth})")
    return (labels[..., None] == np.arange(depth)).astype(numpy_dtype(dtype))


def erf(x: np.ndarray) -> np.ndarray:
    """The error function elementwise (NumPy has none): libm's, through Python's math."""
    x = np.asarray(x)
    return np.frompyfunc(math.erf, 1, 1)(x).astype(x.dtype)


def _unary_impl(f):
    return lambda args, attrs, shape: f(args[0])


def _binary_impl(f):
    return lambda args, attrs, shape: f(args[0], args[1])


def _slice_impl(args, attrs, shape):
    return args[0][tuple(slice(*r) for r in attrs["index"])]


# --- the table -------------------------------------------------------------------------

def _row(name, kind, arity, attrs, infer, impl, traits=(), raises=None):
    unknown = (set(traits) - set(TRAITS)) | (set(attrs.values()) - set(ATTR_KINDS))
    assert not unknown, f"{name}: unknown traits or attribute kinds {unknown}"
    return name, OpDef(name, kind, arity, attrs, infer, impl, frozenset(traits), raises)


def _empty_reduction(shapes, attrs) -> bool:
    """A max or min over an axis of length 0 has no value: it raises (as NumPy's)."""
    return any(shapes[0][a] == 0 for a in attrs["axes"])


# Each elementwise op's traits, beside its NumPy function in the tables below.
_CHEAP = ("cheap",)
_NONNEGATIVE_CHEAP = ("cheap", "nonnegative")
_TRANSCENDENTAL = ("transcendental",)


# name -> (NumPy function, traits)
_UNARY_ANY = {"neg": (np.negative, _CHEAP), "abs": (np.abs, _NONNEGATIVE_CHEAP),
              "sign": (np.sign, _CHEAP),
              "relu": (lambda x: np.maximum(x, 0), _NONNEGATIVE_CHEAP),
              "step": (lambda x: (x > 0).astype(x.dtype), _NONNEGATIVE_CHEAP)}
_UNARY_FLOAT = {"exp": (np.exp, _TRANSCENDENTAL + ("nonnegative",)),
                "log": (np.log, _TRANSCENDENTAL), "log1p": (np.log1p, _TRANSCENDENTAL),
                "sqrt": (np.sqrt, _TRANSCENDENTAL + ("nonnegative",)),
                "tanh": (np.tanh, _TRANSCENDENTAL),
                "sigmoid": (_sigmoid, _TRANSCENDENTAL + ("nonnegative",))}
_BINARY = {"add": (np.add, _CHEAP + ("commutative",)), "sub": (np.subtract, _CHEAP),
           "mul": (np.multiply, _CHEAP + ("commutative",)),
           "maximum": (np.maximum, _CHEAP + ("commutative",)),
           "minimum": (np.minimum, _CHEAP + ("commutative",))}
_BINARY_FLOAT = {"div": (np.divide, ()), "pow": (np.power, _TRANSCENDENTAL)}
_COMPARE = {"gt": (np.greater, _CHEAP), "ge": (np.greater_equal, _CHEAP),
            "lt": (np.less, _CHEAP), "le": (np.less_equal, _CHEAP),
            "eq": (np.equal, _CHEAP + ("commutative",)),
            "ne": (np.not_equal, _CHEAP + ("commutative",))}  # ne: nan != nan is true

# --- elementwise rows of issue 14 (h-elem) ---------------------------------------------
# Float ops: the rounding ones keep nan and +-inf; round is half to even (np.round).
_UNARY_FLOAT_MORE = {"sin": (np.sin, _TRANSCENDENTAL), "cos": (np.cos, _TRANSCENDENTAL),
                     "tan": (np.tan, _TRANSCENDENTAL),
                     "erf": (erf, ()),   # no NumPy SIMD erf to beat libm's
                     "floor": (np.floor, _CHEAP), "ceil": (np.ceil, _CHEAP),
                     "round": (np.round, _CHEAP), "trunc": (np.trunc, _CHEAP),
                     "reciprocal": (np.reciprocal, ()),
                     # rsqrt(-0.0) is -inf: not nonnegative
                     "rsqrt": (lambda x: 1 / np.sqrt(x), _TRANSCENDENTAL)}
_UNARY_ANY_MORE = {"square": (np.square, _NONNEGATIVE_CHEAP)}
# Any operand (a bool too), a bool result.
_PREDICATES = {"isnan": (np.isnan, _CHEAP), "isinf": (np.isinf, _CHEAP),
               "isfinite": (np.isfinite, _CHEAP), "logical_not": (np.logical_not, _CHEAP)}
# mod: the sign of b (NumPy, Python, torch.remainder); fmod: the sign of a (C, torch.fmod).
_BINARY_FLOAT_MORE = {"mod": (np.mod, ()), "fmod": (np.fmod, ())}
# Truth of each operand (nonzero; nan is true), a bool result.
_LOGICAL = {"logical_and": (np.logical_and, _CHEAP + ("commutative",)),
            "logical_or": (np.logical_or, _CHEAP + ("commutative",)),
            "logical_xor": (np.logical_xor, _CHEAP + ("commutative",))}
_ELEMENTWISE_MORE = (
    [_row(n, "unary", 1, {}, _unary_float(n), _unary_impl(f), t)
     for n, (f, t) in _UNARY_FLOAT_MORE.items()]
    + [_row(n, "unary", 1, {}, _unary_any(n), _unary_impl(f), t)
       for n, (f, t) in _UNARY_ANY_MORE.items()]
    + [_row(n, "unary", 1, {}, _predicate(n), _unary_impl(f), t)
       for n, (f, t) in _PREDICATES.items()]
    + [_row(n, "binary", 2, {}, _binary(n, True), _binary_impl(f), t)
       for n, (f, t) in _BINARY_FLOAT_MORE.items()]
    + [_row(n, "compare", 2, {}, _compare(n), _binary_impl(f), t)
       for n, (f, t) in _LOGICAL.items()])
# --- end of issue 14's elementwise rows -------------------------------------------------
# The window ops' attributes: padding is a flat (before, after) pair per spatial axis.
_CONV_ATTRS = {"stride": "ints", "padding": "ints", "dilation": "ints", "groups": "positive"}
_POOL_ATTRS = {"kernel": "ints", "stride": "ints", "padding": "ints"}

OPS: dict[str, OpDef] = dict(
    [_row(n, "unary", 1, {}, _unary_any(n), _unary_impl(f), t)
     for n, (f, t) in _UNARY_ANY.items()]
    + [_row(n, "unary", 1, {}, _unary_float(n), _unary_impl(f), t)
       for n, (f, t) in _UNARY_FLOAT.items()]
    + [_row(n, "binary", 2, {}, _binary(n), _binary_impl(f), t) for n, (f, t) in _BINARY.items()]
    + [_row(n, "binary", 2, {}, _binary(n, True), _binary_impl(f), t)
       for n, (f, t) in _BINARY_FLOAT.items()]
    + [_row(n, "compare", 2, {}, _compare(n), _binary_impl(f), t)
       for n, (f, t) in _COMPARE.items()]
    + _ELEMENTWISE_MORE
    + [
        _row("cast", "unary", 1, {"dtype": "dtype"}, _infer_cast, lambda a, at, s: a[0], _CHEAP),
        # The identity, whose gradient is zero: marks values autodiff must treat as
        # constants (the max shift of logsumexp). simplify removes it after differentiation.
        _row("stop_gradient", "unary", 1, {}, lambda types, attrs: types[0],
             lambda a, at, s: a[0], ("cheap", "view", "order_keeping")),
        _row("where", "where", 3, {}, _infer_where, lambda a, at, s: np.where(*a), _CHEAP),
        _row("sum", "reduce", 1, {"axes": "ints", "keepdims": "bool"}, _reduce("sum"),
             lambda a, at, s: np.sum(a[0], axis=at["axes"], keepdims=at["keepdims"])),
        _row("max", "reduce", 1, {"axes": "ints", "keepdims": "bool"}, _reduce("max"),
             lambda a, at, s: np.max(a[0], axis=at["axes"], keepdims=at["keepdims"]),
             raises=_empty_reduction),
        # --- issue 14's reductions (h-elem): min passes nan on, as max; prod of nothing is 1
        _row("min", "reduce", 1, {"axes": "ints", "keepdims": "bool"}, _reduce("min"),
             lambda a, at, s: np.min(a[0], axis=at["axes"], keepdims=at["keepdims"]),
             raises=_empty_reduction),
        _row("prod", "reduce", 1, {"axes": "ints", "keepdims": "bool"}, _reduce("prod"),
             lambda a, at, s: np.prod(a[0], axis=at["axes"], keepdims=at["keepdims"])),
        # --- end of issue 14's reductions
        _row("size", "other", 1, {"axes": "ints", "dtype": "dtype"}, _infer_size,
             lambda a, at, s: np.prod([a[0].shape[i] for i in at["axes"]])),
        _row("reshape", "layout", 1, {"shape": "shape"}, _infer_reshape,
             lambda a, at, s: a[0].reshape(s), ("cheap", "view", "order_keeping")),
        _row("transpose", "layout", 1, {"perm": "ints"}, _infer_transpose,
             lambda a, at, s: np.transpose(a[0], at["perm"]), ("cheap", "view", "reorders")),
        _row("broadcast_to", "layout", 1, {"shape": "shape"}, _infer_broadcast_to,
             lambda a, at, s: np.broadcast_to(a[0], s), ("cheap", "view")),
        _row("expand_dims", "layout", 1, {"axis": "int"}, _infer_expand_dims,
             lambda a, at, s: np.expand_dims(a[0], at["axis"]),
             ("cheap", "view", "order_keeping")),
        _row("squeeze", "layout", 1, {"axes": "ints"}, _infer_squeeze,
             lambda a, at, s: np.squeeze(a[0], at["axes"]), ("cheap", "view", "order_keeping")),
        _row("slice", "layout", 1, {"index": "ranges"}, _infer_slice, _slice_impl,
             ("view", "partial")),
        _row("concat", "layout", None, {"axis": "int"}, _infer_concat,
             lambda a, at, s: np.concatenate(a, axis=at["axis"])),
        _row("matmul", "matmul", 2, {}, _infer_matmul, lambda a, at, s: np.matmul(*a)),
        _row("one_hot", "other", 1, {"depth": "positive", "dtype": "dtype"}, _infer_one_hot,
             lambda a, at, s: _one_hot(a[0], at["depth"], at["dtype"]),
             raises=lambda shapes, attrs: True),
        # Collectives (graphc/parallel.py): the value of x combined over the workers,
        # every worker getting the result. The schedule (passes/overlap.py) splits each
        # all_reduce into a start, issued as soon as x is ready, and a wait placed just
        # before the first use, so the communication overlaps the ops between them.
        _row("all_reduce", "other", 1, {"op": "reduction"}, _infer_all_reduce("all_reduce"),
             None, ("collective",)),
        _row("all_reduce_start", "other", 1, {"op": "reduction"},
             _infer_all_reduce("all_reduce_start"), None, ("collective", "in_place")),
        _row("all_reduce_wait", "other", 1, {}, lambda types, attrs: types[0], None,
             ("collective", "in_place")),
        # --- indexing by data (h-index): torch.gather / np.take_along_axis and its
        # gradient; take, take_along_axis, x[idx] and embedding are built on them.
        _row("gather", "other", 2, {"axis": "int"}, _infer_gather, _gather_impl,
             raises=_index_raises),
        _row("scatter_add", "other", 3, {"axis": "int"}, _infer_scatter_add,
             _scatter_add_impl, raises=_index_raises),
        # --- sliding windows (h-conv): convolution, its two gradients, max pooling and
        # its gradient; type rules and reference NumPy in graphc/windows.py. The convs
        # are of the matmul kind: contractions a backend computes whole, which fusion
        # gives a pointwise epilogue (bias, activation, relu's backward mask).
        _row("conv", "matmul", 2, _CONV_ATTRS, windows.infer_conv, windows.conv),
        _row("conv_input_grad", "matmul", 2, {**_CONV_ATTRS, "size": "ints"},
             windows.infer_conv_input_grad, windows.conv_input_grad),
        _row("conv_weight_grad", "matmul", 2, {**_CONV_ATTRS, "kernel": "ints"},
             windows.infer_conv_weight_grad, windows.conv_weight_grad),
        _row("max_pool", "other", 1, _POOL_ATTRS, windows.infer_max_pool, windows.max_pool),
        _row("max_pool_grad", "other", 2, _POOL_ATTRS, windows.infer_max_pool_grad,
             windows.max_pool_grad),
        # --- randomness (graphc/random.py): uniform [0, 1) floats or raw int64 bits of a
        # Philox-4x32-10 draw (graphc/philox.py says which bits), shape from the attrs
        _row("philox", "other", 1, {"shape": "shape", "dtype": "dtype"}, _infer_philox,
             lambda a, at, s: philox.draw(a[0], s, at["dtype"]), ("random",)),
        # A kernel: its body (Node.body) says what it computes; the reference backend runs
        # the body, so the row has no impl of its own.
        _row("fused", "fused", None, {"kind": "name"}, _infer_fused, None),
    ])


def with_trait(trait: str) -> frozenset:
    """The names of the ops that have a trait (see TRAITS)."""
    assert trait in TRAITS, trait
    return frozenset(name for name, opdef in OPS.items() if trait in opdef.traits)


def has(op: str, trait: str) -> bool:
    return op in OPS and trait in OPS[op].traits


def is_elementwise(op: str) -> bool:
    return op in OPS and OPS[op].kind in ELEMENTWISE_KINDS


def may_raise(op: str, input_shapes: list, attrs) -> bool:
    """Whether the op may raise at run time on operands of these (concrete) shapes."""
    raises = OPS[op].raises if op in OPS else None
    return raises is not None and raises(input_shapes, attrs)


def swap_last_two(ndim: int) -> tuple:
    """The perm of the transpose that swaps the last two axes: a matrix's transpose, or
    each matrix's in a batch (what matmul's gradient and transposed operands use)."""
    return tuple(range(ndim - 2)) + (ndim - 1, ndim - 2)


def canonical_attrs(op: str, attrs: dict) -> dict:
    """Check that an op gets exactly its attributes, each of its kind (ATTR_KINDS);
    return them unchanged."""
    expected = set(OPS[op].attrs)
    if set(attrs) != expected:
        raise ShapeError(f"{op}: takes attributes {sorted(expected)}, got {sorted(attrs)}")
    for name, value in sorted(attrs.items()):
        if not fits_kind(op, name, value):
            what = ATTR_KINDS[OPS[op].attrs[name]][0]
            raise ShapeError(f"{op}: {name} must be {what}, got {reprlib.repr(value)}")
    return attrs


def infer_type(op: str, types: list, attrs: dict, body=None) -> TensorType:
    """The result type of `op` on operands of these types (body: a kernel's body)."""
    opdef = OPS[op]
    if opdef.arity is not None and len(types) != opdef.arity:
        raise ShapeError(f"{op}: takes {opdef.arity} inputs, got {len(types)}")
    if opdef.arity is None and not types:
        raise ShapeError(f"{op}: needs at least one input")
    attrs = canonical_attrs(op, attrs)
    if opdef.kind == "fused":
        return _infer_fused(types, attrs, body)
    return opdef.infer(types, attrs)


def evaluate(op: str, args: list, attrs: dict, type: TensorType, dims: dict) -> np.ndarray:
    """Run one op on NumPy arrays, with the result in exactly the declared type."""
    dtype = numpy_dtype(type.dtype)
    kind = OPS[op].kind
    if kind in ("binary", "where", "matmul") or op == "concat":
        args = [a if i == 0 and kind == "where" else a.astype(dtype, copy=False)
                for i, a in enumerate(args)]
    elif kind == "compare":
        common = numpy_dtype(promote(*(a.dtype.name for a in args)))
        args = [a.astype(common, copy=False) for a in args]
    result = OPS[op].impl(args, attrs, type.concrete_shape(dims))
    return np.asarray(result).astype(dtype, copy=False)
