"""What a renderer is told about one kernel: a `Job`, plain data.

The function writer (build.py) makes one Job a kernel: the kernel (backends/lower:
its body, operands bound by position), where its output goes and, for each operand,
how the generated code reads it. Renderers (ufuncs.py, c.py) and the strategy table
(strategy.py) read Jobs and never call back into the function writer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphc.backends.lower.kernel import Kernel
from graphc.ir import Node


@dataclass(frozen=True)
class Operand:
    """How the generated code reads a value (a kernel's operand, or its output)."""
    node: Node                  # the outer node, or the body const, it holds
    expr: str                   # its Python expression (a name, or a view of one)
    array: np.ndarray           # its elements as laid out in memory: the array itself
                                # (buffers, consts), or a stand-in of the same layout
                                # (inputs and params: another array each call)
    per_call: str | None        # for those: the name of the array read each call
    known: np.ndarray | None    # the number it holds throughout, if the build knows it
    in_output: bool = False     # stored where the kernel's output goes (in place)

    @property
    def offset(self) -> int:
        """Elements from the start of the per-call array to this view's first element."""
        if self.per_call is None:
            return 0
        start = self.array.__array_interface__["data"][0]
        return (start - memory_root(self.array).__array_interface__["data"][0]) // (
            self.array.itemsize or 1)


def memory_root(array: np.ndarray) -> np.ndarray:
    """The array that owns the memory a view shows (a stand-in is its own root)."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


@dataclass(frozen=True)
class Job:
    node: Node                  # the graph node the kernel computes
    kernel: Kernel
    output: Operand             # where its value goes
    spare: str | None           # a free array of the output's type, for a temporary
    operands: tuple             # Operand per kernel operand, by position
    shapes: dict                # body node -> its concrete shape
    dims: dict
    title: str                  # the node's IR line, without its type
    overwrites_elsewhere: bool  # writes over an operand it reads in another layout

    @property
    def shape(self) -> tuple:
        return self.output.array.shape

    @property
    def dtype(self) -> np.dtype:
        return self.output.array.dtype

    @property
    def leaves(self) -> dict:
        """Body input (or array const) -> the Operand it stands for."""
        return dict(zip(self.kernel.params, self.operands))

    def elements(self) -> int:
        """The most elements of any value the kernel computes."""
        return max(int(np.prod(self.shapes[s], dtype=np.int64))
                   for s in self.kernel.steps + [self.kernel.result])


def body_shapes(kernel: Kernel, dims: dict) -> dict:
    """Body node -> concrete shape. A body's symbolic dims are bound by its operands'
    and its result's actual sizes (a body built by hand may name them apart)."""
    bound = dict(dims)
    pairs = [(p.type.shape, o.type.concrete_shape(dims))
             for p, o in zip(kernel.params, kernel.operands)]
    pairs.append((kernel.result.type.shape, kernel.node.type.concrete_shape(dims)))
    for symbolic, actual in pairs:
        bound.update((d, size) for d, size in zip(symbolic, actual) if isinstance(d, str))
    return {n: n.type.concrete_shape(bound) for n in kernel.body.nodes}
