"""A kernel body lowered to a loop nest: what every generating backend renders.

`lower(kernel, shapes)` turns a kernel (backends/lower/kernel.py) into a `LoopNest`:

- a *domain*, the iteration space: the output's shape for a pointwise kernel, the
  reductions' input shape for a reduction kernel, the product's shape for a matmul
  kernel; `reduced`, the domain axes its reductions run over (any set of axes);
- *values*, in dependency order, each computed at a point of the domain: a `Load` of
  an operand at an index (one `Affine` expression per dim of the operand, see
  index.py), a `Number` known at build time, an `Apply` of an elementwise op to earlier
  values, a `Reduce` over the reduced axes, the `Position` of an index (what one_hot
  compares labels against), and in a matmul kernel the `Product` A @ B at that point;
- `axes`: for each value, the domain axes it varies over. A value that varies over no
  reduced axis is computed once per point of the kept axes (a reduction's result is
  such a value, available once its loop closes); one that varies over none at all is
  computed once per call. Renderers hoist values by this;
- the *store*: which value is written, at which index of the output.

Layout ops never appear in a loop nest: broadcasts, transposes, reshapes, squeezes,
slices and concats are index arithmetic, folded into the loads' indices (a concat reads
each piece under a mask). Numbers known at build time (one-element consts, sizes, and
what elementwise and layout ops make of them) are folded here once. The casts that
ops.evaluate makes implicitly (operands to the result dtype; compare operands to their
common dtype) are explicit `cast` applications, so no renderer restates those rules.

Sizes may be symbolic (names bound at run time, index.py): a domain axis of a symbolic
size is a loop whose bound the generated code takes as an argument, and a number that
depends on symbolic sizes (a mean's 1 / batch) is a `Scalar`, also an argument. What
would need more (a stride, an offset or a divisor that depends on one) is Unsupported.

What a loop nest cannot hold raises `Unsupported` with a one-line reason, the same for
every backend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphc import ops
from graphc.ir import Node
from graphc.types import promote

from . import index as ix
from .index import Unsupported
from .kernel import Kernel, Runtime, known_numbers


# --- values -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Load:
    operand: int          # which kernel operand
    index: tuple          # one Affine per dim of the operand
    dtype: str
    mask: tuple = ()      # (expr, low, high): read only where low <= expr < high


@dataclass(frozen=True)
class Number:
    value: object         # a Python number, in the dtype's kind
    dtype: str


@dataclass(frozen=True, eq=False)
class Scalar:
    """A number known at each call, not at the build (kernel.Runtime): an argument."""
    number: Runtime
    dtype: str


@dataclass(frozen=True)
class Apply:
    op: str               # an elementwise op of the table
    args: tuple           # value ids
    dtype: str
    attrs: tuple = ()     # the op's attributes, as sorted items


@dataclass(frozen=True)
class Reduce:
    op: str               # sum | max
    arg: int
    dtype: str


@dataclass(frozen=True)
class Position:
    expr: ix.Affine       # an index expression, as an int64 value
    dtype: str = "int64"


@dataclass(frozen=True)
class Product:
    dtype: str            # a matmul kernel's A @ B at the domain point


@dataclass(frozen=True)
class Check:
    """Labels that must lie in [0, depth): a renderer reports the first that does not."""
    value: int
    depth: int
    loc: str | None


@dataclass(frozen=True)
class Contraction:
    """A matmul kernel's product: sum over k of A[a_index] * B[b_index], where the
    indices read the domain's variables and variable number `k_axis` (size k)."""
    a: Load
    b: Load
    k_axis: int
    k: int
    dtype: str


@dataclass
class LoopNest:
    kind: str
    domain: tuple          # sizes of the iteration axes
    reduced: tuple         # the axes the reductions run over
    values: list
    axes: list             # per value: frozenset of the domain axes it varies over
    result: int            # the value stored
    store: tuple           # one Affine per dim of the output
    out_shape: tuple
    checks: list
    contraction: Contraction | None = None

    @property
    def kept(self) -> tuple:
        return tuple(a for a in range(len(self.domain)) if a not in self.reduced)

    def reads_reduced(self, v: int) -> bool:
        return bool(self.axes[v] & set(self.reduced))

    def __str__(self) -> str:
        return format_nest(self)


# --- lowering -----------------------------------------------------------------------------

def lower(kernel: Kernel, shapes: dict, known: dict | None = None,
          product_of: Node | None = None) -> LoopNest:
    """The loop nest of `kernel`. shapes: body node -> concrete shape (operands' shapes
    for the params); known: body node -> the number it holds throughout, when the build
    knows it (an operand that is a size, say). product_of: in a matmul kernel, the body
    value that stands for the product (default: the matmul itself; a backend that folds
    linear steps into its gemm call names the last of them)."""
    known = known_numbers(kernel.body.nodes, shapes, known or {})
    return _Lowering(kernel, shapes, known, product_of).run()


class _Lowering:
    def __init__(self, kernel, shapes, known, product_of):
        self.kernel, self.shapes, self.known = kernel, shapes, known
        self.operand_of = {p: k for k, p in enumerate(kernel.params)}
        self.values, self.axes, self.checks = [], [], []
        self.memo = {}             # (value, Number/Load...) -> id: each computed once
        self.at = {}               # (body node, index) -> value id
        self.product_of = product_of
        self.contraction = None

    # the domain ----------------------------------------------------------------------

    def run(self) -> LoopNest:
        kernel = self.kernel
        out_shape = self.shapes[kernel.result]
        reductions = [s for s in kernel.steps if ops.OPS[s.op].kind == "reduce"]
        if kernel.kind == "reduction" and reductions:
            domain = self.shapes[reductions[0].inputs[0]]
            reduced = reductions[0].attrs["axes"]
            for r in reductions[1:]:
                if self.shapes[r.inputs[0]] != domain or r.attrs["axes"] != reduced:
                    raise Unsupported("reductions over different axes or shapes")
        elif reductions:
            raise Unsupported(f"a {kernel.kind} kernel holds no reduction")
        else:
            domain, reduced = self._product_shape() if kernel.kind == "matmul" else (
                out_shape, ())
        self.domain, self.reduced = tuple(domain), tuple(reduced)
        self.kept = tuple(a for a in range(len(self.domain)) if a not in self.reduced)
        self.vars = tuple(ix.var(a, d) for a, d in enumerate(self.domain))
        store = self._store_index(out_shape)
        result = self.value(kernel.result, store)
        return LoopNest(kernel.kind, self.domain, self.reduced, self.values, self.axes,
                        result, store, out_shape, self.checks, self.contraction)

    def _product_shape(self):
        matmuls = [s for s in self.kernel.steps if s.op == "matmul"]
        others = [s.op for s in self.kernel.steps
                  if ops.OPS[s.op].kind == "matmul" and s.op != "matmul"]
        if others:  # conv and its gradients: contractions with no loop nest here
            raise Unsupported(f"{others[0]} has no loop nest (the lowering contracts "
                              "matmul only)")
        if len(matmuls) != 1:
            raise Unsupported(f"a matmul kernel needs exactly one matmul, found {len(matmuls)}")
        self.matmul = matmuls[0]
        if self.product_of is None:
            self.product_of = self.matmul
        if self.shapes[self.product_of] != self.shapes[self.matmul]:
            raise Unsupported("the product is reshaped before the epilogue")
        return self.shapes[self.matmul], ()

    def _store_index(self, out_shape) -> tuple:
        """The output's index at a domain point: the point itself for a full-shaped
        output, else the kept axes' point, flattened and laid out in the output's shape
        (a reduction's result with or without its kept 1s, or squeezed)."""
        if tuple(out_shape) == self.domain:
            return self.vars
        kept = [self.domain[a] for a in self.kept]
        if ix.product(out_shape) != ix.product(kept):
            raise Unsupported(f"output shape {out_shape} is neither the domain {self.domain} "
                              "nor its reduction")
        flat = ix.flatten([self.vars[a] for a in self.kept], kept)
        return ix.unflatten(flat, tuple(out_shape))

    # values at an index --------------------------------------------------------------

    def value(self, node: Node, index: tuple) -> int:
        """The id of `node`'s value at `index`, computing what it needs first (an
        explicit stack: bodies may be deep)."""
        stack = [(node, index)]
        while stack:
            n, i = stack[-1]
            if (n, i) in self.at:
                stack.pop()
                continue
            needs = self._needs(n, i)
            missing = [need for need in needs if need not in self.at]
            if missing:
                stack.extend(missing)
                continue
            stack.pop()
            self.at[n, i] = self._emit(n, i, [self.at[need] for need in needs])
        return self.at[node, index]

    def _needs(self, node: Node, index: tuple) -> list:
        """(input, index) pairs the value of node at index is computed from."""
        if node in self.known or node.op in ("input", "const"):
            return []
        if node is self.product_of and self.kernel.kind == "matmul":
            return []
        kind = ops.OPS[node.op].kind
        if kind in ops.ELEMENTWISE_KINDS:
            return [(i, _broadcast(index, self.shapes[i])) for i in node.inputs]
        if kind == "reduce":
            self._check_own_point(node, index)
            return [(node.inputs[0], self.vars)]
        if node.op in INDEX_RULES:
            return INDEX_RULES[node.op](self, node, index)
        raise Unsupported(f"{node.op} cannot be computed inside this kernel")

    def _check_own_point(self, node, index):
        """A reduction's value exists at its own point of the kept axes only."""
        if index != self._store_index(self.shapes[node]):
            raise Unsupported(f"{node.op} is read at another index than its own")

    def _emit(self, node: Node, index: tuple, args: list) -> int:
        if node in self.known:
            return self._number(self.known[node], node.dtype)
        if node is self.product_of and self.kernel.kind == "matmul":
            if index != self.vars:
                raise Unsupported("the matmul's result is read at a permuted index")
            self._contract()
            return self._add(Product(node.dtype), range(len(self.domain)))
        op = node.op
        if op in ("input", "const") and node in self.operand_of:
            return self._load(self.operand_of[node], index, node.dtype)
        kind = ops.OPS[op].kind
        if kind == "reduce":
            return self._reduce(node, args[0])
        if op in VALUE_RULES:
            return VALUE_RULES[op](self, node, index, args)
        return self._apply(node, args)

    # building values -------------------------------------------------------------------

    def _add(self, value, axes=frozenset()) -> int:
        key = value
        if key not in self.memo:
            self.memo[key] = len(self.values)
            self.values.append(value)
            self.axes.append(frozenset(axes))
        return self.memo[key]

    def _number(self, number, dtype) -> int:
        if isinstance(number, Runtime):
            if number.dtype != dtype:
                number = Runtime(_cast_at(number, dtype), dtype)
            return self._add(Scalar(number, dtype))
        value = np.asarray(number).astype(np.dtype(TYPES[dtype])).item()
        return self._add(Number(value, dtype))

    def _load(self, operand, index, dtype, mask=()) -> int:
        axes = set().union(*(ix.axes_of(e) for e in index)) if index else set()
        axes |= set().union(*(ix.axes_of(e) for e, _, _ in mask)) if mask else set()
        return self._add(Load(operand, tuple(index), dtype, tuple(mask)), axes)

    def _cast(self, v: int, dtype: str) -> int:
        have = self._dtype(v)
        if have == dtype:
            return v
        number = self.values[v]
        if isinstance(number, Number):
            return self._number(number.value, dtype)
        if isinstance(number, Scalar):
            return self._number(number.number, dtype)
        return self._add(Apply("cast", (v,), dtype, (("dtype", dtype),)), self.axes[v])

    def _dtype(self, v: int) -> str:
        return self.values[v].dtype

    def _apply(self, node: Node, args: list) -> int:
        """An elementwise op, its operands cast as ops.evaluate casts them (values known at
        build time were folded before: kernel.known_numbers)."""
        kind = ops.OPS[node.op].kind
        if kind == "compare":
            common = promote(*(self._dtype(a) for a in args))
            args = [self._cast(a, common) for a in args]
        elif kind in ("binary", "where"):
            args = [a if (kind == "where" and k == 0) else self._cast(a, node.dtype)
                    for k, a in enumerate(args)]
        if node.op == "stop_gradient":
            return args[0]
        axes = frozenset().union(*(self.axes[a] for a in args))
        return self._add(Apply(node.op, tuple(args), node.dtype,
                               tuple(sorted(node.attrs.items()))), axes)

    def _reduce(self, node: Node, arg: int) -> int:
        arg = self._cast(arg, node.dtype)
        if ops.may_raise(node.op, [self.domain], node.attrs):
            raise Unsupported(f"{node.op} over an empty axis (the reference raises)")
        axes = self.axes[arg] - set(self.reduced)
        return self._add(Reduce(node.op, arg, node.dtype), axes)

    def _contract(self):
        """The matmul's operands as loads over the domain's variables and k."""
        if self.contraction is not None:
            return
        mm = self.matmul
        a_shape, b_shape = self.shapes[mm.inputs[0]], self.shapes[mm.inputs[1]]
        k_axis, k = len(self.domain), a_shape[-1]
        kv = ix.var(k_axis, k)
        batch = self.vars[:-2]
        m, n = self.vars[-2], self.vars[-1]
        a = self._operand_load(mm.inputs[0], _broadcast(batch, a_shape[:-2]) + (m, kv))
        b = self._operand_load(mm.inputs[1], _broadcast(batch, b_shape[:-2]) + (kv, n))
        self.contraction = Contraction(a, b, k_axis, k, mm.dtype)

    def _operand_load(self, node: Node, index: tuple) -> Load:
        """A matmul operand at an index: a kernel input read through layout ops only
        (a load of the contraction, not a value of the nest)."""
        while node not in self.operand_of:
            rule = INDEX_RULES.get(node.op)
            if rule is None or node.op in ("concat", "one_hot"):
                raise Unsupported(f"a matmul operand computed by {node.op} "
                                  "(not a kernel input)")
            ((node, index),) = rule(self, node, index)
        return Load(self.operand_of[node], tuple(index), node.dtype)


def operand_load(kernel: Kernel, shapes: dict, node: Node, index: tuple) -> Load:
    """Where a body node that is a kernel input seen through layout ops is read at
    `index`: the load of the input (what a hand-written kernel, such as triton's gather,
    reads its operands by; raises Unsupported for a node computed in the body)."""
    return _Lowering(kernel, shapes, {}, None)._operand_load(node, index)


# --- layout ops: where their operand is read ---------------------------------------------

def _broadcast(index: tuple, shape: tuple) -> tuple:
    """The index of an operand of `shape` that NumPy broadcasting lines up with the
    last axes of `index`; its dims of size 1 read element 0."""
    tail = index[len(index) - len(shape):] if shape else ()
    return tuple(ix.ZERO if d == 1 else e for e, d in zip(tail, shape))


def _transpose_index(lowering, node, index):
    inverse = [None] * len(index)
    for j, p in enumerate(node.attrs["perm"]):
        inverse[p] = index[j]
    return [(node.inputs[0], tuple(inverse))]


def _reshape_index(lowering, node, index):
    shape = lowering.shapes[node]
    return [(node.inputs[0], ix.unflatten(ix.flatten(index, shape), lowering.shapes[node.inputs[0]]))]


def _expand_dims_index(lowering, node, index):
    axis = node.attrs["axis"]
    return [(node.inputs[0], index[:axis] + index[axis + 1:])]


def _squeeze_index(lowering, node, index):
    axes, rest = node.attrs["axes"], iter(index)
    rank = len(lowering.shapes[node.inputs[0]])
    return [(node.inputs[0], tuple(ix.ZERO if a in axes else next(rest) for a in range(rank)))]


def _slice_index(lowering, node, index):
    shape = lowering.shapes[node.inputs[0]]
    picked = []
    for e, d, r in zip(index, shape, node.attrs["index"]):
        if ix.is_symbolic(d):  # a symbolic dim is sliced whole only (the type rule)
            picked.append(e)
            continue
        start, _, step = slice(*r).indices(d)
        picked.append(ix.add(ix.lit(start), ix.scale(e, step)))
    return [(node.inputs[0], tuple(picked))]


def _concat_index(lowering, node, index):
    """Each piece at its own offset along the axis (read under a mask, see _concat)."""
    axis, start, needs = node.attrs["axis"], 0, []
    _static_axis(lowering, node, axis)
    for piece in node.inputs:
        local = ix.add(index[axis], ix.lit(-start))
        needs.append((piece, index[:axis] + (local,) + index[axis + 1:]))
        start += lowering.shapes[piece][axis]
    return needs


def _static_axis(lowering, node, axis):
    sizes = [lowering.shapes[p][axis] for p in node.inputs]
    if any(ix.is_symbolic(d) for d in sizes):
        raise Unsupported(f"a {node.op} along a symbolic axis (its pieces' offsets are "
                          "run-time sizes)")


def _one_hot_index(lowering, node, index):
    return [(node.inputs[0], index[:-1])]


INDEX_RULES = {
    "broadcast_to": lambda lowering, node, index: [
        (node.inputs[0], _broadcast(index, lowering.shapes[node.inputs[0]]))],
    "transpose": _transpose_index,
    "reshape": _reshape_index,
    "expand_dims": _expand_dims_index,
    "squeeze": _squeeze_index,
    "slice": _slice_index,
    "concat": _concat_index,
    "one_hot": _one_hot_index,
}


# --- ops whose value is more than an elementwise application -----------------------------

def _same_value(lowering, node, index, args):
    return args[0]


def _one_hot(lowering, node, index, args):
    (labels,) = args
    lowering.checks.append(Check(labels, node.attrs["depth"], node.loc))
    column = lowering._add(Position(index[-1]), ix.axes_of(index[-1]))
    hit = lowering._add(Apply("eq", (lowering._cast(labels, "int64"), column), "bool"),
                        lowering.axes[labels] | lowering.axes[column])
    return lowering._cast(hit, node.dtype)


def _concat(lowering, node, index, args):
    """where(i < end0, piece0, where(i < end1, piece1, ...)): each piece's loads masked
    to its own range, so no piece is read outside its bounds."""
    axis, e = node.attrs["axis"], index[node.attrs["axis"]]
    _static_axis(lowering, node, axis)
    ends = np.cumsum([lowering.shapes[p][axis] for p in node.inputs])
    masked = [lowering._cast(_masked(lowering, a, ix.add(e, ix.lit(int(size - end))), int(size)),
                             node.dtype)
              for a, end, size in zip(args, ends, [lowering.shapes[p][axis] for p in node.inputs])]
    position = lowering._add(Position(e), ix.axes_of(e))
    result = masked[-1]
    for piece, end in reversed(list(zip(masked[:-1], ends[:-1]))):
        below = lowering._add(Apply("lt", (position, lowering._number(end, "int64")), "bool"),
                              lowering.axes[position])
        result = lowering._add(Apply("where", (below, piece, result), node.dtype),
                               lowering.axes[below] | lowering.axes[piece] | lowering.axes[result])
    return result


def _masked(lowering, v: int, local: ix.Affine, size: int) -> int:
    """Value v (computed from loads) with every load it makes masked to 0 <= local < size."""
    value = lowering.values[v]
    if isinstance(value, Number):
        return v
    if not isinstance(value, Load):
        raise Unsupported("a concat of computed pieces (only of loaded values)")
    return lowering._load(value.operand, value.index, value.dtype,
                          value.mask + ((local, 0, size),))


VALUE_RULES = {
    **{op: _same_value for op in INDEX_RULES if op not in ("one_hot", "concat")},
    "one_hot": _one_hot,
    "concat": _concat,
}

def _cast_at(number: Runtime, dtype: str):
    return lambda sizes: np.asarray(number.at(sizes)).astype(TYPES[dtype])


TYPES = {"float32": np.float32, "float64": np.float64, "int32": np.int32,
         "int64": np.int64, "bool": np.bool_}


# --- text form ----------------------------------------------------------------------------

def _var_name(axis: int) -> str:
    return f"i{axis}"


def _expr(e) -> str:
    return ix.render(e, _var_name, "//")


def _describe(value) -> str:
    if isinstance(value, Load):
        text = f"load in{value.operand}[{', '.join(map(_expr, value.index))}]"
        masks = [f"{low} <= {_expr(e)} < {high}" for e, low, high in value.mask]
        return text + (f" if {' and '.join(masks)}" if masks else "")
    if isinstance(value, Number):
        return f"{value.value!r}"
    if isinstance(value, Scalar):
        return "a number fixed at each call"
    if isinstance(value, Apply):
        extra = "".join(f", {k}={v!r}" for k, v in value.attrs)
        return f"{value.op}({', '.join(f'%{a}' for a in value.args)}{extra})"
    if isinstance(value, Reduce):
        return f"{value.op}(%{value.arg}) over reduced axes"
    if isinstance(value, Position):
        return f"position {_expr(value.expr)}"
    return "product A @ B"


def format_nest(nest: LoopNest) -> str:
    """One line a value, with its dtype and the axes it varies over, then the store."""
    dims = ", ".join(f"i{a}<{d}" for a, d in enumerate(nest.domain))
    head = f"{nest.kind} loop nest over [{dims}]"
    if nest.reduced:
        head += f", reducing axes {nest.reduced}"
    lines = [head]
    if nest.contraction is not None:
        c = nest.contraction
        lines.append(f"  product = sum over i{c.k_axis}<{c.k} of {_describe(c.a)} * "
                     f"{_describe(c.b)}")
    for v, (value, axes) in enumerate(zip(nest.values, nest.axes)):
        where = ",".join(f"i{a}" for a in sorted(axes)) or "once"
        lines.append(f"  %{v} = {_describe(value)} : {value.dtype}  [{where}]")
    for check in nest.checks:
        lines.append(f"  check 0 <= %{check.value} < {check.depth}")
    lines.append(f"  out[{', '.join(map(_expr, nest.store))}] = %{nest.result}")
    return "\n".join(lines)
