"""gc.compile: from output nodes to a callable Function.

The Function optimizes the graph once, when it is made. Each call checks the feeds
(names, ranks, dims, dtypes), binds symbolic dims, has the backend build an executable
once per distinct key: the sizes of the dims the backend's builds are fixed to
(backends/base.py `fixed_dims`: every dim for triton, one build per shape; only
zero-size dims for numpy, whose code takes the other sizes at run time, so one build
serves every batch size; the feeds' dtypes are the graph's, they are converted to it).
The most recently used `max_executables` of them are kept, 32 by default: a
least-recently-used cache, so a model fed many shapes does not keep every build's
buffers alive. It runs the executable, and only then applies parameter
updates, so that a step that raises leaves every parameter as it was; from the first
write into a param to the last, interrupts wait (graphc.commit), so a step is applied
all or nothing. Calls of one Function take turns (a lock): its executables' buffers and
its params are shared by every call, so two threads never run it at once.

A Function pickles as what it was made from: its source graph (params with their
values), inputs, updates, backend, opt and options; the copy optimizes its graph again
lazily, when first called (or asked for its graph), and builds its executables anew.
`f.save(dir)` and `gc.load_function(dir)` (graphc/artifacts.py) keep the optimized graph
and the compiled C libraries instead, so a fresh process neither optimizes nor compiles.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from graphc import artifacts, backends
from graphc.arguments import describe, node_list
from graphc.commit import Commit
from graphc.errors import DtypeError, FeedError, GraphcError, ShapeError, UsageError
from graphc.ir import Graph, Node
from graphc.logs import CompileLog
from graphc.passes import optimize
from graphc.types import format_shape, numpy_dtype, to_dtype


MAX_EXECUTABLES = 32  # the default of gc.compile's max_executables


def compile(outputs, inputs=None, updates=None, backend="numpy", opt="O2",
            debug_dir=None, options=None, max_executables=MAX_EXECUTABLES) -> "Function":
    """Compile `outputs` (a node or a list) into a Function called with arrays by name.

    inputs:  optional list of input nodes: the call's signature, in the order of
             positional calls. Each must be fed, like the arguments of a function given
             to jax.jit, even one the outputs do not use (checked, then ignored).
    updates: {param: new value node}, applied after each successful call (training).
    backend: "reference" | "numpy" | "triton".   opt: "O0" | "O1" | "O2".
    debug_dir: write the IR after each pass, the buffer plan and the generated code
               there (graphc.logs; GRAPHC_LOGS=topic,... shows them on stderr).
    options: the backend's knobs, e.g. {"c_kernels": False} for numpy or
             {"max_row_block": 1024} for triton (each backend's Options dataclass
             lists them; an unknown one is an error naming the real ones).
    max_executables: how many builds the Function keeps (one per binding of the dims
             the backend fixes, backends/base.py: per input shape on triton, one for
             every nonzero batch size on numpy); past it, the least recently used is
             dropped (and built again if needed).
    """
    return Function(outputs, inputs, updates, backend, opt, debug_dir, options,
                    max_executables)


class Function:
    def __init__(self, outputs, inputs, updates, backend, opt, debug_dir=None, options=None,
                 max_executables=MAX_EXECUTABLES, optimized=None, lazy=False):
        """optimized: the graph already optimized (gc.load_function: `outputs` and
        `updates` are its own); lazy: optimize at the first call (an unpickled copy)."""

        self._single = isinstance(outputs, Node)
        self.outputs = node_list(outputs, "gc.compile: outputs", UsageError)
        self.updates = _checked_updates(updates)
        # a loaded function's source is its optimized graph, in its scheduled order
        self.source_graph = (optimized if optimized is not None
                             else Graph(self.outputs, self.updates))
        self._used = self.source_graph.inputs  # Graph.inputs walks every node: once, here
        self.inputs = self._used if inputs is None else _listed_inputs(inputs)
        self._fed = list(dict.fromkeys(self._used + self.inputs))  # what a call must feed
        self._params = [(p, p.shape, numpy_dtype(p.dtype), p in self.updates)
                        for p in self.source_graph.params]
        _check_unique_names(self._fed, "inputs", FeedError)
        _check_unique_names(self.source_graph.params, "params", GraphcError)
        _check_dims_bound(self.source_graph)
        if not (isinstance(max_executables, int) and max_executables >= 1):
            raise UsageError(f"gc.compile: max_executables must be an int of at least 1, "
                             f"got {describe(max_executables)}")
        self.backend_name, self.opt, self.max_executables = backend, opt, max_executables
        self._backend = backends.load(backend)
        self.options = self._backend.make_options(options)
        self.log = CompileLog.for_function(self.outputs, debug_dir)
        self._graph = optimized
        self._loaded = optimized is not None  # source_graph is the optimized graph
        if optimized is None and not lazy:
            self._optimize()
        self._executables = OrderedDict()   # signature -> executable, least recent first
        self._fixed_dims = None   # dims -> the part of them the backend's builds fix
        self._last = None
        self._lock = threading.Lock()

    def _optimize(self) -> Graph:
        if self._graph is None:
            self.log.pipeline_start(self.source_graph, self.opt)
            self._graph = optimize(self.source_graph, self.opt, dump=self.log.after_pass)
        return self._graph

    @property
    def graph(self) -> Graph:
        """The optimized graph (an unpickled Function optimizes it when first asked)."""
        return self._optimize()

    @property
    def params(self) -> list:
        """The params the function reads or updates (its optimizer state included), as
        gc.save and gc.load take them."""
        return self.source_graph.params

    def __reduce__(self):
        # What it was made from, not its executables (generated code, ctypes functions):
        # the copy optimizes (unless loaded: then its graph is the optimized one) and
        # builds again lazily.
        settings = dict(inputs=self.inputs, backend=self.backend_name, opt=self.opt,
                        options=option_fields(self.options),
                        max_executables=self.max_executables, loaded=self._loaded)
        return (_unpickled_function, (self.source_graph, self._single, settings))

    def save(self, directory) -> None:
        """Writes the function to `directory` (made if need be; what is in it is
        replaced): its optimized graph as text IR, its param values, its signature,
        backend and options, and the C libraries of the shapes it has been called with,
        with their SHA-256. gc.load_function(directory) reads it back in any process:
        no optimizing, and no C compiling where those libraries fit (the same compiler)."""
        with self._lock:
            libraries = [path for executable in self._executables.values()
                         for path in executable.libraries]
            artifacts.write(directory, graph=self.graph, single=self._single,
                            inputs=self.inputs, backend=self.backend_name, opt=self.opt,
                            options=option_fields(self.options),
                            max_executables=self.max_executables,
                            libraries=libraries)

    def __call__(self, *args, **feeds):
        feeds = self._bind_positional(args, feeds)
        arrays, dims = check_feeds(self._fed, feeds)
        if self._fixed_dims is None:
            self._fixed_dims = self._backend.fixed_dims(self.graph)
        signature = tuple(sorted(self._fixed_dims(dims).items()))
        # One call at a time; a signal held back by the commit is handled once the lock
        # is released (its handler may call this function again).
        with Commit() as commit, self._lock:
            _check_held_values(self._params)
            executable = self._executable_for(signature, dims)
            results = _run_agreed(executable, arrays, commit)
            outputs, new_values = results[:len(self.outputs)], results[len(self.outputs):]
            if self.updates:
                commit.begin()  # every result exists: now it is safe to commit
            for param, value in zip(self.updates, new_values):
                np.copyto(param.value, value)
        return outputs[0] if self._single else tuple(outputs)

    def _executable_for(self, signature, dims):
        executable = self._executables.get(signature)
        if executable is None:
            executable = self._backend.build(self.graph, dims, self.options)
            self._executables[signature] = executable
            while len(self._executables) > self.max_executables:
                self._executables.popitem(last=False)
            self.log.built(executable, dims)
        else:
            self._executables.move_to_end(signature)
        self._last = executable
        return executable

    def _bind_positional(self, args, feeds):
        if len(args) > len(self.inputs):
            raise FeedError(f"got {len(args)} positional arrays for {len(self.inputs)} inputs "
                            f"({', '.join(n.name for n in self.inputs)})")
        for node, value in zip(self.inputs, args):
            if node.name in feeds:
                raise FeedError(f"input {node.name!r} is given both by position and by name")
            feeds[node.name] = value
        return feeds

    def _executable(self):
        if self._last is None:
            raise RuntimeError("call the function once first: graphc builds code per input "
                               "shape signature")
        return self._last

    @property
    def source(self) -> str:
        """The code the backend generated for the most recent call's shapes."""
        return self._executable().source

    @property
    def kernels(self) -> list:
        return self._executable().kernels

    @property
    def stats(self) -> dict:
        return self._executable().stats

    @property
    def collectives(self):
        """The last call's collectives (backends/collectives.py): their order and sizes
        (`sequence`) and the last step's timings (issued, waited for, done)."""
        return self._executable().collectives

    def compile_for(self, arch: str = "sm_90") -> list:
        """Compile the last call's kernels ahead of time for a GPU arch, no GPU needed
        (triton backend): one dict per kernel (registers, spills, shared memory, ...)."""
        if not self._backend.ahead_of_time:
            raise GraphcError(f"compile_for needs backend='triton', not {self.backend_name!r}")
        return self._executable().compile_for(arch)


def _run_agreed(executable, arrays: dict, commit: Commit) -> list:
    """Run the executable; if its graph has collectives (a data-parallel step), the
    workers agree that every one's step succeeded before any param is written
    (backends/collectives.py): a step that fails on one worker commits on none."""
    collectives = executable.collectives
    collectives.begin_step()

    def begin():  # before the first write into a param: agree, then hold interrupts
        collectives.settle()
        commit.begin()

    try:
        results = executable(arrays, begin)
        collectives.settle()
    except BaseException as error:
        collectives.abandon(error)  # the others learn of it and raise too
        raise
    return results


def load_function(directory) -> Function:
    """The Function that f.save(directory) wrote, ready to call: its optimized graph read
    back (not optimized again), its params holding the saved values, its C libraries
    put in the compile cache (each checked against its SHA-256). A directory of another
    format version, or a damaged or truncated file, is a GraphcError saying which."""
    saved = artifacts.read(directory)
    outputs = saved.graph.outputs[0] if saved.single else list(saved.graph.outputs)
    return Function(outputs, saved.inputs, saved.graph.updates, saved.backend, saved.opt,
                    options=saved.options, max_executables=saved.max_executables,
                    optimized=saved.graph)


def option_fields(options) -> dict:
    """A backend's options as {knob: value}, one level deep (make_options takes it)."""
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}


def _unpickled_function(source_graph, single, settings) -> Function:
    outputs = source_graph.outputs[0] if single else list(source_graph.outputs)
    loaded = settings["loaded"]
    return Function(outputs, settings["inputs"], source_graph.updates, settings["backend"],
                    settings["opt"], options=settings["options"],
                    max_executables=settings["max_executables"],
                    optimized=source_graph if loaded else None, lazy=not loaded)


def _check_dims_bound(graph: Graph):
    """Every symbolic dim must be some input's dim: a call binds sizes only from feeds."""
    bound = {d for node in graph.inputs for d in node.shape if isinstance(d, str)}
    for node in graph.nodes:
        unbound = [d for d in node.shape if isinstance(d, str) and d not in bound]
        if unbound:
            raise ShapeError(f"symbolic dim {unbound[0]!r} of {node.op} : {node.type} (made at "
                             f"{node.loc}) is not a dim of any input, so no call can bind it")


def _listed_inputs(inputs) -> list:
    listed = node_list(inputs, "gc.compile: inputs", FeedError)
    for node in listed:
        if node.op != "input":
            raise FeedError(f"inputs= lists the input nodes (gc.input) of positional calls; "
                            f"got {node!r}")
    return listed


# Why two nodes of one kind must not share a name.
_NAMES_MATTER = {
    "inputs": "a call feeds inputs by name",
    "params": ("a param's name stands for it in the text IR and in pictures, and is the key "
               "its value is saved under; gc.optim names a param's state after it (W_m, "
               "W_v, W_velocity) and adam's step count after its name= argument (adam_t)"),
}


def _check_unique_names(nodes: list, kind: str, error):
    seen = {}
    for node in nodes:
        other = seen.setdefault(node.name, node)
        if node.name is not None and other is not node:
            raise error(f"two different {kind} are named {node.name!r} (made at {other.loc} "
                        f"and {node.loc}): {_NAMES_MATTER[kind]}")


def _checked_updates(updates) -> dict:
    """`updates` as a dict {param: new value node}, every pair checked here, not at the
    first call: a new value that does not fit its param would otherwise fail in the
    middle of committing, with some params already written."""
    if updates is None:
        return {}
    if not isinstance(updates, Mapping):
        raise UsageError(f"gc.compile: updates must be a dict {{param: new value node}}, got "
                         f"{describe(updates)}")
    for param, value in updates.items():
        if not (isinstance(param, Node) and param.op == "param"):
            raise UsageError(f"gc.compile: updates maps params (gc.param) to their new "
                             f"values; the key {describe(param)} is not a param")
        if not isinstance(value, Node):
            raise UsageError(f"gc.compile: the update of param {param.name!r} must be a graph "
                             f"node that computes its new value (e.g. {param.name} - lr * g), "
                             f"got {describe(value)}")
        _check_update_type(param, value)
    return dict(updates)


def _check_update_type(param: Node, value: Node):
    fits = value.shape == param.shape and np.can_cast(
        numpy_dtype(value.dtype), numpy_dtype(param.dtype), "same_kind")
    if not fits:
        error = ShapeError if value.shape != param.shape else DtypeError
        raise error(f"update of param {param.name!r} ({param.type}): the new value is "
                    f"{value.type} (made at {value.loc}); it must have the param's type")


def _check_held_values(params: list):
    """A param's value is checked when assigned (Node.value), but its array can still be
    changed in place (flags, shape, dtype): refuse one that no longer fits before the
    call reads it, or writes it."""
    for param, shape, dtype, updated in params:
        value = param.value
        if not (value.shape == shape and value.dtype == dtype and value.flags.c_contiguous):
            raise GraphcError(
                f"param {param.name!r} is {param.type}, but its value array was changed in "
                f"place to {value.dtype}{list(value.shape)}"
                f"{'' if value.flags.c_contiguous else ', not C-contiguous'}; assign a "
                f"new value instead ({param.name}.value = ...)")
        if updated and not value.flags.writeable:
            raise GraphcError(
                f"param {param.name!r} is updated in place by this function, but its value "
                f"array was made read-only (.flags.writeable = False); assign a new value "
                f"({param.name}.value = ...) or make it writable")


def check_feeds(inputs: list, feeds: dict):
    """Validate feeds against the graph's inputs; return ({node: array}, {dim: size})."""
    expected = {node.name: node for node in inputs}
    unknown = sorted(set(feeds) - set(expected))
    if unknown:
        raise FeedError(f"unknown input {unknown[0]!r}; the graph's inputs are "
                        f"{sorted(expected) or 'none'}")
    missing = [name for name in expected if name not in feeds]
    if missing:
        raise FeedError(f"missing input {missing[0]!r} of type {expected[missing[0]].type}")
    arrays, dims, bound_by = {}, {}, {}
    for name, node in expected.items():
        array = _convert(node, feeds[name])
        _check_shape(node, array, dims, bound_by)
        arrays[node] = array
    return arrays, dims


def _convert(node: Node, value) -> np.ndarray:
    return to_dtype(value, node.dtype, f"input {node.name!r}", FeedError)


def _check_shape(node, array, dims, bound_by):
    shape = node.shape
    if array.ndim != len(shape):
        raise FeedError(f"input {node.name!r} expects shape {format_shape(shape)} (rank "
                        f"{len(shape)}), got an array of shape {array.shape}")
    for axis, (want, got) in enumerate(zip(shape, array.shape)):
        if isinstance(want, int):
            if want != got:
                raise FeedError(f"input {node.name!r} expects shape {format_shape(shape)}; "
                                f"dim {axis} must be {want}, got {got} (array {array.shape})")
        elif dims.setdefault(want, got) != got:
            raise FeedError(f"symbolic dim {want!r} is {dims[want]} in input "
                            f"{bound_by[want]!r} but {got} in input {node.name!r}")
        else:
            bound_by.setdefault(want, node.name)
