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
its source line.
"""

from __future__ import annotations

import ast
import itertools
import re
from functools import cached_property

import numpy as np

from graphc import ops, scopes
from graphc.node import SOURCE_OPS, Node, user_location  # noqa: F401  (the IR's node)
from graphc.errors import ParseError, ShapeError
from graphc.types import (
    SHORT_TO_DTYPE, TensorType, canonical_shape, numpy_dtype)

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

    def __str__(self) -> str:
        return format_graph(self)

    def __repr__(self) -> str:
        return f"<Graph {len(self.nodes)} nodes, {len(self.outputs)} outputs>"


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


_NODE_LINE = re.compile(
    r"^%(?P<name>\w+)\s*=\s*(?P<op>\w+)\((?P<args>.*)\)\s*:\s*(?P<type>\w+\[[^\]]*\])"
    r"\s*(?P<block>\{)?\s*(?:#\s*(?:\[(?P<tags>[\w,]*)\])?\s*(?:\{(?P<scope>\w+(?:/\w+)*)\})?"
    r"\s*(?P<loc>\S.*?)?)?\s*$")
_TYPE = re.compile(r"^(\w+)\[([^\]]*)\]$")
_SPECIAL_FLOATS = {"inf": float("inf"), "nan": float("nan")}


def parse_type(text: str) -> TensorType:
    m = _TYPE.match(text.strip())
    if not m or m.group(1) not in SHORT_TO_DTYPE:
        raise ParseError(f"bad type {text!r}; expected e.g. f32[batch,2]")
    dims = [d.strip() for d in m.group(2).split(",") if d.strip()]
    try:
        shape = canonical_shape(tuple(int(d) if d.lstrip("-").isdigit() else d for d in dims))
    except ShapeError as e:
        raise ParseError(f"bad type {text!r}: {e}") from None
    return TensorType(shape, SHORT_TO_DTYPE[m.group(1)])


class _Literals(ast.NodeTransformer):
    def visit_Name(self, node):
        if node.id in _SPECIAL_FLOATS:
            return ast.copy_location(ast.Constant(_SPECIAL_FLOATS[node.id]), node)
        raise ValueError(f"unknown name {node.id!r}")


def _literal(tree):
    return ast.literal_eval(_Literals().visit(tree))


_OPERANDS_ONLY = re.compile(r"\s*(?:%\w+\s*(?:,\s*%\w+\s*)*)?")


def _parse_call(args_text: str, env: dict, lineno: int):
    """`%a, %b, axes=(1,)` -> ([nodes], {attrs}); names are looked up in env."""
    try:
        if _OPERANDS_ONLY.fullmatch(args_text):  # most lines: Python's parser is not needed
            names, attrs = re.findall(r"%(\w+)", args_text), {}
        else:
            names, attrs = _parse_with_attrs(args_text)
        missing = [name for name in names if name not in env]
        if missing:
            raise ValueError(f"%{missing[0]} is used before it is defined")
    except (SyntaxError, ValueError) as e:
        raise ParseError(f"line {lineno}: {e}") from None
    return [env[name] for name in names], attrs


def _parse_with_attrs(args_text: str):
    code = re.sub(r"%(\w+)", r"__v_\1", f"f({args_text})")
    call = ast.parse(code, mode="eval").body
    names = []
    for arg in call.args:
        if not (isinstance(arg, ast.Name) and arg.id.startswith("__v_")):
            raise ValueError(f"positional arguments must be %names, got {ast.unparse(arg)}")
        names.append(arg.id[4:])
    return names, {kw.arg: _literal(kw.value) for kw in call.keywords}


def _tuplify(value):
    """Attributes are hashable: lists read from text become tuples."""
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    return value


def _make_source(op, name, attrs, type, loc, tags, scope):
    if op == "input":
        return Node("input", (), {}, type, name=name, loc=loc, tags=tags, scope=scope)
    if op == "param":
        value = np.zeros(type.concrete_shape(), numpy_dtype(type.dtype))
        return Node("param", (), {}, type, name=name, loc=loc, tags=tags, value=value,
                    scope=scope)
    value = attrs.pop("value", None)
    fill = attrs.pop("fill", None)
    data = np.full(type.concrete_shape(), fill) if value is None else np.array(value)
    data = data.astype(numpy_dtype(type.dtype)).reshape(type.concrete_shape())
    data.flags.writeable = False
    return Node("const", (), {}, type, loc=loc, tags=tags, value=data, scope=scope)


def parse(text: str) -> Graph:
    """Read the text form back into a Graph, its nodes in the order they are written (a
    schedule survives the round trip, and a kernel body's inputs keep their positions).
    Params get zero values (text holds no data)."""
    env, outputs, updates, known_scopes, written = {}, None, {}, {}, []
    lines = enumerate(text.splitlines(), 1)
    for lineno, raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("return"):
            outputs = [_lookup(env, n, lineno) for n in re.findall(r"%(\w+)", line)]
            continue
        if line.startswith("update"):
            m = re.fullmatch(r"update\s+%(\w+)\s*=\s*%(\w+)", line)
            if not m:
                raise ParseError(f"line {lineno}: expected 'update %param = %value'")
            updates[_lookup(env, m.group(1), lineno)] = _lookup(env, m.group(2), lineno)
            continue
        env_name, node = _parse_node_line(line, env, lineno, lines, known_scopes)
        env[env_name] = node
        written.append(node)
    if outputs is None:
        raise ParseError("no 'return' line")
    reachable = {id(n) for n in Graph(outputs, updates).nodes}
    return Graph(outputs, updates, order=[n for n in written if id(n) in reachable])


def _lookup(env, name, lineno):
    if name not in env:
        raise ParseError(f"line {lineno}: %{name} is not defined")
    return env[name]


def _read_block(lines, lineno: int) -> Graph:
    """The lines up to the `}` that closes a block opened at `lineno`, parsed as a graph
    (a fused kernel's body). Bodies hold no blocks, so the first lone `}` closes it."""
    block = []
    for _, raw in lines:
        if raw.strip() == "}":
            try:
                return parse("\n".join(block))
            except ParseError as e:
                raise ParseError(f"in the block opened at line {lineno}: {e}") from None
        block.append(raw)
    raise ParseError(f"line {lineno}: the block opened here is not closed by '}}'")


def _parse_node_line(line: str, env: dict, lineno: int, lines=iter(()), known_scopes=None):

    m = _NODE_LINE.match(line)
    if not m:
        raise ParseError(f"line {lineno}: cannot read {line!r}")
    name, op = m.group("name"), m.group("op")
    type = parse_type(m.group("type"))
    tags = frozenset(t for t in (m.group("tags") or "").split(",") if t)
    loc = m.group("loc") or ""  # from the text, or none: not the line that called parse
    path = tuple(m.group("scope").split("/")) if m.group("scope") else ()
    scope = scopes.from_path(path, {} if known_scopes is None else known_scopes)
    inputs, attrs = _parse_call(m.group("args"), env, lineno)
    attrs = {k: _tuplify(v) for k, v in attrs.items()}
    body = _read_block(lines, lineno) if m.group("block") else None
    if op in SOURCE_OPS:
        node_name = None if name.isdigit() or op == "const" else name
        return name, _make_source(op, node_name, attrs, type, loc, tags, scope)
    if op not in ops.OPS:
        raise ParseError(f"line {lineno}: unknown op {op!r}")
    try:
        attrs = ops.canonical_attrs(op, attrs)
    except ShapeError as e:
        raise ParseError(f"line {lineno}: {e}") from None
    user_name = None if re.fullmatch(r"\d+", name) else name
    return name, Node(op, inputs, attrs, type, name=user_name, loc=loc, tags=tags, scope=scope,
                      body=body)
