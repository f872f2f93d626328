"""The numpy backend's build: one generated Python function for a graph and its dims.

The function is generic over every symbolic dim but those `fixed_dims` names (zero-size
ones, collectives'): their sizes are read from the inputs' shapes at each call, shapes
in the source name them (`_dim_batch`), and what depends on them is the frame, made
once per binding (namespace.py, runtime.Frames). build(graph, dims) does, once per
binding of the fixed dims:
  1. plan the buffers of the graph in its order (the O2 pipeline ends with the schedule
     pass; a graph at O0 or O1 runs in the order it came in), symbolic dims at the
     schedule's estimate: each computed value gets a byte arena, shared with values
     whose lives do not overlap; views (reshape, transpose, ...) are NumPy views and
     get none; an arena of a symbolic size is one of the frame's, grown on demand;
  2. view every arena as the (dtype, shape) of each value stored in it, once (in the
     frame, once per binding, where the shape is symbolic);
  3. make one Job a kernel (job.py), choose its strategy from THE table (strategy.py: C
     loops, gemm + C epilogue, chunked ufuncs, ufuncs) and render it (c.py, ufuncs.py);
  4. compile the function's C kernels (c.Library, ccompile.py: units of bounded size,
     in parallel, under a timeout and a budget), exec the source under a readable file
     name ("<graphc:fn_...>", registered with linecache so tracebacks show the generated
     line). A function whose C kernels cannot be built (a failing or hanging compiler,
     a budget overrun) is written again without them, with one GraphcWarning saying why.

The generated function returns fresh copies of the graph's outputs (the caller keeps them
while the buffers are reused by the next call) and the update values as they are: views
of buffers, valid until the next call (gc.compile copies them into the params at once).
An update whose kernel runs after every other reader of its param and after every kernel
that can raise is written straight into the param (`updates_in_place`): the value
returned is then the param itself, and the caller's copy is a no-op; a call that raises
still leaves every param as it was. The first of those kernels is preceded by a call of
`begin_commit` (an argument of the executable): gc.compile then holds interrupts until it
has committed the other updates, so a step is applied all or nothing.
"""

from __future__ import annotations

import itertools
import linecache
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.lib.stride_tricks import as_strided

from graphc import ops
from graphc.backends import blas, ccompile
from graphc.backends.base import KernelInfo
from graphc.backends.collectives import Collectives, symbolic_dims_of_collectives
from graphc.backends.lower.index import row_major_strides
from graphc.backends.lower.kernel import fixed_number, kernel_of
from graphc.ir import SOURCE_OPS, Graph, Node, node_names
from graphc.passes.schedule import SYMBOLIC_DIM_ESTIMATE, format_plan, plan_buffers
from graphc.types import numpy_dtype

from . import c, runtime, strategy, ufunc_ops
from .chunks import CHUNK_ELEMENTS
from .executable import NumpyExecutable, RunErrors
from .job import Binding, Job, Operand, body_shapes, input_axes, memory_root
from .namespace import Namespace, is_symbolic, shape_source, size_text
from .ufunc_ops import alias_of

_fn_ids = itertools.count()


@dataclass(frozen=True)
class Options:
    """The numpy backend's knobs (gc.compile(..., options={...}))."""
    c_kernels: bool = True       # kernels as C loops where that pays, where cc works
    blas: bool = True            # matmul epilogues in BLAS's gemm, where it can be called
    chunk_elements: int = CHUNK_ELEMENTS   # a chunked pointwise kernel's chunk size
    threads: int | None = None   # threads sharing a kernel's chunks (None: the cores)
    cc: ccompile.Options = field(default_factory=ccompile.Options)  # the C compiler's run


def fixed_dims(graph: Graph):
    """dims -> the dims a numpy build is fixed to (base.Backend.fixed_dims): those of size 0
    (NumPy's empty arrays need no loops, and a max over an empty axis must raise, so a
    zero-size batch gets a build of its own) and those of a collective's shape (its
    runtime issues zeros of that shape for a failed step); the code is generic over
    every other symbolic dim."""
    collective = symbolic_dims_of_collectives(graph)
    return lambda dims: {d: size for d, size in dims.items() if size == 0 or d in collective}


def build(graph: Graph, dims: dict, options: Options | None = None) -> NumpyExecutable:
    """Matmuls call NumPy's BLAS directly where it can be found (blas.py), and kernels are
    C loops where a C compiler works and the strategy table says so; without them, the
    same kernels are NumPy calls. The function serves every binding of the symbolic
    dims that agrees with `dims` on fixed_dims."""
    options = options or Options()
    binding = Binding.of(dims, fixed_dims(graph)(dims))
    plan = plan_buffers(graph, binding.estimate, alias_of=alias_of)
    use_c = options.c_kernels and ccompile.available(options.cc)
    gemm = blas.find() if options.blas else None
    try:
        return _write(graph, dims, binding, plan, options, gemm,
                      c.Library(options.cc) if use_c else None)
    except ccompile.CompileFailed as failed:  # this function still runs, on NumPy kernels
        ccompile.warn_once(f"graphc: C kernels off for this function, NumPy kernels "
                           f"instead: {failed.reason}")
        return _write(graph, dims, binding, plan, options, gemm, None)


def _write(graph, dims, binding, plan, options, gemm, library) -> NumpyExecutable:
    # the generated code runs the graph's collectives through _collectives (strategy.py)
    namespace = Namespace({**runtime.HELPERS, "_gemm": gemm, "_frames": runtime.Frames(),
                           "_collectives": Collectives(graph, dims)})
    tools = strategy.Tools(namespace, options, gemm, library)
    return FunctionWriter(graph, binding, plan, tools).write()


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
        shapes = body_shapes(kernel_of(node), dims)
        return any(ops.may_raise(b.op, [shapes[i] for i in b.inputs], b.attrs)
                   for b in node.body.nodes)
    return ops.may_raise(node.op, [i.type.concrete_shape(dims) for i in node.inputs],
                         node.attrs)


def known_number(node: Node, dims: dict):
    """The number every element of a node holds, as a 0-d array, if the build knows it: a
    one-element const, or a size (lower.kernel.fixed_number)."""
    return fixed_number(node, {i: i.type.concrete_shape(dims) for i in node.inputs})


def describe(node: Node, names: dict) -> str:
    """`%3 = matmul(%x, %W1)  [grad] mlp.py:12`: the IR line without its type."""
    args = [f"%{names[i]}" for i in node.inputs]
    args += [f"{k}={v!r}" for k, v in sorted(node.attrs.items())]
    notes = ([f"[{','.join(sorted(node.tags))}]"] if node.tags else []) + (
        [node.loc] if node.loc else [])
    return f"%{names[node]} = {node.op}({', '.join(args)})" + "".join(f"  {n}" for n in notes)


def stand_in(shape: tuple, dtype: np.dtype) -> np.ndarray:
    """An array of the layout of a C-contiguous array of that shape, holding no data: how
    a kernel reads an input or a param (another array each call). Never read."""
    return as_strided(np.zeros(1, dtype), shape,
                      tuple(s * dtype.itemsize for s in row_major_strides(shape)))


# --- the function ----------------------------------------------------------------------

class FunctionWriter:
    """Writes the function for one graph, generic over the symbolic dims its Binding
    leaves symbolic: shapes in the source name their sizes (`_dim_batch`), and what
    depends on them is made per binding in the frame (namespace.py)."""

    def __init__(self, graph: Graph, binding: Binding, plan, tools: strategy.Tools):
        self.graph, self.binding, self.plan, self.tools = graph, binding, plan, tools
        self.dims, self.probe = binding.symbolic, binding.probe
        self.ns = tools.namespace
        self.ns.sizes = tuple(name for _, name in binding.sizes)
        self.names = node_names(graph.nodes)
        self.values = {}      # node -> Operand: how the code reads its value
        self.framed = {}      # buffer index -> its arena in the frame (a symbolic size)
        self.arenas = [self._arena(k) for k in range(len(plan.sizes))]
        self._views = {}      # (buffer index, dtype, shape) -> name of that view
        self._arrays = {}     # name of a buffer view -> its array (a stand-in if framed)
        self._views_per_buffer = {}
        self.into_param = updates_in_place(graph, self.dims)  # update value -> its param
        numbers = ((n, known_number(n, self.dims)) for n in graph.nodes)
        self.known = {n: v for n, v in numbers if v is not None}  # node -> its number

    def _arena(self, k: int) -> np.ndarray:
        """Buffer k's bytes: an array, or where its size is symbolic an arena of the
        frame, laid out here on a stand-in of its size at the probe sizes."""
        shapes = {(t.concrete_shape(self.dims), numpy_dtype(t.dtype).itemsize): t
                  for t in self.plan.held[k]}
        if not any(is_symbolic(shape) for shape, _ in shapes):
            return np.empty(max(t.nbytes(self.dims) for t in shapes.values()), np.uint8)
        sizes = [f"{itemsize} * {size_text(shape)}" for shape, itemsize in shapes]
        self.framed[k] = self.ns.arena(sizes[0] if len(sizes) == 1 else
                                       f"max({', '.join(sizes)})")
        nbytes = max(t.nbytes(self.probe) for t in shapes.values())
        return as_strided(np.zeros(1, np.uint8), (nbytes,), (1,))

    def write(self) -> NumpyExecutable:
        params, kernels = [], []
        for node in self.graph.nodes:
            if node.op in ("input", "param"):
                self._source_value(node)
                if node.op == "param":
                    params.append(node)
            elif node.op == "const":
                self._set(node, self.ns.bind("c", node.value), node.value, None)
            elif alias_of(node) is not None:
                self._view(node)
            else:
                kernels.append(self._kernel(node))
        fn_name = f"fn_{next(_fn_ids)}"
        filename = f"<graphc:{fn_name}>"
        lines, line_nodes = self._source(f"_{fn_name}", params, kernels)
        if self.ns.frame:
            lines += [""] + self.ns.frame_source(f"_frame_{fn_name}")
        source = "\n".join(lines) + "\n"
        library = self.tools.library
        source += library.load(self.ns.globals) if library is not None else ""
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), self.ns.globals)
        if self.ns.frame:
            self.ns.globals["_frames"].make = self.ns.globals[f"_frame_{fn_name}"]
        stats = {"kernels": len(kernels), "peak_bytes": self.plan.peak_bytes,
                 "naive_bytes": self.plan.naive_bytes, "buffers": len(self.plan.sizes),
                 "scratch_bytes": self.ns.scratch.nbytes}
        executable = NumpyExecutable(self.ns.globals[f"_{fn_name}"], self.graph.inputs,
                                     source, [info for info, _ in kernels], stats,
                                     format_plan(self.plan),
                                     RunErrors(filename, line_nodes, self.dims,
                                               tuple(input_axes(self.graph, self.binding))),
                                     self.ns.globals["_collectives"], self.ns.globals["_frames"])
        executable.libraries = library.files if library is not None else ()
        return executable

    # values ------------------------------------------------------------------------

    def _set(self, node, expr, array, per_call, framed=False):
        self.values[node] = Operand(node, expr, array, per_call, self.known.get(node),
                                    framed=framed)

    def _source_value(self, node: Node):
        """An input or a param: the user's name where it can be written (namespace.py)."""
        name = self.ns.user(node.name, "in" if node.op == "input" else "p")
        shape = node.type.concrete_shape(self.probe)
        self._set(node, name, stand_in(shape, numpy_dtype(node.dtype)), name)

    def _view(self, node: Node):
        """A view of its operand: an expression, and an array of the operand's memory
        (None if NumPy would copy it, as a reshape of a transposed view)."""
        base = self.values[node.inputs[0]]
        expr = ufunc_ops.view_expr(node, base.expr, self.dims)
        array = None
        if base.array is not None:
            array = ops.OPS[node.op].impl([base.array], node.attrs,
                                          node.type.concrete_shape(self.probe))
            array = array if memory_root(array) is memory_root(base.array) else None
        self._set(node, expr, array, base.per_call, base.framed)

    def _storage_root(self, node: Node) -> Node:
        while alias_of(node) is not None:
            node = alias_of(node)
        return node

    def storage(self, node: Node):
        """Which memory a value lives in, as a key to compare with ==: ("buffer", index),
        ("param", id(param)) for a param or an update value written straight into its
        param (an id: == on nodes builds an eq node), or None (other sources)."""
        root = self._storage_root(node)
        if root in self.into_param:
            return ("param", id(self.into_param[root]))
        if root.op == "param":
            return ("param", id(root))
        index = self.plan.buffer.get(root)
        return None if index is None else ("buffer", index)

    def _buffer_view(self, node: Node) -> str:
        """The name of the node's buffer viewed as its dtype and shape: one per (buffer,
        dtype, shape), so a value written over another one's reads as in place:
        np.add(_b0, _b1, out=_b0)."""
        shape, dtype = node.type.concrete_shape(self.dims), numpy_dtype(node.dtype)
        index = self.plan.buffer[node]
        key = (index, dtype, shape)
        if key not in self._views:
            nbytes = node.type.nbytes(self.probe)
            count = self._views_per_buffer[index] = self._views_per_buffer.get(index, -1) + 1
            name = f"_b{index}" + (f"_{count}" if count else "")
            array = self.arenas[index][:nbytes].view(dtype).reshape(
                node.type.concrete_shape(self.probe))
            if index in self.framed:
                self.ns.add_to_frame(name, f"_view(_a[{self.framed[index]}], "
                                           f"{shape_source(shape)}, np.{dtype.name})")
            else:
                self.ns.globals[name] = array
            self._views[key], self._arrays[name] = name, array
        return self._views[key]

    def _output(self, node: Node):
        """Where a kernel writes: its param, its buffer, or an array of its own."""
        param = self.into_param.get(node)
        if param is not None:
            value = self.values[param]
            self._set(node, value.expr, value.array, value.per_call)
        elif node in self.plan.buffer:
            name = self._buffer_view(node)
            self._set(node, name, self._arrays[name], None, self.plan.buffer[node] in self.framed)
        else:  # the plan left it out: give it storage of its own
            shape, dtype = node.type.concrete_shape(self.dims), numpy_dtype(node.dtype)
            if is_symbolic(shape):
                array = stand_in(node.type.concrete_shape(self.probe), dtype)
                self._set(node, self.ns.frame_array("v", shape, dtype), array, None, True)
            else:
                array = np.empty(shape, dtype)
                self._set(node, self.ns.bind("v", array), array, None)
        return self.values[node]

    # one kernel ----------------------------------------------------------------------

    def _job(self, node: Node) -> Job:
        kernel = kernel_of(node)
        output = self._output(node)
        # An update written into its param leaves its planned buffer free: a temporary
        # of the kernel may go there.
        spare = self._buffer_view(node) if (
            node in self.into_param and node in self.plan.buffer) else None
        own = self.storage(node)
        operands = []
        for outer in kernel.operands:
            if outer in self.values:
                shared = own is not None and self.storage(outer) == own
                operands.append(replace(self.values[outer], in_output=shared))
            else:  # an array const of the body
                operands.append(Operand(outer, self.ns.bind("c", outer.value), outer.value,
                                        None, None))
        return Job(node, kernel, output, spare, tuple(operands),
                   body_shapes(kernel, self.dims), self.dims, describe(node, self.names),
                   self._overwrites_operand_elsewhere(node, own), self.binding)

    def _overwrites_operand_elsewhere(self, node: Node, own) -> bool:
        """Whether the kernel writes over an operand that it reads in another layout (a
        view, or another shape or dtype): then a chunk could clobber rows that a later
        chunk reads. An operand of the output's own layout is read row for row."""
        return own is not None and any(
            self.storage(i) == own and (alias_of(i) is not None or i.type != node.type)
            for i in node.inputs)

    def _kernel(self, node: Node) -> tuple:
        """(KernelInfo, its statements as (text, node)) of a compute node: one way, or
        where the strategy depends on the call's sizes (strategy.math_switch) two
        ways, chosen at each call."""
        job = self._job(node)
        switch = strategy.math_switch(job)
        choice, lines, reason = self._variant(job, self.tools if switch is None else
                                              replace(self.tools, large=False))
        if switch is not None:
            large, large_lines, large_reason = self._variant(job, replace(self.tools,
                                                                          large=True))
            if large.strategy is not choice.strategy:
                lines = ([(f"if {switch}:  # {large.strategy.name} at this call's sizes",
                           node)] + _indented(large_lines)
                         + [("else:", node)] + _indented(lines))
                reason += (f"; at a call where {switch}: {large.strategy.name} "
                           f"({large_reason})")
        lines = ([(f"# {job.title}", node)] if node.op == "fused" else []) + lines
        c_call = getattr(choice.plan, "call", choice.plan)
        c_source = c_call.function.source if isinstance(c_call, c.CCall) else None
        info = KernelInfo(job.output.expr, _kind(node), _source_nodes(job),
                          choice.strategy.name, reason,
                          "\n".join(text for text, _ in lines),
                          {"c_source": c_source, "node": node})
        return info, lines

    def _variant(self, job: Job, tools) -> tuple:
        """(Choice, statements, reason) of a kernel by the strategy table with `tools`."""
        choice = strategy.choose(job, tools)
        lines = [(f"# (NumPy, not C: {reason})", job.node)
                 for _, reason, shown in choice.refusals if shown]
        lines += choice.strategy.render(job, choice.plan, tools)
        reason = "; ".join(f"not {name}: {why}" for name, why, _ in choice.refusals)
        return choice, lines, (reason or choice.strategy.why) + strategy.sized_choice(
            job, choice)

    # the source ----------------------------------------------------------------------

    def _source(self, fn_name: str, params: list, kernels: list) -> tuple:
        """(the function's lines, {line number: the node it computes})."""
        inputs = [self.values[n].expr for n in self.graph.inputs]
        lines = [f"# graphc numpy backend, dims {self._dims_text()}: {len(kernels)} kernels, "
                 f"buffers peak {self.plan.peak_bytes} B (naive plan {self.plan.naive_bytes} B)",
                 f"def {fn_name}({', '.join(['_begin_commit'] + inputs)}):"]
        for name, k, axis in input_axes(self.graph, self.binding):
            lines.append(f"    {name} = {inputs[k]}.shape[{axis}]")
        if self.ns.frame:  # this binding's arrays (made at its first call)
            lines.append(f"    {self.ns.frame_unpacking()}")
        for node in params:
            lines.append(f"    {self.values[node].expr} = {self.ns.bind('param', node)}.value")
        for array, address in self.ns.per_call.items():  # for C kernels
            lines.append(f"    {address} = _address({array})")
        line_nodes = {}
        first_write = next((info for info, _ in kernels
                            if info.extra["node"] in self.into_param), None)
        for info, statements in kernels:
            if info is first_write:
                lines.append("    _begin_commit()  # params are written from here: "
                             "interrupts wait for the commit")
            for text, node in statements:
                lines.append("    " + text)
                line_nodes[len(lines)] = node  # for errors: line number -> node
        results = [self._result(n, copy=True) for n in self.graph.outputs]
        results += [self._result(n, copy=False) for n in self.graph.updates.values()]
        lines.append(f"    return [{', '.join(results)}]")
        return lines, line_nodes

    def _dims_text(self) -> str:
        if not self.binding.sizes:
            return str(self.dims)
        generic = ", ".join(f"{d} ({n})" for d, n in self.binding.sizes)
        fixed = {d: v for d, v in self.dims.items() if not isinstance(v, str)}
        return f"generic over {generic}" + (f", fixed {fixed}" if fixed else "") + (
            f"; buffers sized at {SYMBOLIC_DIM_ESTIMATE} each" if self.plan.sizes else "")

    def _result(self, node: Node, copy: bool) -> str:
        # Outputs outlive the call, buffers do not; update values are copied into the
        # params by the caller before the next call, unless they view a param themselves.
        if copy or self._storage_root(node).op in SOURCE_OPS:
            return f"np.array({self.values[node].expr})"
        return self.values[node].expr


def _indented(lines: list) -> list:
    return [("    " + text, node) for text, node in lines]


def _kind(node: Node) -> str:
    return node.attrs["kind"] if node.op == "fused" else node.op


def _source_nodes(job: Job) -> tuple:
    return tuple(f"{s.op}@{s.loc}" if s.loc else s.op for s in job.kernel.steps)
