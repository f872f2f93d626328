"""Kernels: the unit of generated code, one for every compute node of a graph.

A `Kernel` computes one node's value from operands bound by position: `params[k]` is the
body's stand-in for `operands[k]`. A `fused` node's kernel is its body; any other
compute node is a kernel whose body is that one op. Body consts holding more than one
number become operands too (generated code embeds single numbers only), so a body reads
memory only through its params.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphc import ops
from graphc.ir import Graph, Node

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
