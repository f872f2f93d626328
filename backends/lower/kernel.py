"""Kernels: the unit of generated code, one for every compute node of a graph.

A `Kernel` computes one node's value from operands bound by position: `params[k]` is the
body's stand-in for `operands[k]`. A `fused` node's kernel is its body; any other
compute node is a kernel whose body is that one op. Body consts holding more than one
number become operands too (generated code embeds single numbers only), so a body reads
memory only through its params.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from graphc import ops
from graphc.ir import Graph, Node
from graphc.types import TensorType, numpy_dtype

# An op's kind -> the kind of the kernel that computes it alone.
KERNEL_KIND = {"reduce": "reduction", "matmul": "matmul"}


@dataclass(frozen=True)
class Kernel:
    node: Node          # the graph node whose value it computes
    kind: str           # pointwise | reduction | matmul
    body: Graph         # what it computes, from params
    params: tuple       # body inputs, by position: params[k] stands for operands[k]
    operands: tuple     # the outer nodes (or consts) read

    @property
    def steps(self) -> list:
        """The body's computing nodes, inputs before users."""
        return [n for n in self.body.nodes if n.op not in ("input", "const")]

    @property
    def result(self) -> Node:
        return self.body.outputs[0]


def kernel_of(node: Node) -> Kernel:
    if node.op == "fused":
        body = node.body
        return _with_array_consts(Kernel(node, node.attrs["kind"], body, tuple(body.inputs),
                                         tuple(node.inputs)))
    params = tuple(Node("input", (), {}, i.type, name=f"in{k}", loc=node.loc)
                   for k, i in enumerate(node.inputs))
    body = Graph([Node(node.op, params, node.attrs, node.type, loc=node.loc, tags=node.tags)])
    kind = KERNEL_KIND.get(ops.OPS[node.op].kind, "pointwise")
    return Kernel(node, kind, body, params, tuple(node.inputs))


def _with_array_consts(kernel: Kernel) -> Kernel:
    arrays = [n for n in kernel.body.nodes if n.op == "const" and n.value.size > 1]
    if not arrays:
        return kernel
    return Kernel(kernel.node, kernel.kind, kernel.body, kernel.params + tuple(arrays),
                  kernel.operands + tuple(arrays))


def reading_bases(kernel: Kernel, view_of) -> Kernel:
    """The kernel with each operand that is a view of another node (view_of(node) is the
    node it views, or None) read from the node that owns the memory instead: the view's
    layout ops move into the body, so the loads index that buffer directly and a
    transposed or sliced operand costs no copy. An identity view (view_of(node) of a node
    that is no layout op, a stop_gradient) adds nothing. Operands on one base share it."""
    if not any(isinstance(o, Node) and view_of(o) is not None for o in kernel.operands):
        return kernel
    param_of, stands_for = {}, {}     # base -> its new param; old param -> its value
    for param, operand in zip(kernel.params, kernel.operands):
        chain = []
        while view_of(operand) is not None:
            chain.append(operand)
            operand = view_of(operand)
        if operand not in param_of:
            param_of[operand] = Node("input", (), {}, operand.type,
                                     name=f"in{len(param_of)}", loc=param.loc)
        value = param_of[operand]
        for view in reversed(chain):
            if ops.OPS[view.op].kind == "layout":
                value = Node(view.op, (value,), view.attrs, view.type, loc=view.loc)
        stands_for[param] = value
    return Kernel(kernel.node, kernel.kind, _substituted(kernel.body, stands_for),
                  tuple(param_of.values()), tuple(param_of))


def _substituted(body: Graph, stands_for: dict) -> Graph:
    """`body` with each param replaced by what stands for it (nodes rebuilt above them)."""
    new = dict(stands_for)
    for node in body.nodes:
        if node in new:
            continue
        inputs = tuple(new.get(i, i) for i in node.inputs)
        new[node] = node if all(a is b for a, b in zip(inputs, node.inputs)) else Node(
            node.op, inputs, node.attrs, node.type, name=node.name, loc=node.loc,
            tags=node.tags, value=node.value, body=node.body)
    return Graph([new[o] for o in body.outputs])


@dataclass(frozen=True, eq=False)
class Runtime:
    """A number every element of a value holds that is fixed at each call, not at the
    build: it depends on symbolic sizes (the count of a `size` over a symbolic axis,
    and what elementwise ops make of it: a mean's 1 / batch). Generated code takes it
    as an argument; `at(sizes)` computes it, sizes: {symbolic size name: int}."""
    at: Callable
    dtype: str


def known_numbers(nodes, shapes: dict, known: dict) -> dict:
    """Body node -> the number (a 0-d array, or a Runtime where it depends on symbolic
    sizes) every element of it holds, where the build knows it: the numbers given (an
    operand that is a size, say), one-element consts, sizes, and what views and
    elementwise ops make of known numbers alone (the gradient of a mean divides by the
    batch size). Every rendering of a body (loop nests, NumPy calls) folds with this,
    once."""
    known = dict(known)
    for node in nodes:  # (inputs before users)
        if node not in known:
            number = _known_number(node, shapes, known)
            if number is not None:
                known[node] = number
    return known


def one_element_const(node: Node):
    """A one-element const's number, as a 0-d array; None for any other node."""
    return node.value.reshape(()) if node.op == "const" and node.value.size == 1 else None


def fixed_number(node: Node, shapes: dict):
    """The number a one-element const or a size (an element count, fixed once the dims
    are) holds, as a 0-d array (a Runtime for a count of symbolic sizes); None for any
    other node. shapes: node -> its shape (ints, and names of symbolic sizes), for a
    size's operand."""
    if node.op == "size":
        shape = shapes[node.inputs[0]]
        counted = [shape[a] for a in node.attrs["axes"]]
        dtype = numpy_dtype(node.dtype)
        if any(isinstance(d, str) for d in counted):
            return Runtime(lambda sizes: _count([sizes.get(d, d) for d in counted], dtype),
                           node.dtype)
        return _count(counted, dtype)
    return one_element_const(node)


def _count(sizes: list, dtype) -> np.ndarray:
    return np.asarray(np.prod(sizes, dtype=np.int64)).astype(dtype)


def at_run_time(number, sizes: dict) -> np.ndarray:
    """A known number's value (a 0-d array) at a binding of the symbolic sizes."""
    return number.at(sizes) if isinstance(number, Runtime) else number


def _known_number(node: Node, shapes: dict, known: dict):
    if node.op in ("const", "size"):
        return fixed_number(node, shapes)
    numbers = [known.get(i) for i in node.inputs]
    if not numbers or any(n is None for n in numbers):
        return None
    if ops.has(node.op, "view"):
        return numbers[0]
    if not ops.is_elementwise(node.op):
        return None
    if any(isinstance(n, Runtime) for n in numbers):
        return Runtime(lambda sizes: _evaluate(node, [at_run_time(n, sizes) for n in numbers]),
                       node.dtype)
    return _evaluate(node, numbers)


def _evaluate(node: Node, numbers: list) -> np.ndarray:
    with np.errstate(all="ignore"):  # inf and nan are values (1 / a zero-size count)
        return np.asarray(ops.evaluate(node.op, numbers, node.attrs, TensorType((), node.dtype),
                                       {}))
