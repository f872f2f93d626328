"""From an optimized graph to a Triton program: one kernel per compute node, and a host
function that allocates buffers and launches them.

Every node that is not a source becomes a kernel: a `fused` node through its body, a
plain node (one the fusion pass left alone) as a one-op body of its kind; a node with no
elements only gets its (empty) buffer, and a max over an empty axis raises what the
reference raises. Reshape, expand_dims and squeeze of a whole buffer are torch views in
the host function (every buffer is contiguous, so they cost nothing). A fused node whose
body the generators cannot turn into one kernel is split into its ops, each its own
kernel, and the kernel says why (`note`).

Buffers: one torch tensor per computed value, allocated by the host function when it is
produced and deleted after its last use, so torch's caching allocator can give its memory
to a later value (the numpy backend's static buffer plan is not used here).
Sources (inputs, params, consts, and the body consts holding more than one distinct
value: a kernel embeds only single numbers) are passed in as tensors, in the order of
`Program.sources`. The host function returns the results and each one_hot's label check
buffer (`Program.checks`), which the executable reads before it returns any result.

Nothing here imports triton: the program is text until `load_module` imports it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from dataclasses import dataclass, field

from graphc import ops
from graphc.backends import triton_codegen as cg
from graphc.errors import GraphcError
from graphc.ir import SOURCE_OPS, Graph, Node
from graphc.passes.rewrite import rewrite
from graphc.types import format_shape

VIEW_OPS = cg.ROW_MAJOR_VIEWS   # of a whole buffer: torch views, no kernel
KIND_OF_OP = {"reduce": "reduction", "matmul": "matmul"}   # every other op: pointwise

# A collective's host call (`collectives` is the run function's argument).
COLLECTIVE_CALLS = {"all_reduce": "collectives.all_reduce({x}, {out}, {op!r})",
                    "all_reduce_start": "collectives.start({x}, {out}, {op!r})",
                    "all_reduce_wait": "collectives.wait({x}, {x})"}

TORCH_DTYPE = {"float32": "torch.float32", "float64": "torch.float64",
               "int32": "torch.int32", "int64": "torch.int64", "bool": "torch.bool"}


@dataclass
class Program:
    kernels: list                     # cg.Kernel, in launch order
    sources: list                     # source nodes, the host function's arguments
    source: str                       # the whole module: kernels + host function
    views: int = 0
    notes: list = field(default_factory=list)
    checks: list = field(default_factory=list)   # cg.LabelCheck of each buffer run returns


def generate(graph: Graph, dims: dict, device="cpu", autotune=False,
             max_row_block=cg.MAX_ROW_BLOCK) -> Program:
    """Plan and write the program for `graph` at concrete `dims`."""
    planner = _Planner(dims, max_row_block)
    for node in graph.nodes:
        planner.add(node)
    results = list(graph.outputs) + list(graph.updates.values())
    host = _host_source(planner, results, autotune)
    kernels_src = "\n\n".join(_decorated(k, autotune) for k in planner.kernels)
    header = ("import torch\nimport triton\nimport triton.language as tl\n\n"
              f"DEVICE = {device!r}\n\n\n" + cg.PRELUDE)
    source = header + "\n\n" + kernels_src + "\n\n" + host
    return Program(planner.kernels, planner.sources, source, planner.views, planner.notes,
                   [check for _, check in planner.checks])


class _Planner:
    """Walks the graph in order and records, per node, a source, a view or kernel(s)."""

    def __init__(self, dims, max_row_block):
        self.dims, self.max_row_block = dims, max_row_block
        self.kernels, self.sources, self.notes, self.views = [], [], [], 0
        self.buffer = {}          # node -> host variable name
        self.steps = []           # host lines, in order
        self.checks = []          # (host variable, cg.LabelCheck): one_hot label checks

    def add(self, node: Node):
        if node in self.buffer:
            return
        if node.op in SOURCE_OPS:
            self.buffer[node] = f"s{len(self.sources)}"
            self.sources.append(node)
        elif node.op in VIEW_OPS:
            base = self.buffer[node.inputs[0]]
            view = self.buffer[node] = f"b{len(self.buffer)}"
            shape = node.type.concrete_shape(self.dims)
            self.steps.append((f"{view} = {base}.view({shape})", [base]))
            self.views += 1
        elif node.op == "fused":
            self._add_fused(node)
        elif ops.has(node.op, "collective"):
            self._add_collective(node)
        else:
            try:
                self._add_kernel(node, KIND_OF_OP.get(ops.OPS[node.op].kind, "pointwise"),
                                 _single_op_body(node), list(node.inputs), [node])
            except cg.Unsupported as why:
                raise GraphcError(f"the triton backend cannot generate {node.op} on "
                                  f"{', '.join(str(i.type) for i in node.inputs)} (made at "
                                  f"{node.loc}): {why}") from None

    def _add_collective(self, node):
        """A collective is a host call of the executable's Collectives (backends/
        collectives.py) on torch tensors (NCCL on CUDA): a start into a buffer of its own,
        a wait in place on its start's."""
        x = self.buffer[node.inputs[0]]
        out = (self.buffer.setdefault(node, f"b{len(self.buffer)}")
               if node.op == "all_reduce_wait" else self._allocate(node))
        call = COLLECTIVE_CALLS[node.op].format(x=x, out=out, op=node.attrs.get("op"))
        self.steps.append((f"{out} = {call}" if out != x else call, [x, out]))

    def _add_fused(self, node):
        body, operands = _consts_as_operands(node.body, list(node.inputs))
        body_ops = [n for n in body.nodes if n.op not in SOURCE_OPS]
        try:
            self._add_kernel(node, node.attrs["kind"], body, operands, body_ops)
        except cg.Unsupported as why:
            note = f"fused {node.attrs['kind']} kernel split into its ops: {why}"
            self.notes.append(note)
            first = len(self.kernels)
            outer_nodes, output = _expand(node, body, operands)
            for outer in outer_nodes:
                self.add(outer)
            self.buffer[node] = self.buffer[output]
            for k in self.kernels[first:]:
                k.note = note

    def _add_kernel(self, node, kind, body, operands, body_ops):
        for operand in operands:
            self.add(operand)
        shapes = [o.type.concrete_shape(self.dims) for o in operands]
        info = cg.body_info(body, shapes, self.dims)
        _refuse_empty_max(info)
        if cg.numel(info.out_shape) == 0:   # nothing to compute: no launch, no loads
            self._allocate(node)
            return
        name = f"k{len(self.kernels)}_{kind}_" + "_".join(
            dict.fromkeys(n.op for n in body_ops if n.op not in VIEW_OPS))[:40].rstrip("_")
        extra = {"max_row_block": self.max_row_block} if kind == "reduction" else {}
        parts = cg.GENERATORS[kind](name, info, **extra)
        kernel = cg.Kernel(operands=operands, output=node, nodes=body_ops,
                           arg_dtypes=[o.dtype for o in operands] + [node.dtype]
                           + [c.dtype for c in parts["checks"]], **parts)
        self.kernels.append(kernel)
        args = [self.buffer[o] for o in operands] + [self._allocate(node)]
        for check in kernel.checks:   # zeros: 0 is a valid label, so nonzero means bad
            var = f"c{len(self.checks)}"
            self.checks.append((var, check))
            self.steps.append((f"{var} = torch.zeros({check.shape}, "
                               f"dtype={TORCH_DTYPE[check.dtype]}, device=DEVICE)", []))
            args.append(var)
        self.steps.append((kernel, args))

    def _allocate(self, node) -> str:
        out = self.buffer[node] = f"b{len(self.buffer)}"
        shape = node.type.concrete_shape(self.dims)
        self.steps.append((f"{out} = torch.empty({shape}, dtype={TORCH_DTYPE[node.dtype]}, "
                           "device=DEVICE)", []))
        return out


def _refuse_empty_max(info: cg.BodyInfo):
    """A max over an axis of length 0 has no value: raise what the reference raises."""
    for n in info.body.nodes:
        if n.op != "max":
            continue
        shape = info.shapes[n.inputs[0]]
        if any(shape[a] == 0 for a in n.attrs["axes"]):
            raise GraphcError(f"max failed on operands of shapes {format_shape(shape)} (made "
                              f"at {n.loc}): zero-size array to reduction operation maximum "
                              "which has no identity")


def _expand(fused: Node, body: Graph, operands: list):
    """The body's ops as outer nodes (body inputs replaced by the fused node's operands);
    returns (nodes in order, the node standing for the body's output)."""
    mapping = dict(zip(body.inputs, operands))
    outer = []
    for n in body.nodes:
        if n in mapping:
            continue
        if n.op in SOURCE_OPS:
            mapping[n] = n
            continue
        mapping[n] = Node(n.op, [mapping[i] for i in n.inputs], n.attrs, n.type,
                          name=n.name, loc=fused.loc, tags=n.tags)
        outer.append(mapping[n])
    return outer, mapping[body.outputs[0]]


def _single_op_body(node: Node) -> Graph:
    """A plain node as a kernel body: its op applied to inputs in0, in1, ..."""
    ins = [Node("input", (), {}, i.type, name=f"in{k}", loc=node.loc)
           for k, i in enumerate(node.inputs)]
    return Graph([Node(node.op, ins, node.attrs, node.type, loc=node.loc)])


def _is_fill(node: Node) -> bool:
    flat = node.value.ravel()
    return flat.size > 0 and bool((flat == flat[0]).all())


def _consts_as_operands(body: Graph, operands: list):
    """Body consts holding more than one distinct value become extra kernel operands
    (a kernel embeds only scalars as literals). Returns (body, operands)."""
    arrays = [n for n in body.nodes if n.op == "const" and not _is_fill(n)]
    if not arrays:
        return body, operands
    as_input = {c: Node("input", (), {}, c.type, name=f"in{len(operands) + j}", loc=c.loc)
                for j, c in enumerate(arrays)}
    rewritten = rewrite(body, as_input.get)  # params stay first: bound by position
    params = list(body.inputs) + list(as_input.values())
    rest = [n for n in rewritten.nodes if n.op != "input"]
    return Graph(rewritten.outputs, order=params + rest), operands + arrays


# --- the host function ------------------------------------------------------------------

def _decorated(kernel: cg.Kernel, autotune: bool) -> str:
    if not autotune:
        return kernel.source
    configs = ", ".join(f"triton.Config({blocks!r}, num_warps={warps})"
                        for blocks, warps in autotune_configs(kernel))
    return f"@triton.autotune(configs=[{configs}], key=[])\n" + kernel.source


def autotune_configs(kernel: cg.Kernel) -> list:
    """The heuristic's choice first, then neighbours worth timing on a real GPU.
    The generated code depends on whether a block covers a whole reduction row or the
    whole K of a matmul, so BLOCK_R is kept and BLOCK_K only grows."""
    base = [(dict(kernel.blocks), kernel.num_warps)]
    if kernel.kind == "pointwise":
        b = kernel.blocks["BLOCK"]
        return base + [({"BLOCK": v}, w) for v, w in ((max(b // 2, 16), 4), (min(b * 2, 4096), 8))
                       if v != b]
    if kernel.kind == "reduction":
        m = kernel.blocks["BLOCK_M"]
        return base + [(dict(kernel.blocks, BLOCK_M=v), w) for v, w in ((max(m // 2, 1), 4),
                                                                         (m * 2, 8)) if v != m]
    bigger = {k: min(v * 2, 128) for k, v in kernel.blocks.items()}
    return base + [(bigger, 8)] if bigger != kernel.blocks else base


def _host_source(planner: _Planner, results: list, autotune: bool) -> str:
    lines = ["def run(sources, collectives):",
             '    """Launch every kernel on `sources` (tensors for Program.sources, in order),',
             '    collectives through `collectives`; return the result tensors (graph outputs,',
             '    then update values) and the one_hot label checks (Program.checks, in order)."""']
    if planner.sources:
        names = ", ".join(f"s{i}" for i in range(len(planner.sources)))
        lines.append(f"    {names}, = sources")
    returned = [planner.buffer[r] for r in results]
    checks = [var for var, _ in planner.checks]
    last_use = {var: i for i, (_, used) in enumerate(planner.steps) for var in used}
    keep = set(returned) | set(checks) | {f"s{i}" for i in range(len(planner.sources))}
    for i, (step, used) in enumerate(planner.steps):
        lines.append("    " + (step if isinstance(step, str) else _launch(step, used, autotune)))
        dead = [v for v in dict.fromkeys(used) if last_use[v] == i and v not in keep]
        if dead:   # the caching allocator can hand a dead buffer to a later value
            lines.append(f"    del {', '.join(dead)}")
    lines.append(f"    return [{', '.join(returned)}], [{', '.join(checks)}]")
    return "\n".join(lines) + "\n"


def _launch(kernel: cg.Kernel, args: list, autotune: bool) -> str:
    blocks = "" if autotune else "".join(f", {k}={v}" for k, v in kernel.blocks.items())
    warps = "" if autotune else f", num_warps={kernel.num_warps}"
    return f"{kernel.name}[{kernel.grid_source}]({', '.join(args)}{blocks}{warps})"


def write_module(source: str) -> tuple:
    """Write the generated source to a file named by its hash (kept if present); return
    (module name, path). @triton.jit reads a kernel's source from its file."""
    name = "graphc_triton_" + hashlib.sha1(source.encode()).hexdigest()[:16]
    folder = os.path.join(tempfile.gettempdir(), "graphc_triton")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name + ".py")
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(source)
        os.replace(tmp, path)   # atomic: a concurrent reader never sees half a file
    return name, path


def load_module(source: str):
    """Import the generated source as a module (once per process and source)."""
    name, path = write_module(source)
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]
