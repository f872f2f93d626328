"""How the numpy backend writes one kernel: a fused body (or one plain node) as ufunc calls.

A kernel's steps go into storage slots: the kernel's output array, when a step has its
shape and dtype and the output is free, so a pointwise chain runs in place; otherwise a
scratch array of the ScratchPool, shared by all kernels (they run one after another). A
large pointwise kernel runs in chunks of rows (Chunking), so its temporaries stay in cache
from one ufunc to the next. One-element consts become Python numbers in the source.

BodyWriter reads the storage of the kernel's operands and the namespace of the generated
function from the Codegen of backends/numpy.py, which assembles the kernels into a function.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from graphc import ops
from graphc.backends import numpy_ops
from graphc.backends.numpy_gemm import gemm_chains
from graphc.backends.numpy_ops import alias_of
from graphc.ir import SOURCE_OPS, Node
from graphc.types import TensorType, numpy_dtype


@dataclass
class Kernel:
    """One kernel's code: the node it computes, its output array, its statements."""
    node: Node
    out: str                                  # the kernel's output array expression
    shape: tuple                              # the output's shape and dtype
    dtype: np.dtype
    spare: str | None = None                  # an array of the output's type, for a temporary
    c_source: str | None = None               # the C function it calls, if any (c_kernels.py)
    lines: list = field(default_factory=list)  # (statement, the node it computes)


class ScratchPool:
    """Arrays for a fused body's intermediates, shared by all kernels: kernels run one
    after another, so every scratch array is free again when the next one starts."""

    def __init__(self):
        self.arrays = {}   # name -> ndarray
        self.by_kind = {}  # (shape, dtype) -> [names]

    def take(self, shape, dtype, busy) -> str:
        for name in self.by_kind.get((shape, dtype), ()):
            if name not in busy:
                return name
        name = f"s{len(self.arrays)}"
        self.arrays[name] = np.empty(shape, dtype)
        self.by_kind.setdefault((shape, dtype), []).append(name)
        return name

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())


# Pointwise kernels over large arrays run in chunks along their first axis, about this
# many elements each: a chunk's operands and temporaries stay in cache from one ufunc to
# the next, so memory traffic is the kernel's inputs and output, not each step's. (512 KiB
# of float32 an array. Measured on bench C, 2 cores with 1 MiB of L2 each: on one thread
# 64Ki-256Ki elements run within 3%, 1.3x faster than unchunked, 32Ki 5% slower (Python's
# per-call cost); on two threads 128Ki-256Ki run 10-15% faster than 64Ki.)
CHUNK_ELEMENTS = 131072
# The chunks of a kernel are shared out among this many threads, each with its own scratch
# arrays (NumPy's ufuncs release the GIL); as many as the cores we may run on, the
# count OpenBLAS takes for its own threads.
THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
    os.cpu_count() or 1)
# Names the generated code uses for its own locals: no user's name may take them.
LOCAL_NAMES = ("i", "j", "n", "lo", "hi", "_kernel", "_begin_commit")


@dataclass(frozen=True)
class Chunking:
    rows: int      # rows of the first axis per chunk
    total: int     # length of the first axis
    threads: int   # how many threads share the chunks out

    @property
    def exact(self) -> bool:
        return self.total % self.rows == 0

    def loop(self, start: str, stop: str) -> list:
        bound = f"i + {self.rows}" if self.exact else (
            f"min(i + {self.rows}, {self.total}); n = j - i")
        return [f"for i in range({start}, {stop}, {self.rows}):", f"    j = {bound}"]

    def wrap(self, scratch: list, more_scratch: list) -> tuple:
        """(lines before, indent, lines after) the statements of one chunk [i:j]: an inline
        loop over the chunks, or, with threads, a function over a range of chunks and its
        scratch arrays that _run_chunks calls once per thread (`more_scratch`: the scratch
        arrays of each further thread, in the order of `scratch`)."""
        if self.threads == 1:
            return self.loop("0", str(self.total)), 4, []
        sets = ", ".join(_tuple(names) for names in [scratch] + more_scratch)
        head = [f"def _kernel(lo, hi{''.join(', ' + name for name in scratch)}):"]
        head += ["    " + line for line in self.loop("lo", "hi")]
        return head, 8, [f"_run_chunks(_kernel, {self.total}, {self.rows}, ({sets}))"]


def _tuple(names: list) -> str:
    return f"({', '.join(names)}{',' if len(names) == 1 else ''})"


class BodyWriter:
    """Writes a kernel's steps (a fused body, or one plain node) into statements.

    Each computed step gets a storage slot: the kernel's output array or a scratch array
    of its shape and dtype. A slot is busy while a value stored in it (or a view of it) is
    still to be read; an outer operand that lives in the output's buffer (an in-place
    kernel) keeps the output slot busy until its last read. With a Chunking, every value
    that spans the output's first axis is read and written a chunk [i:j] at a time."""

    def __init__(self, gen, kernel: Kernel, leaves: dict, chunk=None):
        self.gen, self.kernel, self.chunk = gen, kernel, chunk
        self.expr, self.root = {}, {}
        self.slot = {}                # root value -> slot name
        self.chunked = {}             # value -> whether it is taken a chunk at a time
        # value -> its number, for values whose elements all hold the same number known
        # at build time: one-element consts, sizes, and what elementwise and layout ops
        # make of them alone (the gradient of a mean divides by the batch size).
        self.known = {}
        own = gen.storage(kernel.node)
        for body_node, outer_node in leaves.items():
            self._read(body_node, gen.expr[outer_node])
            if outer_node in gen.known:
                self.known[body_node] = gen.known[outer_node]
            if own is not None and gen.storage(outer_node) == own:
                self.slot[body_node] = kernel.out

    def write(self, steps: list, result: Node):
        self._steps = steps
        last = self._last_reads(steps, result)
        # An op that may not write over its operands (where, a reduction, ...) and ends the
        # kernel must find the output slot free: its operands go to scratch instead.
        self.keep_out_free = set() if result.op in numpy_ops.SAFE_IN_PLACE else set(
            result.inputs)
        self.occupants = defaultdict(int)    # slot -> live values stored in it
        self.expiring = defaultdict(list)    # step -> slots whose value it reads last
        for value, slot in self.slot.items():  # operands in the output's buffer
            self._occupy(value, slot, last, -1)
        chains = gemm_chains(steps, result, self._number) if self.gen.gemm else {}
        done_until = -1
        for i, node in enumerate(steps):
            if i <= done_until:  # a step of a run that one gemm call computed
                continue
            self.chunked[node] = self.chunk is not None and _spans_first_axis(
                node, self.kernel.node, self.gen.dims)
            if node in chains:
                done_until = self._write_gemm(chains[node], i, last, result)
                continue
            if self._fold(node):
                continue
            args = [self._operand(inp, node) for inp in node.inputs]
            if self.chunk is not None and node.op == "broadcast_to":
                # the ufuncs that read it broadcast their operands into each chunk
                self.expr[node], self.root[node] = args[0], self.root[node.inputs[0]]
                continue
            if alias_of(node) is not None:
                self.expr[node] = numpy_ops.view_expr(node, args[0], self.gen.dims)
                self.root[node] = self.root[node.inputs[0]]
                continue
            safe = node.op in numpy_ops.SAFE_IN_PLACE
            if safe:  # a ufunc may write over the operands it reads for the last time
                self._release(i)
            busy = {slot for slot, count in self.occupants.items() if count}
            slot = self._choose_slot(node, node is result, busy)
            target = self._at(slot, self.chunked[node])
            lines = numpy_ops.emit(node, args, target, self.gen.dims,
                                   lambda value, node=node: self._filled(node, value))
            if node is result and slot != self.kernel.out:
                lines.append(f"np.copyto({self._at(self.kernel.out, True)}, {target})")
            self._append(node, lines)
            self.expr[node], self.root[node], self.slot[node] = target, node, slot
            if not safe:
                self._release(i)
            self._occupy(node, slot, last, i)
        if result not in self.slot:  # the body is its inputs or a view of them
            out = self._at(self.kernel.out, True)
            self._append(result, [f"np.copyto({out}, {self._operand(result, None)})"])
        if self.chunk is not None:
            self._wrap_in_chunk_loop()

    def _write_gemm(self, chain, i, last, result) -> int:
        """Writes a matmul and the linear steps after it as one BLAS call (see
        numpy_gemm.py); returns the index of the run's last step."""
        head, end, form = chain.head, chain.end, chain.form
        self.chunked[end] = False  # matmul kernels run whole
        a, b = (self._operand(x, head) for x in head.inputs)
        operand_slots = {self.slot.get(self.root.get(x)) for x in head.inputs} - {None}
        addend = form.addend
        if (addend is not None and end is result and addend.type == end.type
                and self.root.get(addend) is addend and self.slot.get(addend) == self.kernel.out
                and self.kernel.out not in operand_slots):
            slot, lines = self.kernel.out, []  # C lives in the output: accumulate there
        else:
            busy = {slot for slot, count in self.occupants.items() if count}
            slot = self._choose_slot(end, end is result, busy | operand_slots)
            lines = [] if addend is None else [
                f"np.copyto({self._shaped(slot, form.added_at)}, "
                f"{self._operand(addend, form.added_at)})"]
        number = lambda x: numpy_ops.literal(np.asarray(x, numpy_dtype(end.dtype)))
        lines.append(f"_gemm({a}, {b}, {slot}, {number(form.alpha)}, {number(form.beta)})")
        if end is result and slot != self.kernel.out:
            lines.append(f"np.copyto({self.kernel.out}, {slot})")
        stop = i + chain.length - 1
        run = ", ".join(step.op for step in self._steps[i:stop + 1])
        self._append(end, lines, note=f"{run}: one BLAS gemm, C = alpha * A @ B + beta * C")
        self.expr[end], self.root[end], self.slot[end] = slot, end, slot
        for k in range(i, stop + 1):
            self._release(k)
        self._occupy(end, slot, last, stop)
        return stop

    def _shaped(self, slot: str, node: Node) -> str:
        """A slot's array viewed in a node's shape (the same elements, in order)."""
        shape = node.type.concrete_shape(self.gen.dims)
        return slot if self._array_shape(slot) == shape else f"{slot}.reshape({shape})"

    def _array_shape(self, slot: str) -> tuple:
        if slot in self.gen.scratch.arrays:
            return self.gen.scratch.arrays[slot].shape
        return self.kernel.shape

    def _number(self, node: Node):
        """The number every element of a value holds, if the build knows it, else None."""
        value = self.known.get(node, one_element_const(node))
        return None if value is None else value.item()

    def _wrap_in_chunk_loop(self):
        scratch = sorted(set(self.slot.values()) - {
            self.kernel.out, self.kernel.spare}, key=lambda name: int(name[1:]))
        more, taken = [], set(scratch)
        for _ in range(self.chunk.threads - 1):
            more.append([])
            for name in scratch:
                more[-1].append(self._another(name, taken))
                taken.add(more[-1][-1])
        head, indent, tail = self.chunk.wrap(scratch, more)
        node = self.kernel.node
        comment, *body = self.kernel.lines
        self.kernel.lines = ([comment] + [(text, node) for text in head]
                             + [(" " * indent + text, step) for text, step in body]
                             + [(text, node) for text in tail])

    def _another(self, name: str, taken: set) -> str:
        """A scratch array like `name` for another thread, none of those `taken`."""
        array = self.gen.scratch.arrays[name]
        other = self.gen.scratch.take(array.shape, array.dtype, taken)
        self.gen.namespace[other] = self.gen.scratch.arrays[other]
        return other

    def _at(self, slot: str, chunked: bool) -> str:
        """The expression of a slot for the current chunk (the whole slot if unchunked)."""
        if self.chunk is None or not chunked:
            return slot
        if slot in (self.kernel.out, self.kernel.spare):  # arrays of the output's shape
            return f"{slot}[i:j]"
        return slot if self.chunk.exact else f"{slot}[:n]"

    def _fold(self, node: Node) -> bool:
        """Computes an elementwise or layout step at build time if every operand is known."""
        known = [self.known.get(i, one_element_const(i)) for i in node.inputs]
        if any(value is None for value in known) or not (
                alias_of(node) is not None or ops.OPS[node.op].kind in ops.ELEMENTWISE_KINDS):
            return False
        self.known[node] = known[0] if alias_of(node) is not None else ops.evaluate(
            node.op, known, node.attrs, TensorType((), node.dtype), {})
        return True

    def _operand(self, node: Node, user) -> str:
        value = self.known.get(node, one_element_const(node))
        if value is not None and _literal_for(node, user):
            return numpy_ops.literal(value)
        if node not in self.expr:  # a const inside a fused body, a known value: an array
            array = node.value if node.op == "const" else np.full(
                node.type.concrete_shape(self.gen.dims), value)
            self._read(node, self.gen.bind_array(node, array, "c"))
        return self.expr[node]

    def _read(self, node: Node, array: str):
        """A value the kernel reads from `array`: a chunk at a time if it spans the output's
        first axis (an operand, or a const of the body such as a (rows, 1) column)."""
        self.chunked[node] = self.chunk is not None and _spans_first_axis(
            node, self.kernel.node, self.gen.dims)
        self.expr[node] = array + ("[i:j]" if self.chunked[node] else "")
        self.root[node] = node

    def _last_reads(self, steps, result) -> dict:
        """root value -> index of the last step that reads it or a view of it."""
        root = dict(self.root)
        last = {}
        for i, node in enumerate(steps):
            root[node] = node if alias_of(node) is None else root.get(node.inputs[0], node.inputs[0])
            for inp in node.inputs:
                last[root.get(inp, inp)] = i
        last[root.get(result, result)] = len(steps)
        return last

    def _occupy(self, value, slot, last, i):
        """`value` now holds `slot` until the step that reads it last."""
        end = last.get(value)
        if end is not None and end > i:
            self.occupants[slot] += 1
            self.expiring[end].append(slot)

    def _release(self, i):
        for slot in self.expiring.pop(i, ()):
            self.occupants[slot] -= 1

    def _shape(self, node) -> tuple:
        """The shape of a step's value in one chunk (the whole value if unchunked)."""
        shape = node.type.concrete_shape(self.gen.dims)
        return (self.chunk.rows,) + shape[1:] if self.chunked[node] else shape

    def _filled(self, node, value: str) -> str:
        """An array holding `value` that lines up with the step's result, chunk for chunk."""
        name = self.gen.filled(self._shape(node), numpy_dtype(node.dtype), value)
        return f"{name}[:n]" if self.chunked[node] and not self.chunk.exact else name

    def _choose_slot(self, node, is_result, busy) -> str:
        shape = self._shape(node)
        dtype = numpy_dtype(node.dtype)
        out_shape = self.kernel.shape
        if self.chunk is not None:
            out_shape = (self.chunk.rows,) + out_shape[1:]
        fits_out = out_shape == shape and self.kernel.dtype == dtype and (
            self.chunk is None or self.chunked[node])
        if fits_out and self.kernel.out not in busy and node not in self.keep_out_free:
            return self.kernel.out
        if fits_out and self.kernel.spare is not None and self.kernel.spare not in busy:
            return self.kernel.spare
        name = self.gen.scratch.take(shape, dtype, busy | {self.kernel.out})
        self.gen.namespace[name] = self.gen.scratch.arrays[name]
        return name

    def _append(self, node, lines, note=None):
        if self.kernel.node.op == "fused":
            note = f"{note or node.op}" + (f"  {node.loc}" if node.loc else "")
        else:
            note = describe(node, self.gen.names) + (f"  ({note})" if note else "")
        self.kernel.lines.append((f"{lines[0]}  # {note}", node))
        self.kernel.lines += [(line, node) for line in lines[1:]]


def one_element_const(node: Node):
    """A one-element const's number, as a 0-d array; None for any other node."""
    return node.value.reshape(()) if node.op == "const" and node.value.size == 1 else None


def _literal_for(node: Node, user) -> bool:
    """Whether a value known to hold one number throughout is written as that number when
    `user` reads it (None: the kernel's result is copied out of it). The user's `out=`
    array gives the shape, so the number must merely not widen the user's rank:
    `np.multiply(x, 0.5, out=o)`, `np.copyto(o, 0.5)`."""
    if user is None:
        return True
    if node.ndim == 0:
        return alias_of(user) is None
    return ops.OPS[user.op].kind in ops.ELEMENTWISE_KINDS and node.ndim <= user.ndim


def chunking(node: Node, dims: dict, chunk_elements: int = CHUNK_ELEMENTS,
             threads: int = THREADS) -> Chunking | None:
    """How to run a fused pointwise kernel in cache-sized chunks, or None (small, or a
    body with ops other than elementwise ones and broadcasts). Every value whose shape
    spans the output's first axis is then taken a chunk at a time; smaller ones whole."""
    if node.op != "fused" or node.attrs["kind"] != "pointwise" or node.ndim == 0:
        return None
    shape = node.type.concrete_shape(dims)
    row = int(np.prod(shape[1:], dtype=np.int64))
    rows = max(1, chunk_elements // max(row, 1))
    if shape[0] < 2 * rows:
        return None
    for b in node.body.nodes:
        if b.op not in SOURCE_OPS and b.op != "broadcast_to" and (
                ops.OPS[b.op].kind not in ops.ELEMENTWISE_KINDS):
            return None
    return Chunking(rows, shape[0], min(threads, -(-shape[0] // rows)))


def _spans_first_axis(value: Node, kernel: Node, dims: dict) -> bool:
    shape, full = value.type.concrete_shape(dims), kernel.type.concrete_shape(dims)
    return len(shape) == len(full) and shape[0] == full[0]


def describe(node: Node, names: dict) -> str:
    """`%3 = matmul(%x, %W1)  [grad] mlp.py:12`: the IR line without its type."""
    args = [f"%{names[i]}" for i in node.inputs]
    args += [f"{k}={v!r}" for k, v in sorted(node.attrs.items())]
    notes = ([f"[{','.join(sorted(node.tags))}]"] if node.tags else []) + (
        [node.loc] if node.loc else [])
    return f"%{names[node]} = {node.op}({', '.join(args)})" + "".join(f"  {n}" for n in notes)
