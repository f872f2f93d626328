"""Triton kernel source from a loop nest (backends/lower/loops.py).

The same loop nests the C renderer writes as loops become blocks of lanes here
(values.py says how a value is written over lanes):

- pointwise: one program a BLOCK of the domain's elements, flattened in row-major order;
- reduction: one program a BLOCK_M rows x BLOCK_R tile, where the rows are the kept axes
  flattened and a row is the reduced axes flattened (any set of axes, middle ones
  included). When a row fits one block (BLOCK_R >= its length, see blocks.py), every
  reduction is one tl.sum/tl.reduce over the tile held in registers; longer rows loop
  over blocks, one pass per reduction (a later reduction reads the earlier ones'
  results, already reduced, and has its own accumulator) and one more to store a
  full-shaped result. A row of no elements reduces to the identity and loads nothing;
- matmul: tiles of BLOCK_M x BLOCK_N outputs accumulated over BLOCK_K slices with
  tl.dot (integer tiles are multiplied out and summed over K, wrapping as NumPy's
  integer matmul does), then the epilogue's values computed on the accumulator tile.
  float32 tiles multiply at the program's precision (exact fp32 FMAs, tf32 or bf16 on
  the tensor cores, float32 sums in all three); tiles are taken in groups of rows for L2
  reuse; when K is split, a first kernel writes each share's sum to a workspace and a
  second adds them (in order: the result does not depend on timing) and applies the
  epilogue.

A one_hot's labels are checked where they are read: each label outside [0, depth) is
stored at its own place in a zero-filled check buffer (`CheckBuffer`, the kernel's
chk{j}_ptr), which the host reads after the launches (0 is always a valid label).

A kernel takes `in{k}_ptr` for each operand k of the nest (every operand a contiguous
buffer), `out_ptr`, then its check buffers, the workspace `ws_ptr` of a split-K
matmul, then its block sizes as constexprs. What
Triton cannot write raises the lowering's `Unsupported` with a one-line reason.
Nothing here imports triton: a kernel is text until the host module loads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from graphc.backends.lower import index as ix
from graphc.backends.lower.loops import LoopNest, Product, Reduce

from . import blocks as bl
from .elementwise import COMBINE, TL_DTYPE, accumulator_dtype, cast, identity
from .values import Emitter, Lanes, Values, lane


@dataclass(frozen=True)
class CheckBuffer:
    """A one_hot's labels as its kernel checks them: `size` elements of `dtype`, zero
    where a label was in range and the label where it was not."""
    depth: int
    loc: str | None
    size: int
    dtype: str
    op: str = "one_hot"   # gather, scatter_add: indices in [-depth, depth) (indexing.py)


@dataclass
class TritonKernel:
    """One generated Triton kernel: its source and how to launch it."""
    name: str
    kind: str                      # pointwise | reduction | matmul
    source: str                    # the @triton.jit function
    grid: tuple                    # number of programs along each grid axis
    grid_source: str               # the grid as a lambda of the launch's meta-parameters
    blocks: dict                   # constexpr block sizes
    num_warps: int
    index_dtype: str
    loaded: list                   # indices of the operands it reads (`size` reads none)
    checks: list = field(default_factory=list)   # CheckBuffer of each chk{j}_ptr
    num_stages: int = 3            # software pipeline stages (a matmul's K loop)
    workspace: int = 0             # float32 elements of scratch at ws_ptr (split-K)
    split: int = 1                 # split-K: s > 1 writes s shares, -s sums them, 1 neither

    @property
    def config(self) -> bl.Config:
        """The heuristic's launch config: the first the autotuner times."""
        return bl.Config(dict(self.blocks), self.num_warps, self.num_stages)


def render(name: str, nest: LoopNest, shapes: list,
           settings: bl.Settings = bl.Settings()) -> list:
    """The Triton kernels computing `nest` (one, or two for a matmul whose K is split),
    whose operand k has the contiguous shape shapes[k]. Raises Unsupported for what it
    cannot write."""
    if nest.kind == "reduction":
        return [reduction_kernel(name, nest, shapes, settings.max_row_block)]
    if nest.kind == "matmul":
        return matmul_kernel(name, nest, shapes, settings)
    return [pointwise_kernel(name, nest, shapes)]


def _widen(expr: str, index_dtype: str) -> str:
    return f"{expr}.to(tl.int64)" if index_dtype == "int64" else expr


# --- pointwise ----------------------------------------------------------------------------

def pointwise_kernel(name: str, nest: LoopNest, shapes: list) -> TritonKernel:
    total = bl.numel(nest.domain)
    blocks = bl.pointwise_blocks(total)
    idx_t = bl.index_dtype(shapes + [nest.out_shape], bl.padded(total, blocks["BLOCK"]))
    em = Emitter()
    em.line(f"pid = {_widen('tl.program_id(0)', idx_t)}")
    em.line(f"offs = pid * BLOCK + {_widen('tl.arange(0, BLOCK)', idx_t)}")
    em.line(f"mask = offs < {total}")
    at = dict(enumerate(ix.unflatten(lane("offs", total), nest.domain)))
    values = Values(em, nest, shapes, Lanes(at, {"offs": "offs"}, {"offs": "mask"}))
    result = em.var(f"tl.broadcast_to({values.get(nest.result)}, (BLOCK,))", "v")
    store = values.lanes.offset(ix.flatten(nest.store, nest.out_shape), ("offs",))
    em.line(f"tl.store(out_ptr + {store}, {result}, mask=mask)")
    checks = [_check(values, nest, j, c) for j, c in enumerate(nest.checks)]
    grid = (-(-total // blocks["BLOCK"]),)
    grid_src = f"lambda meta: (triton.cdiv({total}, meta['BLOCK']),)"
    return _finish(name, "pointwise", len(shapes), em, values, checks, blocks, grid, grid_src,
                   idx_t, bl.pointwise_warps(blocks))


def _check(values: Values, nest: LoopNest, j: int, check) -> CheckBuffer:
    """Store each bad label of one_hot check j at its place among the points of the axes
    it varies over (row-major: the labels' own order when they are read in order)."""
    axes = sorted(nest.axes[check.value])
    sizes = [nest.domain[a] for a in axes]
    at = ix.flatten([ix.var(a, nest.domain[a]) for a in axes], sizes)
    label = values.get(check.value)
    bad = f"({label} < 0) | ({label} >= {check.depth})"
    mask = " & ".join(values.lanes.mask_of(at) + [f"({bad})"])
    values.em.line(f"tl.store(chk{j}_ptr + {values.lanes.offset(at)}, {label}, mask={mask})")
    return CheckBuffer(check.depth, check.loc, bl.numel(sizes), values.nest.values[
        check.value].dtype)


# --- reduction ----------------------------------------------------------------------------

@dataclass
class _Rows:
    """A reduction kernel's tiling: n_rows rows of `row` elements."""
    n_rows: int
    row: int
    single: bool               # the whole row in one block (no loop over it)


def reduction_kernel(name: str, nest: LoopNest, shapes: list,
                     max_row_block: int = bl.MAX_ROW_BLOCK) -> TritonKernel:
    kept = tuple(nest.domain[a] for a in nest.kept)
    red = tuple(nest.domain[a] for a in nest.reduced)
    rows = _Rows(bl.numel(kept), bl.numel(red), False)
    blocks = bl.reduction_blocks(rows.row, rows.n_rows, max_row_block)
    rows.single = blocks["BLOCK_R"] >= rows.row
    reach = max(bl.padded(rows.n_rows, blocks["BLOCK_M"]), bl.padded(rows.row, blocks["BLOCK_R"]))
    idx_t = bl.index_dtype(shapes + [nest.out_shape], reach)
    em = Emitter()
    em.line(f"pid = {_widen('tl.program_id(0)', idx_t)}")
    em.line(f"rows = pid * BLOCK_M + {_widen('tl.arange(0, BLOCK_M)', idx_t)}[:, None]")
    em.line(f"rowmask = rows < {rows.n_rows}")
    at = dict(zip(nest.kept, ix.unflatten(lane("rows", rows.n_rows), kept)))
    # a row of nothing is never indexed (its strides would divide by 0)
    at.update(zip(nest.reduced, ix.unflatten(lane("r", rows.row), red) if rows.row
                  else [ix.ZERO] * len(red)))
    values = Values(em, nest, shapes, Lanes(at, {"rows": "rows", "r": "r"},
                                            {"rows": "rowmask", "r": "rmask"}))
    if rows.single:
        _open_row_block(em, "", rows.row, idx_t)
    for v, value in enumerate(nest.values):
        if isinstance(value, Reduce):
            values.special[v] = _reduce(values, v, rows, idx_t)
    checks = _reduction_store(values, nest, rows, idx_t)
    grid = (-(-rows.n_rows // blocks["BLOCK_M"]),)
    grid_src = f"lambda meta: (triton.cdiv({rows.n_rows}, meta['BLOCK_M']),)"
    return _finish(name, "reduction", len(shapes), em, values, checks, blocks, grid, grid_src,
                   idx_t, bl.reduction_warps(blocks))


def _open_row_block(em: Emitter, start: str, row: int, idx_t: str):
    em.line(f"r = {start}{_widen('tl.arange(0, BLOCK_R)', idx_t)}[None, :]")
    em.line(f"rmask = r < {row}")


def _reduce(values: Values, v: int, rows: _Rows, idx_t: str) -> str:
    """One sum/max along the rows; the variable holding it, a [BLOCK_M, 1] tile."""
    em, value = values.em, values.nest.values[v]
    acc_t = accumulator_dtype(value.dtype)
    start = identity(value.op, value.dtype)
    step, total = COMBINE[value.op]
    if rows.row == 0:   # the sum of nothing (the build refuses a max of nothing)
        return em.var(f"tl.full((BLOCK_M, 1), {start}, {TL_DTYPE[value.dtype]})", "red")

    def masked():
        x = cast(values.get(value.arg), value.dtype, acc_t)
        return f"tl.where(rowmask & rmask, {x}, {start})"

    if rows.single:
        tile = f"tl.broadcast_to({masked()}, (BLOCK_M, BLOCK_R))"
    else:
        # fresh, not memoized by its text: every reduction has its own accumulator
        tile = em.fresh(f"tl.full((BLOCK_M, BLOCK_R), {start}, {TL_DTYPE[acc_t]})", "acc")
        values.open(f"for r0 in range(0, {rows.row}, BLOCK_R):")
        _open_row_block(em, "r0 + ", rows.row, idx_t)
        em.line(f"{tile} = " + step.format(acc=tile, v=masked()))
        values.close()
    result = total.format(tile=tile) + "[:, None]"
    return em.var(cast(result, acc_t, value.dtype), "red")


def _reduction_store(values: Values, nest: LoopNest, rows: _Rows, idx_t: str) -> list:
    """Store the result once a row, or (when it or its place varies along the row) at
    every element of the row, looping over the row's blocks when it takes several; the
    label checks where their labels are read. Returns the checks."""
    em, reduced = values.em, set(nest.reduced)
    store = ix.flatten(nest.store, nest.out_shape)
    along = [j for j, c in enumerate(nest.checks) if nest.axes[c.value] & reduced]
    checks = {j: _check(values, nest, j, c) for j, c in enumerate(nest.checks)
              if j not in along}
    full = bool((nest.axes[nest.result] | ix.axes_of(store)) & reduced)
    if not (full or along):
        result = em.var(f"tl.broadcast_to({values.get(nest.result)}, (BLOCK_M, 1))", "v")
        em.line(f"tl.store(out_ptr + {values.lanes.offset(store, ('rows',))}, {result}, "
                "mask=rowmask)")
        return [checks[j] for j in sorted(checks)]
    if not rows.single:
        values.open(f"for r0 in range(0, {rows.row}, BLOCK_R):")
        _open_row_block(em, "r0 + ", rows.row, idx_t)
    for j in along:
        checks[j] = _check(values, nest, j, nest.checks[j])
    if full:
        result = em.var(f"tl.broadcast_to({values.get(nest.result)}, (BLOCK_M, BLOCK_R))", "v")
        em.line(f"tl.store(out_ptr + {values.lanes.offset(store, ('rows', 'r'))}, {result}, "
                "mask=rowmask & rmask)")
    if not rows.single:
        values.close()
    if not full:
        result = em.var(f"tl.broadcast_to({values.get(nest.result)}, (BLOCK_M, 1))", "v")
        em.line(f"tl.store(out_ptr + {values.lanes.offset(store, ('rows',))}, {result}, "
                "mask=rowmask)")
    return [checks[j] for j in sorted(checks)]


# --- matmul -------------------------------------------------------------------------------

# acc + a @ b for float32 tiles, by precision (blocks.PRECISIONS); accumulation is float32
# in each. bf16 rounds the operands to bfloat16 and multiplies them on the tensor cores.
F32_DOT = {"ieee": 'tl.dot(a, b, acc, input_precision="ieee")',
           "tf32": 'tl.dot(a, b, acc, input_precision="tf32")',
           "bf16": "_dot_bf16(a, b, acc)"}
# _dot_bf16 where the module runs. Triton 3.9's interpreter multiplies bfloat16 tiles as
# their raw uint16 bits, and rounds float32 to bfloat16 toward zero; so on the CPU each
# operand is rounded to the nearest bfloat16 (ties to even, NaN kept: the GPU's
# cvt.rn.bf16.f32) by its bits, and the tiles multiplied in float32. A product of two
# bfloat16 numbers is exact in float32, so this is the tensor cores' arithmetic.
BF16_DOT = {
    "cuda": """@triton.jit
def _dot_bf16(a, b, acc):
    return tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16), acc)
""",
    "cpu": """@triton.jit
def _to_bf16(x):
    bits = x.to(tl.uint32, bitcast=True)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return tl.where(x != x, x, bits.to(tl.float32, bitcast=True))


@triton.jit
def _dot_bf16(a, b, acc):
    return tl.dot(_to_bf16(a), _to_bf16(b), acc, input_precision="ieee")
"""}


def _dot(dtype: str, precision: str) -> str:
    """acc + a @ b for the tiles a, b. tl.dot takes floats (and int8); integer tiles
    are multiplied out and summed over K, which wraps as NumPy's integer matmul does."""
    if dtype == "float32":
        return F32_DOT[precision]
    if dtype == "float64":   # (out_dtype: triton 3.6 would accumulate in float32)
        return "tl.dot(a, b, acc, out_dtype=tl.float64)"
    return "acc + tl.sum(a[:, :, None] * b[None, :, :], axis=1)"


# The largest tile of the autotune space: index widths must hold for every config.
_LARGEST_TILE = 128


def matmul_kernel(name: str, nest: LoopNest, shapes: list,
                  settings: bl.Settings = bl.Settings()) -> list:
    """The matmul's kernel, or, when K is split (blocks.split_k), the kernel that sums
    each share of K into the workspace and the one that adds the shares up and applies
    the epilogue."""
    c = nest.contraction
    batch, (m, n) = nest.domain[:-2], nest.domain[-2:]
    blocks = bl.matmul_blocks(m, n, c.k)
    batches = bl.numel(batch)
    tiles = -(-m // blocks["BLOCK_M"]) * -(-n // blocks["BLOCK_N"])
    split = bl.split_k(tiles * batches, c.k, settings.sms) if c.dtype == "float32" else 1
    reach = batches * bl.padded(m, _LARGEST_TILE) * bl.padded(n, _LARGEST_TILE) * split
    idx_t = bl.index_dtype(shapes + [nest.out_shape], reach)
    if split == 1:
        return [_matmul(name, nest, shapes, blocks, idx_t, settings.precision)]
    workspace = split * batches * m * n
    return [_matmul(name + "_partial", nest, shapes, blocks, idx_t, settings.precision,
                    split, workspace),
            _matmul(name, nest, shapes, blocks, idx_t, settings.precision, -split, workspace)]


def _matmul(name, nest, shapes, blocks, idx_t, precision, split=1, workspace=0):
    """One matmul kernel. split: 1, the whole product and its epilogue; s > 1, share
    program_id(2) of s of K into the workspace; -s, the sum of s shares and the epilogue."""
    c = nest.contraction
    batch, (m, n) = nest.domain[:-2], nest.domain[-2:]
    em = Emitter()
    _tile_position(em, m, n, idx_t)
    at = dict(enumerate(ix.unflatten(lane("pid_b", bl.numel(batch)), tuple(batch))))
    at.update({len(batch): lane("rm", m), len(batch) + 1: lane("rn", n), c.k_axis: lane("rk", c.k)})
    masks = {"rm": f"(rm[:, None] < {m})", "rn": f"(rn[None, :] < {n})"}
    values = Values(em, nest, shapes, Lanes(at, {"pid_b": "pid_b", "rm": "rm[:, None]",
                                                 "rn": "rn[None, :]"}, masks))
    tile_mask = f"{masks['rm']} & {masks['rn']}"
    # where this tile's share of the product lies in the float32 workspace
    share = f"(pid_b * {m} + rm[:, None]) * {n} + rn[None, :]"
    em.line(f"acc = tl.zeros((BLOCK_M, BLOCK_N), {TL_DTYPE[c.dtype]})")
    if split < 0:
        em.open(f"for sh in range({-split}):")
        em.line(f"acc += tl.load(ws_ptr + sh * {bl.numel(batch) * m * n} + {share}, "
                f"mask={tile_mask}, other=0)")
        em.close()
    else:
        _contract(values, c, m, n, blocks, idx_t, precision, split)
    checks = []
    if split > 1:
        em.line(f"tl.store(ws_ptr + tl.program_id(2) * {bl.numel(batch) * m * n} + {share}, "
                f"acc, mask={tile_mask})")
    else:
        product = next(v for v, value in enumerate(nest.values) if isinstance(value, Product))
        values.special[product] = "acc"
        result = em.var(f"tl.broadcast_to({values.get(nest.result)}, (BLOCK_M, BLOCK_N))", "v")
        store = values.lanes.offset(ix.flatten(nest.store, nest.out_shape), ("rm", "rn"))
        em.line(f"tl.store(out_ptr + {store}, {result}, mask={tile_mask})")
        checks = [_check(values, nest, j, check) for j, check in enumerate(nest.checks)]
    shares = max(split, 1)
    grid = (-(-m // blocks["BLOCK_M"]) * -(-n // blocks["BLOCK_N"]), bl.numel(batch), shares)
    grid_src = (f"lambda meta: (triton.cdiv({m}, meta['BLOCK_M']) * "
                f"triton.cdiv({n}, meta['BLOCK_N']), {bl.numel(batch)}, {shares})")
    kernel = _finish(name, "matmul", len(shapes), em, values, checks, blocks, grid, grid_src,
                     idx_t, bl.matmul_warps(blocks), workspace)
    kernel.split = split
    return kernel


def _tile_position(em: Emitter, m: int, n: int, idx_t: str):
    """rm, rn: the rows and columns of this program's tile. Programs take tiles in
    groups of GROUP_M rows of tiles, column by column within a group, so programs that
    run at once share their B tiles (and A's) in L2. The hints say what Triton cannot
    see through the group arithmetic: each tile's lanes start at a multiple of the
    block and run contiguously."""
    em.line(f"grid_m = ({m} + BLOCK_M - 1) // BLOCK_M")
    em.line(f"grid_n = ({n} + BLOCK_N - 1) // BLOCK_N")
    em.line(f"pid = {_widen('tl.program_id(0)', idx_t)}")
    em.line(f"pid_b = {_widen('tl.program_id(1)', idx_t)}")
    em.line("group = pid // (GROUP_M * grid_n)")
    em.line("group_rows = tl.minimum(grid_m - group * GROUP_M, GROUP_M)")
    em.line("pid_m = group * GROUP_M + (pid % (GROUP_M * grid_n)) % group_rows")
    em.line("pid_n = (pid % (GROUP_M * grid_n)) // group_rows")
    for lane_name, pid, block in (("rm", "pid_m", "BLOCK_M"), ("rn", "pid_n", "BLOCK_N")):
        em.line(f"{lane_name} = tl.max_contiguous(tl.multiple_of({pid} * {block} + "
                f"{_widen(f'tl.arange(0, {block})', idx_t)}, {block}), {block})")


def _contract(values: Values, c, m: int, n: int, blocks: dict, idx_t: str, precision: str,
              split: int = 1):
    """acc += A's [BLOCK_M, BLOCK_K] tile @ B's [BLOCK_K, BLOCK_N] tile over K (over
    share program_id(2) of `split` shares of K, each a whole number of BLOCK_K). K that
    fits one block gets no loop: a one-trip loop only gives the software pipeliner
    staging buffers to keep (and ptxas registers to spill)."""
    em = values.em
    one_block = c.k <= blocks["BLOCK_K"]
    if split > 1:
        em.line(f"k_share = tl.cdiv(tl.cdiv({c.k}, {split}), BLOCK_K) * BLOCK_K")
        em.line("k_first = tl.program_id(2) * k_share")
        em.open(f"for k0 in range(k_first, tl.minimum(k_first + k_share, {c.k}), BLOCK_K):")
    elif not one_block:
        em.open(f"for k0 in range(0, {c.k}, BLOCK_K):")
    start = "" if one_block and split == 1 else "k0 + "
    em.line(f"rk = tl.max_contiguous(tl.multiple_of({start}"
            f"{_widen('tl.arange(0, BLOCK_K)', idx_t)}, BLOCK_K), BLOCK_K)")
    for which, load, (rows, size_r), (cols, size_c) in (
            ("a", c.a, ("rm", m), ("rk", c.k)), ("b", c.b, ("rk", c.k), ("rn", n))):
        values.lanes.names.update({rows: f"{rows}[:, None]", cols: f"{cols}[None, :]"})
        mask = (f"({rows}[:, None] < {size_r})", f"({cols}[None, :] < {size_c})")
        tile = values.load(load, (rows, cols), mask)
        em.line(f"{which} = {cast(tile, load.dtype, c.dtype)}")
    values.lanes.names.update({"rm": "rm[:, None]", "rn": "rn[None, :]"})
    em.line(f"acc = {_dot(c.dtype, precision)}")
    if split > 1 or not one_block:
        em.close()


def _finish(name, kind, n_operands, em, values, checks, blocks, grid, grid_src, idx_t,
            num_warps, workspace=0) -> TritonKernel:
    params = [f"in{k}_ptr" for k in range(n_operands)] + ["out_ptr"]
    params += [f"chk{j}_ptr" for j in range(len(checks))]
    params += ["ws_ptr"] if workspace else []
    params += [f"{b}: tl.constexpr" for b in blocks]
    header = f"@triton.jit\ndef {name}({', '.join(params)}):"
    source = header + "\n" + "\n".join(em.lines) + "\n"
    return TritonKernel(name, kind, source, grid, grid_src, blocks, num_warps, idx_t,
                        sorted(values.loaded), checks, workspace=workspace)
