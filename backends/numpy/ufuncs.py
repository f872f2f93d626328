"""A kernel as NumPy calls: its body's steps as ufunc calls with `out=`.

A kernel's steps go into storage slots: the kernel's output array, when a step has its
shape and dtype and the output is free, so a pointwise chain runs in place; otherwise a
scratch array of the ScratchPool, shared by all kernels (they run one after another). A
large pointwise kernel runs in chunks of rows (chunks.py), so its temporaries stay in
cache from one ufunc to the next. One-element consts and numbers known at build time
become Python numbers in the source. A matmul and the linear steps after it are one
BLAS gemm call where gemm can be called (gemm.py).

BodyWriter reads a Job (job.py) and writes into the Namespace (namespace.py); it calls
nothing of the function writer that made the Job.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from graphc import ops
from graphc.backends.lower.kernel import Runtime, known_numbers, one_element_const
from graphc.ir import Node
from graphc.types import numpy_dtype

from . import ufunc_ops
from .chunks import spans_first_axis
from .gemm import gemm_chains
from .namespace import is_symbolic, shape_source
from .ufunc_ops import alias_of


class BodyWriter:
    """Writes a kernel's steps (a fused body, or one plain node) into statements.

    Each computed step gets a storage slot: the kernel's output array or a scratch array
    of its shape and dtype. A slot is busy while a value stored in it (or a view of it) is
    still to be read; an operand that lives in the output's buffer (an in-place kernel)
    keeps the output slot busy until its last read. With a Chunking, every value that
    spans the output's first axis is read and written a chunk [_i:_j] at a time."""

    def __init__(self, namespace, job, chunk=None, gemm: bool = False):
        self.ns, self.job, self.chunk, self.gemm = namespace, job, chunk, gemm
        self.out = job.output.expr
        self.fused = job.node.op == "fused"
        self.lines = []               # (statement, the node it computes)
        self.expr, self.root = {}, {}
        self.slot = {}                # root value -> slot name
        self.chunked = {}             # value -> whether it is taken a chunk at a time
        # value -> its number, for values whose elements all hold the same number known
        # at build time: one-element consts, sizes, and what elementwise and layout ops
        # make of them alone (the gradient of a mean divides by the batch size).
        self.known = {}
        for body_node, operand in job.leaves.items():
            self._read(body_node, operand.expr)
            if operand.known is not None:
                self.known[body_node] = operand.known
            if operand.in_output:
                self.slot[body_node] = self.out

    def write(self, steps: list, result: Node) -> list:
        """The statements computing `result` from `steps` into the output; (statement,
        node) pairs."""
        self._steps = steps
        self.known = known_numbers(self.job.kernel.body.nodes, self.job.shapes, self.known)
        last = self._last_reads(steps, result)
        # An op that may not write over its operands (where, a reduction, ...) and ends the
        # kernel must find the output slot free: its operands go to scratch instead.
        self.keep_out_free = set() if result.op in ufunc_ops.SAFE_IN_PLACE else set(
            result.inputs)
        self.occupants = defaultdict(int)    # slot -> live values stored in it
        self.expiring = defaultdict(list)    # step -> slots whose value it reads last
        for value, slot in self.slot.items():  # operands in the output's buffer
            self._occupy(value, slot, last, -1)
        chains = gemm_chains(steps, result, self._number) if self.gemm else {}
        done_until = -1
        for i, node in enumerate(steps):
            if i <= done_until:  # a step of a run that one gemm call computed
                continue
            self.chunked[node] = self._spans(node)
            if node in chains:
                done_until = self._write_gemm(chains[node], i, last, result)
            elif node not in self.known:  # (a known number is written as that number)
                self._write_step(node, i, last, result)
        if result not in self.slot:  # the body is its inputs or a view of them
            out = self._at(self.out, True)
            self._append(result, [f"np.copyto({out}, {self._operand(result, None)})"])
        if self.chunk is not None:
            self._wrap_in_chunk_loop()
        return self.lines

    def _write_step(self, node: Node, i: int, last: dict, result: Node):
        args = [self._operand(inp, node) for inp in node.inputs]
        if self.chunk is not None and node.op == "broadcast_to":
            # the ufuncs that read it broadcast their operands into each chunk
            self.expr[node], self.root[node] = args[0], self.root[node.inputs[0]]
            return
        if alias_of(node) is not None:
            self.expr[node] = ufunc_ops.view_expr(node, args[0], self.job.dims)
            self.root[node] = self.root[node.inputs[0]]
            return
        safe = node.op in ufunc_ops.SAFE_IN_PLACE
        if safe:  # a ufunc may write over the operands it reads for the last time
            self._release(i)
        slot = self._choose_slot(node, node is result, self._busy())
        target = self._at(slot, self.chunked[node])
        lines = ufunc_ops.emit(node, args, target, self.job.dims,
                               lambda value: self._filled(node, value))
        if node is result and slot != self.out:
            lines.append(f"np.copyto({self._at(self.out, True)}, {target})")
        self._append(node, lines)
        self.expr[node], self.root[node], self.slot[node] = target, node, slot
        if not safe:
            self._release(i)
        self._occupy(node, slot, last, i)

    def _busy(self) -> set:
        return {slot for slot, count in self.occupants.items() if count}

    def _write_gemm(self, chain, i, last, result) -> int:
        """Writes a matmul and the linear steps after it as one BLAS call (see gemm.py);
        returns the index of the run's last step."""
        head, end, form = chain.head, chain.end, chain.form
        self.chunked[end] = False  # matmul kernels run whole
        a, b = (self._operand(x, head) for x in head.inputs)
        operand_slots = {self.slot.get(self.root.get(x)) for x in head.inputs} - {None}
        addend = form.addend
        if (addend is not None and end is result and addend.type == end.type
                and self.root.get(addend) is addend and self.slot.get(addend) == self.out
                and self.out not in operand_slots):
            slot, lines = self.out, []  # C lives in the output: accumulate there
        else:
            slot = self._choose_slot(end, end is result, self._busy() | operand_slots)
            lines = [] if addend is None else [
                f"np.copyto({self._shaped(slot, form.added_at)}, "
                f"{self._operand(addend, form.added_at)})"]
        number = lambda x: ufunc_ops.literal(np.asarray(x, numpy_dtype(end.dtype)))
        lines.append(f"_gemm({a}, {b}, {slot}, {number(form.alpha)}, {number(form.beta)})")
        if end is result and slot != self.out:
            lines.append(f"np.copyto({self.out}, {slot})")
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
        shape = self.job.shapes[node]
        if self._array_shape(slot) == shape:
            return slot
        return f"{slot}.reshape({shape_source(shape)})"

    def _array_shape(self, slot: str) -> tuple:
        if slot in self.ns.scratch.kinds:
            return self.ns.scratch.kinds[slot][0]
        return self.job.shape

    def _number(self, node: Node):
        """The number every element of a value holds, if the build knows it, else None."""
        value = self.known.get(node, one_element_const(node))
        # (a number fixed only at each call is no factor gemm's alpha can hold)
        return None if value is None or isinstance(value, Runtime) else value.item()

    def _wrap_in_chunk_loop(self):
        made = list(self.ns.scratch.kinds)  # in the order made: a stable order
        scratch = sorted(set(self.slot.values()) - {self.out, self.job.spare}, key=made.index)
        more, taken = [], set(scratch)
        for _ in range(self.chunk.threads - 1):
            more.append([])
            for name in scratch:
                shape, dtype = self.ns.scratch.kinds[name]
                more[-1].append(self.ns.scratch.take(shape, dtype, taken))
                taken.add(more[-1][-1])
        head, indent, tail = self.chunk.wrap(scratch, more)
        node = self.job.node
        self.lines = ([(text, node) for text in head]
                      + [(" " * indent + text, step) for text, step in self.lines]
                      + [(text, node) for text in tail])

    def _at(self, slot: str, chunked: bool) -> str:
        """The expression of a slot for the current chunk (the whole slot if unchunked)."""
        if self.chunk is None or not chunked:
            return slot
        if slot in (self.out, self.job.spare):  # arrays of the output's shape
            return f"{slot}[_i:_j]"
        return slot if self.chunk.exact else f"{slot}[:_n]"

    def _operand(self, node: Node, user) -> str:
        value = self.known.get(node, one_element_const(node))
        runtime = isinstance(value, Runtime)
        text = None if value is None else (
            self.ns.runtime_number(value) if runtime else ufunc_ops.literal(value))
        if value is not None and _literal_for(node, user):
            return text
        if node not in self.expr:  # a known value read as an array (by a reduction)
            shape = self.job.shapes[node]
            if runtime or is_symbolic(shape):
                dtype = numpy_dtype(node.dtype)
                self._read(node, self.ns.filled(shape, dtype, text, fixed=not runtime))
            else:
                self._read(node, self.ns.bind("c", np.full(shape, value)))
        return self.expr[node]

    def _read(self, node: Node, array: str):
        """A value the kernel reads from `array`: a chunk at a time if it spans the output's
        first axis (an operand, or a const of the body such as a (rows, 1) column)."""
        self.chunked[node] = self._spans(node)
        self.expr[node] = array + ("[_i:_j]" if self.chunked[node] else "")
        self.root[node] = node

    def _spans(self, node: Node) -> bool:
        return self.chunk is not None and spans_first_axis(self.job.shapes[node],
                                                           self.job.shape)

    def _last_reads(self, steps, result) -> dict:
        """root value -> index of the last step that reads it or a view of it."""
        root = dict(self.root)
        last = {}
        for i, node in enumerate(steps):
            base = alias_of(node)
            root[node] = node if base is None else root.get(base, base)
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
        shape = self.job.shapes[node]
        return (self.chunk.rows,) + shape[1:] if self.chunked[node] else shape

    def _filled(self, node, value: str) -> str:
        """An array holding `value` that lines up with the step's result, chunk for chunk."""
        name = self.ns.filled(self._shape(node), numpy_dtype(node.dtype), value)
        return f"{name}[:_n]" if self.chunked[node] and not self.chunk.exact else name

    def _choose_slot(self, node, is_result, busy) -> str:
        shape = self._shape(node)
        dtype = numpy_dtype(node.dtype)
        out_shape = self.job.shape
        if self.chunk is not None:
            out_shape = (self.chunk.rows,) + out_shape[1:]
        fits_out = out_shape == shape and self.job.dtype == dtype and (
            self.chunk is None or self.chunked[node])
        if fits_out and self.out not in busy and node not in self.keep_out_free:
            return self.out
        spare = self.job.spare
        if fits_out and spare is not None and spare not in busy:
            return spare
        return self.ns.scratch.take(shape, dtype, busy | {self.out})

    def _append(self, node, lines, note=None):
        if self.fused:
            note = f"{note or node.op}" + (f"  {node.loc}" if node.loc else "")
        else:
            note = self.job.title + (f"  ({note})" if note else "")
        self.lines.append((f"{lines[0]}  # {note}", node))
        self.lines += [(line, node) for line in lines[1:]]


def _literal_for(node: Node, user) -> bool:
    """Whether a value known to hold one number throughout is written as that number when
    `user` reads it (None: the kernel's result is copied out of it). The user's `out=`
    array gives the shape, so the number must merely not widen the user's rank:
    `np.multiply(x, 0.5, out=o)`, `np.copyto(o, 0.5)`."""
    if user is None:
        return True
    if node.ndim == 0:
        return alias_of(user) is None
    return ops.is_elementwise(user.op) and node.ndim <= user.ndim
