"""What a renderer is told about one kernel: a `Job`, plain data.

The function writer (build.py) makes one Job a kernel: the kernel (backends/lower:
its body, operands bound by position), where its output goes and, for each operand,
how the generated code reads it. Renderers (ufuncs.py, c.py) and the strategy table
(strategy.py) read Jobs and never call back into the function writer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphc.backends.lower import index as ix
from graphc.backends.lower.kernel import Kernel
from graphc.ir import Graph, Node
from graphc.passes.schedule import SYMBOLIC_DIM_ESTIMATE


def _primes_from(start: int, count: int) -> list:
    primes, n = [], start
    while len(primes) < count:
        if all(n % p for p in range(2, int(n ** 0.5) + 1)):
            primes.append(n)
        n += 1
    return primes


@dataclass(frozen=True)
class Binding:
    """How a build sees the graph's dims: each dim the build is fixed to has its size;
    every other is symbolic, written `_dim_<dim>` in the source and taken at run time.

    symbolic: dim -> its size or its source name: what shapes (and the code) say;
    probe:    dim -> its size or a prime of its own above 10**4: the sizes of the
              stand-in arrays the build lays views out on (a stride that depends on a
              symbolic dim is then a multiple of its prime: c.py refuses it; a fixed
              stride that happens to be one is refused too, costing only speed);
    estimate: dim -> its size or passes.schedule's estimate: the sizes the buffer plan
              and size-dependent choices are made at."""
    symbolic: dict
    probe: dict
    estimate: dict

    @classmethod
    def of(cls, dims: dict, fixed: dict) -> "Binding":
        free = sorted(d for d in dims if d not in fixed)
        primes = dict(zip(free, _primes_from(10_007, len(free))))
        return cls({d: fixed.get(d, f"_dim_{d}") for d in dims},
                   {d: fixed.get(d, primes.get(d)) for d in dims},
                   {d: fixed.get(d, SYMBOLIC_DIM_ESTIMATE) for d in dims})

    @property
    def sizes(self) -> tuple:
        """(dim, its source name) of each symbolic dim."""
        return tuple((d, n) for d, n in self.symbolic.items() if isinstance(n, str))

    @property
    def primes(self) -> tuple:
        return tuple(self.probe[d] for d, _ in self.sizes)

    def estimated(self, shape: tuple) -> int:
        """A symbolic shape's element count with each symbolic size estimated."""
        count, names = ix.product(shape)
        return count * SYMBOLIC_DIM_ESTIMATE ** len(names)


def input_axes(graph: Graph, binding: Binding) -> list:
    """(source name, input index, axis) that gives each symbolic size at run time."""
    found = {}
    for k, node in enumerate(graph.inputs):
        for axis, d in enumerate(node.shape):
            name = binding.symbolic.get(d) if isinstance(d, str) else None
            if isinstance(name, str):
                found.setdefault(name, (name, k, axis))
    return list(found.values())


@dataclass(frozen=True)
class Operand:
    """How the generated code reads a value (a kernel's operand, or its output)."""
    node: Node                  # the outer node, or the body const, it holds
    expr: str                   # its Python expression (a name, or a view of one)
    array: np.ndarray           # its elements as laid out in memory: the array itself
                                # (buffers, consts), or a stand-in of the same layout
                                # (inputs and params: another array each call)
    per_call: str | None        # for those: the name of the array read each call
    known: object               # the number it holds throughout, if the build knows it
                                # (a 0-d array, or a lower.kernel.Runtime)
    in_output: bool = False     # stored where the kernel's output goes (in place)
    framed: bool = False        # it lives in the frame (its shape has symbolic sizes)

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
    shapes: dict                # body node -> its shape (sizes, or symbolic names)
    dims: dict                  # Binding.symbolic
    title: str                  # the node's IR line, without its type
    overwrites_elsewhere: bool  # writes over an operand it reads in another layout
    binding: Binding            # how the build sees the dims (symbolic, probe, estimate)

    @property
    def shape(self) -> tuple:
        return self.shapes[self.kernel.result]

    @property
    def dtype(self) -> np.dtype:
        return self.output.array.dtype

    @property
    def leaves(self) -> dict:
        """Body input (or array const) -> the Operand it stands for."""
        return dict(zip(self.kernel.params, self.operands))

    def elements(self) -> int:
        """The most elements of any value the kernel computes (symbolic sizes at their
        estimate)."""
        return max(self.binding.estimated(self.shapes[s])
                   for s in self.kernel.steps + [self.kernel.result])

    def symbolic_size(self) -> bool:
        """Whether a value it computes has a symbolic size."""
        return any(ix.product(self.shapes[s])[1] for s in self.kernel.steps)


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
