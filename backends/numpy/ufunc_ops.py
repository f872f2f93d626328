"""How the numpy backend writes one op as NumPy calls: one table, one row an op.

Each row turns a node, its operands' expressions and the expression of the array its
result goes into (`out`) into statements, e.g. add -> `np.add(a, b, out=o)`. Layout ops
write no statement: they are view expressions (`a.T`, `a.reshape(3, 4)`), inlined where
they are used, so a matmul on a transposed weight reads `np.matmul(g, W.T, out=o)`.

`SAFE_IN_PLACE` names the ops whose statements read their operands only in their first
statement, as a ufunc call: NumPy ufuncs give the right answer even when `out` overlaps
an operand, so their result may go into the storage of an operand that dies here.
"""

from __future__ import annotations

import numpy as np

from graphc import ops
from graphc.backends.collectives import call_source
from graphc.errors import GraphcError
from graphc.types import promote

# --- layout ops: views -----------------------------------------------------------------


def _transpose(node, a, shape):
    perm = node.attrs["perm"]
    if perm == (1, 0):
        return f"{a}.T"
    if len(perm) > 2 and perm == ops.swap_last_two(len(perm)):
        return f"{a}.swapaxes(-1, -2)"
    return f"{a}.transpose({perm})"


def _slice(node, a, shape):
    parts = [":" if r == (0, None, 1) else
             f"{r[0]}:{'' if r[1] is None else r[1]}" + (f":{r[2]}" if r[2] != 1 else "")
             for r in node.attrs["index"]]
    return f"{a}[{', '.join(parts)}]"


VIEWS = {
    "reshape": lambda node, a, shape: f"{a}.reshape({shape})",
    "transpose": _transpose,
    "broadcast_to": lambda node, a, shape: f"np.broadcast_to({a}, {shape})",
    "expand_dims": lambda node, a, shape: f"np.expand_dims({a}, {node.attrs['axis']})",
    "squeeze": lambda node, a, shape: f"{a}.squeeze({node.attrs['axes']})",
    "slice": _slice,
    "stop_gradient": lambda node, a, shape: a,
}


def alias_of(node):
    """The operand whose storage a node views (the op table's views are NumPy views),
    else None."""
    return node.inputs[0] if ops.has(node.op, "view") else None


def view_expr(node, operand: str, dims: dict) -> str:
    return VIEWS[node.op](node, operand, node.type.concrete_shape(dims))


# --- computing ops: statements ---------------------------------------------------------

UFUNCS = {
    "neg": "np.negative", "exp": "np.exp", "log": "np.log", "log1p": "np.log1p",
    "sqrt": "np.sqrt", "abs": "np.abs", "sign": "np.sign", "tanh": "np.tanh",
    "add": "np.add", "sub": "np.subtract", "mul": "np.multiply", "div": "np.divide",
    "pow": "np.power", "maximum": "np.maximum", "minimum": "np.minimum",
    "gt": "np.greater", "ge": "np.greater_equal", "lt": "np.less", "le": "np.less_equal",
    "eq": "np.equal", "ne": "np.not_equal",
    # --- issue 14's elementwise ops (h-elem) ---
    "sin": "np.sin", "cos": "np.cos", "floor": "np.floor",
    "tan": "np.tan", "ceil": "np.ceil", "round": "np.rint", "trunc": "np.trunc",
    "reciprocal": "np.reciprocal", "square": "np.square", "mod": "np.remainder",
    "fmod": "np.fmod", "logical_and": "np.logical_and", "logical_or": "np.logical_or",
    "logical_xor": "np.logical_xor",
}


def _loop_dtype(node) -> str:
    """`, dtype=...` when operands differ from the result dtype, so the arithmetic runs in
    the result's precision as in the reference (float32 beside int64 labels stays f32)."""
    if all(i.dtype == node.dtype for i in node.inputs):
        return ""
    return f", dtype=np.{node.dtype}"


def _compare_dtype(node) -> str:
    """Mixed operands are compared in their promoted dtype, as the reference does."""
    dtypes = {i.dtype for i in node.inputs}
    if len(dtypes) == 1:
        return ""
    common = promote(*dtypes)
    return f", signature=(np.{common}, np.{common}, None)"


def _ufunc(name):
    def emit(node, args, out, dims):
        extra = _compare_dtype(node) if ops.OPS[node.op].kind == "compare" else _loop_dtype(node)
        return [f"{name}({', '.join(args)}, out={out}{extra})"]
    return emit


def _sigmoid(node, args, out, dims):
    # 1 / (1 + e^-x): e^-x overflows to inf for very negative x, giving 0 (the limit),
    # never nan; four in-place passes that each read only the previous one's result.
    (a,) = args
    return [f"np.negative({a}, out={out})", f"np.exp({out}, out={out})",
            f"np.add({out}, 1, out={out})", f"np.reciprocal({out}, out={out})"]


# Integer views of each dtype's bits, for selecting with a mask (see _where).
_BITS = {"float32": "int32", "float64": "int64", "int32": "int32", "int64": "int64"}


def _where(node, args, out, dims):
    cond, a, b = args
    if _is_zero(b) and _finite_number(a):
        # A mask times a number: exact (no inf or nan can leak through the zeros).
        return [f"np.multiply({cond}, {a}, out={out})"]
    bits = _BITS.get(node.dtype)
    chosen = {1: a, 2: b}
    for keep, zero in ((1, 2), (2, 1)):
        if bits and _is_zero(chosen[zero]) and node.inputs[keep].dtype == node.dtype and (
                not _finite_number(chosen[keep])):
            # where(c, a, 0) on the bits: a's bits times c (0 or 1) as integers, or a & (all
            # ones where not c); several times faster than a masked copy and exact for every
            # value, inf and nan included.
            ob, kept = f"{out}.view(np.{bits})", f"{chosen[keep]}.view(np.{bits})"
            if keep == 1 and node.inputs[0].dtype == "bool":
                return [f"np.multiply({kept}, {cond}, out={ob}, dtype=np.{bits})"]
            mask = f"0, {cond}" if keep == 1 else f"{cond}, 1"
            return [f"np.subtract({mask}, out={ob}, dtype=np.{bits})",
                    f"np.bitwise_and({ob}, {kept}, out={ob})"]
    return [f"np.copyto({out}, {b})", f"np.copyto({out}, {a}, where={cond})"]


def _is_zero(expr: str) -> bool:
    return _finite_number(expr) and float(expr) == 0 and not expr.startswith("-")


def _finite_number(expr: str) -> bool:
    try:
        return bool(np.isfinite(float(expr)))
    except ValueError:  # an array's name, np.inf
        return False


def _reduce(name):
    def emit(node, args, out, dims):
        at = node.attrs
        return [f"{name}({args[0]}, axis={at['axes']}, keepdims={at['keepdims']}, out={out})"]
    return emit


def _size(node, args, out, dims):
    shape = node.inputs[0].type.concrete_shape(dims)
    count = int(np.prod([shape[a] for a in node.attrs["axes"]], dtype=np.int64))
    return [f"{out}.fill({count})"]


def _one_hot(node, args, out, dims):
    return [f"_one_hot({args[0]}, {out}, {node.loc!r})"]


def _window(helper, names):
    """A sliding-window op as a call of its run-time function (windows.py) into out."""
    def emit(node, args, out, dims):
        attrs = ", ".join(f"{k}={node.attrs[k]!r}" for k in names)
        return [f"{helper}({', '.join(args)}, {out}, {attrs})"]
    return emit


_CONV = ("stride", "padding", "dilation", "groups")
_POOL = ("kernel", "stride", "padding")

EMIT = {
    **{op: _ufunc(name) for op, name in UFUNCS.items()},
    "relu": lambda node, args, out, dims: [f"np.maximum({args[0]}, {args[1]}, out={out})"],
    "step": lambda node, args, out, dims: [f"np.greater({args[0]}, 0, out={out})"],
    "sigmoid": _sigmoid,
    "cast": lambda node, args, out, dims: [f"np.copyto({out}, {args[0]}, casting='unsafe')"],
    "where": _where,
    # the ufuncs' own reduce: np.sum and np.max are Python wrappers around it (1-2 us a
    # call, and a step has a dozen small reductions)
    "sum": _reduce("np.add.reduce"),
    "max": _reduce("np.maximum.reduce"),
    "min": _reduce("np.minimum.reduce"), "prod": _reduce("np.multiply.reduce"),   # issue 14
    "size": _size,
    "matmul": lambda node, args, out, dims: [
        f"np.matmul({args[0]}, {args[1]}, out={out}{_loop_dtype(node)})"],
    "concat": lambda node, args, out, dims: [
        f"np.concatenate(({', '.join(args)},), axis={node.attrs['axis']}, out={out})"],
    "one_hot": _one_hot,
    # collectives: the executable's Collectives (backends/collectives.py) on torch
    # tensors sharing the buffers' memory
    **{op: lambda node, args, out, dims: [call_source("_collectives", node, args[0], out)]
       for op in ops.with_trait("collective")},
    # --- indexing by data (h-index): NumPy advanced indexing after the range check, in
    # runtime.py (no loop nest reads at a data-dependent index).
    "gather": lambda node, args, out, dims: [
        f"_gather({args[0]}, {args[1]}, {node.attrs['axis']}, {out}, {node.loc!r})"],
    "scatter_add": lambda node, args, out, dims: [
        f"_scatter_add({args[0]}, {args[1]}, {args[2]}, {node.attrs['axis']}, {out}, "
        f"{node.loc!r})"],
    # --- issue 14's elementwise ops (h-elem) ---
    "erf": lambda node, args, out, dims: [f"_erf({args[0]}, {out})"],   # NumPy has no erf
    "rsqrt": lambda node, args, out, dims: [f"np.sqrt({args[0]}, out={out})",
                                            f"np.divide(1, {out}, out={out})"],
    # tests of any dtype into bools: no dtype= (that would pick the bool loop)
    **{op: (lambda name: lambda node, args, out, dims: [f"{name}({args[0]}, out={out})"])(name)
       for op, name in (("isnan", "np.isnan"), ("isinf", "np.isinf"),
                        ("isfinite", "np.isfinite"), ("logical_not", "np.logical_not"))},
    # randomness (issue 15): the NumPy-vectorized Philox of graphc/philox.py, runtime.py
    "philox": lambda node, args, out, dims: [
        f"_philox({args[0]}, {out}, {node.attrs['dtype']!r})"],
    # sliding windows (h-conv): strided windows + BLAS, backends/numpy/windows.py
    "conv": _window("_conv", _CONV),
    "conv_input_grad": _window("_conv_input_grad", _CONV),
    "conv_weight_grad": _window("_conv_weight_grad", _CONV),
    "max_pool": _window("_max_pool", _POOL),
    "max_pool_grad": _window("_max_pool_grad", _POOL),
}

SAFE_IN_PLACE = frozenset(UFUNCS) | {"relu", "step", "sigmoid", "cast", "size", "erf", "rsqrt",
                                     "isnan", "isinf", "isfinite", "logical_not"} | (
    ops.with_trait("collective"))  # (each reads its operand in one call, then writes)


def emit(node, args: list, out: str, dims: dict, filled) -> list:
    """The statements that compute `node` from operand expressions into `out`.

    `filled(number)` names an array of out's shape and dtype that holds the number: NumPy's
    maximum and minimum run several times slower against a number (a broadcast operand
    without a vector loop) than against such an array, so relu(x) is maximum(x, zeros)."""
    if node.op == "relu":
        args = [args[0], "0"]
    if node.op in ("relu", "maximum", "minimum") and node.dtype.startswith("float") and all(
            i.dtype == node.dtype for i in node.inputs):
        args = [filled(a) if _finite_number(a) else a for a in args]
    if node.op not in EMIT:
        raise GraphcError(f"the numpy backend cannot generate {node.op} on "
                          f"{', '.join(str(i.type) for i in node.inputs)} (made at {node.loc}): "
                          f"{node.op} has no NumPy form")
    return EMIT[node.op](node, args, out, dims)


def literal(value: np.ndarray) -> str:
    """A 0-d constant as Python source. Python numbers are 'weak' in NumPy 2 ufuncs, so
    `np.multiply(x, 0.5, out=o)` keeps x's dtype; the repr is the shortest that reads back
    to the same value in the constant's own dtype."""
    item = value.item()
    if isinstance(item, bool):
        return repr(item)
    if isinstance(item, float):
        if np.isnan(item):
            return "np.nan"
        if np.isinf(item):
            return "np.inf" if item > 0 else "-np.inf"
        return np.format_float_positional(value[()], unique=True, trim="0")
    return repr(item)
