"""The `fuse` pass: group ops into kernels, each a single `fused` node.

A kernel is `Node("fused", operands, {"kind": K, "body": Graph})` with one output (the
contract in the module's section "kernel kinds" below; backends generate code from it).
Kinds:
- pointwise: elementwise ops over one iteration space; broadcasts, transposes and
  reshapes are index arithmetic, not copies;
- reduction: a pointwise prologue, sum/max reductions over one set of axes, a pointwise
  epilogue on the reduced values (softmax, log_softmax, logsumexp: one kernel each);
- matmul: one matmul whose operands are kernel inputs (optionally transposed) with a
  pointwise epilogue on its output (bias, activation, the ReLU-backward mask).

How kernels grow. Nodes are visited consumers first (reverse topological order). A
node that ends a kernel (a graph output, a value some other kernel or a plain op reads)
is "materialized": it becomes the root, that is the output, of a new kernel. A producer
joins its consumer's kernel when three separate checks pass, each refusal a one-line
reason that `explain_fusion` reports:
- capability (`_admit`): the kernel kind may hold the op in that position;
- legality (`_cycle_through`): no path leaves the kernel and comes back, which single-
  output kernels can only hit when a value is also needed by a node the kernel reads;
- profitability: the value is not needed outside the kernel (else it is materialized
  anyway and fusing saves nothing), except that cheap pointwise work whose inputs are
  materialized anyway is recomputed inside each consumer kernel.
Every member of a kernel reaches its root inside the kernel, so kernels form no cycle.

A kernel of one op stays a plain node (a lone matmul, reduction or elementwise op is
not wrapped): a `fused` node always saves at least one materialized intermediate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from graphc import ops
from graphc.ir import SOURCE_OPS, Graph, Node
from graphc.types import format_shape

KINDS = ("pointwise", "reduction", "matmul")
LAYOUT_OPS = ("broadcast_to", "transpose", "reshape", "expand_dims", "squeeze")
REDUCE_OPS = ("sum", "max")
# Layout ops a reduction kernel may hold: they only move values between the full shape
# and the reduced shape (with or without the reduced axes kept as 1s).
REDUCTION_LAYOUT_OPS = ("broadcast_to", "reshape", "expand_dims", "squeeze")


def role(node: Node) -> str | None:
    """What a node is to fusion: elementwise | layout | reduce | matmul, or None (opaque)."""
    kind = ops.OPS[node.op].kind if node.op in ops.OPS else None
    if kind in ops.ELEMENTWISE_KINDS:
        return "elementwise"
    if node.op in LAYOUT_OPS:
        return "layout"
    if node.op in REDUCE_OPS:
        return "reduce"
    if node.op == "matmul":
        return "matmul"
    return None


# --- capability: what each kernel kind may hold ---------------------------------------

@dataclass
class KernelState:
    """What a kernel's members pin down: its kind and, per kind, the shapes that fit."""
    kind: str = "pointwise"
    full: tuple = None       # reduction: the shape reduced
    axes: tuple = None       # reduction: the axes reduced
    keep: tuple = None       # reduction: the reduced shape with the axes kept as 1s
    drop: tuple = None       # reduction: the reduced shape without them
    matmul: Node = None      # matmul: the one matmul
    operands: set = field(default_factory=set)  # matmul: the transposes feeding it

    @property
    def shapes(self) -> tuple:
        return (self.full, self.keep, self.drop)


def state_for(node: Node) -> KernelState:
    """The state of a kernel that holds `node` (a reduction or a matmul) among pointwise ops."""
    if role(node) == "reduce":
        full, axes = node.inputs[0].shape, node.attrs["axes"]
        keep = tuple(1 if i in axes else d for i, d in enumerate(full))
        drop = tuple(d for i, d in enumerate(full) if i not in axes)
        return KernelState("reduction", full=full, axes=axes, keep=keep, drop=drop)
    return KernelState("matmul", matmul=node)


def _fits_pointwise(state, node, users):
    if role(node) in ("elementwise", "layout"):
        return None
    return f"a pointwise kernel holds no {node.op}"


def _fits_reduction(state, node, users):
    r = role(node)
    if r == "matmul":
        return "a reduction kernel's prologue is pointwise; the matmul stays outside"
    if r == "reduce":
        if node.inputs[0].shape != state.full or node.attrs["axes"] != state.axes:
            return (f"{node.op} reduces axes {node.attrs['axes']} of "
                    f"{format_shape(node.inputs[0].shape)} but the kernel reduces axes "
                    f"{state.axes} of {format_shape(state.full)}")
    elif r == "layout" and node.op not in REDUCTION_LAYOUT_OPS:
        return f"{node.op} would reorder the axes a reduction kernel iterates"
    elif node.shape not in state.shapes:
        return (f"{node.op} iterates {node.type} but the kernel iterates "
                f"{format_shape(state.full)} reduced over axes {state.axes}")
    elif r == "layout" and node.op != "broadcast_to" and node.inputs[0].shape not in state.shapes:
        return f"{node.op} of {node.inputs[0].type} reorders values a reduction kernel iterates"
    return _reduced_value_misused(state, node, users)


def _reduced_value_misused(state, node, users):
    """A reduced value without its kept axes broadcasts (NumPy: from the right) back onto
    the full shape along the right axes only when the reduced axes lead."""
    leading = state.axes == tuple(range(len(state.axes)))
    if node.shape != state.drop or state.drop == state.keep or leading:
        return None
    for user in users:
        if user.shape != state.drop and user.op not in ("expand_dims", "reshape"):
            return (f"{node.op} gives {node.type}, which {user.op} would broadcast onto "
                    f"{user.type} along the wrong axes")
    return None


def _swaps_last_two(node: Node) -> bool:
    n = node.ndim
    return node.op == "transpose" and node.attrs["perm"] == tuple(range(n - 2)) + (n - 1, n - 2)


def _fits_matmul(state, node, users):
    r, mm = role(node), state.matmul
    if node is mm:
        return None
    if r == "matmul":
        return "a matmul kernel holds one matmul"
    if r == "reduce":
        return "a matmul kernel's epilogue is pointwise; it holds no reduction"
    if any(u in state.operands for u in users):
        return "matmul operands are kernel inputs (through at most a transpose)"
    if mm in users:
        if _swaps_last_two(node) and len(users) == 1:
            return None
        return f"matmul operands are kernel inputs; {node.op} would be a prologue"
    if r == "layout" and node.op != "broadcast_to":
        return f"{node.op} in a matmul epilogue would move the matmul's output"
    if node.shape != mm.shape:
        return f"{node.op} iterates {node.type} but the matmul epilogue iterates {mm.type}"
    return None


# kernel kind -> (state, node, its users inside the kernel) -> refusal or None
FITS = {"pointwise": _fits_pointwise, "reduction": _fits_reduction, "matmul": _fits_matmul}


def _admit(state: KernelState, node: Node, users: list) -> str | None:
    """Whether `node` fits a kernel in `state` whose members include `users`; on success
    record what it pins down."""
    if role(node) is None:
        return f"{node.op} is not fusible"
    reason = FITS[state.kind](state, node, users)
    if reason is None and state.kind == "matmul" and node is not state.matmul \
            and state.matmul in users:
        state.operands.add(node)
    return reason


def check_kernel(kind: str, body: Graph) -> str | None:
    """Why `body` is not a valid kernel of `kind` (one line), or None when it is."""
    if kind not in KINDS:
        return f"unknown kernel kind {kind!r}; kinds are {', '.join(KINDS)}"
    if len(body.outputs) != 1:
        return f"a kernel body has one output, this one has {len(body.outputs)}"
    members = [n for n in body.nodes if n.op not in SOURCE_OPS]
    if any(n.op == "param" for n in body.nodes):
        return "a kernel body holds no params; pass them as operands"
    state = KernelState()
    if kind != "pointwise":
        wanted = "reduce" if kind == "reduction" else "matmul"
        anchors = [n for n in members if role(n) == wanted]
        if not anchors or (kind == "matmul" and len(anchors) > 1):
            return f"a {kind} kernel holds {'exactly one matmul' if kind == 'matmul' else 'a sum or max'}"
        state = state_for(anchors[0])
    users = body.users
    for node in reversed(members):  # consumers first, as the pass grows kernels
        reason = _admit(state, node, [u for u in users[node]])
        if reason:
            return f"{node.op}: {reason}"
    return None


def make_fused(kind: str, operands, body, loc=None, tags=()) -> Node:
    """A kernel node over `operands`. `body` is a Graph whose inputs are named in0, in1, ...
    or a function called with one body input per operand that returns the output node,
    e.g. make_fused("matmul", [x, W, b], lambda x, w, b: gc.relu(x @ w + b))."""
    operands = list(operands)
    if callable(body):
        inputs = [Node("input", (), {}, o.type, name=f"in{i}") for i, o in enumerate(operands)]
        body = Graph([body(*inputs)])
    problem = check_kernel(kind, body)
    if problem:
        raise ValueError(f"make_fused: not a valid {kind} kernel: {problem}")
    attrs = {"kind": kind, "body": body}
    type = ops.infer_type("fused", [o.type for o in operands], attrs)
    return Node("fused", operands, attrs, type, loc=loc, tags=tags)
