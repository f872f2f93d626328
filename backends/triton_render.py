"""Triton kernel source from a loop nest (backends/lower/loops.py).

The same loop nests the C renderer writes as loops become blocks of lanes here:

- pointwise: one program a BLOCK of the domain's elements, flattened in row-major order;
- reduction: one program a BLOCK_M rows x BLOCK_R tile, where the rows are the kept axes
  flattened and a row is the reduced axes flattened (any set of axes, middle ones
  included). When a row fits one block (BLOCK_R >= its length, up to `max_row_block`),
  every reduction is one tl.sum/tl.max over the tile held in registers; longer rows loop
  over blocks, one pass per reduction (a later reduction reads the earlier ones' results,
  already reduced) and one more to store a full-shaped result;
- matmul: tiles of BLOCK_M x BLOCK_N outputs accumulated over BLOCK_K slices with
  tl.dot, then the epilogue's values computed on the accumulator tile.

The domain's variables are written out in terms of the lanes' flat position (offs, rows,
r, rm, rn, rk) and substituted into every index before it is printed, so an operand read
in order loads at `offs` itself: Triton then sees contiguous loads. Lanes past the end
are masked on every load and store, never clamped.

Nothing here imports triton: a kernel is text until the host module loads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graphc.backends.lower import index as ix
from graphc.backends.lower.loops import (
    Apply, Load, LoopNest, Number, Position, Product, Reduce, Unsupported)

INT32_LIMIT = 2**31 - 1
MAX_ROW_BLOCK = 4096
LOOP_ROW_BLOCK = 1024
ROW_TILE = 1024       # a reduction program holds BLOCK_M rows of BLOCK_R: up to this many

TL_DTYPE = {"float32": "tl.float32", "float64": "tl.float64", "int32": "tl.int32",
            "int64": "tl.int64", "bool": "tl.int1"}
POINTER_TYPE = {"float32": "*fp32", "float64": "*fp64", "int32": "*i32", "int64": "*i64",
                "bool": "*i1"}

# Pseudo-axes for the lanes' own positions; a domain has fewer axes than this.
_LANE_AXES = {"offs": 1000, "rows": 1001, "r": 1002, "rm": 1003, "rn": 1004, "rk": 1005,
              "pid_b": 1006}


# --- elementwise ops ----------------------------------------------------------------------
# Each row takes the emitter (for temporaries), the result dtype and the argument
# expressions (already cast by the lowering); Triton's core language has no tanh, log1p
# or pow, so those use accurate closed forms.

def _log1p(em, t, x):
    # Goldberg's trick: exact where 1 + x rounds, accurate to an ulp elsewhere.
    u = em.var(f"1 + {x}")
    return f"tl.where({u} == 1, {x}, tl.log({u}) * {x} / ({u} - 1))"


def _expm1(em, x):
    e = em.var(f"tl.exp({x})")
    return f"tl.where({e} == 1, {x}, tl.where({e} == 0, -1.0, ({e} - 1) * {x} / tl.log({e})))"


def _tanh(em, t, x):
    m = em.var(_expm1(em, f"-2 * tl.abs({x})"))           # tanh|x| = -m / (2 + m)
    return f"tl.where({x} < 0, 1.0, -1.0) * {m} / (2 + {m})"


def _sigmoid(em, t, x):
    e = em.var(f"tl.exp(-tl.abs({x}))")                    # never overflows
    return f"tl.where({x} >= 0, 1 / (1 + {e}), {e} / (1 + {e}))"


def _pow(em, t, x, y):
    # |x|**y, with the sign of x for odd integer y, nan for x < 0 and non-integer y.
    r = em.var(f"tl.exp({y} * tl.log(tl.abs({x})))")
    whole = em.var(f"tl.floor({y}) == {y}")
    odd = em.var(f"{whole} & (tl.floor({y} * 0.5) * 2 != {y})")
    signed = f"tl.where({x} < 0, tl.where({whole}, tl.where({odd}, -{r}, {r}), float('nan')), {r})"
    return f"tl.where({y} == 0, 1.0, {signed})"


def _cast(em, t, x):
    return f"{x} != 0" if t == "bool" else f"{x}.to({TL_DTYPE[t]})"


ELEMENTWISE = {
    "neg": lambda em, t, x: f"-{x}",
    "exp": lambda em, t, x: f"tl.exp({x})",
    "log": lambda em, t, x: f"tl.log({x})",
    "log1p": _log1p,
    "sqrt": lambda em, t, x: f"tl.sqrt({x})",
    "abs": lambda em, t, x: f"tl.abs({x})",
    "sign": lambda em, t, x: f"tl.where({x} > 0, 1, tl.where({x} < 0, -1, 0)).to({TL_DTYPE[t]})",
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "relu": lambda em, t, x: f"tl.where({x} > 0, {x}, 0)",
    "step": lambda em, t, x: f"({x} > 0).to({TL_DTYPE[t]})",
    "cast": _cast,
    "add": lambda em, t, a, b: f"{a} + {b}",
    "sub": lambda em, t, a, b: f"{a} - {b}",
    "mul": lambda em, t, a, b: f"{a} * {b}",
    "div": lambda em, t, a, b: f"{a} / {b}",
    "pow": _pow,
    "maximum": lambda em, t, a, b: f"tl.maximum({a}, {b})",
    "minimum": lambda em, t, a, b: f"tl.minimum({a}, {b})",
    "gt": lambda em, t, a, b: f"{a} > {b}",
    "ge": lambda em, t, a, b: f"{a} >= {b}",
    "lt": lambda em, t, a, b: f"{a} < {b}",
    "le": lambda em, t, a, b: f"{a} <= {b}",
    "eq": lambda em, t, a, b: f"{a} == {b}",
    "where": lambda em, t, c, a, b: f"tl.where({c}, {a}, {b})",
}

# reduction -> (identity, combine two tiles along an axis, accumulate into a tile)
REDUCTIONS = {
    "sum": ("0", "tl.sum", "{acc} + {v}"),
    "max": (None, "tl.max", "tl.maximum({acc}, {v})"),
}


def _identity(op: str, dtype: str) -> str:
    if op == "sum":
        return "0"
    if dtype.startswith("float"):
        return "float('-inf')"
    if dtype == "bool":
        return "0"
    return str(np.iinfo(np.dtype(dtype)).min)


def _literal(value, dtype: str) -> str:
    if dtype == "bool":
        text = repr(bool(value))
    elif isinstance(value, float) and not np.isfinite(value):
        text = f"float('{value}')"
    else:
        text = repr(float(value) if dtype.startswith("float") else int(value))
    return f"tl.full([], {text}, {TL_DTYPE[dtype]})"


# --- blocks -----------------------------------------------------------------------------

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


def numel(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


@dataclass
class TritonKernel:
    """One generated Triton kernel: its source and how to launch it."""
    name: str
    kind: str                      # pointwise | reduction | matmul
    source: str                    # the @triton.jit function
    operands: list                 # outer nodes read, in pointer-argument order
    output: object                 # the outer node it computes
    nodes: list                    # the ops it runs
    grid: tuple                    # number of programs along each grid axis
    blocks: dict                   # constexpr block sizes
    num_warps: int
    arg_dtypes: list               # dtypes of operands + output, for the AOT signature
    loaded: list                   # indices of the operands it reads
    index_dtype: str = "int32"
    note: str = ""
    grid_source: str = field(default="", repr=False)   # grid lambda text for the host

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "source": self.source,
                "grid": self.grid, "block_sizes": dict(self.blocks),
                "num_warps": self.num_warps, "nodes": self.nodes,
                "index_dtype": self.index_dtype, "note": self.note}


# --- writing values -----------------------------------------------------------------------

class Emitter:
    """Kernel lines, with temporaries memoized by their text in nested scopes (a loop
    body is a scope: what it computes is gone when it closes)."""

    def __init__(self):
        self.lines, self.indent, self.scopes, self._count = [], 1, [{}], 0
        self.loaded = set()     # operand indices the kernel reads

    def line(self, text: str):
        self.lines.append("    " * self.indent + text)

    def var(self, expr: str, prefix="t") -> str:
        if expr.isidentifier() or expr.lstrip("-").isdigit():
            return expr
        for scope in self.scopes:
            if expr in scope:
                return scope[expr]
        name = f"{prefix}{self._count}"
        self._count += 1
        self.line(f"{name} = {expr}")
        self.scopes[-1][expr] = name
        return name

    def open(self, header: str):
        self.line(header)
        self.scopes.append({})
        self.indent += 1

    def close(self):
        self.scopes.pop()
        self.indent -= 1


class _Values:
    """Writes the values of a loop nest as expressions over the lanes, given what each
    domain variable is (`at`: axis -> Affine over the lane variables), how lane
    variables print (`names`) and which mask keeps each lane variable in range."""

    def __init__(self, em: Emitter, nest: LoopNest, shapes: list, at: dict, names: dict,
                 masks: dict, special=None):
        self.em, self.nest, self.shapes, self.at = em, nest, shapes, at
        self.names, self.masks = names, masks
        self.special = special or {}      # value id -> expression (reductions, product)
        self.done = [{}]                  # scopes of value id -> expression

    def lanes(self, e: ix.Affine) -> ix.Affine:
        return ix.substitute(e, self.at)

    def expr(self, e: ix.Affine) -> str:
        return ix.render(self.lanes(e), lambda axis: self.names[axis], "//")

    def store_offset(self, nest: LoopNest, lanes: tuple) -> str:
        """Where the result goes, as a block of the tile's shape: a lane the offset does
        not read (a scalar result) still shapes the pointer block."""
        offset = self.lanes(ix.flatten(nest.store, nest.out_shape))
        read = ix.axes_of(offset)
        pads = [f"{self.names[_LANE_AXES[lane]]} * 0" for lane in lanes
                if _LANE_AXES[lane] not in read]
        return " + ".join([ix.render(offset, lambda axis: self.names[axis], "//")] + pads)

    def mask_of(self, *exprs) -> list:
        """The masks of the lane variables these expressions read."""
        lanes = set().union(*(ix.axes_of(self.lanes(e)) for e in exprs))
        return [self.masks[lane] for lane in sorted(lanes) if lane in self.masks]

    def get(self, v: int) -> str:
        for scope in reversed(self.done):
            if v in scope:
                return scope[v]
        if v in self.special:
            return self.special[v]
        order = []
        stack = [v]
        while stack:     # the values v needs that are not written yet, inputs first
            u = stack.pop()
            if u in order or self._known(u):
                continue
            order.append(u)
            stack += [a for a in _args(self.nest.values[u]) if not self._known(a)]
        for u in sorted(order):
            if not self._known(u):
                self.done[-1][u] = self._write(u)
        return self._lookup(v)

    def _known(self, v):
        return v in self.special or any(v in scope for scope in self.done)

    def _lookup(self, v):
        if v in self.special:
            return self.special[v]
        for scope in reversed(self.done):
            if v in scope:
                return scope[v]
        raise KeyError(v)

    def open(self, header):
        self.em.open(header)
        self.done.append({})

    def close(self):
        self.em.close()
        self.done.pop()

    def _write(self, v: int) -> str:
        value, em = self.nest.values[v], self.em
        if isinstance(value, Number):
            return em.var(_literal(value.value, value.dtype), "c")
        if isinstance(value, Load):
            return em.var(self._load(value), "v")
        if isinstance(value, Position):
            return em.var(f"({self.expr(value.expr)})", "i")
        if isinstance(value, (Reduce, Product)):
            raise Unsupported(f"{type(value).__name__.lower()} read before it is computed")
        args = [self._lookup(a) for a in value.args]
        return em.var(ELEMENTWISE[value.op](em, value.dtype, *args), "v")

    def _load(self, load: Load) -> str:
        self.em.loaded.add(load.operand)
        shape = self.shapes[load.operand]
        address = ix.address(load.index, ix.row_major_strides(shape))
        offset = self.expr(address)
        masks = self.mask_of(address, *(e for e, _, _ in load.mask))
        for e, low, high in load.mask:
            text = self.expr(e)
            masks.append(f"({low} <= {text}) & ({text} < {high})")
        mask = f", mask={' & '.join(masks)}, other=0" if masks else ""
        return f"tl.load(in{load.operand}_ptr + {offset}{mask})"


def _args(value) -> tuple:
    if isinstance(value, Apply):
        return value.args
    if isinstance(value, Reduce):
        return (value.arg,)
    return ()


def _lane(name: str, size: int) -> ix.Affine:
    return ix.var(_LANE_AXES[name], max(size, 2))


def _index_dtype(nest: LoopNest, shapes: list, block: int) -> str:
    # Lanes past the end are masked, but their offsets must not wrap either: count a
    # block beyond the largest tensor.
    sizes = [numel(s) for s in shapes] + [numel(nest.out_shape), numel(nest.domain)]
    return "int64" if max(sizes) + block > INT32_LIMIT else "int32"


def _widen(expr, index_dtype):
    return f"{expr}.to(tl.int64)" if index_dtype == "int64" else expr


def _header(name, n_operands, blocks) -> str:
    params = [f"in{k}_ptr" for k in range(n_operands)] + ["out_ptr"]
    params += [f"{b}: tl.constexpr" for b in blocks]
    return f"@triton.jit\ndef {name}({', '.join(params)}):"


# --- kernels ------------------------------------------------------------------------------

def pointwise_kernel(name: str, nest: LoopNest, shapes: list) -> dict:
    total = numel(nest.domain)
    blocks = pointwise_blocks(total)
    idx_t = _index_dtype(nest, shapes, blocks["BLOCK"])
    em = Emitter()
    em.line(f"pid = {_widen('tl.program_id(0)', idx_t)}")
    em.line(f"offs = pid * BLOCK + {_widen('tl.arange(0, BLOCK)', idx_t)}")
    em.line(f"mask = offs < {total}")
    lane = _lane("offs", total)
    at = dict(enumerate(ix.unflatten(lane, nest.domain)))
    values = _Values(em, nest, shapes, at, {_LANE_AXES["offs"]: "offs"},
                     {_LANE_AXES["offs"]: "mask"})
    result = em.var(f"tl.broadcast_to({values.get(nest.result)}, (BLOCK,))", "v")
    em.line(f"tl.store(out_ptr + {values.store_offset(nest, ('offs',))}, {result}, mask=mask)")
    grid = (-(-total // blocks["BLOCK"]),)
    grid_src = f"lambda meta: (triton.cdiv({total}, meta['BLOCK']),)"
    return _finish(name, "pointwise", len(shapes), em, blocks, grid, grid_src, idx_t,
                   num_warps=4 if blocks["BLOCK"] >= 512 else 1)


def reduction_kernel(name: str, nest: LoopNest, shapes: list,
                     max_row_block: int = MAX_ROW_BLOCK) -> dict:
    kept = [nest.domain[a] for a in nest.kept]
    red = [nest.domain[a] for a in nest.reduced]
    n_rows, row = numel(kept), numel(red)
    blocks = reduction_blocks(row, n_rows, max_row_block)
    single = blocks["BLOCK_R"] >= row
    idx_t = _index_dtype(nest, shapes, blocks["BLOCK_M"] * blocks["BLOCK_R"])
    em = Emitter()
    em.line(f"pid = {_widen('tl.program_id(0)', idx_t)}")
    em.line(f"rows = pid * BLOCK_M + {_widen('tl.arange(0, BLOCK_M)', idx_t)}[:, None]")
    em.line(f"rowmask = rows < {n_rows}")
    rows_var, r_var = _lane("rows", n_rows), _lane("r", row)
    at = dict(zip(nest.kept, ix.unflatten(rows_var, tuple(kept))))
    at.update(zip(nest.reduced, ix.unflatten(r_var, tuple(red))))
    names = {_LANE_AXES["rows"]: "rows", _LANE_AXES["r"]: "r"}
    reductions = [v for v, value in enumerate(nest.values) if isinstance(value, Reduce)]
    values = _Values(em, nest, shapes, at, names,
                     {_LANE_AXES["rows"]: "rowmask", _LANE_AXES["r"]: "rmask"})

    def open_block(start: str):
        em.line(f"r = {start}{_widen('tl.arange(0, BLOCK_R)', idx_t)}[None, :]")
        em.line(f"rmask = r < {row}")

    if single:
        open_block("")
    for v in reductions:
        values.special[v] = _reduce(em, values, nest, v, single, row, open_block)
    full = any(a in nest.reduced for a in _axes_read(nest, nest.result)) or (
        tuple(nest.out_shape) == tuple(nest.domain) and row > 1)
    if full:
        if not single:
            values.open(f"for r0 in range(0, {row}, BLOCK_R):")
            open_block("r0 + ")
        result = em.var(f"tl.broadcast_to({values.get(nest.result)}, (BLOCK_M, BLOCK_R))", "v")
        store = values.store_offset(nest, ("rows", "r"))
        em.line(f"tl.store(out_ptr + {store}, {result}, mask=rowmask & rmask)")
        if not single:
            values.close()
    else:
        result = em.var(f"tl.broadcast_to({values.get(nest.result)}, (BLOCK_M, 1))", "v")
        store = values.store_offset(nest, ("rows",))
        em.line(f"tl.store(out_ptr + {store}, {result}, mask=rowmask)")
    grid = (-(-n_rows // blocks["BLOCK_M"]),)
    grid_src = f"lambda meta: (triton.cdiv({n_rows}, meta['BLOCK_M']),)"
    tile = blocks["BLOCK_M"] * blocks["BLOCK_R"]
    return _finish(name, "reduction", len(shapes), em, blocks, grid, grid_src, idx_t,
                   num_warps=_clamp(tile // 512, 1, 8))


def _axes_read(nest: LoopNest, v: int) -> frozenset:
    return nest.axes[v]


def _reduce(em, values, nest, v, single, row, open_block) -> str:
    """One sum/max along the rows; returns the variable holding it, a [BLOCK_M, 1]."""
    value = nest.values[v]
    identity = _identity(value.op, value.dtype)
    _, combine, take = REDUCTIONS[value.op]
    if single:
        x = values.get(value.arg)
        masked = f"tl.where(rowmask & rmask, {x}, {identity})"
        return em.var(f"{combine}(tl.broadcast_to({masked}, (BLOCK_M, BLOCK_R)), axis=1)"
                      "[:, None]", "red")
    acc = em.var(f"tl.full((BLOCK_M, BLOCK_R), {identity}, {TL_DTYPE[value.dtype]})", "acc")
    values.open(f"for r0 in range(0, {row}, BLOCK_R):")
    open_block("r0 + ")
    x = values.get(value.arg)
    em.line(f"{acc} = " + take.format(acc=acc, v=f"tl.where(rowmask & rmask, {x}, {identity})"))
    values.close()
    return em.var(f"{combine}({acc}, axis=1)[:, None]", "red")


def matmul_kernel(name: str, nest: LoopNest, shapes: list) -> dict:
    c = nest.contraction
    if c.dtype not in ("float32", "float64"):
        raise Unsupported(f"tl.dot on {c.dtype} is not generated (float32/float64 only)")
    batch, (m, n) = nest.domain[:-2], nest.domain[-2:]
    k = c.k
    blocks = matmul_blocks(m, n, k)
    idx_t = _index_dtype(nest, shapes, blocks["BLOCK_M"] * blocks["BLOCK_N"])
    em = Emitter()
    em.line(f"grid_n = ({n} + BLOCK_N - 1) // BLOCK_N")
    em.line(f"pid = {_widen('tl.program_id(0)', idx_t)}")
    em.line(f"pid_b = {_widen('tl.program_id(1)', idx_t)}")
    em.line(f"rm = (pid // grid_n) * BLOCK_M + {_widen('tl.arange(0, BLOCK_M)', idx_t)}")
    em.line(f"rn = (pid % grid_n) * BLOCK_N + {_widen('tl.arange(0, BLOCK_N)', idx_t)}")
    nb = len(batch)
    batch_at = dict(enumerate(ix.unflatten(_lane("pid_b", numel(batch)), tuple(batch))))
    lanes = {_LANE_AXES["pid_b"]: "pid_b"}
    acc_t = TL_DTYPE[c.dtype]
    em.line(f"acc = tl.zeros((BLOCK_M, BLOCK_N), {acc_t})")
    one_block = k <= blocks["BLOCK_K"]
    if not one_block:
        em.open(f"for k0 in range(0, {k}, BLOCK_K):")
    em.line(f"rk = {'' if one_block else 'k0 + '}{_widen('tl.arange(0, BLOCK_K)', idx_t)}")
    # A's tile is [BLOCK_M, BLOCK_K] (m down, k across), B's [BLOCK_K, BLOCK_N]
    for which, load, (row_lane, row_size), (col_lane, col_size) in (
            ("a", c.a, ("rm", m), ("rk", k)), ("b", c.b, ("rk", k), ("rn", n))):
        at = dict(batch_at)
        at[nb if which == "a" else nb + 1] = _lane("rm" if which == "a" else "rn",
                                                   m if which == "a" else n)
        at[c.k_axis] = _lane("rk", k)
        names = {**lanes, _LANE_AXES[row_lane]: f"{row_lane}[:, None]",
                 _LANE_AXES[col_lane]: f"{col_lane}[None, :]"}
        mask = f"({row_lane}[:, None] < {row_size}) & ({col_lane}[None, :] < {col_size})"
        em.loaded.add(load.operand)
        offset = ix.render(ix.substitute(ix.address(load.index, ix.row_major_strides(
            shapes[load.operand])), at), lambda axis: names[axis], "//")
        tile = f"tl.load(in{load.operand}_ptr + {offset}, mask={mask}, other=0)"
        if load.dtype != c.dtype:
            tile = f"{tile}.to({acc_t})"
        em.line(f"{which} = {tile}")
    precision = ', input_precision="ieee"' if c.dtype == "float32" else ""
    em.line(f"acc = tl.dot(a, b, acc{precision})")
    if not one_block:
        em.close()
    at = dict(batch_at)
    at[nb], at[nb + 1] = _lane("rm", m), _lane("rn", n)
    names = {**lanes, _LANE_AXES["rm"]: "rm[:, None]", _LANE_AXES["rn"]: "rn[None, :]"}
    tile_mask = f"(rm[:, None] < {m}) & (rn[None, :] < {n})"
    product = next(v for v, value in enumerate(nest.values) if isinstance(value, Product))
    masks = {_LANE_AXES["rm"]: f"(rm[:, None] < {m})", _LANE_AXES["rn"]: f"(rn[None, :] < {n})"}
    values = _Values(em, nest, shapes, at, names, masks, special={product: "acc"})
    result = em.var(f"tl.broadcast_to({values.get(nest.result)}, (BLOCK_M, BLOCK_N))", "v")
    store = values.store_offset(nest, ("rm", "rn"))
    em.line(f"tl.store(out_ptr + {store}, {result}, mask={tile_mask})")
    batches = numel(batch)
    grid = (-(-m // blocks["BLOCK_M"]) * -(-n // blocks["BLOCK_N"]), batches)
    grid_src = (f"lambda meta: (triton.cdiv({m}, meta['BLOCK_M']) * "
                f"triton.cdiv({n}, meta['BLOCK_N']), {batches})")
    # 8 warps for a 64x64 tile: 16 accumulators a thread leave ptxas room (with 4 warps a
    # 64x64x16 fp32 tile spills a few bytes on sm_90)
    warps = 8 if blocks["BLOCK_M"] * blocks["BLOCK_N"] >= 4096 else 4
    return _finish(name, "matmul", len(shapes), em, blocks, grid, grid_src, idx_t,
                   num_warps=warps)


def _finish(name, kind, n_operands, em, blocks, grid, grid_src, idx_t, num_warps):
    source = _header(name, n_operands, blocks) + "\n" + "\n".join(em.lines) + "\n"
    return dict(name=name, kind=kind, source=source, grid=grid, blocks=blocks,
                num_warps=num_warps, index_dtype=idx_t, grid_source=grid_src,
                loaded=sorted(em.loaded))


GENERATORS = {"pointwise": pointwise_kernel, "reduction": reduction_kernel,
              "matmul": matmul_kernel}
