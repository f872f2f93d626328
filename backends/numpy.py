"""The numpy backend: straight-line Python source generated from the scheduled graph.

build(graph, dims) does, once per input-shape signature:
  1. schedule the graph and plan its buffers (graphc.passes.schedule): each computed value
     gets a byte arena, shared with values whose lives do not overlap; layout ops
     (reshape, transpose, ...) are NumPy views and get none;
  2. view every arena as the (dtype, shape) of each value stored in it, once;
  3. write one kernel per node (backends/numpy_kernels.py): a plain op or a `fused` node
     (its body, see the fused-kernel contract in passes/fusion.py) becomes a few ufunc
     calls with `out=` into the node's buffer, intermediates of a body go into that same
     buffer when they can (an in-place chain) or into scratch arrays shared by all
     kernels; a matmul reads its operands through transposed views and its epilogue
     runs in place on its output, and the linear start of that epilogue (a scale, a
     bias, the weight an SGD step updates) is done by BLAS's gemm itself, alpha * A @ B
     + beta * C, when NumPy's BLAS can be called directly (numpy_gemm.py, blas.py);
     where a C compiler works, a kernel that is small, or cheap per element, is instead
     one call of a C loop nest (c_kernels.py), all of a function's compiled together
     (ccompile.py), and so is a matmul kernel's epilogue after its matmul; the source
     says, for each kernel left to NumPy, why C could not take it; a function whose C
     kernels cannot be built (a failing or hanging compiler) is built again without
     them, with a GraphcWarning that says why;
  4. exec the source under a readable file name ("<graphc:fn_...>", registered with
     linecache so tracebacks show the generated line).

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

import ctypes
import functools
import itertools
import keyword
import linecache
import re
from dataclasses import dataclass, field

import numpy as np

from graphc import ops
from graphc.backends import blas, c_kernels, ccompile, numpy_ops
from graphc.backends.base import Backend
from graphc.backends.numpy_gemm import gemm_chains
from graphc.backends.numpy_kernels import (
    CHUNK_ELEMENTS, LOCAL_NAMES, THREADS, BodyWriter, Kernel, ScratchPool, chunking, describe,
    one_element_const)
from graphc.backends.numpy_ops import alias_of
from graphc.errors import GraphcError
from graphc.ir import SOURCE_OPS, Graph, Node, node_names, topological_order
from graphc.passes.schedule import format_plan, plan_buffers, schedule
from graphc.types import format_shape, numpy_dtype

_fn_ids = itertools.count()
# Names the generated code makes up (buffer views, scratch and filled arrays, params,
# body consts): a user's name of this form gets a prefix.
_GENERATED = re.compile(r"[bsz]\d+(_\d+)?|_param\d+|body\d+|fn_\d+")


@dataclass(frozen=True)
class Options:
    """The numpy backend's knobs (gc.compile(..., options={...}))."""
    c_kernels: bool = True       # small and cheap kernels as C loops, where cc works
    blas: bool = True            # matmul epilogues in BLAS's gemm, where it can be called
    chunk_elements: int = CHUNK_ELEMENTS   # a chunked pointwise kernel's chunk size
    threads: int | None = None   # threads sharing a kernel's chunks (None: the cores)
    cc: ccompile.Options = field(default_factory=ccompile.Options)  # the C compiler's run


def build(graph: Graph, dims: dict, options: Options | None = None) -> "NumpyExecutable":
    """Matmuls call NumPy's BLAS directly where it can be found (blas.py), and small or
    cheap fused kernels are C loops where a C compiler works (c_kernels.py); without
    them, the same kernels are NumPy calls."""
    options = options or Options()
    graph = schedule(graph)
    plan = plan_buffers(graph, dims, alias_of=alias_of)
    use_c = options.c_kernels and ccompile.available(options.cc)
    compile_c = functools.partial(ccompile.compile_kernels, options=options.cc) if use_c else None
    gemm = blas.find() if options.blas else None
    try:
        parts = Codegen(graph, dict(dims), plan, gemm, compile_c, options).generate()
    except ccompile.CompileFailed as failed:  # this function still runs, on NumPy kernels
        ccompile.warn_once(f"graphc: C kernels off for this function, NumPy kernels "
                           f"instead: {failed.reason}")
        parts = Codegen(graph, dict(dims), plan, gemm, None, options).generate()
    return NumpyExecutable(*parts)


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


def known_number(node: Node, dims: dict):
    """The number every element of a node holds, as a 0-d array, if the build knows it: a
    one-element const, or a size (an element count, fixed once the dims are)."""
    if node.op == "size":
        shape = node.inputs[0].type.concrete_shape(dims)
        count = np.prod([shape[a] for a in node.attrs["axes"]], dtype=np.int64)
        return np.asarray(count).astype(numpy_dtype(node.dtype))
    return one_element_const(node)


def _can_raise(node: Node, dims: dict) -> bool:
    if node.op == "fused":
        return any(_can_raise(b, dims) for b in node.body.nodes)
    if node.op == "one_hot":
        return True
    if node.op == "max":
        shape = node.inputs[0].type.concrete_shape(dims)
        return any(shape[a] == 0 for a in node.attrs["axes"])
    return False


# --- the function ----------------------------------------------------------------------

class Codegen:
    """Writes the function for one graph and one binding of its symbolic dims."""

    def __init__(self, graph: Graph, dims: dict, plan, gemm: blas.Gemm | None, compile_c=None,
                 options: "Options | None" = None):
        self.graph, self.dims, self.plan = graph, dims, plan
        self.options = options or Options()
        self.gemm = gemm  # NumPy's BLAS gemm with alpha and beta, if found
        self.compile_c = compile_c  # {name: C source} -> {name: function}, if cc works
        self.c_kernels = []         # the C kernels of this function, compiled together
        self.per_call_addresses = {}  # input or param name -> the name of its address
        self.names = node_names(graph.nodes)
        self.namespace = dict(numpy_ops.HELPERS, _gemm=gemm)
        self.expr = {}        # node -> Python expression of its value
        self.scratch = ScratchPool()
        self.arenas = [np.empty(size, np.uint8) for size in plan.sizes]
        self._views = {}      # (buffer index, dtype, shape) -> name of that view
        self._filled = {}     # (shape, dtype, number) -> name of an array holding it
        self._views_per_buffer = {}
        self._taken = set(self.namespace) | set(keyword.kwlist) | set(LOCAL_NAMES)
        self.line_nodes = {}  # line number of the generated source -> node it computes
        self.into_param = updates_in_place(graph, dims)  # update value -> its param
        numbers = ((n, known_number(n, dims)) for n in graph.nodes)
        self.known = {n: v for n, v in numbers if v is not None}  # node -> its number

    # names --------------------------------------------------------------------------

    def _identifier(self, node: Node, prefix: str) -> str:
        # Nodes inside a fused body have no name in the outer graph: number them apart.
        base = self.names.get(node) or f"body{len(self._taken)}"
        # A user's name is kept unless it could clash with buffer/scratch names (b0, s1_2).
        usable = re.fullmatch(r"[A-Za-z_]\w*", base) and not _GENERATED.fullmatch(base)
        name = base if usable else f"{prefix}{base}"
        while name in self._taken:  # which holds the keywords too
            name = f"{prefix}_{name}"
        self._taken.add(name)
        return name

    def filled(self, shape: tuple, dtype: np.dtype, value: str) -> str:
        """The name of a read-only array of that shape and dtype holding the number
        `value` (a Python literal), one per (shape, dtype, value)."""
        key = (shape, dtype, value)
        if key not in self._filled:
            array = np.full(shape, float(value), dtype)
            array.flags.writeable = False
            self._filled[key] = f"z{len(self._filled)}"
            self.namespace[self._filled[key]] = array
        return self._filled[key]

    def bind_array(self, node: Node, array: np.ndarray, prefix: str) -> str:
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
                self.expr[node] = self.bind_array(node, node.value, "c")
            elif alias_of(node) is not None:
                self.expr[node] = numpy_ops.view_expr(node, self.expr[node.inputs[0]], self.dims)
            else:
                kernels.append(self._kernel(node))
        source = self._source(fn_name, params, kernels) + self._load_c_kernels()
        filename = f"<graphc:{fn_name}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), self.namespace)
        stats = {"kernels": len(kernels), "peak_bytes": self.plan.peak_bytes,
                 "naive_bytes": self.plan.naive_bytes, "buffers": len(self.plan.sizes),
                 "scratch_bytes": self.scratch.nbytes}
        kernel_info = [{"name": self.expr[k.node], "kind": _kind(k.node),
                        "source": [text for text, _ in k.lines], "c_source": k.c_source,
                        "nodes": _source_nodes(k.node, self.names), "node": k.node}
                       for k in kernels]
        fn = self.namespace[fn_name]
        return (fn, self.graph.inputs, source, kernel_info, stats, format_plan(self.plan),
                RunErrors(filename, self.line_nodes, self.dims))

    def _source(self, fn_name, params, kernels) -> str:
        inputs = [self.expr[n] for n in self.graph.inputs]
        lines = [f"# graphc numpy backend, dims {self.dims}: {len(kernels)} kernels, "
                 f"buffers peak {self.plan.peak_bytes} B (naive plan {self.plan.naive_bytes} B)",
                 f"def {fn_name}({', '.join(['_begin_commit'] + inputs)}):"]
        for i, node in enumerate(params):
            self.namespace[f"_param{i}"] = node
            lines.append(f"    {self.expr[node]} = _param{i}.value")
        for array, address in self.per_call_addresses.items():  # for C kernels
            lines.append(f"    {address} = _address({array})")
        first_write = next((k for k in kernels if k.node in self.into_param), None)
        for kernel in kernels:
            if kernel is first_write:
                lines.append("    _begin_commit()  # params are written from here: "
                             "interrupts wait for the commit")
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

    def _out_array(self, node: Node) -> str:
        shape, dtype = node.type.concrete_shape(self.dims), numpy_dtype(node.dtype)
        index = self.plan.buffer.get(node)
        if index is None:  # the plan left it out: give it storage of its own
            return self.bind_array(node, np.empty(shape, dtype), "v")
        # One name per (buffer, dtype, shape), so a value written over another one's
        # buffer reads as in place: np.add(b0, b1, out=b0).
        key = (index, dtype, shape)
        if key not in self._views:
            nbytes = node.type.nbytes(self.dims)
            count = self._views_per_buffer[index] = self._views_per_buffer.get(index, -1) + 1
            name = f"b{index}" + (f"_{count}" if count else "")
            self.namespace[name] = self.arenas[index][:nbytes].view(dtype).reshape(shape)
            self._views[key] = name
        return self._views[key]

    def _overwrites_operand_elsewhere(self, node: Node) -> bool:
        """Whether the kernel writes over an operand that it reads in another layout (a
        view, or another shape or dtype): then a chunk could clobber rows that a later
        chunk reads. An operand of the output's own layout is read row for row."""
        own = self.storage(node)
        return own is not None and any(
            self.storage(i) == own and (alias_of(i) is not None or i.type != node.type)
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
            body = node.body
            leaves = dict(zip(body.inputs, node.inputs))  # operands by position
            kernel.lines.append((f"# {describe(node, self.names)}", node))
            steps = [b for b in body.nodes if b.op not in SOURCE_OPS]
            result = body.outputs[0]
        else:
            leaves = {i: i for i in node.inputs}
            steps, result = [node], node
        if self.compile_c is not None and (
                _kind(node) not in ("layout", "matmul", "other") or node.op == "one_hot"):
            c_kernel = self._plan_c(kernel, leaves, steps, result)
            if c_kernel is not None:
                self._call_c(kernel, c_kernel, steps)
                return kernel
        if self.compile_c is not None and _kind(node) == "matmul" and node.op == "fused":
            if self._matmul_then_c(kernel, leaves, steps, result):
                return kernel
        chunk = None if self._overwrites_operand_elsewhere(node) else chunking(
            node, self.dims, self.options.chunk_elements, self.options.threads or THREADS)
        BodyWriter(self, kernel, leaves, chunk).write(steps, result)
        return kernel

    def _matmul_then_c(self, kernel: Kernel, leaves: dict, steps: list, result: Node) -> bool:
        """A matmul kernel as the matmul (with the linear steps gemm takes in) into the
        output, then its other steps (a relu, a relu-backward mask) as one C kernel that
        reads and overwrites the output; False if C cannot do those steps."""
        matmuls = [s for s in steps if s.op == "matmul"]
        known = self._known_in_body(kernel.node, leaves)
        number_of = lambda v: None if known.get(v) is None else known[v].item()
        chains = gemm_chains(steps, result, number_of) if self.gemm else {}
        chain = chains.get(matmuls[0]) if matmuls else None
        # gemm takes in a scale, and an addend already in the output (an SGD update);
        # another addend (a bias) C adds in the pass it makes anyway, saving gemm's copy
        addend = chain.form.addend if chain else None
        end = chain.end if chain and (addend is None or addend in leaves and self.storage(
            leaves[addend]) == self.storage(kernel.node)) else (
            matmuls[0] if matmuls else None)
        if len(matmuls) != 1 or end is result or end.type != result.type:
            return False  # (the product is stored in the output, so it must fit there)
        product = set(topological_order([end]))  # the product and the body values it needs
        rest = [s for s in steps if s not in product]
        reads_of_rest = {i for s in rest for i in s.inputs} - set(rest)
        own = self.storage(kernel.node)
        if any(v in product and v is not end for v in reads_of_rest) or any(
                self.storage(leaves[v]) == own for v in reads_of_rest if v in leaves):
            return False
        reads = {v: leaves[v] for v in reads_of_rest if v in leaves}
        c_kernel = self._plan_c(kernel, {**reads, end: kernel.node}, rest, result,
                                aliased={end})
        if c_kernel is None:
            return False
        BodyWriter(self, kernel, leaves, None).write([s for s in steps if s in product], end)
        self._call_c(kernel, c_kernel, rest)
        return True

    # C kernels -----------------------------------------------------------------------

    def _plan_c(self, kernel: Kernel, leaves: dict, steps: list, result: Node,
                aliased=frozenset()):
        """The C kernel (c_kernels.py) for a body's steps if C can express them and it is
        worth it; else None, with the reason as a comment in the source."""
        elements = max(int(np.prod(s.type.concrete_shape(self.dims), dtype=np.int64))
                       for s in steps + [result])
        if not c_kernels.worth_compiling(steps, elements):
            return None
        body = kernel.node.body.nodes if kernel.node.op == "fused" else []
        reads = dict(leaves)
        reads.update({b: b for b in body if b.op == "const" and b.value.size > 1})
        known = self._known_in_body(kernel.node, leaves)
        own = self.storage(kernel.node)
        aliased = set(aliased) | {b for b, o in leaves.items()
                                  if own is not None and self.storage(o) == own}
        try:
            if any(not self._contiguous(o) for o in reads.values()):
                raise c_kernels.Unsupported("an operand is a strided view")
            c_kernel = c_kernels.plan(f"_k{len(self.c_kernels)}", steps, result, reads,
                                      self.dims, known, aliased)
            lines, limit = c_kernel.source.count("\n") + 1, self.options.cc.unit_lines
            if lines > limit:  # one function that long takes the compiler minutes
                raise c_kernels.Unsupported(f"its C function has {lines} lines, more than "
                                            f"a compilation unit's {limit} (option cc)")
            return c_kernel
        except c_kernels.Unsupported as why:
            kernel.lines.append((f"# (NumPy, not C: {why})", kernel.node))
            return None

    def _known_in_body(self, node: Node, leaves: dict) -> dict:
        """Body value -> the number it holds, for operands and consts known at build."""
        known = {b: self.known[o] for b, o in leaves.items() if o in self.known}
        body = node.body.nodes if node.op == "fused" else []
        known.update({b: one_element_const(b) for b in body if one_element_const(b) is not None})
        return known

    def _call_c(self, kernel: Kernel, c_kernel, steps: list):
        self.c_kernels.append(c_kernel)
        kernel.c_source = c_kernel.source
        args = [self._address(o) for o in c_kernel.operands + [kernel.node]]
        if c_kernel.scratch:
            args.append(self._address_of_scratch(c_kernel.scratch))
        call = f"{c_kernel.name}({', '.join(args)})"
        if c_kernel.labels is not None:
            loc = next(s.loc for s in steps if s.op == "one_hot")
            call = (f"if {call}: _label_error({self.expr[c_kernel.labels]}, "
                    f"{c_kernel.depth}, {loc!r})")
        kernel.lines.append((f"{call}  # C: {', '.join(s.op for s in steps)}", kernel.node))

    def _contiguous(self, source) -> bool:
        """Whether a kernel operand is its storage, element for element: no transposed,
        sliced or broadcast view (a reshape keeps the elements where they are)."""
        while isinstance(source, Node) and alias_of(source) is not None:
            if source.op not in c_kernels.ORDER_KEEPING:
                return False
            source = alias_of(source)
        return True

    def _address(self, source) -> str:
        """The name of a value's data address: bound once here for arrays the function
        owns (buffers, consts), read at the start of each call for inputs and params."""
        if isinstance(source, Node) and source.op == "const" and source not in self.expr:
            name = self.bind_array(source, source.value, "c")  # (C-contiguous, as every const)
            return self._bind_address(name, self.namespace[name])
        root = self._storage_root(source)
        name = self.expr[root]
        if root.op in ("input", "param") or root in self.into_param:
            return self.per_call_addresses.setdefault(name, f"{name}_at")
        return self._bind_address(name, eval(name, self.namespace))

    def _address_of_scratch(self, scratch) -> str:
        elements, dtype = scratch
        name = self.scratch.take((elements,), numpy_dtype(dtype), set())
        self.namespace[name] = self.scratch.arrays[name]
        return self._bind_address(name, self.namespace[name])

    def _bind_address(self, name: str, array: np.ndarray) -> str:
        assert array.flags.c_contiguous, name
        self.namespace[f"{name}_at"] = array.ctypes.data
        return f"{name}_at"

    def _load_c_kernels(self) -> str:
        """Compiles this function's C kernels (ccompile.py) and binds each by name;
        returns their source, shown after the Python function."""
        if not self.c_kernels:
            return ""
        source = "\n".join(k.source for k in self.c_kernels)
        functions = self.compile_c({k.name: k.source for k in self.c_kernels})
        for k in self.c_kernels:
            function = functions[k.name]
            function.argtypes = [ctypes.c_void_p] * (len(k.operands) + 1 + bool(k.scratch))
            function.restype = ctypes.c_int
            self.namespace[k.name] = function
        flags = " ".join(ccompile.FLAGS)
        return (f"\n# C kernels, compiled with `cc {flags}`:\n"
                + "".join(f"# {line}\n" if line else "#\n" for line in source.splitlines()))


def _kind(node: Node) -> str:
    return node.attrs["kind"] if node.op == "fused" else ops.OPS[node.op].kind


def _source_nodes(node: Node, names: dict) -> list:
    if node.op != "fused":
        return [names[node]]
    return [f"{b.op}@{b.loc}" if b.loc else b.op for b in node.body.nodes
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

    def __call__(self, feeds: dict, begin_commit=lambda: None) -> list:
        """The outputs and update values for {input node: array}; `begin_commit()` is
        called before the first write into a param (gc.compile's Commit.begin)."""
        try:
            with np.errstate(all="ignore"):  # inf/nan are values here, as in the reference
                return self.fn(begin_commit, *[feeds[node] for node in self.inputs])
        except (ValueError, IndexError, TypeError) as e:
            raise self._errors.translate(e) from None


BACKEND = Backend("numpy", Options, build)
