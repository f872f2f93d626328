"""From an optimized graph to a Triton program: a kernel per compute node, in order, and
the buffer plan their values live in.

Every compute node is a kernel (backends/lower/kernel.py: a fused node's body, or a
one-op body), lowered once to a loop nest and rendered as Triton (render.py). A view (an
op with the "view" trait: a transpose, slice, broadcast, reshape, ...) is no kernel: a
kernel that reads it reads the buffer it views, through the view's index arithmetic
(`reading_bases`), so views cost nothing anywhere. A fused node the lowering or the
renderer cannot take is split into its ops, each its own kernel (the kernels say why,
in the lowering's words); a plain op that cannot be generated is a GraphcError naming
it. A kernel of an empty output launches nothing; a max over an empty axis raises what
the reference raises, at build time. A collective is no kernel either: the host function
calls the executable's Collectives on its tensors (a `HostCall`, backends/collectives.py)
between the launches; one whose operand is a view has the view's values copied into its
own buffer first (a kernel of the view), since views have no tensor.

Buffers: the graph (with any split nodes in place) goes to `plan_buffers`, the same
planner the numpy backend uses, with the views as aliases: every value that needs
storage gets an arena, reused by later values once it is dead, or its operand's
buffer when it may overwrite it in place. Nothing here imports triton or torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from graphc import ops
from graphc.backends.lower.kernel import Kernel, kernel_of, reading_bases
from graphc.backends.lower.loops import Unsupported, lower
from graphc.errors import GraphcError
from graphc.ir import SOURCE_OPS, Graph, Node
from graphc.passes.rewrite import rebuild
from graphc.passes.schedule import BufferPlan, plan_buffers
from graphc.types import format_shape

from . import blocks as bl
from .indexing import KERNELS as INDEXING_KERNELS
from .philox import KERNELS as PHILOX_KERNELS
from .render import TritonKernel, render


@dataclass
class Launch:
    """One kernel launch: the kernel, the node whose value it writes, what it reads."""
    kernel: TritonKernel
    node: Node
    operands: tuple            # outer nodes for in0_ptr, in1_ptr, ... (buffers or sources)
    nodes: tuple               # the ops it runs
    note: str = ""             # why its fused node was split, when it was


@dataclass
class HostCall:
    """A collective: the host function's call of the executable's Collectives."""
    node: Node
    operand: Node              # the node whose tensor it reads (node itself after a copy)


@dataclass
class Program:
    graph: Graph               # the graph the launches run (split nodes in place)
    plan: BufferPlan
    steps: list                # what the host function runs, in order: Launch | HostCall
    sources: list              # inputs, params and consts, in the host function's order
    results: list              # outputs, then update values
    notes: list = field(default_factory=list)

    @property
    def launches(self) -> list:
        return [step for step in self.steps if isinstance(step, Launch)]

    @property
    def kernels(self) -> list:
        return [launch.kernel for launch in self.launches]

    @property
    def workspace(self) -> int:
        """float32 elements of scratch the split-K matmuls need: one buffer serves them
        all, since kernels run one after another."""
        return max([k.workspace for k in self.kernels], default=0)


def view_of(node: Node) -> Node | None:
    """The node whose memory `node` is a view of (every view reads its first operand)."""
    return node.inputs[0] if ops.has(node.op, "view") else None


def generate(graph: Graph, dims: dict, settings: bl.Settings = bl.Settings()) -> Program:
    """The program of `graph` at concrete `dims`."""
    planner = _Planner(dims, settings)
    new = {}
    for node in graph.nodes:
        new[node] = planner.add(rebuild(node, tuple(new[i] for i in node.inputs)))
    results = [new[o] for o in graph.outputs] + [new[v] for v in graph.updates.values()]
    launched = Graph([new[o] for o in graph.outputs],
                     {p: new[v] for p, v in graph.updates.items()}, order=planner.order)
    plan = plan_buffers(launched, dims, alias_of=view_of)
    sources = [n for n in planner.order if n.op in SOURCE_OPS] + [
        c for c in planner.body_consts if c not in planner.placed]
    return Program(launched, plan, planner.steps, sources, results, planner.notes)


class _Planner:
    """Walks the graph in order: each node is a source, a view or kernel(s)."""

    def __init__(self, dims, settings: bl.Settings):
        self.dims, self.settings = dims, settings
        self.order, self.launches, self.notes = [], [], []
        self.steps = []            # the launches and host calls, in order
        self.placed = set()        # the nodes of `order`
        self.body_consts = {}      # array consts of bodies, read as operands: sources too

    def add(self, node: Node) -> Node:
        """Record `node`; return the node that stands for its value (a split fused
        node's last op)."""
        if node.op in SOURCE_OPS or view_of(node) is not None:
            return self._place(node)
        if ops.has(node.op, "collective"):
            return self._host_call(node)
        kernel = kernel_of(node)
        try:
            launches = self._launch(kernel)
        except Unsupported as why:
            if node.op != "fused":
                raise GraphcError(f"the triton backend cannot generate {node.op} on "
                                  f"{', '.join(str(i.type) for i in node.inputs)} (made at "
                                  f"{node.loc}): {why}") from None
            return self._split(kernel, f"fused {kernel.kind} kernel split into its ops: {why}")
        self._append(launches)
        return self._place(node)

    def _append(self, launches: list):
        self.launches += launches
        self.steps += launches

    def _host_call(self, node: Node) -> Node:
        """A collective; an operand that is a view is first copied into node's buffer."""
        operand = node.inputs[0]
        if view_of(operand) is not None:
            self._append(self._launch(replace(kernel_of(operand), node=node)))
            operand = node
        self.steps.append(HostCall(node, operand))
        return self._place(node)

    def _place(self, node: Node) -> Node:
        self.order.append(node)
        self.placed.add(node)
        return node

    def _launch(self, kernel: Kernel) -> list:
        """The kernel's launches: none for an empty output, two for a scatter_add."""
        kernel = reading_bases(kernel, view_of)
        shapes = {n: n.type.concrete_shape(self.dims) for n in kernel.body.nodes}
        shapes.update({p: o.type.concrete_shape(self.dims)
                       for p, o in zip(kernel.params, kernel.operands)})
        _refuse_empty_max(kernel, shapes)
        if bl.numel(shapes[kernel.result]) == 0:   # nothing to compute: no launch
            return []
        name = (f"k{len(self.launches)}_{kernel.kind}_" + "_".join(dict.fromkeys(
            n.op for n in kernel.steps if not ops.has(n.op, "view")))[:40]).rstrip("_")
        by_hand = {**INDEXING_KERNELS, **PHILOX_KERNELS}.get(kernel.result.op)
        if by_hand is not None:   # reads or writes at data-dependent places: no loop nest
            rendered = by_hand(name, kernel, shapes)
        else:
            rendered = render(name, lower(kernel, shapes), [shapes[p] for p in kernel.params],
                              self.settings)
        self.body_consts.update((o, None) for o in kernel.operands
                                if o.op == "const" and o not in self.placed)
        return [Launch(r, kernel.node, kernel.operands, tuple(kernel.steps)) for r in rendered]

    def _split(self, kernel: Kernel, note: str) -> Node:
        """The kernel's body ops as outer nodes, each added on its own (the consts they
        read too); the node that stands for its result."""
        self.notes.append(note)
        first = len(self.launches)
        mapping = dict(zip(kernel.params, kernel.operands))
        for n in kernel.body.nodes:
            if n.op == "const":
                const = mapping.get(n, n)
                mapping[n] = const if const in self.placed else self.add(const)
            elif n not in mapping:
                mapping[n] = self.add(Node(n.op, [mapping[i] for i in n.inputs], n.attrs,
                                           n.type, name=n.name, loc=kernel.node.loc,
                                           tags=n.tags))
        for launch in self.launches[first:]:
            launch.note = note
        return mapping[kernel.result]


def _refuse_empty_max(kernel: Kernel, shapes: dict):
    """A max or min over an axis of length 0 has no value: raise what the reference
    raises."""
    for n in kernel.steps:
        shape = shapes[n.inputs[0]]
        if ops.OPS[n.op].kind == "reduce" and ops.may_raise(n.op, [shape], n.attrs):
            raise GraphcError(f"{n.op} failed on operands of shapes {format_shape(shape)} (made "
                              f"at {n.loc}): zero-size array to reduction operation "
                              f"{_NUMPY_NAME[n.op]} which has no identity")


_NUMPY_NAME = {"max": "maximum", "min": "minimum"}     # as NumPy's message names them
