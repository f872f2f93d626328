"""Triton kernels for the ops that read or write at data-dependent places: gather and
scatter_add (the loop nests of backends/lower/ read and write at index arithmetic only).

Each is one program a BLOCK of the indices (flattened row-major, the lanes `offs`): load
the index (through the views its operand is seen by, as any kernel reads them), check it
lies in [-n, n) (a bad one is stored at its place in a zero-filled check buffer, which
the host reads after the launches: every backend raises ops.checked_indices' error),
count a negative one from the end, then read x there (gather) or add the value there
with tl.atomic_add (scatter_add, after a first kernel copies base into the output; the
order of the additions to one element is the atomics', so float sums may differ from
the reference's in the last bits). A lane whose index is bad reads and writes nothing.
"""

from __future__ import annotations

from graphc.backends.lower import index as ix
from graphc.backends.lower.kernel import Kernel
from graphc.backends.lower.loops import Unsupported, operand_load
from graphc.types import format_shape

from . import blocks as bl
from .render import CheckBuffer, TritonKernel
from .values import Emitter, Lanes, lane

PICK = 1007   # values.LANE_AXES["pick"]: the position along the axis, a lane variable


def indexing_kernels(name: str, kernel: Kernel, shapes: dict) -> list:
    """The kernels (one, or two for scatter_add) that compute the kernel's one op."""
    node = kernel.result
    axis = node.attrs["axis"]
    if node.op == "gather":
        x, idx = node.inputs
        return [_kernel(name, kernel, shapes, idx, x, axis, None)]
    base, idx, src = node.inputs
    return [_copy(name + "_copy", kernel, shapes, base),
            _kernel(name, kernel, shapes, idx, base, axis, src)]


def _start(shape) -> tuple:
    """(emitter, lanes over the row-major elements of `shape`, their count, blocks)."""
    total = bl.numel(shape)
    blocks = bl.pointwise_blocks(total)
    em = Emitter()
    em.line("offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)")
    em.line(f"mask = offs < {total}")
    at = dict(enumerate(ix.unflatten(lane("offs", total), tuple(shape))))
    return em, Lanes(at, {"offs": "offs", "pick": "pick"}, {"offs": "mask"}), total, blocks


def _address(kernel, shapes, lanes, node, index) -> tuple:
    load = operand_load(kernel, shapes, node, index)
    params = list(kernel.params)
    address = ix.flatten(load.index, shapes[params[load.operand]])
    return load.operand, lanes.offset(address, ("offs",))


def _kernel(name, kernel, shapes, idx, target, axis, src) -> TritonKernel:
    """gather (src None: out = target at idx) or scatter_add's additions (src into out)."""
    shape, n = shapes[idx], shapes[target][axis]
    if n == 0 and bl.numel(shape):
        raise Unsupported(f"{kernel.result.op} from the empty axis {axis} of "
                          f"{format_shape(shapes[target])}: every index is out of range")
    em, lanes, total, blocks = _start(shape)
    here = tuple(ix.var(a, d) for a, d in enumerate(shape))
    k, at = _address(kernel, shapes, lanes, idx, here)
    em.line(f"raw = tl.load(in{k}_ptr + {at}, mask=mask, other=0).to(tl.int64)")
    em.line(f"bad = (raw < -{n}) | (raw >= {n})")
    em.line("tl.store(chk0_ptr + offs, raw, mask=mask & bad)")
    em.line(f"pick = tl.where(raw < 0, raw + {n}, raw)")
    em.line("ok = mask & ~bad")
    # the target's position: idx's own, `pick` along the axis, 0 where the target has 1
    place = tuple(ix.ZERO if shapes[target][a] == 1 and a != axis else e
                  for a, e in enumerate(here))
    place = place[:axis] + (ix.Affine(((ix.Var(PICK, max(n, 2)), 1),), 0),) + place[axis + 1:]
    loaded = {k}
    if src is None:
        t, where = _address(kernel, shapes, lanes, target, place)
        em.line(f"v = tl.load(in{t}_ptr + {where}, mask=ok, other=0)")
        em.line("tl.store(out_ptr + offs, v, mask=mask)")
        loaded.add(t)
    else:
        s, values = _address(kernel, shapes, lanes, src, here)
        out = lanes.offset(ix.flatten(place, shapes[target]), ("offs",))
        em.line(f"v = tl.load(in{s}_ptr + {values}, mask=ok, other=0)")
        em.line(f"tl.atomic_add(out_ptr + {out}, v, mask=ok)")
        loaded.add(s)
    node = kernel.result
    check = CheckBuffer(n, node.loc, total, idx.dtype, node.op)
    return _finished(name, kernel, em, blocks, total, loaded, [check])


def _copy(name, kernel, shapes, base) -> TritonKernel:
    """out = base (the values scatter_add adds into)."""
    shape = shapes[base]
    em, lanes, total, blocks = _start(shape)
    k, at = _address(kernel, shapes, lanes, base, tuple(ix.var(a, d) for a, d in
                                                         enumerate(shape)))
    em.line(f"tl.store(out_ptr + offs, tl.load(in{k}_ptr + {at}, mask=mask), mask=mask)")
    return _finished(name, kernel, em, blocks, total, {k}, [])


def _finished(name, kernel, em, blocks, total, loaded, checks) -> TritonKernel:
    params = [f"in{k}_ptr" for k in range(len(kernel.params))] + ["out_ptr"]
    params += [f"chk{j}_ptr" for j in range(len(checks))] + ["BLOCK: tl.constexpr"]
    source = f"@triton.jit\ndef {name}({', '.join(params)}):\n" + "\n".join(em.lines) + "\n"
    grid = (-(-total // blocks["BLOCK"]),)
    grid_src = f"lambda meta: (triton.cdiv({total}, meta['BLOCK']),)"
    return TritonKernel(name, "pointwise", source, grid, grid_src, blocks,
                        bl.pointwise_warps(blocks), "int64", sorted(loaded), checks)


KERNELS = {"gather": indexing_kernels, "scatter_add": indexing_kernels}
