"""Triton kernel source from a kernel body: pointwise, reduction and matmul code generators.

A kernel is a body graph (the fused-kernel contract: inputs named in0, in1, ... standing
for the kernel's operands) plus concrete shapes. This module only writes text; it never
imports triton, so kernels can be generated, read and compiled ahead of time anywhere.

How values are computed: every body value is produced *at an index context*, the index
of the element wanted, either flat (a row-major linear index into the value's shape) or
multi (one index expression per dim). Elementwise ops pass the context through (dims of
size 1 that broadcast get index 0), layout ops rewrite it (transpose permutes it, reshape
keeps the flat index, slice adds its start, ...), and a body input is a `tl.load` at the
flat offset of its context. So broadcasts and layout ops are index arithmetic, never
copies. Every (value, context) pair is emitted once (memoized by the index text).

Out-of-range lanes (the tail of the last block) have their *indices clamped* into range
rather than their loads masked: every load is then in bounds and unmasked, and only the
final store (and a reduction's accumulation) is masked. This keeps loads of broadcast
operands (shape [1, BLOCK_N], or scalars) free of mask-shape bookkeeping. Clamping needs
something to clamp into: a kernel is generated only for an output with elements (the
host skips the others), a reduction over no elements loads nothing (the sum of nothing
is 0), and a concat leaves its empty operands out.

NaN goes where NumPy and torch send it: relu, sign, maximum, minimum and max pass it on
(Triton's tl.maximum and tl.max let a number win unless told otherwise). A one_hot
checks its labels: each one outside [0, depth) is stored in a check buffer the host
reads after the launches (`LabelCheck`), so a bad label raises, as on every backend.

Block sizes (the heuristic, in `pointwise_blocks`, `reduction_blocks`, `matmul_blocks`):
- pointwise: BLOCK = next_power_of_2(numel) clamped to [16, 1024], one program a block.
- reduction: rows are the kept axes flattened, a row the reduced axes flattened. BLOCK_R
  covers the whole row (next_power_of_2(row), at least 16) when that is <=
  `max_row_block` (4096), so softmax is one pass over registers; otherwise BLOCK_R =
  1024 and each reduction loops over the row (one pass per reduction plus one for a
  full-shape output). A program takes BLOCK_M rows: 1024 // BLOCK_R of them (at least
  1, at most next_power_of_2(rows)), so short rows (a bias gradient sums a batch of 7)
  do not leave a program nearly idle.
- matmul: BLOCK_M, BLOCK_N = next_power_of_2 of M, N clamped to [16, 64], BLOCK_K =
  next_power_of_2(K) clamped to [16, 32] (16 is the smallest K tl.dot takes for 16-bit
  inputs on sm_90; 64x64x32 fp32 tiles compile without spills).
Index arithmetic is int32 unless an index could pass 2**31 - 1: a tensor the kernel
touches with 2**31 elements or more, or the tail lanes of the last block (the grid's
padded extent, `_index_dtype`); then program ids and aranges are widened with
`.to(tl.int64)` first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graphc import ops
from graphc.ir import Graph, Node

INT32_LIMIT = 2**31 - 1
MAX_ROW_BLOCK = 4096
LOOP_ROW_BLOCK = 1024
ROW_TILE = 1024       # a reduction program holds BLOCK_M rows of BLOCK_R: up to this many
# Layout ops that keep row-major order: a flat index passes through them unchanged (and on
# a contiguous buffer the host makes them torch views).
ROW_MAJOR_VIEWS = ("reshape", "expand_dims", "squeeze")

TL_DTYPE = {"float32": "tl.float32", "float64": "tl.float64", "int32": "tl.int32",
            "int64": "tl.int64", "bool": "tl.int1",
            "int8": "tl.int8"}   # not a graphc dtype: a max of bools accumulates in it
POINTER_TYPE = {"float32": "*fp32", "float64": "*fp64", "int32": "*i32", "int64": "*i64",
                "bool": "*i1"}


class Unsupported(Exception):
    """A body this generator cannot turn into one kernel (the caller splits it)."""


@dataclass
class LabelCheck:
    """A one_hot's labels, checked by its kernel: each label outside [0, depth) is stored
    at its own index of a zero-filled buffer of the labels' shape and dtype (the kernel's
    chk{j}_ptr), which the host reads after the launches (0 is always a valid label)."""
    depth: int
    loc: str
    shape: tuple
    dtype: str


@dataclass
class Kernel:
    """One generated Triton kernel: its source and how to launch it."""
    name: str
    kind: str                      # pointwise | reduction | matmul
    source: str                    # the @triton.jit function
    operands: list                 # outer nodes read, in pointer-argument order
    output: Node                   # the outer node it computes
    nodes: list                    # the ops it runs (the body's, or the single node)
    grid: tuple                    # number of programs along each grid axis
    blocks: dict                   # constexpr block sizes
    num_warps: int
    arg_dtypes: list               # dtypes of operands, output, checks: the AOT signature
    loaded: list                   # indices of the operands it reads (`size` reads none)
    index_dtype: str = "int32"
    checks: list = field(default_factory=list)   # LabelCheck of each chk{j}_ptr
    note: str = ""                 # why a fused node was split, when it was
    grid_source: str = field(default="", repr=False)   # grid lambda text for the host

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "source": self.source,
                "grid": self.grid, "block_sizes": dict(self.blocks),
                "num_warps": self.num_warps, "nodes": self.nodes,
                "index_dtype": self.index_dtype, "note": self.note}


def next_power_of_2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def _clamp(v, lo, hi):
    return max(lo, min(hi, v))


def pointwise_blocks(numel: int) -> dict:
    return {"BLOCK": _clamp(next_power_of_2(numel), 16, 1024)}


def reduction_blocks(row: int, n_rows: int, max_row_block: int = MAX_ROW_BLOCK) -> dict:
    block = max(next_power_of_2(row), 16)
    block = block if block <= max_row_block else min(LOOP_ROW_BLOCK, max_row_block)
    rows = _clamp(ROW_TILE // block, 1, next_power_of_2(n_rows))
    return {"BLOCK_M": rows, "BLOCK_R": block}


def matmul_blocks(m: int, n: int, k: int) -> dict:
    return {"BLOCK_M": _clamp(next_power_of_2(m), 16, 64),
            "BLOCK_N": _clamp(next_power_of_2(n), 16, 64),
            "BLOCK_K": _clamp(next_power_of_2(k), 16, 32)}


def contiguous_strides(shape) -> tuple:
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= d
    return tuple(reversed(strides))


def numel(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


# --- the op table: body op -> Triton expression ------------------------------------------
# Each entry takes the emitter (for helper temporaries), the argument expressions (already
# cast as ops.evaluate casts them) and the node; it returns an expression. Triton's core
# language has no tanh, log1p or pow, so those use accurate closed forms.

def _log1p(em, x):
    # Goldberg's trick: exact where 1 + x rounds, accurate to an ulp elsewhere (and
    # log1p(inf) = inf, where the trick would give inf / inf).
    u = em.var(f"1 + {x}")
    return (f"tl.where({u} == 1, {x}, tl.where({u} == float('inf'), {u}, "
            f"tl.log({u}) * {x} / ({u} - 1)))")


def _expm1(em, x):
    e = em.var(f"tl.exp({x})")
    return f"tl.where({e} == 1, {x}, tl.where({e} == 0, -1.0, ({e} - 1) * {x} / tl.log({e})))"


def _tanh(em, x):
    m = em.var(_expm1(em, f"-2 * tl.abs({x})"))           # tanh|x| = -m / (2 + m)
    # (x itself at zero: tanh(-0.0) is -0.0)
    return f"tl.where({x} == 0, {x}, tl.where({x} < 0, 1.0, -1.0) * {m} / (2 + {m}))"


def _sigmoid(em, x):
    e = em.var(f"tl.exp(-tl.abs({x}))")                    # never overflows
    return f"tl.where({x} >= 0, 1 / (1 + {e}), {e} / (1 + {e}))"


def _pow(em, x, y):
    # C's and NumPy's pow: |x|**y, negated for an odd integer y and an x of negative sign
    # (-0.0 too); nan for a finite x < 0 and a non-integer y; 1 for y == 0, for x == 1,
    # and for x == -1 with y = +-inf. Each condition is on one operand only (nested wheres,
    # no `&` of a scalar and a block: the interpreter cannot combine those).
    r = em.var(f"tl.exp({y} * tl.log(tl.abs({x})))")
    whole = em.var(f"tl.floor({y}) == {y}")
    odd = em.var(f"{whole} & (tl.floor({y} * 0.5) * 2 != {y})")
    negative = em.var(f"({x} < 0) | (1 / {x} < 0)")                # 1 / -0.0 is -inf
    value = em.var(f"tl.where({odd}, tl.where({negative}, -{r}, {r}), {r})")
    finite_negative = f"({x} < 0) & ({x} > float('-inf'))"
    value = em.var(f"tl.where({whole}, {value}, "
                   f"tl.where({finite_negative}, float('nan'), {value}))")
    value = em.var(f"tl.where(tl.abs({y}) == float('inf'), "
                   f"tl.where({x} == -1, 1.0, {value}), {value})")
    return f"tl.where({y} == 0, 1.0, tl.where({x} == 1, 1.0, {value}))"


def _cast(em, x, node):
    if node.dtype == "bool":
        return f"{x} != 0"
    return f"{x}.to({TL_DTYPE[node.dtype]})"


ELEMENTWISE = {
    "neg": lambda em, n, x: f"-{x}",
    "exp": lambda em, n, x: f"tl.exp({x})",
    "log": lambda em, n, x: f"tl.log({x})",
    "log1p": lambda em, n, x: _log1p(em, x),
    "sqrt": lambda em, n, x: f"tl.sqrt({x})",
    "abs": lambda em, n, x: f"tl.abs({x})",
    "sign": lambda em, n, x: (f"tl.where({x} > 0, 1, tl.where({x} < 0, -1, "   # NaN: NaN
                              f"tl.where({x} != {x}, {x}, 0))).to({TL_DTYPE[n.dtype]})"),
    "tanh": lambda em, n, x: _tanh(em, x),
    "sigmoid": lambda em, n, x: _sigmoid(em, x),
    "relu": lambda em, n, x: f"tl.where({x} <= 0, 0, {x})",          # NaN stays NaN
    "step": lambda em, n, x: f"({x} > 0).to({TL_DTYPE[n.dtype]})",
    "cast": lambda em, n, x: _cast(em, x, n),
    "stop_gradient": lambda em, n, x: x,
    "add": lambda em, n, a, b: f"{a} + {b}",
    "sub": lambda em, n, a, b: f"{a} - {b}",
    "mul": lambda em, n, a, b: f"{a} * {b}",
    "div": lambda em, n, a, b: f"{a} / {b}",
    "pow": lambda em, n, a, b: _pow(em, a, b),
    "maximum": lambda em, n, a, b: f"tl.maximum({a}, {b}, propagate_nan=tl.PropagateNan.ALL)",
    "minimum": lambda em, n, a, b: f"tl.minimum({a}, {b}, propagate_nan=tl.PropagateNan.ALL)",
    "gt": lambda em, n, a, b: f"{a} > {b}",
    "ge": lambda em, n, a, b: f"{a} >= {b}",
    "lt": lambda em, n, a, b: f"{a} < {b}",
    "le": lambda em, n, a, b: f"{a} <= {b}",
    "eq": lambda em, n, a, b: f"{a} == {b}",
    "ne": lambda em, n, a, b: f"{a} != {b}",
    "where": lambda em, n, c, a, b: f"tl.where({c}, {a}, {b})",
}


def _literal(value, dtype: str) -> str:
    value = np.asarray(value).item()
    if dtype == "bool":
        text = repr(bool(value))
    elif isinstance(value, float) and not np.isfinite(value):
        text = f"float('{value}')"
    else:
        text = repr(float(value) if dtype.startswith("float") else int(value))
    return f"tl.full([], {text}, {TL_DTYPE[dtype]})"


# --- index contexts -------------------------------------------------------------------
# ("f", expr): flat row-major index into the value's shape; ("m", (expr, ...)): per dim.

class Emitter:
    """Writes kernel lines; memoizes temporaries by their text (so equal index or value
    expressions are computed once) in nested scopes (a loop body is a scope)."""

    def __init__(self):
        self.lines, self.indent, self.scopes, self._count = [], 1, [{}], 0
        self.scope_ids, self._scope_count = [0], 0
        self.loaded = set()     # operand indices the kernel reads
        self.checks = {}        # one_hot body node -> its LabelCheck (chk0_ptr, ... in order)

    def line(self, text: str):
        self.lines.append("    " * self.indent + text)

    def var(self, expr: str, prefix="t") -> str:
        if expr.isidentifier() or _is_int(expr):
            return expr
        for scope in self.scopes:
            if expr in scope:
                return scope[expr]
        name = self.fresh(expr, prefix)
        self.scopes[-1][expr] = name
        return name

    def fresh(self, expr: str, prefix="t") -> str:
        """A new variable holding `expr`, never shared: for a value that is reassigned
        (an accumulator), whose text says nothing about what it will hold."""
        name = f"{prefix}{self._count}"
        self._count += 1
        self.line(f"{name} = {expr}")
        return name

    def push(self):
        self._scope_count += 1
        self.scopes.append({})
        self.scope_ids.append(self._scope_count)
        self.indent += 1

    def pop(self):
        self.scopes.pop()
        self.scope_ids.pop()
        self.indent -= 1


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def to_multi(em: Emitter, ctx, shape) -> tuple:
    if ctx[0] == "m":
        return ctx[1]
    flat, total = ctx[1], numel(shape)
    exprs = []
    for dim, stride in zip(shape, contiguous_strides(shape)):
        if dim == 1:
            exprs.append("0")
            continue
        expr = flat if stride == 1 else f"{flat} // {stride}"
        if stride * dim != total:       # the outermost non-trivial dim needs no modulo
            expr = f"({expr}) % {dim}" if stride != 1 else f"{flat} % {dim}"
        exprs.append(em.var(expr, "i"))
    return tuple(exprs)


def to_flat(em: Emitter, ctx, shape) -> str:
    if ctx[0] == "f":
        return ctx[1]
    exprs = to_multi(em, ctx, shape)
    terms = [e if s == 1 else f"{e} * {s}"
             for e, s, d in zip(exprs, contiguous_strides(shape), shape) if d != 1 and e != "0"]
    return em.var(" + ".join(terms), "o") if terms else "0"


def broadcast_ctx(em, ctx, out_shape, in_shape):
    """The context of an operand of shape in_shape broadcast into out_shape."""
    if tuple(in_shape) == tuple(out_shape):
        return ctx
    exprs = to_multi(em, ctx, out_shape)[len(out_shape) - len(in_shape):]
    return ("m", tuple("0" if d == 1 else e for e, d in zip(exprs, in_shape)))


def _layout_ctx(em, node, ctx, out_shape, in_shape):
    """The operand context of a layout op (or one_hot/slice/concat operand)."""
    op, attrs = node.op, node.attrs
    if op == "broadcast_to":
        return broadcast_ctx(em, ctx, out_shape, in_shape)
    if op in ROW_MAJOR_VIEWS:
        return ("f", to_flat(em, ctx, out_shape))          # row-major order is unchanged
    exprs = to_multi(em, ctx, out_shape)
    if op == "transpose":
        inv = [None] * len(exprs)
        for j, p in enumerate(attrs["perm"]):
            inv[p] = exprs[j]
        return ("m", tuple(inv))
    if op == "slice":
        out = []
        for e, d, r in zip(exprs, in_shape, attrs["index"]):
            start, _, step = slice(*r).indices(d)
            term = e if step == 1 else f"{e} * {step}"
            out.append(em.var(f"{term} + {start}", "i") if start else em.var(term, "i"))
        return ("m", tuple(out))
    if op == "one_hot":
        return ("m", exprs[:-1])
    raise Unsupported(f"no index rule for {op}")


class BodyValues:
    """Emits the value of body nodes at index contexts, iteratively (no recursion)."""

    def __init__(self, em: Emitter, body: Graph, shapes: dict, operand_of: dict,
                 special=None):
        self.em, self.body, self.shapes, self.operand_of = em, body, shapes, operand_of
        self.special = special or (lambda node, ctx: None)   # reductions, the matmul
        self.memo = {}

    def _key(self, node, ctx):
        return (node, ctx[0], ctx[1], self.em.scope_ids[-1])

    def _lookup(self, node, ctx):
        for scope in reversed(self.em.scope_ids):   # a closed loop's values are gone
            key = (node, ctx[0], ctx[1], scope)
            if key in self.memo:
                return self.memo[key]
        return None

    def value(self, node: Node, ctx) -> str:
        stack = [(node, ctx)]
        while stack:
            n, c = stack[-1]
            if self._lookup(n, c) is not None:
                stack.pop()
                continue
            needs = self._operand_contexts(n, c)
            missing = [(i, ic) for i, ic in needs if self._lookup(i, ic) is None]
            if missing:
                stack.extend(missing)
                continue
            stack.pop()
            self.memo[self._key(n, c)] = self._emit(n, c, [self._lookup(i, ic) for i, ic in needs])
        return self._lookup(node, ctx)

    def _operand_contexts(self, node, ctx):
        if node.op in ("input", "const", "size") or self.special(node, ctx) is not None:
            return []
        shape = self.shapes[node]
        kind = ops.OPS[node.op].kind
        if kind in ops.ELEMENTWISE_KINDS:
            return [(i, broadcast_ctx(self.em, ctx, shape, self.shapes[i])) for i in node.inputs]
        if node.op == "concat":
            return self._concat_contexts(node, ctx)
        if kind == "layout" or node.op == "one_hot":
            (inp,) = node.inputs
            return [(inp, _layout_ctx(self.em, node, ctx, shape, self.shapes[inp]))]
        raise Unsupported(f"{node.op} cannot be computed inside this kernel")

    def _concat_parts(self, node) -> list:
        """(operand, start, size) along the axis for each operand that is not empty: an
        empty one adds nothing, and an index clamped into it would be -1."""
        axis, start, parts = node.attrs["axis"], 0, []
        for inp in node.inputs:
            size = self.shapes[inp][axis]
            if size:
                parts.append((inp, start, size))
            start += size
        return parts

    def _concat_contexts(self, node, ctx):
        axis, exprs = node.attrs["axis"], to_multi(self.em, ctx, self.shapes[node])
        needs = []
        for inp, start, size in self._concat_parts(node):
            local = self.em.var(f"tl.minimum(tl.maximum({exprs[axis]} - {start}, 0), {size - 1})", "i")
            needs.append((inp, ("m", exprs[:axis] + (local,) + exprs[axis + 1:])))
        return needs

    def _emit(self, node, ctx, args) -> str:
        em = self.em
        special = self.special(node, ctx)
        if special is not None:
            return special
        if node.op == "input":
            k = self.operand_of[node]
            em.loaded.add(k)
            offset = to_flat(em, ctx, self.shapes[node])
            return em.var(f"tl.load(in{k}_ptr + {offset})", "v")
        if node.op == "const":
            return em.var(_literal(node.value.ravel()[0], node.dtype), "c")
        if node.op == "size":
            count = numel([self.shapes[node.inputs[0]][a] for a in node.attrs["axes"]])
            return em.var(_literal(count, node.dtype), "c")
        if node.op == "one_hot":
            return self._emit_one_hot(node, ctx, args[0])
        if node.op == "concat":
            return self._emit_concat(node, ctx, args)
        if ops.OPS[node.op].kind == "layout":
            return args[0]
        args = _cast_args(em, node, args)
        return em.var(ELEMENTWISE[node.op](em, node, *args), "v")

    def _emit_one_hot(self, node, ctx, label):
        """(label == class), and a label outside [0, depth) stored at its own index in
        the one_hot's check buffer, which the host reads after the launches."""
        em, depth, (labels,) = self.em, node.attrs["depth"], node.inputs
        exprs = to_multi(em, ctx, self.shapes[node])
        check = em.checks.setdefault(node, LabelCheck(depth, node.loc, self.shapes[labels],
                                                      labels.dtype))
        at = to_flat(em, ("m", exprs[:-1]), check.shape)
        em.line(f"tl.store(chk{list(em.checks).index(node)}_ptr + {at}, {label}, "
                f"mask=({label} < 0) | ({label} >= {depth}))")
        return em.var(f"({label} == {exprs[-1]}).to({TL_DTYPE[node.dtype]})", "v")

    def _emit_concat(self, node, ctx, args):
        axis = node.attrs["axis"]
        e = to_multi(self.em, ctx, self.shapes[node])[axis]
        parts = self._concat_parts(node)
        expr = _cast_to(args[-1], parts[-1][0].dtype, node.dtype)
        for arg, (inp, start, size) in reversed(list(zip(args[:-1], parts[:-1]))):
            value = _cast_to(arg, inp.dtype, node.dtype)
            expr = f"tl.where({e} < {start + size}, {value}, {expr})"
        return self.em.var(expr, "v")


def _cast_to(expr, have, want):
    return expr if have == want else f"{expr}.to({TL_DTYPE[want]})"


def _cast_args(em, node, args):
    """Cast operands as ops.evaluate does: to the result dtype (compare: the common one)."""
    kind = ops.OPS[node.op].kind
    dtypes = [i.dtype for i in node.inputs]
    if kind == "compare":
        want = ops.promote(*dtypes)
        return [_cast_to(a, d, want) for a, d in zip(args, dtypes)]
    if kind in ("binary", "where"):
        return [a if (kind == "where" and i == 0) else _cast_to(a, d, node.dtype)
                for i, (a, d) in enumerate(zip(args, dtypes))]
    return args


# --- kernel assembly --------------------------------------------------------------------

@dataclass
class BodyInfo:
    body: Graph
    shapes: dict          # body node -> concrete shape
    operand_of: dict      # body input node -> operand index
    out_shape: tuple
    n_operands: int


def body_info(body: Graph, operand_shapes: list, dims: dict) -> BodyInfo:
    operand_of = {n: k for k, n in enumerate(body.inputs)}
    shapes = {}
    for n in body.nodes:
        shapes[n] = (tuple(operand_shapes[operand_of[n]]) if n.op == "input"
                     else n.type.concrete_shape(dims))
    (out,) = body.outputs
    return BodyInfo(body, shapes, operand_of, shapes[out], len(operand_shapes))


def _index_dtype(info: BodyInfo, reach: int) -> str:
    """int64 when an index may pass int32: an offset into a tensor, or `reach`, the
    largest index a lane computes before it is clamped or masked (the padded extent of
    the grid's blocks: the tail lanes of the last block count too, or a wrapped offset
    would pass `offs < total`)."""
    big = max([reach] + [numel(s) for s in info.shapes.values()]) > INT32_LIMIT
    return "int64" if big else "int32"


def _padded(n: int, block: int) -> int:
    return -(-n // block) * block


def _header(name, n_operands, n_checks, blocks) -> str:
    params = [f"in{k}_ptr" for k in range(n_operands)] + ["out_ptr"]
    params += [f"chk{j}_ptr" for j in range(n_checks)]
    params += [f"{b}: tl.constexpr" for b in blocks]
    return f"@triton.jit\ndef {name}({', '.join(params)}):"


def _widen(expr, index_dtype):
    return f"{expr}.to(tl.int64)" if index_dtype == "int64" else expr


def _store_value(em, value, shape_text):
    # A value that does not depend on the index (a scalar) is broadcast to the block.
    return em.var(f"tl.broadcast_to({value}, {shape_text})", "v")


def pointwise_kernel(name: str, info: BodyInfo):
    total = numel(info.out_shape)
    blocks = pointwise_blocks(total)
    idx_t = _index_dtype(info, _padded(total, blocks["BLOCK"]))
    em = Emitter()
    em.line(f"pid = {_widen('tl.program_id(0)', idx_t)}")
    em.line(f"offs = pid * BLOCK + {_widen('tl.arange(0, BLOCK)', idx_t)}")
    em.line(f"idx = tl.minimum(offs, {total - 1})")
    values = BodyValues(em, info.body, info.shapes, info.operand_of)
    (out,) = info.body.outputs
    result = _store_value(em, values.value(out, ("f", "idx")), "(BLOCK,)")
    em.line(f"tl.store(out_ptr + offs, {result}, mask=offs < {total})")
    grid = (-(-total // blocks["BLOCK"]),)
    grid_src = f"lambda meta: (triton.cdiv({total}, meta['BLOCK']),)"
    return _finish(name, "pointwise", info, em, blocks, grid, grid_src, idx_t,
                   num_warps=4 if blocks["BLOCK"] >= 512 else 1)


def reduction_kernel(name: str, info: BodyInfo, max_row_block=MAX_ROW_BLOCK):
    """BLOCK_M rows a program, each row reduced along the tile's second axis."""
    reductions = [n for n in info.body.nodes if n.op in ("sum", "max")]
    if not reductions:
        raise Unsupported("a reduction kernel without a sum or max")
    axes = reductions[0].attrs["axes"]
    full = info.shapes[reductions[0].inputs[0]]
    if any(r.attrs["axes"] != axes or info.shapes[r.inputs[0]] != full for r in reductions):
        raise Unsupported("reductions over different axes or shapes")
    kept_shape = tuple(1 if a in axes else d for a, d in enumerate(full))
    red_shape = tuple(full[a] for a in axes)
    n_rows, row = numel(kept_shape), numel(red_shape)
    if info.out_shape != full and numel(info.out_shape) != n_rows:
        raise Unsupported(f"output shape {info.out_shape} is neither the full shape {full} "
                          "nor the reduced one")
    blocks = reduction_blocks(row, n_rows, max_row_block)
    single = blocks["BLOCK_R"] >= row
    idx_t = _index_dtype(info, max(_padded(n_rows, blocks["BLOCK_M"]),
                                   _padded(row, blocks["BLOCK_R"])))
    em = Emitter()
    em.line(f"pid = {_widen('tl.program_id(0)', idx_t)}")
    em.line(f"rows = pid * BLOCK_M + {_widen('tl.arange(0, BLOCK_M)', idx_t)}[:, None]")
    em.line(f"rows_c = tl.minimum(rows, {n_rows - 1})")
    row_ctx = to_multi(em, ("f", "rows_c"), kept_shape)
    rowwise = {r: to_multi(em, ("f", "rows_c"), info.shapes[r]) for r in reductions}
    results = {}

    def special(node, ctx):
        if node in rowwise:
            if to_multi(em, ctx, info.shapes[node]) != rowwise[node]:
                raise Unsupported(f"{node.op} is read at another row than its own")
            return results[node]
        return None

    values = BodyValues(em, info.body, info.shapes, info.operand_of, special)

    def open_block(start):
        em.line(f"r = {start}{_widen('tl.arange(0, BLOCK_R)', idx_t)}[None, :]")
        em.line(f"rmask = r < {row}")
        em.line(f"rc = tl.minimum(r, {row - 1})")
        r_exprs = iter(to_multi(em, ("f", "rc"), red_shape))
        return ("m", tuple(next(r_exprs) if a in axes else e for a, e in enumerate(row_ctx)))

    ctx = open_block("") if single and row else None   # (a row of nothing has no index)
    for red in reductions:
        results[red] = _reduce(em, values, red, ctx, row, open_block, single)
    (out,) = info.body.outputs
    if info.out_shape == full and row > 1:       # (a row of 1 is stored as a reduced value)
        if not single:
            em.line(f"for r0 in range(0, {row}, BLOCK_R):")
            em.push()
            ctx = open_block("r0 + ")
        value = _store_value(em, values.value(out, ctx), "(BLOCK_M, BLOCK_R)")
        em.line(f"tl.store(out_ptr + {to_flat(em, ctx, full)}, {value}, "
                f"mask=rmask & (rows < {n_rows}))")
        if not single:
            em.pop()
    else:
        value = _store_value(em, values.value(out, ("f", "rows_c")), "(BLOCK_M, 1)")
        em.line(f"tl.store(out_ptr + rows, {value}, mask=rows < {n_rows})")
    grid = (-(-n_rows // blocks["BLOCK_M"]),)
    grid_src = f"lambda meta: (triton.cdiv({n_rows}, meta['BLOCK_M']),)"
    tile = blocks["BLOCK_M"] * blocks["BLOCK_R"]
    return _finish(name, "reduction", info, em, blocks, grid, grid_src, idx_t,
                   num_warps=_clamp(tile // 512, 1, 8))


# How each reduction accumulates: one step of the looped path, and the reduction of a
# tile along its rows. max lets NaN win, as NumPy and torch do (tl.max and a plain
# tl.maximum let a number win over NaN).
COMBINE = {
    "sum": ("{acc} + {v}", "tl.sum({tile}, axis=1)"),
    "max": ("tl.maximum({acc}, {v}, propagate_nan=tl.PropagateNan.ALL)",
            "tl.reduce({tile}, 1, _max_propagating_nan)"),
}
# Defined once at the top of every generated module, for the kernels that use it.
PRELUDE = """@triton.jit
def _max_propagating_nan(a, b):
    return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)
"""


def _identity(op: str, dtype: str) -> str:
    if op == "sum" or dtype == "bool":
        return "0"
    if dtype.startswith("float"):
        return "float('-inf')"
    return str(np.iinfo(np.dtype(dtype)).min)


def _reduce(em, values, red, ctx, row, open_block, single) -> str:
    """Emit one sum/max along the rows; return the variable holding it, a [BLOCK_M, 1]."""
    acc_dtype = "int8" if red.dtype == "bool" else red.dtype   # a max of bools, as int8
    identity = _identity(red.op, red.dtype)
    step, total = COMBINE[red.op]
    if row == 0:   # the sum of nothing (the host refuses a max of nothing, as NumPy does)
        return em.var(f"tl.full((BLOCK_M, 1), {identity}, {TL_DTYPE[red.dtype]})", "red")

    def masked(ctx):
        v = _cast_to(values.value(red.inputs[0], ctx), red.inputs[0].dtype, acc_dtype)
        return f"tl.where(rmask, {v}, {identity})"

    if single:
        tile = f"tl.broadcast_to({masked(ctx)}, (BLOCK_M, BLOCK_R))"
    else:
        # fresh, not memoized by its text: every reduction has its own accumulator
        tile = em.fresh(f"tl.full((BLOCK_M, BLOCK_R), {identity}, {TL_DTYPE[acc_dtype]})",
                        "acc")
        em.line(f"for r0 in range(0, {row}, BLOCK_R):")
        em.push()
        em.line(f"{tile} = " + step.format(acc=tile, v=masked(open_block("r0 + "))))
        em.pop()
    result = total.format(tile=tile) + "[:, None]"
    return em.var(f"{result} != 0" if red.dtype == "bool" else result, "red")


def _dot(dtype: str) -> str:
    """acc + a @ b for the tiles a, b. tl.dot takes floats (and int8); integer tiles
    are multiplied out and summed over K, which wraps as NumPy's integer matmul does."""
    if dtype == "float32":
        return 'tl.dot(a, b, acc, input_precision="ieee")'
    if dtype == "float64":   # (out_dtype: triton 3.6 would accumulate in float32)
        return "tl.dot(a, b, acc, out_dtype=tl.float64)"
    return "acc + tl.sum(a[:, :, None] * b[None, :, :], axis=1)"


def _matmul_operand(node: Node):
    """(body input, transposed?) for a matmul operand: an input, maybe transposed."""
    transposed = False
    if node.op == "transpose":
        perm = node.attrs["perm"]
        if tuple(perm) != ops.swap_last_two(len(perm)):
            raise Unsupported("a matmul operand transposed other than in its last two axes")
        node, transposed = node.inputs[0], True
    if node.op != "input":
        raise Unsupported(f"a matmul operand computed by {node.op} (not a kernel input)")
    return node, transposed


def _operand_strides(shape, transposed, batch_shape):
    """Strides of a [..., rows, cols] view of a contiguous buffer; batch dims broadcast."""
    strides, logical = list(contiguous_strides(shape)), list(shape)
    if transposed:
        strides[-1], strides[-2] = strides[-2], strides[-1]
        logical[-1], logical[-2] = logical[-2], logical[-1]
    pad = len(batch_shape) - (len(shape) - 2)
    batch = [0] * pad + [0 if d == 1 else s for d, s in zip(logical[:-2], strides[:-2])]
    return batch, strides[-2], strides[-1]


def matmul_kernel(name: str, info: BodyInfo):
    matmuls = [n for n in info.body.nodes if n.op == "matmul"]
    if len(matmuls) != 1:
        raise Unsupported(f"a matmul kernel needs exactly one matmul, found {len(matmuls)}")
    (mm,) = matmuls
    (a_in, a_t), (b_in, b_t) = (_matmul_operand(i) for i in mm.inputs)
    out_shape = info.shapes[mm]
    batch_shape, (m, n) = out_shape[:-2], out_shape[-2:]
    k = info.shapes[mm.inputs[0]][-1]
    blocks = matmul_blocks(m, n, k)
    # the store offset of a tail lane: from the padded M and N, in the last batch
    m_pad, n_pad = _padded(m, blocks["BLOCK_M"]), _padded(n, blocks["BLOCK_N"])
    idx_t = _index_dtype(info, numel(batch_shape) * m_pad * n_pad)
    em = Emitter()
    em.line(f"grid_n = ({n} + BLOCK_N - 1) // BLOCK_N")
    em.line(f"pid = {_widen('tl.program_id(0)', idx_t)}")
    em.line(f"pid_b = {_widen('tl.program_id(1)', idx_t)}")
    em.line(f"rm = (pid // grid_n) * BLOCK_M + {_widen('tl.arange(0, BLOCK_M)', idx_t)}")
    em.line(f"rn = (pid % grid_n) * BLOCK_N + {_widen('tl.arange(0, BLOCK_N)', idx_t)}")
    em.line(f"rm_c = tl.minimum(rm, {m - 1})")
    em.line(f"rn_c = tl.minimum(rn, {n - 1})")
    batch_ctx = to_multi(em, ("f", "pid_b"), batch_shape)
    acc_t = TL_DTYPE[mm.dtype]
    em.line(f"acc = tl.zeros((BLOCK_M, BLOCK_N), {acc_t})")
    tiles = []
    for which, (inp, t), (rows, cols) in (("a", (a_in, a_t), ("rm_c[:, None]", "rk[None, :]")),
                                         ("b", (b_in, b_t), ("rk[:, None]", "rn_c[None, :]"))):
        bstrides, s_rows, s_cols = _operand_strides(info.shapes[inp], t, batch_shape)
        base = "".join(f"{e} * {s} + " for e, s in zip(batch_ctx, bstrides) if s and e != "0")
        tiles.append((which, info.operand_of[inp], inp.dtype, base, rows, cols, s_rows, s_cols))
    # K that fits one block gets no loop: a one-trip loop only gives the software
    # pipeliner staging buffers to keep (and ptxas registers to spill)
    one_block = k <= blocks["BLOCK_K"]
    if not one_block:
        em.line(f"for k0 in range(0, {k}, BLOCK_K):")
        em.push()
    em.line(f"rk = {'' if one_block else 'k0 + '}{_widen('tl.arange(0, BLOCK_K)', idx_t)}")
    for which, idx, dtype, base, rows, cols, s_rows, s_cols in tiles:
        em.loaded.add(idx)
        kmask = "rk[None, :]" if which == "a" else "rk[:, None]"
        load = (f"tl.load(in{idx}_ptr + {base}{rows} * {s_rows} + {cols} * {s_cols}, "
                f"mask={kmask} < {k}, other=0)")
        em.line(f"{which} = {_cast_to(load, dtype, mm.dtype)}")
    em.line(f"acc = {_dot(mm.dtype)}")
    if not one_block:
        em.pop()
    tile = ("m", batch_ctx + ("rm_c[:, None]", "rn_c[None, :]"))

    def special(node, ctx):
        if node is mm:
            if to_multi(em, ctx, out_shape) != tile[1]:
                raise Unsupported("the matmul result is read at a permuted index")
            return "acc"
        return None

    values = BodyValues(em, info.body, info.shapes, info.operand_of, special)
    if info.out_shape != out_shape:
        raise Unsupported(f"epilogue output {info.out_shape} differs from matmul {out_shape}")
    (out,) = info.body.outputs
    value = values.value(out, tile)
    # the store offset is written out in full: dims of size 1 must still give a tile
    offset = f"pid_b * {m * n} + rm[:, None] * {n} + rn[None, :]"
    em.line(f"tl.store(out_ptr + {offset}, {value}, mask=(rm[:, None] < {m}) & (rn[None, :] < {n}))")
    batches = numel(batch_shape)
    grid = (-(-m // blocks["BLOCK_M"]) * -(-n // blocks["BLOCK_N"]), batches)
    grid_src = (f"lambda meta: (triton.cdiv({m}, meta['BLOCK_M']) * "
                f"triton.cdiv({n}, meta['BLOCK_N']), {batches})")
    # 8 warps for a 64x64 tile: 16 accumulators a thread leave ptxas room (with 4 warps a
    # 64x64x16 fp32 tile spills a few bytes on sm_90)
    warps = 8 if blocks["BLOCK_M"] * blocks["BLOCK_N"] >= 4096 else 4
    return _finish(name, "matmul", info, em, blocks, grid, grid_src, idx_t, num_warps=warps)


def _finish(name, kind, info, em, blocks, grid, grid_src, idx_t, num_warps):
    source = (_header(name, info.n_operands, len(em.checks), blocks) + "\n"
              + "\n".join(em.lines) + "\n")
    return dict(name=name, kind=kind, source=source, grid=grid, blocks=blocks,
                num_warps=num_warps, index_dtype=idx_t, grid_source=grid_src,
                loaded=sorted(em.loaded), checks=list(em.checks.values()))


GENERATORS = {"pointwise": pointwise_kernel, "reduction": reduction_kernel,
              "matmul": matmul_kernel}
