"""The IR: a graph of nodes, and a text form that reads back.

The one node type, `Node` (an op applied to input nodes, with attributes and a
`TensorType`), lives in graphc/node.py with the building of nodes; this module is about
graphs of them.

A `Graph` is the set of nodes reachable from some outputs (and parameter updates), in a
deterministic topological order. Its text form (`str(graph)`) is one node a line:

    %x = input() : f32[batch,2]
    %W1 = param() : f32[2,8]
    %0 = matmul(%x, %W1) : f32[batch,8]  # mlp.py:12
    %1 = sum(%0, axes=(1,), keepdims=False) : f32[batch]  # [grad] {grad/layer1} mlp.py:14
    return %1
    update %W1 = %7

and `parse(text)` reads it back, so passes can be tested as text in, text out. The
comment holds a node's labels: its tags in [], its scope's path in {} (graphc/scopes.py),
its source line. graphc/syntax.py reads each line into a record (tokens, columns, the
grammar); `parse` gives the records meaning here: nodes, checked against the op table.
"""

from __future__ import annotations

import itertools
import math
import re
from functools import cached_property

import numpy as np

from graphc import ops, scopes, syntax
from graphc.node import SOURCE_OPS, Node, user_location  # noqa: F401  (the IR's node)
from graphc.errors import (
    DtypeError, ParseDtypeError, ParseError, ParseShapeError, ShapeError)
from graphc.types import format_shape, numpy_dtype, to_dtype

# --- graphs ----------------------------------------------------------------------------

def topological_order(roots, seen=None) -> list:
    """Nodes reachable from roots, inputs before users; iterative, deterministic. `seen`
    (ids) holds nodes already ordered elsewhere: they are skipped, and the ones found here
    are added to it."""
    order, seen = [], set() if seen is None else seen
    for root in roots:
        if id(root) in seen:
            continue
        stack = [(root, 0)]
        seen.add(id(root))
        while stack:
            node, i = stack.pop()
            if i < len(node.inputs):
                stack.append((node, i + 1))
                child = node.inputs[i]
                if id(child) not in seen:
                    seen.add(id(child))
                    stack.append((child, 0))
            else:
                order.append(node)
    return order


class Graph:
    """The nodes reachable from `outputs` and from the new values of `updates`.

    `order` (optional) fixes the order of `nodes`, as a schedule does; it must list exactly
    the reachable nodes, each after its inputs (checked by `lint`)."""

    def __init__(self, outputs, updates=None, order=None):
        if isinstance(outputs, Node):
            outputs = [outputs]
        self.outputs = tuple(outputs)
        self.updates = dict(updates or {})
        for target in self.updates:
            if target.op != "param":
                raise TypeError(f"updates must map params to new values; got {target!r}")
        self.nodes = topological_order(self.roots)
        if order is not None:
            if len(order) != len(self.nodes) or set(order) != set(self.nodes):
                raise ValueError("order must list exactly the nodes reachable from the outputs")
            self.nodes = list(order)

    @property
    def roots(self) -> list:
        """The nodes the graph is built from: the outputs, then each update's param and its
        new value (a param that only an update names is in the graph too)."""
        return list(self.outputs) + [n for kv in self.updates.items() for n in kv]

    @cached_property
    def users(self) -> dict:
        """node -> list of nodes that take it as an input (each user once, in order)."""
        users = {node: [] for node in self.nodes}
        for node in self.nodes:
            for inp in dict.fromkeys(node.inputs):
                users[inp].append(node)
        return users

    @property
    def inputs(self) -> list:
        return [n for n in self.nodes if n.op == "input"]

    @property
    def params(self) -> list:
        return [n for n in self.nodes if n.op == "param"]

    def to_networkx(self):
        """A networkx DiGraph whose nodes are this graph's nodes. networkx algorithms that
        compare nodes with == (shortest_path, has_path) need other labels, since == on
        nodes is elementwise: nx.relabel_nodes(g, id) gives them ids."""
        import networkx as nx

        g = nx.DiGraph()
        g.add_nodes_from(self.nodes)
        g.add_edges_from((inp, node) for node in self.nodes for inp in node.inputs)
        return g

    def lint(self) -> None:
        """Check the invariants every pass must keep; raise AssertionError naming a node
        (or the type rule's own error, for operands an op does not accept)."""

        position = {node: i for i, node in enumerate(self.nodes)}
        names = {}
        for node in self.nodes:
            for inp in node.inputs:
                if inp not in position:
                    raise AssertionError(f"{node!r} uses {inp!r}, which is not in the graph")
                if position[inp] >= position[node]:
                    raise AssertionError(f"{node!r} uses {inp!r} before it is defined (a "
                                         "cycle or a bad order)")
            if node.op in ("param", "const"):
                _lint_value(node)
            if node.op in ("input", "param"):
                other = names.setdefault((node.op, node.name), node)
                if other is not node:
                    raise AssertionError(f"two {node.op}s are named {node.name!r}")
                continue
            if node.op == "const":
                continue
            expected = ops.infer_type(node.op, [i.type for i in node.inputs], node.attrs,
                                      node.body)
            if expected != node.type:
                raise AssertionError(f"{node!r}: recorded type {node.type}, inferred {expected}")

    def __reduce__(self):
        # Its nodes in order, each pickled after its inputs: pickle then saves every
        # node's inputs as references to nodes already saved, never recursing down a
        # deep graph; the order (a schedule) survives.
        return (_unpickled_graph, (self.nodes, self.outputs, self.updates))

    def __str__(self) -> str:
        return format_graph(self)

    def __repr__(self) -> str:
        return f"<Graph {len(self.nodes)} nodes, {len(self.outputs)} outputs>"


def _unpickled_graph(nodes, outputs, updates) -> Graph:
    return Graph(outputs, updates, order=nodes)


def _lint_value(node: Node) -> None:
    """A param's or const's array must have exactly the node's type (a value assigned to
    a param is checked, but the array it holds can be changed in place; a folded const
    is made by a pass)."""
    value = node.value
    if not isinstance(value, np.ndarray) or value.shape != node.type.concrete_shape() or (
            value.dtype != numpy_dtype(node.dtype)):
        got = (f"{value.dtype}{list(value.shape)}" if isinstance(value, np.ndarray)
               else type(value).__name__)
        raise AssertionError(f"{node!r}: its value is {got}, not {node.type}")


# --- text form -------------------------------------------------------------------------

def _format_value(value):
    if isinstance(value, float):
        return repr(value) if np.isfinite(value) else ("nan" if np.isnan(value) else
                                                       ("inf" if value > 0 else "-inf"))
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_format_value(v) for v in value)
        if isinstance(value, tuple):
            return "(" + inner + ("," if len(value) == 1 else "") + ")"
        return "[" + inner + "]"
    return repr(value)


def format_const(value: np.ndarray) -> str:
    flat = value.ravel()
    # Bitwise equal, not ==: [0.0, -0.0] is not a fill (1/x tells them apart).
    if flat.size and flat.tobytes() == np.full_like(flat, flat[0]).tobytes():
        return f"fill={_format_value(flat[0].item())}"
    return f"value={_format_value(value.tolist())}"


def node_names(nodes) -> dict:
    """A unique printed name for each node: its own name where it has one, else a number."""
    names, taken, counter = {}, set(), itertools.count()
    for node in nodes:
        base = node.name if node.name and re.fullmatch(r"\w+", node.name) else None
        name = base
        if name is None or name in taken:
            name = f"{base}_{next(counter)}" if base else str(next(counter))
            while name in taken:
                name = f"{base or ''}_{next(counter)}"
        taken.add(name)
        names[node] = name
    return names


def format_node(node: Node, names: dict) -> str:
    body = node.body  # a fused kernel's graph: printed as an indented block
    args = [f"%{names[i]}" for i in node.inputs]
    args += [f"{k}={_format_value(v)}" for k, v in sorted(node.attrs.items())]
    if node.op == "const":
        args.append(format_const(node.value))
    line = f"%{names[node]} = {node.op}({', '.join(args)}) : {node.type}"
    line += " {" if body is not None else ""
    notes = ([f"[{','.join(sorted(node.tags))}]"] if node.tags else []) + (
        [f"{{{node.scope}}}"] if node.scope.path else []) + ([node.loc] if node.loc else [])
    line += f"  # {' '.join(notes)}" if notes else ""
    if body is not None:
        line += "".join("\n    " + inner for inner in format_graph(body).splitlines()) + "\n}"
    return line


def format_graph(graph: Graph) -> str:
    names = node_names(graph.nodes)
    lines = [format_node(node, names) for node in graph.nodes]
    lines.append("return " + ", ".join(f"%{names[o]}" for o in graph.outputs))
    lines += [f"update %{names[p]} = %{names[v]}" for p, v in graph.updates.items()]
    return "\n".join(lines)


# --- reading the text form back ----------------------------------------------------------

def parse(text: str, *, max_value_bytes: int = 256 * 2**20, check_kernel=None) -> Graph:
    """Read the text form back into a Graph, its nodes in the order they are written (a
    schedule survives the round trip, and a kernel body's inputs keep their positions).

    Each node is checked as building it checks it: its operands defined above it, its
    op in the op table, its arity, its attributes those of the op, each of its kind, and
    its written type the one the op's type rule infers (a kernel's body is read and
    checked the same way, each body input against the operand it stands for). A mistake
    is a ParseError naming the line, the column and the node (a ParseShapeError or
    ParseDtypeError where a type rule refused the node).

    The text holds no data for params (they read as zeros) and fill consts (one number):
    parse makes such values up to `max_value_bytes` (256 MiB) in all, and refuses a text
    that needs more rather than allocate it. `check_kernel(kind, body) -> reason | None`,
    where given, also checks each kernel's body against its kind (the passes' contract,
    graphc.passes.fusion.check_kernel, which sits above the IR; graphc/cli gives it)."""
    return _Reader(text.splitlines(), max_value_bytes, check_kernel).graph(None, None)


class _Written:
    """What the lines of one graph (the text's, or a kernel body's) have defined so far."""

    def __init__(self, operands):
        self.env = {}            # name -> (node, the line that defined it)
        self.written = []        # nodes, in the order written
        self.outputs = None      # the return line's nodes
        self.return_line = None
        self.updates = {}        # param -> new value
        self.updated_at = {}     # param -> the line of its update
        self.operands = operands  # a body's: its kernel's operands, by position; else None
        self.inputs_read = 0      # a body's: its inputs so far


class _Reader:
    """Reads the lines in one pass; a kernel's body is read where its block opens."""

    def __init__(self, lines: list, max_value_bytes: int, check_kernel):
        self.lines = enumerate(lines, 1)
        self.limit = self.budget = max_value_bytes  # bytes of values left to make
        self.check_kernel = check_kernel
        self.scopes = {}

    def graph(self, opener, operands) -> Graph:
        """The graph of the lines up to the text's end, or up to the '}' closing the body
        that the line `opener` opens (its kernel's `operands` bound by position)."""
        state = _Written(operands)
        for lineno, raw in self.lines:
            line = syntax.read_line(lineno, raw)
            if isinstance(line, syntax.CloseLine):
                if opener is None:
                    raise line.error("this '}' closes no kernel body", line.brace.column)
                return _finish(state, opener, line)
            if isinstance(line, syntax.NodeLine):
                self.define(state, line, opener)
            elif isinstance(line, syntax.ReturnLine):
                _read_return(state, line)
            elif isinstance(line, syntax.UpdateLine):
                _read_update(state, line, opener)
        if opener is not None:
            raise opener.error("the block opened here is not closed by '}'",
                               opener.block.column)
        return _finish(state, None, None)

    def define(self, state: _Written, line, opener):
        name, op = line.name.text[1:], line.op.text
        if name in state.env:
            raise line.error(f"%{name} is already defined at line {state.env[name][1]}",
                             line.name.column)
        if op not in SOURCE_OPS and op not in ops.OPS:
            raise line.error(f"unknown op {op!r}", line.op.column)
        if line.block and opener is not None:
            raise line.error("a kernel's body holds no kernels of its own", line.block.column)
        if line.block and op != "fused":
            raise line.error(f"only a fused kernel has a body, not {op}", line.block.column)
        inputs = [_lookup(state, tok, line, "is used before it is defined")
                  for tok in line.operands]
        if op in SOURCE_OPS:
            node = self.source(state, line)
        else:
            node = self.apply(line, inputs, self.body(line, inputs) if line.block else None)
        state.env[name] = (node, line.lineno)
        state.written.append(node)

    def body(self, line, operands) -> Graph:
        try:
            return self.graph(line, operands)
        except ParseError as e:  # name the kernel on the error's first line
            first, _, rest = str(e).partition("\n")
            raise type(e)(f"{first} (in the body of {line.name.text}, opened at line "
                          f"{line.lineno})\n{rest}", e.line, e.column) from None

    def apply(self, line, inputs, body) -> Node:
        """A node of an op of the table, its written type checked by the op's rule."""
        name, op = line.name.text, line.op.text
        attrs = {key: value for key, (value, _) in line.attrs.items()}
        try:
            inferred = ops.infer_type(op, [i.type for i in inputs], attrs, body)
        except (ShapeError, DtypeError) as e:
            error = ParseDtypeError if isinstance(e, DtypeError) else ParseShapeError
            raise line.error(f"{e} (in {name})", _culprit(line), error) from None
        if inferred != line.type:
            given = ", ".join(str(i.type) for i in inputs)
            error = ParseShapeError if inferred.shape != line.type.shape else ParseDtypeError
            raise line.error(f"{name} is written as {line.type}, but {op}({given}) is "
                             f"{inferred}", line.type_token.column, error)
        problem = self.check_kernel(attrs["kind"], body) if (
            body is not None and self.check_kernel is not None) else None
        if problem:
            raise line.error(f"{name} is not a valid {attrs['kind']} kernel: {problem}",
                             line.op.column)
        return Node(op, inputs, attrs, inferred, name=None if name[1:].isdigit() else name[1:],
                    loc=line.loc, tags=line.tags, scope=scopes.from_path(line.scope, self.scopes),
                    body=body)

    def source(self, state: _Written, line) -> Node:
        """An input, a param (zeros) or a const (its value, or its fill)."""
        op, name = line.op.text, line.name.text
        if line.operands:
            raise line.error(f"{op} takes no operands", line.operands[0].column)
        allowed = ("value", "fill") if op == "const" else ()
        for key, (_, tok) in line.attrs.items():
            if key not in allowed:
                takes = "takes value=[...] or fill=x" if allowed else "takes no attributes"
                raise line.error(f"{op} {takes}, not {key}=", tok.column)
        labels = dict(loc=line.loc, tags=line.tags,
                      scope=scopes.from_path(line.scope, self.scopes))
        if op == "const":
            return Node("const", (), {}, line.type, value=self.const_value(line), **labels)
        user_name = None if name[1:].isdigit() else name[1:]
        if op == "input":
            _check_body_input(state, line)
            return Node("input", (), {}, line.type, name=user_name, **labels)
        zeros = np.zeros(self.allocate(line, f"param {name}"), numpy_dtype(line.type.dtype))
        return Node("param", (), {}, line.type, name=user_name, value=zeros, **labels)

    def allocate(self, line, what: str) -> tuple:
        """The concrete shape of a value the text does not hold, charged to the budget."""
        shape = _fixed_shape(line, what)
        itemsize = numpy_dtype(line.type.dtype).itemsize
        nbytes = math.prod(shape) * itemsize
        if math.prod(d or 1 for d in shape) * itemsize >= 2**63:  # NumPy's limit, size 0 too
            raise line.error(f"{what} : {line.type} is larger than an array can be",
                             line.type_token.column)
        if nbytes > self.budget:
            raise line.error(
                f"{what} : {line.type} would take {nbytes:,} bytes; the text holds no data "
                f"for it, and parse makes at most max_value_bytes={self.limit:,} bytes of "
                "such values (param zeros, const fills) in all", line.type_token.column)
        self.budget -= nbytes
        return shape

    def const_value(self, line) -> np.ndarray:
        """A const's array, read-only: its `value=` (exactly its type's shape) or `fill=`."""
        if len(line.attrs) != 1:
            raise line.error("a const takes value=[...] or fill=x (one of them)",
                             line.op.column)
        (key, (value, tok)), = line.attrs.items()
        what = f"the {key} of const {line.name.text}"
        shape = self.allocate(line, f"const {line.name.text}") if key == "fill" else (
            _fixed_shape(line, what))
        data = _numbers(value, line.type.dtype, what, line, tok)
        if key == "fill" and data.ndim:
            raise line.error(f"{what} must be one number, got {format_shape(data.shape)}",
                             tok.column)
        if key == "fill":
            data = np.full(shape, data)
        elif data.shape != shape:
            raise line.error(f"{what} has shape {format_shape(data.shape)}, but the const "
                             f"is {line.type}", tok.column)
        data.flags.writeable = False
        return data


def _fixed_shape(line, what: str) -> tuple:
    if not line.type.is_static:
        raise line.error(f"{what} needs a fixed type (its value has a size), got "
                         f"{line.type}", line.type_token.column)
    return line.type.concrete_shape()


def _numbers(value, dtype: str, what: str, line, tok) -> np.ndarray:
    """`value` (numbers, nested tuples of them) as an array of `dtype`, by the rule for
    data handed to graphc (no cast that loses information); an empty one is empty."""
    try:
        array = np.asarray(value)
    except ValueError as e:  # ragged tuples
        raise line.error(f"{what} is not an array: {e}", tok.column) from None
    if array.size == 0 and array.dtype == np.float64:  # () has no dtype of its own
        array = array.astype(numpy_dtype(dtype))
    try:
        return to_dtype(array, dtype, what, copy=True)
    except DtypeError as e:
        raise line.error(str(e), tok.column) from None


def _check_body_input(state: _Written, line):
    """A body's k-th input stands for its kernel's k-th operand: it has that type."""
    if state.operands is None:  # the text's own inputs: fed by name
        return
    k, state.inputs_read = state.inputs_read, state.inputs_read + 1
    if k >= len(state.operands):
        raise line.error(f"fused: the body reads more inputs than its kernel's "
                         f"{len(state.operands)} operands", line.name.column, ParseShapeError)
    if state.operands[k].type != line.type:
        raise line.error(f"fused: body input {line.name.text[1:]} is {line.type}, operand "
                         f"{k} is {state.operands[k].type}", line.type_token.column,
                         ParseShapeError)


def _culprit(line) -> int:
    """The column a type rule's refusal points at: the first attribute not of its kind
    (or that the op does not take), else the op."""
    for key, (value, tok) in line.attrs.items():
        if not ops.fits_kind(line.op.text, key, value):
            return tok.column
    return line.op.column


def _lookup(state: _Written, tok, line, what="is not defined") -> Node:
    entry = state.env.get(tok.text[1:])
    if entry is None:
        raise line.error(f"{tok.text} {what}", tok.column)
    return entry[0]


def _read_return(state: _Written, line):
    if state.outputs is not None:
        raise line.error(f"a second 'return' line (the first is line {state.return_line})",
                         1 + len(line.raw) - len(line.raw.lstrip()))
    state.outputs = [_lookup(state, tok, line) for tok in line.outputs]
    state.return_line = line.lineno


def _read_update(state: _Written, line, opener):
    column = 1 + len(line.raw) - len(line.raw.lstrip())
    if opener is not None:
        raise line.error("a kernel's body has no updates", column)
    target, value = _lookup(state, line.target, line), _lookup(state, line.value, line)
    if target.op != "param":
        raise line.error(f"update {line.target.text}: {line.target.text} is {target.op!r}, not "
                         "a param; only params are updated", line.target.column)
    if target in state.updated_at:
        raise line.error(f"{line.target.text} is updated twice (first at line "
                         f"{state.updated_at[target]})", line.target.column)
    if value.type != target.type:
        raise line.error(f"update {line.target.text}: the new value {line.value.text} is "
                         f"{value.type}, but the param is {target.type}", line.value.column,
                         ParseShapeError)
    state.updates[target] = value
    state.updated_at[target] = line.lineno


def _finish(state: _Written, opener, close) -> Graph:
    """The graph of what was read: the nodes the outputs and updates reach, as written."""
    if state.outputs is None:
        if opener is None:
            raise ParseError("no 'return' line")
        raise close.error("a kernel's body needs a 'return' line before its '}'",
                          close.brace.column)
    reachable = {id(n) for n in Graph(state.outputs, state.updates).nodes}
    return Graph(state.outputs, state.updates,
                 order=[n for n in state.written if id(n) in reachable])
