"""The numpy backend: straight-line Python source generated from the scheduled graph.

build(graph, dims) does, once per input-shape signature:
  1. schedule the graph and plan its buffers (graphc.passes.schedule): each computed value
     gets a byte arena, shared with values whose lives do not overlap; layout ops
     (reshape, transpose, ...) are NumPy views and get none;
  2. view every arena as the (dtype, shape) of each value stored in it, once;
  3. write one kernel per node: a plain op or a `fused` node (its body, see
     /tmp/fused_contract.md) becomes a few ufunc calls with `out=` into the node's buffer,
     intermediates of a body go into that same buffer when they can (an in-place chain)
     or into small scratch arrays shared by all kernels; a matmul reads its operands
     through transposed views and its epilogue runs in place on its output;
  4. exec the source under a readable file name ("<graphc:fn_...>", registered with
     linecache so tracebacks show the generated line).

The generated function returns fresh copies of the graph's outputs (the caller keeps them
while the buffers are reused by the next call) and the update values as they are: views
of buffers, valid until the next call (gc.compile copies them into the params at once).
An update whose kernel runs after every other reader of its param and after every kernel
that can raise is written straight into the param (`updates_in_place`): the value
returned is then the param itself, and the caller's copy is a no-op; a call that raises
still leaves every param as it was.
"""

from __future__ import annotations

import itertools
import keyword
import linecache
import re
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from graphc import ops
from graphc.backends import numpy_ops
from graphc.errors import GraphcError
from graphc.ir import SOURCE_OPS, Graph, Node, node_names
from graphc.passes.schedule import format_plan, plan_buffers, schedule
from graphc.types import format_shape, numpy_dtype

_fn_ids = itertools.count()
# Names the generated code makes up (buffer views, scratch arrays, params, body consts):
# a user's name of this form gets a prefix.
_GENERATED = re.compile(r"[bs]\d+(_\d+)?|_param\d+|body\d+|fn_\d+")


def build(graph: Graph, dims: dict) -> "NumpyExecutable":
    graph = schedule(graph)
    plan = plan_buffers(graph, dims, alias_of=alias_of)
    return NumpyExecutable(*Codegen(graph, dict(dims), plan).generate())


def alias_of(node: Node):
    """The operand whose storage a node views (layout ops are NumPy views), else None."""
    return node.inputs[0] if node.op in numpy_ops.VIEWS else None


def updates_in_place(graph: Graph, dims: dict) -> dict:
    """{update value: param} for the updates the generated code may write straight into
    their param, saving the caller's copy: the value is computed by a kernel that runs
    once nothing else will read the param's old value (no later kernel, no output), and
    after the last kernel that could raise (one_hot's label check, max over an empty
    axis), so a call that fails still leaves every param as it was."""
    position = {node: i for i, node in enumerate(graph.nodes)}
    root = {}
    for node in graph.nodes:
        base = alias_of(node)
        root[node] = node if base is None else root[base]
    last_read = {}
    for node in graph.nodes:
        for inp in node.inputs:
            last_read[root[inp]] = position[node]
    for node in list(graph.outputs) + list(graph.updates.values()):  # read at the return
        last_read[root[node]] = len(graph.nodes)
    last_risky = max((position[n] for n in graph.nodes if _can_raise(n, dims)), default=-1)
    chosen = {}
    for param, value in graph.updates.items():
        if (value.op not in SOURCE_OPS and alias_of(value) is None and value not in chosen
                and position[value] > last_risky
                and position[value] >= last_read.get(param, -1)):
            chosen[value] = param
    return chosen


def _can_raise(node: Node, dims: dict) -> bool:
    if node.op == "fused":
        return any(_can_raise(b, dims) for b in node.attrs["body"].nodes)
    if node.op == "one_hot":
        return True
    if node.op == "max":
        shape = node.inputs[0].type.concrete_shape(dims)
        return any(shape[a] == 0 for a in node.attrs["axes"])
    return False


# --- storage ---------------------------------------------------------------------------

@dataclass
class Kernel:
    """One kernel's code: the node it computes, its output array, its statements."""
    node: Node
    out: str                                  # the kernel's output array expression
    shape: tuple                              # the output's shape and dtype
    dtype: np.dtype
    spare: str | None = None                  # an array of the output's type, for a temporary
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


# --- code generation -------------------------------------------------------------------

class Codegen:
    """Writes the function for one graph and one binding of its symbolic dims."""

    def __init__(self, graph: Graph, dims: dict, plan):
        self.graph, self.dims, self.plan = graph, dims, plan
        self.names = node_names(graph.nodes)
        self.namespace = dict(numpy_ops.HELPERS)
        self.expr = {}        # node -> Python expression of its value
        self.scratch = ScratchPool()
        self.arenas = [np.empty(size, np.uint8) for size in plan.sizes]
        self._views = {}      # (buffer index, dtype, shape) -> name of that view
        self._views_per_buffer = {}
        self._taken = set(self.namespace) | set(keyword.kwlist)
        self.line_nodes = {}  # line number of the generated source -> node it computes
        self.into_param = updates_in_place(graph, dims)  # update value -> its param

    # names --------------------------------------------------------------------------

    def _identifier(self, node: Node, prefix: str) -> str:
        # Nodes inside a fused body have no name in the outer graph: number them apart.
        base = self.names.get(node) or f"body{len(self._taken)}"
        # A user's name is kept unless it could clash with buffer/scratch names (b0, s1_2).
        usable = re.fullmatch(r"[A-Za-z_]\w*", base) and not _GENERATED.fullmatch(base)
        name = base if usable else f"{prefix}{base}"
        while name in self._taken or keyword.iskeyword(name):
            name = f"{prefix}_{name}"
        self._taken.add(name)
        return name

    def _bind_array(self, node: Node, array: np.ndarray, prefix: str) -> str:
        name = self._identifier(node, prefix)
        self.namespace[name] = array
        return name

    # the whole function ------------------------------------------------------------

    def generate(self):
        fn_name = f"fn_{next(_fn_ids)}"
        params, kernels = [], []
        for node in self.graph.nodes:
            if node.op == "input":
                self.expr[node] = self._identifier(node, "in_")
            elif node.op == "param":
                self.expr[node] = self._identifier(node, "p_")
                params.append(node)
            elif node.op == "const":
                self.expr[node] = self._bind_array(node, node.value, "c")
            elif alias_of(node) is not None:
                self.expr[node] = numpy_ops.view_expr(node, self.expr[node.inputs[0]], self.dims)
            else:
                kernels.append(self._kernel(node))
        source = self._source(fn_name, params, kernels)
        filename = f"<graphc:{fn_name}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), self.namespace)
        stats = {"kernels": len(kernels), "peak_bytes": self.plan.peak_bytes,
                 "naive_bytes": self.plan.naive_bytes, "buffers": len(self.plan.sizes),
                 "scratch_bytes": self.scratch.nbytes}
        kernel_info = [{"name": self.expr[k.node], "kind": _kind(k.node),
                        "source": [text for text, _ in k.lines],
                        "nodes": _source_nodes(k.node, self.names)} for k in kernels]
        fn = self.namespace[fn_name]
        inputs = [n for n in self.graph.nodes if n.op == "input"]
        return (fn, inputs, source, kernel_info, stats, format_plan(self.plan),
                RunErrors(filename, self.line_nodes, self.dims))

    def _source(self, fn_name, params, kernels) -> str:
        inputs = [self.expr[n] for n in self.graph.nodes if n.op == "input"]
        lines = [f"# graphc numpy backend, dims {self.dims}: {len(kernels)} kernels, "
                 f"buffers peak {self.plan.peak_bytes} B (naive plan {self.plan.naive_bytes} B)",
                 f"def {fn_name}({', '.join(inputs)}):"]
        for i, node in enumerate(params):
            self.namespace[f"_param{i}"] = node
            lines.append(f"    {self.expr[node]} = _param{i}.value")
        for kernel in kernels:
            for text, node in kernel.lines:
                lines.append("    " + text)
                self.line_nodes[len(lines)] = node  # for errors: line number -> node
        results = [self._result(n, copy=True) for n in self.graph.outputs]
        results += [self._result(n, copy=False) for n in self.graph.updates.values()]
        lines.append(f"    return [{', '.join(results)}]")
        return "\n".join(lines) + "\n"

    def _result(self, node: Node, copy: bool) -> str:
        # Outputs outlive the call, buffers do not; update values are copied into the
        # params by the caller before the next call, unless they view a param themselves.
        if copy or self._storage_root(node).op in SOURCE_OPS:
            return f"np.array({self.expr[node]})"
        return self.expr[node]

    # one kernel ----------------------------------------------------------------------

    def _storage_root(self, node: Node) -> Node:
        while alias_of(node) is not None:
            node = alias_of(node)
        return node

    def _storage(self, node: Node):
        """Which memory a value lives in: ("buffer", index), ("param", param) for a param
        or an update value written straight into its param, or None (other sources)."""
        root = self._storage_root(node)
        if root in self.into_param:
            return ("param", self.into_param[root])
        if root.op == "param":
            return ("param", root)
        index = self.plan.buffer.get(root)
        return None if index is None else ("buffer", index)

    def _out_array(self, node: Node) -> str:
        shape, dtype = node.type.concrete_shape(self.dims), numpy_dtype(node.dtype)
        index = self.plan.buffer.get(node)
        if index is None:  # the plan left it out: give it storage of its own
            return self._bind_array(node, np.empty(shape, dtype), "v")
        # One name per (buffer, dtype, shape), so a value written over another one's
        # buffer reads as in place: np.add(b0, b1, out=b0).
        key = (index, dtype, shape)
        if key not in self._views:
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            count = self._views_per_buffer[index] = self._views_per_buffer.get(index, -1) + 1
            name = f"b{index}" + (f"_{count}" if count else "")
            self.namespace[name] = self.arenas[index][:nbytes].view(dtype).reshape(shape)
            self._views[key] = name
        return self._views[key]

    def _overwrites_operand_elsewhere(self, node: Node) -> bool:
        """Whether the kernel writes over an operand that it reads in another layout (a
        view, or another shape or dtype): then a chunk could clobber rows that a later
        chunk reads. An operand of the output's own layout is read row for row."""
        own = self._storage(node)
        return own is not None and any(
            self._storage(i) == own and (alias_of(i) is not None or i.type != node.type)
            for i in node.inputs)

    def _kernel(self, node: Node) -> Kernel:
        param = self.into_param.get(node)
        out = self.expr[param] if param is not None else self._out_array(node)
        self.expr[node] = out
        kernel = Kernel(node, out, node.type.concrete_shape(self.dims), numpy_dtype(node.dtype))
        if param is not None and node in self.plan.buffer:
            # the value's planned buffer is free: a temporary of the kernel goes there
            kernel.spare = self._out_array(node)
        if node.op == "fused":
            body = node.attrs["body"]
            leaves = {b: node.inputs[int(b.name[2:])] for b in body.nodes if b.op == "input"}
            kernel.lines.append((f"# {describe(node, self.names)}", node))
            steps = [b for b in body.nodes if b.op not in SOURCE_OPS]
            result = body.outputs[0]
        else:
            leaves = {i: i for i in node.inputs}
            steps, result = [node], node
        chunk = None if self._overwrites_operand_elsewhere(node) else chunking(node, self.dims)
        BodyWriter(self, kernel, leaves, chunk).write(steps, result)
        return kernel


# Pointwise kernels over large arrays run in chunks along their first axis, about this
# many elements each: a chunk's operands and temporaries stay in cache from one ufunc to
# the next, so memory traffic is the kernel's inputs and output, not each step's. (256 KiB
# of float32 an array; measured on bench C, 32Ki-256Ki elements all run within 10%, and
# 1.3x faster than unchunked; smaller chunks pay Python's per-call cost more often.)
CHUNK_ELEMENTS = 65536


@dataclass(frozen=True)
class Chunking:
    rows: int    # rows of the first axis per chunk
    total: int   # length of the first axis

    @property
    def exact(self) -> bool:
        return self.total % self.rows == 0

    def header(self) -> list:
        if self.exact:
            return [f"for i in range(0, {self.total}, {self.rows}):",
                    f"    j = i + {self.rows}"]
        return [f"for i in range(0, {self.total}, {self.rows}):",
                f"    j = min(i + {self.rows}, {self.total}); n = j - i"]


class BodyWriter:
    """Writes a kernel's steps (a fused body, or one plain node) into statements.

    Each computed step gets a storage slot: the kernel's output array or a scratch array
    of its shape and dtype. A slot is busy while a value stored in it (or a view of it) is
    still to be read; an outer operand that lives in the output's buffer (an in-place
    kernel) keeps the output slot busy until its last read. With a Chunking, every value
    that spans the output's first axis is read and written a chunk [i:j] at a time."""

    def __init__(self, gen: Codegen, kernel: Kernel, leaves: dict, chunk=None):
        self.gen, self.kernel, self.chunk = gen, kernel, chunk
        self.expr, self.root = {}, {}
        self.slot = {}                # root value -> slot name
        self.chunked = {}             # value -> whether it is taken a chunk at a time
        own = gen._storage(kernel.node)
        for body_node, outer_node in leaves.items():
            self._read(body_node, gen.expr[outer_node])
            if own is not None and gen._storage(outer_node) == own:
                self.slot[body_node] = kernel.out

    def write(self, steps: list, result: Node):
        last = self._last_reads(steps, result)
        # An op that may not write over its operands (where, a reduction, ...) and ends the
        # kernel must find the output slot free: its operands go to scratch instead.
        self.keep_out_free = set() if result.op in numpy_ops.SAFE_IN_PLACE else set(
            result.inputs)
        self.occupants = defaultdict(int)    # slot -> live values stored in it
        self.expiring = defaultdict(list)    # step -> slots whose value it reads last
        for value, slot in self.slot.items():  # operands in the output's buffer
            self._occupy(value, slot, last, -1)
        for i, node in enumerate(steps):
            args = [self._operand(inp, node) for inp in node.inputs]
            self.chunked[node] = self.chunk is not None and _spans_first_axis(
                node, self.kernel.node, self.gen.dims)
            if self.chunk is not None and node.op == "broadcast_to":
                # the ufuncs that read it broadcast their operands into each chunk
                (inp,) = node.inputs
                self.expr[node] = (numpy_ops.literal(inp.value.reshape(()))
                                   if inp.op == "const" and inp.value.size == 1 else args[0])
                self.root[node] = self.root[inp]
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
            lines = numpy_ops.emit(node, args, target, self.gen.dims)
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
            header = self.kernel.lines[:1] + [(t, self.kernel.node) for t in self.chunk.header()]
            body = [("    " + text, node) for text, node in self.kernel.lines[1:]]
            self.kernel.lines = header + body

    def _at(self, slot: str, chunked: bool) -> str:
        """The expression of a slot for the current chunk (the whole slot if unchunked)."""
        if self.chunk is None or not chunked:
            return slot
        if slot == self.kernel.out:
            return f"{slot}[i:j]"
        return slot if self.chunk.exact else f"{slot}[:n]"

    def _operand(self, node: Node, user) -> str:
        if _is_literal(node, user):
            return numpy_ops.literal(node.value.reshape(()))
        if node not in self.expr:  # a const inside a fused body: read like an operand
            self._read(node, self.gen._bind_array(node, node.value, "c"))
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

    def _choose_slot(self, node, is_result, busy) -> str:
        shape = node.type.concrete_shape(self.gen.dims)
        if self.chunked[node]:
            shape = (self.chunk.rows,) + shape[1:]
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

    def _append(self, node, lines):
        if self.kernel.node.op == "fused":
            note = f"{node.op}" + (f"  {node.loc}" if node.loc else "")
        else:
            note = describe(node, self.gen.names)
        self.kernel.lines.append((f"{lines[0]}  # {note}", node))
        self.kernel.lines += [(line, node) for line in lines[1:]]


def _is_literal(node: Node, user) -> bool:
    """A one-element const read by an elementwise op that it cannot widen is written as a
    Python number: `np.multiply(x, 0.5, out=o)`."""
    if node.op != "const" or node.value.size != 1:
        return False
    if node.ndim == 0:
        return user is None or alias_of(user) is None
    return (user is not None and ops.OPS[user.op].kind in ops.ELEMENTWISE_KINDS
            and node.ndim <= user.ndim)


def chunking(node: Node, dims: dict) -> Chunking | None:
    """How to run a fused pointwise kernel in cache-sized chunks, or None (small, or a
    body with ops other than elementwise ones and broadcasts). Every value whose shape
    spans the output's first axis is then taken a chunk at a time; smaller ones whole."""
    if node.op != "fused" or node.attrs["kind"] != "pointwise" or node.ndim == 0:
        return None
    shape = node.type.concrete_shape(dims)
    row = int(np.prod(shape[1:], dtype=np.int64))
    rows = max(1, CHUNK_ELEMENTS // max(row, 1))
    if shape[0] < 2 * rows:
        return None
    for b in node.attrs["body"].nodes:
        if b.op not in SOURCE_OPS and b.op != "broadcast_to" and (
                ops.OPS[b.op].kind not in ops.ELEMENTWISE_KINDS):
            return None
    return Chunking(rows, shape[0])


def _spans_first_axis(value: Node, kernel: Node, dims: dict) -> bool:
    shape, full = value.type.concrete_shape(dims), kernel.type.concrete_shape(dims)
    return len(shape) == len(full) and shape[0] == full[0]


def describe(node: Node, names: dict) -> str:
    """`%3 = matmul(%x, %W1)  [grad] mlp.py:12`: the IR line without its type."""
    args = [f"%{names[i]}" for i in node.inputs]
    args += [f"{k}={v!r}" for k, v in sorted(node.attrs.items()) if k != "body"]
    notes = ([f"[{','.join(sorted(node.tags))}]"] if node.tags else []) + (
        [node.loc] if node.loc else [])
    return f"%{names[node]} = {node.op}({', '.join(args)})" + "".join(f"  {n}" for n in notes)


def _kind(node: Node) -> str:
    return node.attrs["kind"] if node.op == "fused" else ops.OPS[node.op].kind


def _source_nodes(node: Node, names: dict) -> list:
    if node.op != "fused":
        return [names[node]]
    return [f"{b.op}@{b.loc}" if b.loc else b.op for b in node.attrs["body"].nodes
            if b.op not in SOURCE_OPS]


# --- the executable --------------------------------------------------------------------

@dataclass(frozen=True)
class RunErrors:
    """Turns a NumPy failure inside the generated code into a GraphcError that names the
    op, its operand shapes and the user's line, found from the failing generated line."""
    filename: str
    line_nodes: dict
    dims: dict

    def translate(self, error: Exception) -> GraphcError:
        tb, lineno = error.__traceback__, None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == self.filename:
                lineno = tb.tb_lineno
            tb = tb.tb_next
        node = self.line_nodes.get(lineno)
        if node is None:
            return GraphcError(f"generated code failed: {error}")
        shapes = " and ".join(format_shape(i.type.concrete_shape(self.dims)) for i in node.inputs)
        return GraphcError(f"{node.op} failed on operands of shapes {shapes} (made at "
                           f"{node.loc}; {self.filename} line {lineno}): {error}")


class NumpyExecutable:
    def __init__(self, fn, inputs, source, kernels, stats, plan_text, errors: RunErrors):
        self.fn, self.inputs = fn, inputs
        self.source, self.kernels, self.stats = source, kernels, stats
        self.plan_text = plan_text
        self._errors = errors

    def __call__(self, feeds: dict) -> list:
        try:
            with np.errstate(all="ignore"):  # inf/nan are values here, as in the reference
                return self.fn(*[feeds[node] for node in self.inputs])
        except (ValueError, IndexError, TypeError) as e:
            raise self._errors.translate(e) from None
